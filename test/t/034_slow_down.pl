
# Each target gets an even share of outbox.max_inflight; 429, 502, 503 and
# 504 answers halve the target's concurrency (at least 1), other failures do
# not, and each 2xx raises it by one.  outbox.targets shows it.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders', control => 1);
my $billing = start_receiver(name => 'billing');
my $node = outbox_node('slow_down',
	targets => 'orders=' . receiver_url($orders, '/o')
	  . ', billing=' . receiver_url($billing, '/b'),
	conf => "outbox.max_inflight = 64\n"
	  . "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '300ms'");

my $concurrency_sql =
  "SELECT concurrency FROM outbox.targets WHERE target = 'orders'";
is( $node->safe_psql(
		'postgres',
		'SELECT string_agg(target || '
		  . "'=' || concurrency, ',' ORDER BY target) FROM outbox.targets"),
	'billing=32,orders=32',
	'each of two targets may have half of outbox.max_inflight in flight');

# Each message is answered $status once, then 200; after it is delivered
# the target's concurrency is expected to be $expected.
my @steps = (
	[ 429, 17, '429 halves it (32 -> 16), the 2xx adds one' ],
	[ 502, 9,  '502 halves it (17 -> 8), the 2xx adds one' ],
	[ 503, 5,  '503 halves it (9 -> 4), the 2xx adds one' ],
	[ 504, 3,  '504 halves it (5 -> 2), the 2xx adds one' ],
	[ 500, 4,  '500 does not halve it (3), the 2xx adds one' ],
	[ 429, 3,  '429 halves it (4 -> 2), the 2xx adds one' ],
	[ 429, 2,  '429 halves it (3 -> 1), the 2xx adds one' ],
	[ 429, 2,  'it never goes below 1 (2 -> 1), the 2xx adds one' ],);
my %rules;
my $i = 0;
$rules{ 'step-' . ++$i } = [ { status => $_->[0] }, { status => 200 } ] for @steps;
set_control($orders, { by_id => \%rules });

$i = 0;
for my $step (@steps)
{
	my ($status, $expected, $name) = @$step;
	my $id = 'step-' . ++$i;
	$node->safe_psql('postgres',
		"SELECT outbox_queue('orders', '{\"step\": $i}', message_id => '$id')");
	poll_until($node,
		"SELECT state, attempts FROM outbox.messages WHERE message_id = '$id'",
		'delivered|2')
	  or diag("$id was not delivered after one $status");
	ok(poll_until($node, $concurrency_sql, $expected), $name);
}

is( $node->safe_psql(
		'postgres',
		"SELECT concurrency, inflight FROM outbox.targets WHERE target = 'billing'"),
	'32|0', "the other target's concurrency is untouched");
is( $node->safe_psql(
		'postgres',
		"SELECT inflight, circuit FROM outbox.targets WHERE target = 'orders'"),
	'0|closed', 'nothing is left in flight, and the circuit stayed closed');

# --- with concurrency 1, one request at a time ------------------------------

set_control($orders,
	{ by_id => { '*' => [ { status => 503 }, { status => 200, delay => 0.3 } ] } });
$node->safe_psql('postgres', q{
SELECT count(outbox_queue('orders', jsonb_build_object('n', g), message_id => 'one-' || g))
  FROM generate_series(1, 6) g;
});
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'one-%' "
		  . "AND state = 'delivered'",
		'6'),
	'six messages answered 503 once are delivered');
my @ok = sort { $a->{t} <=> $b->{t} }
  grep { $_->{'webhook-id'} =~ /^one-/ && $_->{status} == 200 } read_answers($orders);
ok(@ok >= 2 && $ok[1]{t} >= $ok[0]{t_done} - 0.01,
	'after the 503s, the first retry runs alone (concurrency 1)');

$node->stop;
done_testing();
