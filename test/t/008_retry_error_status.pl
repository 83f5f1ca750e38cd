
# A non-2xx answer keeps the message pending and it is retried with the same
# webhook-id and an increasing outbox-attempt until a 2xx answer.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders', args => [ '--fail-first' => 2 ]);
my $node = outbox_node('retry_error_status',
	targets => 'orders=' . receiver_url($orders, '/hooks/orders'),
	conf => "outbox.retry_base_delay = '100ms'\noutbox.retry_max_delay = '1s'");

my $id = $node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 1}', message_id => 'flaky-1')});

my @reqs = wait_for_requests($orders, 3);
ok( poll_until(
		$node,
		"SELECT state, attempts, last_status FROM outbox.messages WHERE id = $id",
		'delivered|3|200'),
	'after two 500 answers the third attempt delivers the message');
@reqs = requests_with_id($orders, 'flaky-1');
is(scalar @reqs, 3, 'exactly three requests were made');
is_deeply([ map { $_->{headers}{'outbox-attempt'} } @reqs ],
	[ 1, 2, 3 ], 'outbox-attempt counts 1, 2, 3');
is_deeply([ map { $_->{body} } @reqs ],
	[ ($reqs[0]{body}) x 3 ], 'every attempt carries the same body');
ok(@reqs == 3 && $reqs[1]{t} > $reqs[0]{t} && $reqs[2]{t} > $reqs[1]{t},
	'attempts are sequential');

# While a receiver answers 503, the row shows pending with last_status 503.
my $ctl = "$PostgreSQL::Test::Utils::tmp_check/control_008.json";
PostgreSQL::Test::Utils::append_to_file($ctl, '{"status": 503}');
my $billing = start_receiver(name => 'billing', args => [ '--control' => $ctl ]);
$node->append_conf('postgresql.conf',
	"outbox.targets = 'orders=" . receiver_url($orders, '/hooks/orders')
	  . ', billing=' . receiver_url($billing, '/b') . "'");
$node->reload;
poll_until($node, "SELECT current_setting('outbox.targets') LIKE '%billing=%'", 't');
wait_seconds(0.5);

my $id2 = $node->safe_psql('postgres',
	q{SELECT outbox_queue('billing', '{"n": 2}', message_id => 'busy-1')});
ok( poll_until(
		$node,
		"SELECT state, last_status, attempts >= 2 FROM outbox.messages WHERE id = $id2",
		'pending|503|t'),
	'a 503 answer leaves the message pending with last_status 503');
unlink $ctl;
ok( poll_until(
		$node,
		"SELECT state, last_status FROM outbox.messages WHERE id = $id2",
		'delivered|200'),
	'it is delivered once the receiver answers 200');

$node->stop;
done_testing();
