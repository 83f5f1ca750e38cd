
# A slot that nothing decodes keeps WAL and catalog_xmin forever, so the
# decoder drops its own slot whenever it cannot decode: when the extension
# is dropped while the decoder is not streaming (here: in its restart
# delay), and while output_plugin_libraries refuses the plugin.  Decoding
# resumes with a new slot once it can, and nothing is lost.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('idle_slot',
	targets => 'orders=' . receiver_url($orders, '/o'));
my $slot_count =
  "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'outbox'";
ok(wait_for_decoding($node), 'the decoder streams from its slot');

# --- DROP EXTENSION while the decoder waits to be restarted ---------------

# The decoder is held (SIGSTOP) while the extension is dropped and the
# dispatcher notices, then ends: it never sees the drop while streaming.
my $decoder = worker_pid($node, 'outbox decoder');
my $offset = log_position($node);
kill 'STOP', $decoder;
$node->safe_psql('postgres', 'DROP EXTENSION outbox');
ok(wait_for_log_line($node,
		qr/outbox dispatcher is waiting for CREATE EXTENSION outbox/, $offset),
	'the dispatcher notices the DROP EXTENSION');
kill 'TERM', $decoder;
kill 'CONT', $decoder;
ok(wait_for_log_line($node, qr/background worker "outbox decoder" \(PID $decoder\) exited/,
		$offset),
	'the decoder exits without having seen it; the postmaster restarts it after a delay');
ok(poll_until($node, $slot_count, '0', 20),
	'the restarted decoder drops its slot, since the extension is gone');
ok(wait_for_log_line($node,
		qr/outbox decoder dropped replication slot "outbox": the extension is not installed/,
		$offset),
	'and says so in the log');

$node->safe_psql('postgres', q{
CREATE EXTENSION outbox;
SELECT outbox_queue('orders', '{"n": 1}', message_id => 'after-recreate');
});
ok(scalar(wait_for_requests($orders, 1, undef,
	with_id('after-recreate'))),
	'after CREATE EXTENSION, messages are delivered');
ok(wait_for_decoding($node), 'and the decoder streams from a new slot');

# --- output_plugin_libraries refuses the plugin ----------------------------

$node->append_conf('postgresql.conf',
	"output_plugin_libraries = 'pgoutput, test_decoding'");
$offset = log_position($node);
$node->restart;
ok(poll_until($node, $slot_count, '0', 20),
	'with the plugin refused, the decoder drops its idle slot');
ok(wait_for_log_line($node,
		qr/outbox decoder dropped replication slot "outbox": output_plugin_libraries does not list outbox/,
		$offset),
	'and says why in the log');
$node->safe_psql('postgres',
	"SELECT outbox_queue('orders', '{\"n\": 2}', message_id => 'plugin-refused')");
ok(scalar(wait_for_requests($orders, 1, undef,
	with_id('plugin-refused'))),
	'messages are still delivered, found by table scans');

$node->append_conf('postgresql.conf',
	"output_plugin_libraries = 'pgoutput, test_decoding, outbox'");
$node->reload;
ok(poll_until($node, $slot_count, '1', 20),
	'once the plugin is allowed again, the decoder creates its slot again');
ok(wait_for_decoding($node), 'and streams from it');

$node->stop;
done_testing();
