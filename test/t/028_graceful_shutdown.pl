
# A fast shutdown (SIGTERM) lets requests in flight finish, for up to
# min(5 s, outbox.request_timeout), and records their outcomes: answered
# messages are delivered and not sent again after the restart.  A request
# still unanswered when the wait ends is cut, is not marked delivered, and
# is sent again after the restart.  Nothing is ever marked delivered
# without a 2xx from the receiver.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $orders = start_receiver(name => 'orders', control => 1);
my $node = outbox_node('graceful_shutdown',
	targets => 'orders=' . receiver_url($orders, '/hooks/orders'),
	conf => "outbox.request_timeout = '30s'");

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"warm": 1}', message_id => 'warmup')});
ok(scalar(wait_for_requests($orders, 1)), 'the first message is delivered');
ok( poll_until(
		$node,
		"SELECT state FROM outbox.messages WHERE message_id = 'warmup'",
		'delivered'),
	'its outcome is recorded');

# Queue $n messages named "$prefix-<i>", return once all are in flight.
sub queue_in_flight
{
	my ($prefix, $n) = @_;
	$node->safe_psql('postgres', qq{
SELECT count(outbox_queue('orders', jsonb_build_object('n', g),
                          message_id => '$prefix-' || g))
  FROM generate_series(1, $n) g;
});
	my @reqs = wait_for_requests($orders, $n, undef,
		sub { $_[0]{headers}{'webhook-id'} =~ /^$prefix-/ });
	return scalar(@reqs) == $n;
}

# Stop the server with -m fast; return the seconds it took.
sub stop_fast
{
	my $t0 = time();
	$node->stop('fast');
	my $took = time() - $t0;
	note sprintf('pg_ctl stop -m fast took %.2f s', $took);
	return $took;
}

# --- requests that finish within the grace period --------------------------

set_control($orders, { delay => 1 });
ok(queue_in_flight('quick', 5), 'five requests are in flight (answered after 1 s)');
my $took = stop_fast();
cmp_ok($took, '<', 4,
	'the shutdown waits for them only as long as they take (well under 5 s)');
my @quick_answers = grep { $_->{'webhook-id'} =~ /^quick-/ } read_answers($orders);
is(scalar(grep { $_->{sent} && $_->{status} == 200 } @quick_answers), 5,
	'the receiver answered all five with 200 during the shutdown');

set_control($orders, undef);
$node->start;
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages "
		  . "WHERE message_id LIKE 'quick-%' AND state = 'delivered' AND attempts = 1",
		'5'),
	'their outcomes were recorded: delivered, with one attempt');
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"after": 1}', message_id => 'marker-1')});
ok(scalar(wait_for_requests($orders, 1, undef,
	with_id('marker-1'))),
	'the dispatcher delivers again after the restart');
wait_seconds(1);
is(scalar(grep { $_->{headers}{'webhook-id'} =~ /^quick-/ } read_requests($orders)),
	5, 'none of them is sent again after the restart');

# --- requests that outlast the grace period --------------------------------

set_control($orders, { delay => 20 });
ok(queue_in_flight('slow', 3), 'three requests are in flight (answered after 20 s)');
my $t_stop = time();
$took = stop_fast();
cmp_ok($took, '>=', 4, 'the shutdown waits for requests in flight (about 5 s)');
cmp_ok($took, '<', 10, 'but not until they are answered (20 s)');
my @slow_answers = wait_for_answers($orders, 3, 10,
	sub { $_[0]{'webhook-id'} =~ /^slow-/ });
is(scalar(grep { !$_->{sent} } @slow_answers), 3,
	'the receiver never got to answer them: the connections were closed');

set_control($orders, undef);
$node->start;
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages "
		  . "WHERE message_id LIKE 'slow-%' AND state = 'delivered'",
		'3'),
	'after the restart the cut requests are sent again and delivered');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'slow-%' "
		  . "AND delivered_at > to_timestamp($t_stop)"),
	'3', 'they were not marked delivered by the shutdown');
my @slow = grep { $_->{headers}{'webhook-id'} =~ /^slow-/ } read_requests($orders);
is(scalar @slow, 6, 'each was sent twice: before the shutdown and after it');

# --- request_timeout shorter than 5 s bounds the wait ----------------------

$node->append_conf('postgresql.conf', "outbox.request_timeout = '2s'");
$node->reload;
ok(poll_until($node, 'SHOW outbox.request_timeout', '2s'),
	'outbox.request_timeout is 2s');
wait_seconds(0.5);    # the dispatcher reloads on its own SIGHUP
set_control($orders, { delay => 20 });
ok(queue_in_flight('short', 2), 'two requests are in flight (answered after 20 s)');
$took = stop_fast();
cmp_ok($took, '<', 4,
	'with request_timeout = 2s the shutdown waits at most about 2 s');
set_control($orders, undef);
$node->start;
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE state <> 'delivered'",
		'0'),
	'everything is delivered after the restart');

# --- the invariant: delivered only after a 2xx -----------------------------

my %got_2xx;
for my $ans (read_answers($orders))
{
	$got_2xx{ $ans->{'webhook-id'} } = 1
	  if $ans->{sent} && $ans->{status} >= 200 && $ans->{status} < 300;
}
my @delivered = split /\n/, $node->safe_psql('postgres',
	"SELECT message_id FROM outbox.messages WHERE state = 'delivered'");
is(scalar(grep { !$got_2xx{$_} } @delivered), 0,
	'every delivered row had a 2xx answer from the receiver');

$node->stop;
done_testing();
