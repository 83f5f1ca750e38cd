
# A message whose receiver is down (connection refused) stays pending and is
# retried with backoff; it is delivered once the receiver comes up, with the
# same webhook-id and an increasing outbox-attempt.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $port = free_port();    # reserved; nothing listens there yet
my $node = outbox_node('receiver_down',
	targets => "orders=http://127.0.0.1:$port/hooks/orders",
	conf => "outbox.retry_base_delay = '100ms'\noutbox.retry_max_delay = '1s'");

my $id = $node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 1}', message_id => 'down-1')});

ok( poll_until(
		$node,
		"SELECT state, attempts >= 2 FROM outbox.messages WHERE id = $id",
		'pending|t'),
	'a message whose receiver refuses connections stays pending and is retried');
is( $node->safe_psql(
		'postgres',
		"SELECT last_error IS NOT NULL AND last_error <> '', "
		  . "next_attempt_at IS NOT NULL, delivered_at IS NULL "
		  . "FROM outbox.messages WHERE id = $id"),
	't|t|t',
	'a failed attempt records last_error and the next attempt time');

my $orders = start_receiver(name => 'orders', port => $port);

my ($req) = wait_for_requests($orders, 1, $OutboxTest::timeout);
ok($req, 'the message is delivered once the receiver is up');
is($req && $req->{headers}{'webhook-id'}, 'down-1',
	'the retried request keeps its webhook-id');
ok( poll_until(
		$node,
		"SELECT state FROM outbox.messages WHERE id = $id", 'delivered'),
	'the row becomes delivered');
my ($attempts, $status) = split /\|/, $node->safe_psql('postgres',
	"SELECT attempts, last_status FROM outbox.messages WHERE id = $id");
cmp_ok($attempts, '>=', 3, 'attempts counts the failed attempts too');
is($req && $req->{headers}{'outbox-attempt'}, $attempts,
	'outbox-attempt of the delivering request equals the recorded attempts');
is($status, '200', 'last_status is the status of the successful attempt');

# Nothing is sent again after delivery.
wait_seconds(1.5);
is(scalar(read_requests($orders)), 1, 'a delivered message is not retried');

$node->stop;
done_testing();
