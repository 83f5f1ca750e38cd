
# A 429 or 503 answer with Retry-After (delay-seconds or an HTTP date) sets
# the next attempt that far ahead instead of the backoff, capped at
# outbox.retry_max_delay; a 429 without Retry-After uses the backoff.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $orders = start_receiver(name => 'orders', control => 1);
my $node = outbox_node('retry_after',
	targets => 'orders=' . receiver_url($orders, '/hooks/orders'),
	conf => "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '10s'");

# Queue message $id, answered as $first the first time and 200 after;
# return the seconds between the arrival of the first and second attempt.
sub gap_after
{
	my ($id, $first) = @_;
	set_control($orders, { by_id => { $id => [ $first, { status => 200 } ] } });
	$node->safe_psql('postgres',
		"SELECT outbox_queue('orders', '{\"id\": \"$id\"}', message_id => '$id')");
	my @reqs = wait_for_requests($orders, 2, 20,
		with_id($id));
	return undef unless @reqs == 2;
	my $gap = $reqs[1]{t} - $reqs[0]{t};
	note sprintf('%s: second attempt %.3f s after the first', $id, $gap);
	return $gap;
}

# --- 429 with Retry-After: 2 --------------------------------------------

set_control($orders,
	{ by_id => { 'ra-seconds' => [ { status => 429, headers => { 'Retry-After' => '2' } },
				{ status => 200 } ] } });
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 1}', message_id => 'ra-seconds')});
my ($first) = wait_for_requests($orders, 1, undef,
	with_id('ra-seconds'));
ok( poll_until(
		$node,
		"SELECT state, last_status FROM outbox.messages WHERE message_id = 'ra-seconds'",
		'pending|429'),
	'after a 429 the message is pending with last_status 429');
my $due = sql_epoch($node,
	"SELECT next_attempt_at FROM outbox.messages WHERE message_id = 'ra-seconds'");
my $ahead = $due - ($first ? $first->{t} : 0);
note sprintf('next_attempt_at is %.3f s after the first attempt', $ahead);
ok($ahead > 1.8 && $ahead < 3,
	'next_attempt_at is set 2 s (Retry-After: 2) after the attempt');
my @reqs = wait_for_requests($orders, 2, 20,
	with_id('ra-seconds'));
my $gap = @reqs == 2 ? $reqs[1]{t} - $reqs[0]{t} : 0;
note sprintf('ra-seconds: second attempt %.3f s after the first', $gap);
cmp_ok($gap, '>=', 1.9, 'the second attempt comes no earlier than Retry-After: 2 says');
cmp_ok($gap, '<', 4, 'and not much later');
ok( poll_until(
		$node,
		"SELECT state FROM outbox.messages WHERE message_id = 'ra-seconds'",
		'delivered'),
	'the second attempt delivers it');

# --- 503 with an HTTP date -----------------------------------------------

$gap = gap_after('ra-date',
	{ status => 503, headers => { 'Retry-After' => http_date(time() + 3) } });
ok(defined $gap, 'a message answered 503 with an HTTP-date Retry-After is retried');
cmp_ok($gap // 0, '>=', 1.8,
	'no earlier than the date (2 to 3 s ahead, dates have whole seconds)');
cmp_ok($gap // 99, '<', 5, 'and not much later');

# --- 429 without Retry-After: the backoff --------------------------------

$gap = gap_after('no-retry-after', { status => 429 });
ok(defined $gap, 'a message answered 429 without Retry-After is retried');
cmp_ok($gap // 99, '<', 1, 'after the backoff (base 100 ms), not a long pause');

# --- Retry-After above retry_max_delay is capped ---------------------------

$node->append_conf('postgresql.conf', "outbox.retry_max_delay = '1s'");
$node->reload;
ok(poll_until($node, 'SHOW outbox.retry_max_delay', '1s'),
	'outbox.retry_max_delay is reloaded to 1s');
wait_seconds(0.5);    # the dispatcher reloads on its own SIGHUP
$gap = gap_after('ra-capped',
	{ status => 429, headers => { 'Retry-After' => '3600' } });
ok(defined $gap, 'a message answered 429 with Retry-After: 3600 is retried');
cmp_ok($gap // 99, '<', 1.6, 'within retry_max_delay (1 s), not an hour later');
cmp_ok($gap // 0, '>=', 0.9, 'but it waits for retry_max_delay');

ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE state <> 'delivered'", '0'),
	'every message ends delivered');

$node->stop;
done_testing();
