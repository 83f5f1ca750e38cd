
# A target that is down for much longer than its messages' whole retry
# schedule opens its circuit after outbox.circuit_failures failed attempts in
# a row: its messages then wait, failed probes spend none of the attempts
# outbox.max_attempts counts, and none goes dead.  When the target comes back, the circuit closes and every message
# is delivered.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $port = free_port();    # nothing listens there yet
my $node = outbox_node('circuit_breaker',
	targets => "orders=http://127.0.0.1:$port/hooks/orders",
	conf => "outbox.max_attempts = 3\n"
	  . "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '500ms'\n"
	  . "outbox.circuit_failures = 3");

is( $node->safe_psql(
		'postgres',
		"SELECT target, circuit, circuit_opened_at IS NULL, consecutive_failures "
		  . "FROM outbox.targets"),
	'orders|closed|t|0',
	'outbox.targets lists the target with a closed circuit');

my $n = 20;
$node->safe_psql('postgres', qq{
SELECT count(outbox_queue('orders', jsonb_build_object('n', g), message_id => 'cb-' || g))
  FROM generate_series(1, $n) g;
});

ok( poll_until(
		$node,
		"SELECT circuit, circuit_opened_at IS NOT NULL, consecutive_failures >= 3 "
		  . "FROM outbox.targets WHERE target = 'orders'",
		'open|t|t'),
	'after circuit_failures failed attempts the circuit opens, with circuit_opened_at');
my $opened_log = slurp_file($node->logfile);
like($opened_log, qr/outbox target "orders" failed \d+ times in a row; its circuit is open/,
	'the server log says the circuit opened');
is( $node->safe_psql(
		'postgres',
		"SELECT last_failure_at IS NOT NULL, last_error <> '', next_probe_at IS NOT NULL "
		  . "FROM outbox.targets WHERE target = 'orders'"),
	't|t|t', 'outbox.targets shows the last failure and the next probe');

# Let anything sent before the circuit opened finish, then watch for ~10 s:
# the whole retry schedule of max_attempts = 3 is under 0.3 s.
wait_seconds(1);
my $attempts_open = $node->safe_psql('postgres',
	'SELECT sum(attempts - probe_failures) FROM outbox.messages');
my ($dead_seen, $closed_seen) = (0, 0);
my $until = time() + 10;
while (time() < $until)
{
	my ($dead, $circuit) = split /\|/, $node->safe_psql('postgres',
		"SELECT (SELECT count(*) FROM outbox.messages WHERE state = 'dead'), "
		  . "(SELECT circuit FROM outbox.targets WHERE target = 'orders')");
	$dead_seen += $dead;
	$closed_seen++ if $circuit ne 'open';
	wait_seconds(0.25);
}
is($dead_seen, 0, 'no message goes dead while the circuit is open');
is($closed_seen, 0, 'the circuit stays open while the target is down');
is( $node->safe_psql('postgres',
		'SELECT sum(attempts - probe_failures) FROM outbox.messages'),
	$attempts_open,
	'failed probes spend none of the attempts that make a message dead');
is( $node->safe_psql(
		'postgres',
		"SELECT state, count(*) FROM outbox.messages GROUP BY state"),
	"pending|$n", 'every message is still pending');

# The target comes back.
my $t_up = time();
my $orders = start_receiver(name => 'orders', port => $port);
ok( poll_until(
		$node,
		"SELECT circuit, circuit_opened_at IS NULL, consecutive_failures "
		  . "FROM outbox.targets WHERE target = 'orders'",
		'closed|t|0'),
	'the first 2xx closes the circuit');
ok( poll_until(
		$node,
		"SELECT state, count(*) FROM outbox.messages GROUP BY state",
		"delivered|$n"),
	'every message is delivered');
my @reqs = read_requests($orders);
my $t_last = 0;
$t_last = $_->{t} > $t_last ? $_->{t} : $t_last for @reqs;
note sprintf('all %d messages delivered %.2f s after the receiver came up',
	$n, $t_last - $t_up);
cmp_ok($t_last - $t_up, '<', 3,
	'once the circuit closes everything goes out at once (within 3 s)');
like(slurp_file($node->logfile),
	qr/outbox target "orders" is reachable again; its circuit is closed/,
	'the server log says the circuit closed');
is( $node->safe_psql(
		'postgres',
		"SELECT last_success_at IS NOT NULL FROM outbox.targets WHERE target = 'orders'"),
	't', 'outbox.targets shows the last success');

$node->stop;
done_testing();
