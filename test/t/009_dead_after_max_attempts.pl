
# A message that keeps failing is declared dead after outbox.max_attempts
# attempts and is not sent again.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders', args => [ '--status' => 500 ]);
my $node = outbox_node('dead',
	targets => 'orders=' . receiver_url($orders, '/hooks/orders'),
	conf => "outbox.retry_base_delay = '50ms'\n"
	  . "outbox.retry_max_delay = '200ms'\noutbox.max_attempts = 3");

my $id = $node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 1}', message_id => 'doomed')});

ok( poll_until(
		$node,
		"SELECT state, attempts, last_status FROM outbox.messages WHERE id = $id",
		'dead|3|500'),
	'after max_attempts failed attempts the message is dead');
is( $node->safe_psql(
		'postgres',
		"SELECT delivered_at IS NULL, last_error IS NOT NULL FROM outbox.messages WHERE id = $id"),
	't|t', 'a dead message has no delivered_at and keeps its last error');

wait_seconds(1);
my @reqs = requests_with_id($orders, 'doomed');
is(scalar @reqs, 3, 'exactly max_attempts requests were made');
is_deeply([ map { $_->{headers}{'outbox-attempt'} } @reqs ],
	[ 1, 2, 3 ], 'the attempts are numbered 1 to max_attempts');

# Other messages are not affected by the dead one.
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 2}', message_id => 'next')});
ok(scalar wait_for_requests($orders, 1, $OutboxTest::timeout,
		with_id('next')),
	'later messages are still sent');

$node->stop;
done_testing();
