
# Each target gets its own share of outbox.max_inflight (divided evenly among
# the targets), so a target whose requests hang cannot hold up the others.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

# slow: answers after 30 s (longer than the whole test); fast: at once
my $slow = start_receiver(name => 'slow', args => [ '--delay' => 30 ]);
my $fast = start_receiver(name => 'fast');
my $node = outbox_node('target_isolation',
	targets => 'slow=' . receiver_url($slow, '/s')
	  . ', fast=' . receiver_url($fast, '/f'),
	conf => <<'EOC');
outbox.max_inflight = 8
outbox.request_timeout = '20s'
outbox.circuit_failures = 1000
EOC

my $n = 200;

# Queue $n messages for fast in one transaction; returns the commit time.
sub queue_fast
{
	my ($prefix) = @_;
	my ($t) = split /\n/, $node->safe_psql('postgres', qq{
BEGIN;
SELECT outbox_queue('fast', jsonb_build_object('i', i), message_id => '$prefix-' || i)
  FROM generate_series(1, $n) i \\g /dev/null
SELECT extract(epoch FROM clock_timestamp());
COMMIT;
});
	return $t;
}

sub fast_done
{
	my ($prefix) = @_;
	my @r = wait_for_requests($fast, $n, 20,
		with_id_like(qr/^\Q$prefix\E-/));
	return (scalar(@r), @r ? $r[-1]{t} : undef);
}

# --- baseline: fast alone -----------------------------------------------------

my $t0 = queue_fast('base');
my ($got, $last) = fast_done('base');
is($got, $n, "$n messages reach the fast target");
my $baseline = $last - $t0;
note sprintf('baseline: %d messages in %.3f s', $n, $baseline);

# --- slow hangs: 20 messages sent to it, none answered ---------------------------

$node->safe_psql('postgres', q{
SELECT outbox_queue('slow', jsonb_build_object('i', i), message_id => 'hang-' || i)
  FROM generate_series(1, 20) i});
my @hung = wait_for_requests($slow, 4, 10);
wait_seconds(0.5);    # let the dispatcher send whatever else it would
my $hung_at = time();

$t0 = queue_fast('during');
($got, $last) = fast_done('during');
is($got, $n, "all $n messages reach the fast target while the slow one hangs");
my $during = defined $last ? $last - $t0 : 999;
note sprintf('while slow hangs: %d messages in %.3f s', $n, $during);
cmp_ok($during, '<', 5, "the $n messages arrive within 5 s while the slow target hangs");
cmp_ok($during, '<', 3 * $baseline + 1,
	'the fast target delivers about as fast as without the hanging target');

my @slow_reqs = read_requests($slow);
cmp_ok(scalar @slow_reqs, '<=', 4,
	'the hanging target has at most its share (8 / 2 = 4) of requests in flight');
cmp_ok(scalar @slow_reqs, '>=', 1, 'the hanging target has requests in flight');
ok($last && $last - $hung_at < 20,
	'the fast messages were delivered while slow requests were still hanging');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM outbox.messages WHERE target = 'slow' AND state = 'pending'}),
	'20', 'the messages of the hanging target are still pending');

$node->stop('immediate');
done_testing();
