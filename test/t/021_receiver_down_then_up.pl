
# While the receiver is down (connection refused), 200 messages queued in
# several transactions stay pending, their rows saying why (no HTTP status,
# a connection error); none is declared dead however long it lasts.  Once
# the receiver is up, every one of them is delivered, once.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $port = free_port();    # reserved; nothing listens there yet
my $node = outbox_node('receiver_down_then_up',
	targets => "orders=http://127.0.0.1:$port/hooks/orders",
	conf => "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '500ms'\n"
	  . "outbox.max_attempts = 3");

my $n_tx = 20;
my $per_tx = 10;
my $total = $n_tx * $per_tx;
for my $tx (1 .. $n_tx)
{
	$node->safe_psql('postgres', qq{
BEGIN;
SELECT count(outbox_queue('orders', jsonb_build_object('tx', $tx, 'n', g),
                          message_id => 'down-$tx-' || g))
  FROM generate_series(1, $per_tx) g;
COMMIT;
});
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.messages'),
	$total, "$total messages are queued");

ok( poll_until(
		$node,
		"SELECT count(*) > 0 FROM outbox.messages WHERE attempts > 0",
		't'),
	'delivery is attempted while the receiver is down');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM outbox.messages "
		  . "WHERE attempts > 0 AND (last_status IS NOT NULL "
		  . "OR last_error !~* 'connect|refused')"),
	'0',
	'every failed attempt recorded last_status NULL and a connection error');
my ($err) = $node->safe_psql('postgres',
	"SELECT last_error FROM outbox.messages WHERE attempts > 0 LIMIT 1");
note "last_error: $err";

# Longer than the whole retry schedule of max_attempts = 3 (at most
# 0.1 + 0.2 s): an unreachable target does not use up its messages.
wait_seconds(3);
is( $node->safe_psql(
		'postgres',
		"SELECT state, count(*) FROM outbox.messages GROUP BY state"),
	"pending|$total",
	'no message goes dead while the receiver is unreachable');

my $orders = start_receiver(name => 'orders', port => $port);

ok( poll_until(
		$node,
		"SELECT state, count(*) FROM outbox.messages GROUP BY state",
		"delivered|$total"),
	'once the receiver is up, every message is delivered');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM outbox.messages WHERE last_status <> 200 "
		  . "OR delivered_at IS NULL"),
	'0', 'every row records the 200 answer and delivered_at');

my %seen;
$seen{ $_->{headers}{'webhook-id'} }++ for read_requests($orders);
my @expected = map { my $tx = $_; map { "down-$tx-$_" } 1 .. $per_tx } 1 .. $n_tx;
is(scalar(grep { !$seen{$_} } @expected), 0,
	'the receiver got every message');
is(scalar(grep { $_ > 1 } values %seen), 0,
	'no message was sent twice once the receiver answered');
is(scalar(keys %seen), $total, 'the receiver got nothing else');

$node->stop;
done_testing();
