
# DROP EXTENSION and CREATE EXTENSION while a keyed message from the WAL
# waits for the per-key gate.  The gate's transaction finds the extension
# recreated and forgets every message it held, the one being checked
# included: the check must not read it afterwards.  Its payload is large,
# so that its memory goes back to the kernel when it is freed, and a read
# of it would crash the dispatcher (and restart the whole server).

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('recreate_while_gating',
	targets => 'orders=' . receiver_url($orders, '/o'));
ok(wait_for_decoding($node), 'the decoder streams from its slot');
my $pid = worker_pid($node, 'outbox dispatcher');

# Hold the dispatcher once it has taken a keyed message from the ring and
# is about to have the table check it.
my $gdb = gdb_attach($pid);
gdb_command($gdb, 'break gate_keyed_messages if gate_needed', qr/Breakpoint 1 at/);
gdb_command($gdb, 'continue');
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', jsonb_build_object('pad', repeat('x', 900000)),
	  key => 'k', message_id => 'old-1')});
ok(gdb_wait($gdb, qr/Breakpoint 1, /),
	'the dispatcher holds a keyed message for the gate');

my $log = log_position($node);
$node->safe_psql('postgres',
	'BEGIN; DROP EXTENSION outbox; CREATE EXTENSION outbox; COMMIT');
gdb_detach($gdb);

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"new": 1}', key => 'k', message_id => 'new-1')});
ok(scalar(wait_for_requests($orders, 1, undef, with_id('new-1'))),
	'a message of the new extension is delivered');
is(worker_pid($node, 'outbox dispatcher'), $pid, 'by the same dispatcher');
unlike(PostgreSQL::Test::Utils::slurp_file($node->logfile, $log),
	qr/terminated by signal/, 'no process crashed');
is(scalar(requests_with_id($orders, 'old-1')), 0,
	'the message of the dropped extension is not sent');

$node->stop;
done_testing();
