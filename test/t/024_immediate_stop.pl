
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

my %ok200;
$ok200{ $_->{'webhook-id'} } ||= ($_->{sent} && $_->{status} == 200)
  for read_answers($orders);
is(scalar(grep { !$ok200{$_} } @ids), 0,
	'the receiver answered 200 to every message');

my %ids = map { $_ => 1 } @ids, 'warmup';
is(scalar(grep { !$ids{$_} } keys %seen), 0,
	'the receiver got no message that was not committed');

my @dup_ids = grep { $seen{$_} > 1 } keys %seen;
my $extra = 0;
$extra += $seen{$_} - 1 for @dup_ids;
note "duplicates: " . scalar(@dup_ids)
  . " message(s) were sent more than once ($extra extra request(s))";
if (@dup_ids)
{
	my $list = join(',', map { "'$_'" } @dup_ids);
	my $recorded = $node->safe_psql('postgres',
		"SELECT count(*) FROM outbox.messages WHERE message_id IN ($list) "
		  . "AND delivered_at < to_timestamp($first_stop)");
	note "duplicates whose delivery was recorded before the first stop: $recorded";
}

$node->stop;
done_testing();
