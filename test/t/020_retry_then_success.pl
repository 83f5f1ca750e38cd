
# A message whose receiver answers 500 twice and then 200 is retried with
# the same webhook-id and outbox-attempt 1, 2, 3, and ends delivered with
# attempts = 3 and last_status = 200.  While a message keeps failing, its
# row shows the HTTP status and status line of the last attempt.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders', args => [ '--fail-first' => 2 ]);
my $node = outbox_node('retry_then_success',
	targets => 'orders=' . receiver_url($orders, '/hooks/orders'),
	conf => "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '1s'\n"
	  . "outbox.circuit_failures = 100");

my $id = $node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 1}', message_id => 'twice-failed')});

ok( poll_until(
		$node,
		"SELECT state, attempts, last_status FROM outbox.messages WHERE id = $id",
		'delivered|3|200'),
	'after two 500 answers the third attempt delivers the message');

my @reqs = requests_with_id($orders, 'twice-failed');
is(scalar @reqs, 3, 'the receiver saw exactly three requests');
is_deeply([ map { $_->{status} } @reqs ],
	[ 500, 500, 200 ], 'they were answered 500, 500, 200');
is_deeply([ map { $_->{headers}{'outbox-attempt'} } @reqs ],
	[ 1, 2, 3 ], 'outbox-attempt is 1, 2, 3');
is_deeply([ map { $_->{headers}{'webhook-id'} } @reqs ],
	[ ('twice-failed') x 3 ], 'every attempt carries the same webhook-id');
is_deeply([ map { $_->{body} } @reqs ],
	[ ($reqs[0]{body}) x 3 ], 'every attempt carries the same body');
is( $node->safe_psql(
		'postgres',
		"SELECT delivered_at IS NOT NULL, next_attempt_at IS NOT NULL "
		  . "FROM outbox.messages WHERE id = $id"),
	't|t', 'the delivered row has delivered_at');

wait_seconds(1);
is(scalar(requests_with_id($orders, 'twice-failed')), 3,
	'nothing is sent after the 200');

# A message that always fails shows what its last attempt got.
my $failing = start_receiver(name => 'failing', args => [ '--status' => 500 ]);
$node->append_conf('postgresql.conf',
	"outbox.targets = 'orders=" . receiver_url($orders, '/hooks/orders')
	  . ', failing=' . receiver_url($failing, '/f') . "'");
$node->reload;
ok(poll_until($node,
		"SELECT current_setting('outbox.targets') LIKE '%failing=%'", 't'),
	'the new target is configured');
wait_seconds(0.5);    # the dispatcher reloads on its own SIGHUP

my $id2 = $node->safe_psql('postgres',
	q{SELECT outbox_queue('failing', '{"n": 2}', message_id => 'always-500')});
ok( poll_until(
		$node,
		"SELECT state, attempts >= 2, last_status, last_error "
		  . "FROM outbox.messages WHERE id = $id2",
		'pending|t|500|HTTP/1.1 500 Internal Server Error'),
	'a failing message stays pending with last_status 500 and the status line as last_error'
);
is( $node->safe_psql(
		'postgres',
		"SELECT delivered_at IS NULL FROM outbox.messages WHERE id = $id2"),
	't', 'a message that never got a 2xx has no delivered_at');

$node->stop;
done_testing();
