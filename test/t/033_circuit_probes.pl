
# While a target's circuit is open, one probe request at a time is sent, on
# the backoff schedule; a failed probe is an attempt (every request is) but
# is counted apart in probe_failures and brings its message no closer to
# outbox.max_attempts.  The first 2xx closes the circuit and every due message goes
# out at once.  (026 covers a target that refuses connections; here the
# target answers 500, so the probes can be seen.)

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $orders = start_receiver(name => 'orders', control => 1);
my $node = outbox_node('circuit_probes',
	targets => 'orders=' . receiver_url($orders, '/o'),
	conf => "outbox.max_attempts = 3\n"
	  . "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '1s'\n"
	  . "outbox.circuit_failures = 3");

set_control($orders, { status => 500, delay => 0.1 });
my $n = 10;
$node->safe_psql('postgres', qq{
SELECT count(outbox_queue('orders', jsonb_build_object('n', g), message_id => 'pr-' || g))
  FROM generate_series(1, $n) g;
});
ok(poll_until($node, "SELECT circuit FROM outbox.targets", 'open'),
	'three 500 answers in a row open the circuit');

# Let what was sent before the circuit opened come back, then watch 4 s.
wait_seconds(1);
my $attempts = $node->safe_psql('postgres',
	'SELECT sum(attempts - probe_failures) FROM outbox.messages');
my $t0 = time();
wait_seconds(4);
my $t1 = time();
my @probes = sort { $a->{t} <=> $b->{t} }
  grep { $_->{t} >= $t0 && $_->{t} < $t1 } read_answers($orders);
note sprintf('%d probes in %.1f s', scalar @probes, $t1 - $t0);
cmp_ok(scalar @probes, '>=', 2, 'probes are sent while the circuit is open');
cmp_ok(scalar @probes, '<=', 20,
	'on the backoff schedule, not back to back (40 probes of 0.1 s would fit)');
my $overlaps = 0;
for my $k (1 .. $#probes)
{
	$overlaps++ if $probes[$k]{t} < $probes[ $k - 1 ]{t_done} - 0.01;
}
is($overlaps, 0, 'one probe at a time: a probe starts only after the previous one ended');
is($node->safe_psql('postgres',
		'SELECT sum(attempts - probe_failures) FROM outbox.messages'),
	$attempts, 'failed probes spend none of the attempts max_attempts counts');
cmp_ok($node->safe_psql('postgres', 'SELECT sum(probe_failures) FROM outbox.messages'),
	'>=', scalar(@probes), 'each failed probe is counted as a probe failure');
is( $node->safe_psql(
		'postgres',
		"SELECT state, count(*) FROM outbox.messages GROUP BY state"),
	"pending|$n", 'no message goes dead while the circuit is open');

# The target recovers.
set_control($orders, undef);
my $t_up = time();
ok(poll_until($node, "SELECT circuit FROM outbox.targets", 'closed'),
	'a 2xx answer to a probe closes the circuit');
ok( poll_until(
		$node,
		"SELECT state, count(*) FROM outbox.messages GROUP BY state",
		"delivered|$n"),
	'every message is delivered');
my $last = 0;
for my $r (read_answers($orders))
{
	$last = $r->{t_done} if $r->{status} == 200 && $r->{t_done} > $last;
}
note sprintf('all delivered %.2f s after the target recovered', $last - $t_up);
cmp_ok($last - $t_up, '<', 3,
	'once the circuit closes, all due messages go out at once (within 3 s)');

$node->stop;
done_testing();
