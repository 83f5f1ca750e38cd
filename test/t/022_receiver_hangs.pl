
# A receiver that hangs does not hang the outbox: each request to it is cut
# after outbox.request_timeout (a failed attempt, "timed out"), and is
# retried; meanwhile another target keeps getting its messages within
# milliseconds, even while the hung target has all its request slots taken.
# Once the hung receiver answers again, its messages are delivered.

use strict;
use warnings;

use List::Util qw(max);
use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ra = start_receiver(name => 'a', control => 1);
my $rb = start_receiver(name => 'b');
my $node = outbox_node('receiver_hangs',
	targets => 'a=' . receiver_url($ra, '/a') . ', b=' . receiver_url($rb, '/b'),
	conf => "outbox.request_timeout = '1s'\n"
	  . "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '500ms'\n"
	  . "outbox.max_inflight = 64\n"
	  # keep the circuit closed: this test is about timeouts, not the breaker
	  . "outbox.circuit_failures = 1000");

# Warm-up: both targets deliver.
$node->safe_psql('postgres', q{
SELECT outbox_queue('a', '{"warm": 1}', message_id => 'warm-a');
SELECT outbox_queue('b', '{"warm": 1}', message_id => 'warm-b');
});
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE state = 'delivered'", '2'),
	'both targets deliver before the hang');

# --- A hangs: every request to it waits 30 s for an answer ----------------

set_control($ra, { delay => 30 });
my $n_a = 40;    # more than A's share (32) of outbox.max_inflight = 64
$node->safe_psql('postgres', qq{
SELECT outbox_queue('a', '{"n": 0}', message_id => 'hang-1');
SELECT count(outbox_queue('a', jsonb_build_object('n', g), message_id => 'hang-' || g))
  FROM generate_series(2, $n_a) g;
});
my @hung = wait_for_requests($ra, 32, undef,
	sub { $_[0]{headers}{'webhook-id'} =~ /^hang-/ });
my $t_hang = $hung[0] ? $hung[0]{t} : 0;
cmp_ok(scalar @hung, '>=', 32, "A's requests are in flight, hanging");

# Meanwhile B: three batches queued during the hang, each delivered fast.
my @latencies;
for my $round (1 .. 3)
{
	my $committed = $node->safe_psql('postgres', qq{
SELECT count(outbox_queue('b', jsonb_build_object('round', $round, 'n', g),
                          message_id => 'b-$round-' || g))
  FROM generate_series(1, 10) g;
SELECT extract(epoch FROM clock_timestamp());
});
	($committed) = $committed =~ /([\d.]+)\z/;
	my @got = wait_for_requests($rb, 10, 10,
		sub { $_[0]{headers}{'webhook-id'} =~ /^b-$round-/ });
	is(scalar @got, 10, "B gets all messages of batch $round during A's hang");
	push @latencies, max(map { $_->{t} } @got) - $committed if @got;
	wait_seconds(0.3);
}
note sprintf('B latencies during the hang: %s ms',
	join(', ', map { sprintf('%.0f', $_ * 1000) } @latencies));
cmp_ok(max(@latencies) // 99, '<', 0.5,
	'each B batch arrives within 0.5 s of its commit, not after A times out');

# The hung request is cut after request_timeout and counts as an attempt.
ok( poll_until(
		$node,
		"SELECT state, attempts >= 1, last_status IS NULL, "
		  . "last_error ~* 'timed? ?out' FROM outbox.messages "
		  . "WHERE message_id = 'hang-1'",
		'pending|t|t|t'),
	'a hung request is a failed attempt: no status, last_error says it timed out'
);
my ($first_answer) = wait_for_answers($ra, 1, 10,
	with_id('hang-1'));
ok($first_answer && !$first_answer->{sent},
	'the receiver never got to answer the hung request');
my $cut_after = $first_answer ? $first_answer->{t_done} - $first_answer->{t} : 99;
note sprintf('the first hung request was closed by the client after %.2f s',
	$cut_after);
ok($cut_after > 0.8 && $cut_after < 3,
	'the hung request is cut after about request_timeout (1 s), not 30 s');
ok( poll_until(
		$node,
		"SELECT attempts >= 2 FROM outbox.messages WHERE message_id = 'hang-1'",
		't'),
	'the timed-out message is retried');
my @retries = requests_with_id($ra, 'hang-1');
is_deeply([ map { $_->{headers}{'outbox-attempt'} } @retries[ 0, 1 ] ],
	[ 1, 2 ], 'the retry carries outbox-attempt 2');

# --- A recovers --------------------------------------------------------

set_control($ra, undef);
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages "
		  . "WHERE target = 'a' AND state = 'delivered'",
		$n_a + 1),
	'once A answers again, all its messages are delivered');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM outbox.messages WHERE state <> 'delivered'"),
	'0', 'nothing is left pending or dead');

$node->stop;
done_testing();
