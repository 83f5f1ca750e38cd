
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

check_no_loss($node, $orders, \@ids, $first_kill, 'kill');

$node->stop;
done_testing();
