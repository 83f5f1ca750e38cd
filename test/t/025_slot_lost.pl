
# The replication slot is lost while messages are pending (the server is
# stopped and pg_replslot/outbox removed): at the next start the decoder
# recreates the slot, every pending message is delivered from the table,
# and the WAL fast path works again for new messages.

use strict;
use warnings;

use File::Path qw(rmtree);
use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $port = free_port();    # the receiver is down at first
my $node = outbox_node('slot_lost',
	targets => "orders=http://127.0.0.1:$port/hooks/orders");

ok( poll_until(
		$node,
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'outbox'",
		'1'),
	'the decoder has created its slot');

my $n = 50;
for my $tx (1 .. 5)
{
	$node->safe_psql('postgres', qq{
SELECT count(outbox_queue('orders', jsonb_build_object('tx', $tx, 'n', g),
                          message_id => 'lost-$tx-' || g))
  FROM generate_series(1, 10) g;
});
}
ok( poll_until(
		$node,
		"SELECT count(*) > 0 FROM outbox.messages WHERE attempts > 0", 't'),
	'delivery is attempted while the receiver is down');
is($node->safe_psql('postgres',
		"SELECT state, count(*) FROM outbox.messages GROUP BY state"),
	"pending|$n", "all $n messages are pending");

$node->stop('fast');
my $slot_dir = $node->data_dir . '/pg_replslot/outbox';
ok(-d $slot_dir, 'the slot is on disk while the server is stopped');
rmtree($slot_dir);
ok(!-e $slot_dir, 'the slot has been removed');

my $offset = log_position($node);
$node->start;
ok( wait_for_log_line(
		$node, qr/outbox decoder created replication slot "outbox"/, $offset),
	'the decoder says it created the replication slot again');
ok( poll_until(
		$node,
		"SELECT plugin FROM pg_replication_slots WHERE slot_name = 'outbox'",
		'outbox'),
	'the slot exists again, with the outbox plugin');

my $orders = start_receiver(name => 'orders', port => $port);
ok( poll_until(
		$node,
		"SELECT state, count(*) FROM outbox.messages GROUP BY state",
		"delivered|$n"),
	'every message pending when the slot was lost is delivered');
my %seen;
$seen{ $_->{headers}{'webhook-id'} }++ for read_requests($orders);
my @expected = map { my $tx = $_; map { "lost-$tx-$_" } 1 .. 10 } 1 .. 5;
is(scalar(grep { !$seen{$_} } @expected), 0,
	'the receiver got every one of them');

# New messages take the WAL fast path through the new slot.
my $t0 = sql_epoch($node, 'clock_timestamp()');
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"after": 1}', message_id => 'after-slot')});
my ($req) = wait_for_requests($orders, 1, undef,
	with_id('after-slot'));
ok($req, 'a message queued after the slot was recreated is delivered');
ok($req && $req->{t} - $t0 < 1,
	'it arrives within a second (the fast path, not the safety scan)');
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok( slot_confirmed_past($node, $lsn),
	'the new slot is confirmed past that message');

$node->stop;
done_testing();
