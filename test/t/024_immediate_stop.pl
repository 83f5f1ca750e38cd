
# pg_ctl stop -m immediate (a crash, as far as the database is concerned)
# twice while a producer keeps committing messages, each time followed by a
# restart: every committed message is delivered at least once.  Nothing is
# lost; duplicates are allowed and counted.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('immediate_stop',
	targets => 'orders=' . receiver_url($orders, '/hooks/orders'));

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"warm": 1}', message_id => 'warmup')});
ok(scalar(wait_for_requests($orders, 1)), 'the first message is delivered');

my $p = start_producer($node, batches => 300, per_batch => 10, pause => 0.02,
	seconds => 90);
my @ids = producer_ids($p);

my $first_stop;
for my $after (800, 1800)
{
	ok( poll_until(
			$node,
			"SELECT count(*) >= $after FROM outbox.messages WHERE message_id LIKE 'p-%'",
			't', 60),
		"the producer has committed $after messages before the immediate stop");
	$first_stop //= time();
	$node->stop('immediate');
	note "server stopped with -m immediate";
	wait_seconds(0.5);    # the producer keeps trying meanwhile
	$node->start;
	ok(worker_pid($node, 'outbox dispatcher'),
		'the dispatcher runs again after the restart');
}

ok(wait_producer($p), 'the producer committed all its messages through the stops');

check_no_loss($node, $orders, \@ids, $first_stop, 'stop');

$node->stop;
done_testing();
