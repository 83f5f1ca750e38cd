
# Bad server configuration is logged once with the fix, and messages wait
# (or take the slower table-scan path) instead of being dropped.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $targets = 'orders=' . receiver_url($orders, '/hooks/orders');

sub count_in_log
{
	my ($node, $re) = @_;
	my $log = slurp_file($node->logfile);
	my $n = () = $log =~ /$re/g;
	return $n;
}

# --- output_plugin_libraries without outbox ---------------------------------

my $node = outbox_node('noplugin', targets => $targets,
	conf => "output_plugin_libraries = 'pgoutput, test_decoding'");

ok( $node->wait_for_log(
		qr/outbox decoder cannot decode WAL: library "outbox" is not listed in output_plugin_libraries/),
	'a missing output_plugin_libraries entry is reported');
like(slurp_file($node->logfile),
	qr/HINT:  Run ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'test_decoding', 'outbox'; then SELECT pg_reload_conf\(\);/,
	'the report gives the exact fix');

$node->safe_psql('postgres',
	"SELECT outbox_queue('orders', '{\"n\": 1}', message_id => 'no-plugin')");
ok(scalar(wait_for_requests($orders, 1, undef,
	with_id('no-plugin'))),
	'messages are still delivered, from the table');

wait_seconds(6);
is(count_in_log($node, qr/is not listed in output_plugin_libraries/), 1,
	'the report is logged once, with no restart loop');
is(count_in_log($node, qr/background worker "outbox decoder" .* exited/), 0,
	'the decoder did not crash or restart');

# The fix applies with a reload, no restart
$node->safe_psql('postgres',
	"ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'test_decoding', 'outbox'");
$node->reload;
ok(poll_until($node,
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'outbox'",
		'1'),
	'after the fix and a reload the decoder creates its slot');
$node->stop;

# --- wal_level = replica ----------------------------------------------------

$node = outbox_node('replica', targets => $targets,
	conf => "wal_level = replica");
ok( $node->wait_for_log(
		qr/outbox decoder is not running: it needs wal_level = logical/),
	'wal_level below logical is reported');
$node->safe_psql('postgres',
	"SELECT outbox_queue('orders', '{\"n\": 2}', message_id => 'replica')");
ok(scalar(wait_for_requests($orders, 1, undef,
	with_id('replica'))),
	'with wal_level = replica messages are still delivered');
wait_seconds(6);
is(count_in_log($node, qr/it needs wal_level = logical/), 1,
	'the wal_level report is logged once');
$node->stop;

# --- a target removed from outbox.targets: its messages wait ---------------

$node = outbox_node('notarget', targets => $targets);
$node->safe_psql('postgres', q{
SELECT outbox_send('orders', '{"n": 3}', message_id => 'held',
                   deliver_at => now() + interval '2 seconds');
});
$node->append_conf('postgresql.conf', "outbox.targets = ''");
$node->reload;
wait_seconds(4);
is($node->safe_psql('postgres',
		"SELECT state || '/' || attempts FROM outbox.messages WHERE message_id = 'held'"),
	'pending/0', 'a message whose target is gone waits, pending, untried');

$node->append_conf('postgresql.conf', "outbox.targets = '$targets'");
$node->reload;
ok(scalar(wait_for_requests($orders, 1, undef,
	with_id('held'))),
	'it is delivered once the target is configured again');
$node->stop;

done_testing();
