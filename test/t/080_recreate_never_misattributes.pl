
# DROP EXTENSION and CREATE EXTENSION in one transaction give a new
# outbox.messages whose ids start from 1 again.  Messages of the dropped
# table that the decoder hands over late (it was stopped) must neither be
# sent again nor have their outcomes written to the new rows of the same
# ids.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('recreate',
	targets => 'orders=' . receiver_url($orders, '/o'));
ok(wait_for_decoding($node), 'the decoder streams from its slot');

# The decoder stops; three messages are delivered by the safety scan.
my $decoder = worker_pid($node, 'outbox decoder');
kill 'STOP', $decoder;
$node->safe_psql('postgres',
	"SELECT outbox_queue('orders', jsonb_build_object('old', g)) FROM generate_series(1, 3) g");
is(scalar(wait_for_requests($orders, 3)), 3,
	'with the decoder stopped, the table scan delivers the first table\'s messages');
ok(poll_until($node,
		"SELECT count(*) FROM outbox.messages WHERE state = 'delivered'", '3'),
	'and records them delivered');

# The extension is made again; the new table's messages are for later.
my $offset = log_position($node);
$node->safe_psql('postgres', q{
BEGIN;
DROP EXTENSION outbox;
CREATE EXTENSION outbox;
COMMIT;
SELECT outbox_send('orders', jsonb_build_object('new', g),
                   deliver_at => now() + interval '1 hour')
  FROM generate_series(1, 3) g;
});
is($node->safe_psql('postgres', 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM outbox.messages'),
	'1,2,3', 'the new table numbers its messages from 1 again');
ok(wait_for_log_line($node,
		qr/outbox dispatcher found outbox.messages made again in database "postgres"/,
		$offset),
	'the dispatcher meets the new table and says so');

# The decoder resumes and hands over the dropped table's messages.
kill 'CONT', $decoder;
wait_seconds(6);

is(scalar(read_requests($orders)), 3,
	'the dropped table\'s messages are not sent again');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(format('%s:%s:%s', id, state, attempts), ',' ORDER BY id) FROM outbox.messages"),
	'1:pending:0,2:pending:0,3:pending:0',
	'no outcome lands on the new rows that share their ids');
is($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.attempts'),
	'0', 'nor any attempt');

# The new table is served as usual.
$node->safe_psql('postgres',
	"SELECT outbox_queue('orders', '{\"fresh\": true}', message_id => 'fresh')");
ok(scalar(wait_for_requests($orders, 1, undef,
	with_id('fresh'))),
	'a message of the new table is sent');
ok(poll_until($node,
		"SELECT state FROM outbox.messages WHERE message_id = 'fresh'",
		'delivered'),
	'and recorded delivered');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM outbox.messages WHERE state = 'pending'"),
	'3', 'the messages for later still wait');

$node->stop;
done_testing();
