
# kill -9 of the outbox dispatcher, and then of the outbox decoder, while a
# producer keeps committing messages: the postmaster restarts the server,
# and every committed message is delivered at least once.  Nothing is lost;
# duplicates (sent, but killed before the outcome was recorded) are allowed
# and counted.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('kill9_worker',
	targets => 'orders=' . receiver_url($orders, '/hooks/orders'),
	conf => 'restart_after_crash = on');

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"warm": 1}', message_id => 'warmup')});
ok(scalar(wait_for_requests($orders, 1)), 'the first message is delivered');

my $p = start_producer($node, batches => 300, per_batch => 10, pause => 0.02,
	seconds => 90);
my @ids = producer_ids($p);

# Waits until the table holds at least $n of the producer's messages.
sub wait_for_committed
{
	my ($n) = @_;
	return poll_until($node,
		"SELECT count(*) >= $n FROM outbox.messages WHERE message_id LIKE 'p-%'",
		't', 60);
}

my $first_kill;
for my $round ([ 'outbox dispatcher', 800 ], [ 'outbox decoder', 1800 ])
{
	my ($type, $after) = @$round;
	ok(wait_for_committed($after),
		"the producer has committed $after messages before the kill of the $type");
	my $pid = worker_pid($node, $type);
	ok($pid, "the $type is running") or next;
	my $log_offset = log_position($node);
	$first_kill //= time();
	kill 'KILL', $pid;
	note "killed the $type (pid $pid) with SIGKILL";
	ok( wait_for_log_line($node,
			qr/all server processes terminated; reinitializing/, $log_offset),
		"the postmaster restarts the server after the kill -9 of the $type");
	ok(worker_pid($node, $type, not => $pid),
		"a new $type runs after the restart");
}

ok(wait_producer($p), 'the producer committed all its messages through the restarts');

is( $node->safe_psql(
		'postgres',
		"SELECT count(*), count(DISTINCT message_id) FROM outbox.messages "
		  . "WHERE message_id LIKE 'p-%'"),
	scalar(@ids) . '|' . scalar(@ids),
	'the table holds every committed message, once');

ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE state <> 'delivered'",
		'0', 90),
	'every committed message ends delivered');

my %seen;
$seen{ $_->{headers}{'webhook-id'} // '' }++ for read_requests($orders);
my @lost = grep { !$seen{$_} } @ids;
is(scalar @lost, 0, 'the receiver got every committed message at least once')
  or diag('never received: ' . join(' ', @lost[ 0 .. ($#lost < 9 ? $#lost : 9) ]));

my $answers = {};
$answers->{ $_->{'webhook-id'} } ||= ($_->{sent} && $_->{status} == 200)
  for read_answers($orders);
is(scalar(grep { !$answers->{$_} } @ids), 0,
	'the receiver answered 200 to every message');

my $dups = grep { $_ > 1 } values %seen;
my $extra = 0;
$extra += $_ - 1 for grep { $_ > 1 } values %seen;
note "duplicates: $dups message(s) were sent more than once ($extra extra request(s))";
# Of those, how many had their delivery recorded before the first kill (and
# were sent again anyway, e.g. decoded again from WAL after the restart)?
my @dup_ids = grep { $seen{$_} > 1 } keys %seen;
if (@dup_ids)
{
	my $list = join(',', map { "'$_'" } @dup_ids);
	my $recorded = $node->safe_psql('postgres',
		"SELECT count(*) FROM outbox.messages WHERE message_id IN ($list) "
		  . "AND delivered_at < to_timestamp($first_kill)");
	note "duplicates whose delivery was recorded before the first kill: $recorded";
}
my %ids = map { $_ => 1 } @ids, 'warmup';
is(scalar(grep { !$ids{$_} } keys %seen), 0,
	'the receiver got no message that was not committed');

$node->stop;
done_testing();
