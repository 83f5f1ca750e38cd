
# A decoder that ends in the middle of a pass, after handing messages over
# but before confirming them, decodes them again when it restarts.  Those
# copies must not send a delivered message again, nor lower its attempts.
# gdb stops the decoder at the end of the pass and ends it there.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $n = 512;    # the decoder wakes the dispatcher every 256 messages
my $orders = start_receiver(name => 'orders');
my $node = outbox_node('replay',
	targets => 'orders=' . receiver_url($orders, '/o'));
ok(wait_for_decoding($node), 'the decoder streams from its slot');

my $decoder = worker_pid($node, 'outbox decoder');
my $gdb = gdb_attach($decoder);
gdb_command($gdb, 'break outbox_ring_put', qr/Breakpoint 1 at/);
gdb_command($gdb, 'continue');
$node->safe_psql('postgres',
	"SELECT count(outbox_queue('orders', jsonb_build_object('n', g), message_id => 'rp-' || g)) FROM generate_series(1, $n) g");
my $committed = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(gdb_wait($gdb, qr/Breakpoint 1, /), 'the decoder decodes the transaction');

# Hold it where the pass ends, before it confirms what it decoded
gdb_command($gdb, 'delete');
gdb_command($gdb, 'break LogicalConfirmReceivedLocation', qr/Breakpoint 2 at/);
gdb_command($gdb, 'continue');
ok(gdb_wait($gdb, qr/Breakpoint 2, /),
	'the decoder has handed every message over and not confirmed them');
is(scalar(wait_for_requests($orders, $n)), $n,
	'the dispatcher delivers them meanwhile');
ok(poll_until($node,
		"SELECT count(*) FROM outbox.messages WHERE state = 'delivered' AND attempts = 1",
		$n),
	'and records them delivered after one attempt');

# End the decoder there; the postmaster restarts it, and it decodes the
# same transaction again.
gdb_command($gdb, 'call (void) proc_exit(1)', qr/exited with code 01/);
gdb_detach($gdb);
my $restarted = worker_pid($node, 'outbox decoder', not => $decoder);
ok($restarted, 'the decoder is restarted');
ok(wait_for_decoding($node), 'and streams again from where it had confirmed');
ok(slot_confirmed_past($node, $committed),
	'it has decoded the transaction again and handed it over');
wait_seconds(1);    # for the dispatcher to take it from the ring

is(scalar(read_requests($orders)), $n,
	'no message is sent again from the copies decoded again');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FILTER (WHERE state = 'delivered'), min(attempts), max(attempts) FROM outbox.messages"),
	"$n|1|1", 'every message stays delivered, with its one attempt');
is($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.attempts'),
	$n, 'outbox.attempts has one row per request');

$node->stop;
done_testing();
