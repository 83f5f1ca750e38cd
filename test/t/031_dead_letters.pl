
# Dead letters: 410 Gone, and a "webhook-delivery: abort-message" response
# header with any status, make a message dead at once.  A 3xx is a failed
# attempt and its Location is never followed.  outbox_retry(id) brings one
# dead message back, outbox_redrive(target) every dead message of a target
# and outbox_redrive() of all targets; each wakes the dispatcher, and the
# messages are delivered within a second or so.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $orders = start_receiver(name => 'orders', control => 1);
my $billing = start_receiver(name => 'billing', control => 1);
my $elsewhere = start_receiver(name => 'elsewhere');
my $node = outbox_node('dead_letters',
	targets => 'orders=' . receiver_url($orders, '/o')
	  . ', billing=' . receiver_url($billing, '/b'),
	conf => "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '300ms'");

my $abort = { 'webhook-delivery' => 'abort-message' };
my $location = { Location => receiver_url($elsewhere, '/moved') };
my $ok = { status => 200 };
my %rules = (
	'gone' => [ { status => 410 }, $ok ],
	'abort-500' => [ { status => 500, headers => $abort }, $ok ],
	'abort-202' => [ { status => 202, headers => $abort }, $ok ],
	'redirect' => [ ({ status => 302, headers => $location }) x 3, $ok ],
	'rd-o-1' => [ { status => 410 }, $ok ],
	'rd-o-2' => [ { status => 410 }, $ok ],
	'rd-o-3' => [ { status => 410 }, $ok ],
	'rd-b-1' => [ { status => 410 }, $ok ],
	'rd-b-2' => [ { status => 410 }, $ok ]);
set_control($orders, { by_id => \%rules });
set_control($billing, { by_id => \%rules });

sub queue
{
	my ($target, $id) = @_;
	return $node->safe_psql('postgres',
		"SELECT outbox_queue('$target', '{\"id\": \"$id\"}', message_id => '$id')");
}

sub row
{
	my ($id, $cols) = @_;
	return "SELECT $cols FROM outbox.messages WHERE message_id = '$id'";
}

# --- 410 Gone -------------------------------------------------------------

my $gone = queue('orders', 'gone');
ok(poll_until($node, row('gone', 'state, attempts, last_status'), 'dead|1|410'),
	'a 410 answer makes the message dead at once, after one attempt');
is($node->safe_psql('postgres', row('gone', 'last_error, delivered_at IS NULL')),
	'HTTP/1.1 410 Gone|t', 'its last_error is the status line');

# --- webhook-delivery: abort-message --------------------------------------

queue('orders', 'abort-500');
ok( poll_until(
		$node, row('abort-500', 'state, attempts, last_status'), 'dead|1|500'),
	'a 500 with webhook-delivery: abort-message makes the message dead at once');
queue('orders', 'abort-202');
ok( poll_until(
		$node, row('abort-202', 'state, attempts, last_status'), 'dead|1|202'),
	'so does a 2xx with webhook-delivery: abort-message');

wait_seconds(1);
is(scalar(requests_with_id($orders, 'gone')), 1, 'a 410 message is not sent again');
is(scalar(requests_with_id($orders, 'abort-500')), 1,
	'an aborted message is not sent again');

# --- 3xx: a failure, never followed ---------------------------------------

queue('orders', 'redirect');
ok( poll_until(
		$node, row('redirect', 'state, last_status, attempts >= 1'), 'pending|302|t'),
	'a 302 answer is a failed attempt: the message stays pending with last_status 302');
ok( poll_until(
		$node, row('redirect', 'state, attempts'), 'delivered|4'),
	'it is retried at the same URL until the receiver answers 200');
is(scalar(read_requests($elsewhere)), 0, 'the Location URL is never requested');
is_deeply([ map { $_->{path} } requests_with_id($orders, 'redirect') ],
	[ ('/o') x 4 ], 'every attempt goes to the configured URL');

# --- outbox_retry ---------------------------------------------------------

my $t0 = time();
is($node->safe_psql('postgres', "SELECT outbox_retry($gone)"), 't',
	'outbox_retry of a dead message returns true');
my @reqs = wait_for_requests($orders, 2, undef,
	with_id('gone'));
ok(@reqs == 2, 'the retried message is sent again');
my $wake = @reqs == 2 ? $reqs[1]{t} - $t0 : 99;
note sprintf('outbox_retry to request: %.3f s', $wake);
cmp_ok($wake, '<', 2, 'within a second or so: outbox_retry wakes the dispatcher');
is(@reqs == 2 && $reqs[1]{headers}{'outbox-attempt'}, '1',
	'its attempts were reset: outbox-attempt is 1 again');
ok(poll_until($node, row('gone', 'state, attempts, last_status'), 'delivered|1|200'),
	'it is delivered');

is($node->safe_psql('postgres', "SELECT outbox_retry($gone)"), 'f',
	'outbox_retry of a delivered message returns false');
is($node->safe_psql('postgres',
		'SELECT outbox_retry(max(id) + 1000) FROM outbox.messages'),
	'f', 'outbox_retry of an id that does not exist returns false');
my $pending = $node->safe_psql('postgres',
	q{SELECT outbox_send('orders', '{"later": 1}', message_id => 'later',
	                     deliver_at => now() + interval '1 hour')});
is($node->safe_psql('postgres', "SELECT outbox_retry($pending)"), 'f',
	'outbox_retry of a pending message returns false');
is($node->safe_psql('postgres', row('later', 'state, attempts')), 'pending|0',
	'and leaves it as it was');

# --- outbox_redrive(target) and outbox_redrive() ---------------------------

queue('orders', "rd-o-$_") for 1 .. 3;
queue('billing', "rd-b-$_") for 1 .. 2;
ok( poll_until(
		$node,
		"SELECT target, count(*) FROM outbox.messages WHERE state = 'dead' "
		  . "GROUP BY target ORDER BY target",
		"billing|2\norders|5"),
	'five orders messages and two billing messages are dead');

$t0 = time();
is($node->safe_psql('postgres', "SELECT outbox_redrive('orders')"), '5',
	"outbox_redrive('orders') returns the number of dead orders messages");
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE target = 'orders' AND state <> 'delivered' "
		  . "AND message_id <> 'later'",
		'0'),
	'they are all delivered');
my $last = 0;
for my $r (read_requests($orders))
{
	$last = $r->{t} if $r->{t} > $last;
}
note sprintf('outbox_redrive to the last request: %.3f s', $last - $t0);
cmp_ok($last - $t0, '<', 2, 'within a second or so: outbox_redrive wakes the dispatcher');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'rd-o-%' "
		  . "AND attempts = 1 AND last_status = 200"),
	'3', 'their attempts were reset');
is( $node->safe_psql(
		'postgres',
		"SELECT state, count(*) FROM outbox.messages WHERE target = 'billing' GROUP BY state"),
	'dead|2', "outbox_redrive('orders') leaves other targets' dead messages alone");

is($node->safe_psql('postgres', "SELECT outbox_redrive('nosuch')"), '0',
	'outbox_redrive of a target without dead messages returns 0');
is($node->safe_psql('postgres', 'SELECT outbox_redrive()'), '2',
	'outbox_redrive() returns the number of dead messages of all targets');
ok( poll_until(
		$node,
		"SELECT state, count(*) FROM outbox.messages WHERE target = 'billing' GROUP BY state",
		'delivered|2'),
	'they are delivered too');
is($node->safe_psql('postgres', 'SELECT outbox_redrive()'), '0',
	'with no dead message left, outbox_redrive() returns 0');

$node->stop;
done_testing();
