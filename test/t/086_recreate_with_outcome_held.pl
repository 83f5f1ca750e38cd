
# An outcome of a message of the old table must not be written to the row
# of the same id in the table that DROP EXTENSION and CREATE EXTENSION in
# one transaction make: the dispatcher gets its response while that
# transaction is open, and records it only after the transaction committed.
# The new message would then be marked delivered without ever being sent.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders', control => 1);
my $node = outbox_node('recreate_held',
	targets => 'orders=' . receiver_url($orders, '/o'));
ok(wait_for_decoding($node), 'the decoder streams from its slot');

# The old table's message 1 is in flight, with a slow answer.
set_control($orders, { delay => 1.5 });
$node->safe_psql('postgres',
	"SELECT outbox_queue('orders', '{\"old\": 1}', message_id => 'old-1')");
ok(scalar(wait_for_requests($orders, 1)), 'the old message is in flight');

my $session = $node->background_psql('postgres', timeout => 60);
$session->query_safe('BEGIN');
$session->query_safe('DROP EXTENSION outbox');
ok( poll_until(
		$node,
		"SELECT query || '/' || coalesce(wait_event_type, '') FROM pg_stat_activity"
		  . " WHERE backend_type = 'outbox dispatcher'",
		'record delivery outcomes/Lock', 10),
	'the answer came: the dispatcher waits for the DROP to record it');
$session->query_safe('CREATE EXTENSION outbox');
$session->query_safe(
	q{SELECT outbox_send('orders', '{"new": 1}', message_id => 'new-1', deliver_at => now() + interval '1 hour')});
$session->query_safe('COMMIT');
$session->quit;

is($node->safe_psql('postgres', "SELECT id FROM outbox.messages WHERE message_id = 'new-1'"),
	'1', 'the new table\'s message has the old message\'s id');
ok(poll_until($node,
		"SELECT state FROM pg_stat_activity WHERE backend_type = 'outbox dispatcher'",
		'idle', 10),
	'the dispatcher has gone on');
wait_seconds(1);
is( $node->safe_psql(
		'postgres',
		"SELECT state, attempts, delivered_at IS NULL FROM outbox.messages WHERE message_id = 'new-1'"),
	'pending|0|t', 'the old message\'s outcome is not written to the new row');
is($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.attempts'),
	'0', 'nor its attempt');
is(scalar(requests_with_id($orders, 'new-1')), 0,
	'and the new message waits for its time');

$node->stop;
done_testing();
