
# Retries follow exponential backoff with full jitter: the wait after the
# k-th failed attempt is random between 0 and
# min(retry_max_delay, retry_base_delay * 2^(k-1)).  Measured at the
# receiver, each gap stays under its cap (plus processing slack), the cap
# stops the growth, and the gaps are not all at the cap (jitter).

use strict;
use warnings;

use List::Util qw(min);
use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders', args => [ '--status' => 500 ]);
my $node = outbox_node('backoff_bounds',
	targets => 'orders=' . receiver_url($orders, '/o'),
	conf => "outbox.retry_base_delay = '200ms'\n"
	  . "outbox.retry_max_delay = '800ms'\n"
	  . "outbox.max_attempts = 9\n"
	  # keep the circuit closed: this test is about one message's schedule
	  . "outbox.circuit_failures = 1000");

my $base = 0.2;
my $max = 0.8;
my $slack = 0.3;    # answer, recording the outcome, waking up

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 1}', message_id => 'backoff')});
ok( poll_until(
		$node,
		"SELECT state, attempts FROM outbox.messages WHERE message_id = 'backoff'",
		'dead|9'),
	'the always-failing message goes dead after max_attempts = 9');

my @reqs = requests_with_id($orders, 'backoff');
is(scalar @reqs, 9, 'nine requests were made');
my @gaps = map { $reqs[$_]{t} - $reqs[ $_ - 1 ]{t} } 1 .. $#reqs;
my @caps = map { min($max, $base * 2**($_ - 1)) } 1 .. scalar @gaps;
note 'gaps (s): ' . join(' ', map { sprintf('%.3f', $_) } @gaps);
note 'caps (s): ' . join(' ', map { sprintf('%.3f', $_) } @caps);

my @over = grep { $gaps[$_] > $caps[$_] + $slack } 0 .. $#gaps;
is(scalar @over, 0,
	'each wait is at most min(retry_max_delay, retry_base_delay * 2^(k-1))')
  or diag('over the cap after attempt(s): ' . join(', ', map { $_ + 1 } @over));
my $total = 0;
$total += $_ for @gaps;
cmp_ok($total, '<', 5,
	'retry_max_delay caps the growth: 8 waits take under 5 s (uncapped, up to 51 s)');
my @low = grep { $gaps[$_] < 0.8 * $caps[$_] } 0 .. $#gaps;
cmp_ok(scalar @low, '>=', 1, 'the waits are jittered: not all of them near the cap');

$node->stop;
done_testing();
