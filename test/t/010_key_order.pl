
# Messages with the same (target, key) are delivered in commit order: message
# n+1 is not sent before message n is delivered.  Messages with other keys
# are not held up.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Every message fails once, so each one needs a retry before it is delivered.
my $orders = start_receiver(name => 'orders', args => [ '--fail-first' => 1 ]);
my $node = outbox_node('key_order',
	targets => 'orders=' . receiver_url($orders, '/hooks/orders'),
	conf => "outbox.retry_base_delay = '100ms'\noutbox.retry_max_delay = '300ms'");

my $n = 5;
$node->safe_psql('postgres',
	"SELECT outbox_queue('orders', '{\"seq\": $_}', key => 'cart-1', message_id => 'k-$_')")
  for 1 .. $n;

ok( poll_until(
		$node,
		q{SELECT count(*) FROM outbox.messages WHERE key = 'cart-1' AND state = 'delivered'},
		"$n"),
	'all messages of one key are delivered');

my @reqs = grep { ($_->{headers}{'outbox-key'} // '') eq 'cart-1' }
  read_requests($orders);
is(scalar @reqs, 2 * $n, 'each message took one failed and one good attempt');

# Sequence of webhook-ids in arrival order must be k-1,k-1,k-2,k-2,...
is_deeply([ map { $_->{headers}{'webhook-id'} } @reqs ],
	[ map { ("k-$_", "k-$_") } 1 .. $n ],
	'message n+1 of a key is not sent before message n is delivered');

$node->stop;
done_testing();
