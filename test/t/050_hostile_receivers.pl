
# Hostile receivers cannot hurt the outbox.  A 200 with a 50 MB body, or an
# endless chunked body, is cut off at 1 MB and is a failed attempt
# ("response body larger than 1048576 bytes"); a receiver that sends a status
# line and then nothing is cut at outbox.request_timeout; a 302 is a failed
# attempt whose Location is never requested.  Each attempt is bounded, the
# server and both workers stay up (same pids), and the messages queued
# meanwhile for a healthy target are all delivered.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ok = start_receiver(name => 'ok');
my $huge = start_receiver(name => 'huge', args => [ '--body-bytes' => 50_000_000 ]);
my $endless = start_receiver(name => 'endless', args => ['--body-endless']);
my $stall = start_receiver(name => 'stall', args => ['--stall-headers']);
my $elsewhere = start_receiver(name => 'elsewhere');
my $redirect = start_receiver(
	name => 'redirect',
	args => [
		'--status' => 302,
		'--header' => 'Location: ' . receiver_url($elsewhere, '/moved')
	]);

my $node = outbox_node('hostile_receivers',
	targets => 'ok=' . receiver_url($ok, '/ok')
	  . ', huge=' . receiver_url($huge, '/huge')
	  . ', endless=' . receiver_url($endless, '/endless')
	  . ', stall=' . receiver_url($stall, '/stall')
	  . ', redirect=' . receiver_url($redirect, '/redirect'),
	conf => "outbox.request_timeout = '1s'\n"
	  . "outbox.retry_base_delay = '200ms'\n"
	  . "outbox.retry_max_delay = '1s'");

$node->safe_psql('postgres',
	q{SELECT outbox_queue('ok', '{"warm": 1}', message_id => 'warm')});
ok(poll_until($node, "SELECT state FROM outbox.messages WHERE message_id = 'warm'",
		'delivered'),
	'the healthy target delivers before the hostile ones get anything');
my $dispatcher = worker_pid($node, 'outbox dispatcher');
my $decoder = worker_pid($node, 'outbox decoder');
ok($dispatcher && $decoder, 'the dispatcher and the decoder run')
  or do { done_testing(); exit 1 };

# One message to each hostile receiver, and healthy messages in the same
# transaction and in three more batches while the hostile ones fail.
my $healthy = 0;
sub queue_healthy
{
	my ($batch) = @_;
	$healthy += 20;
	return qq{SELECT count(outbox_queue('ok', jsonb_build_object('n', g),
	                                    message_id => 'ok-$batch-' || g))
	            FROM generate_series(1, 20) g;};
}
$node->safe_psql('postgres', 'BEGIN;'
	  . q{SELECT outbox_queue('huge', '{"h": 1}', message_id => 'huge');
	      SELECT outbox_queue('endless', '{"h": 2}', message_id => 'endless');
	      SELECT outbox_queue('stall', '{"h": 3}', message_id => 'stall');
	      SELECT outbox_queue('redirect', '{"h": 4}', message_id => 'redirect');}
	  . queue_healthy(0)
	  . 'COMMIT;');
for my $batch (1 .. 3)
{
	wait_seconds(0.5);
	$node->safe_psql('postgres', queue_healthy($batch));
}

sub row
{
	my ($id, $cols) = @_;
	return "SELECT $cols FROM outbox.messages WHERE message_id = '$id'";
}

# Seconds the first attempt of a message took, from outbox.attempts.
sub first_attempt
{
	my ($id) = @_;
	return $node->safe_psql('postgres', qq{
SELECT round(extract(epoch FROM a.duration)::numeric, 3) || '|' || coalesce(a.error, '')
  FROM outbox.attempts a JOIN outbox.messages m ON m.id = a.message
 WHERE m.message_id = '$id' AND a.attempt = 1});
}

my $too_big = 'response body larger than 1048576 bytes';

# --- 200 with a 50 MB body -------------------------------------------------

ok( poll_until(
		$node, row('huge', 'state, attempts >= 1, last_error'),
		"pending|t|$too_big"),
	"a 200 with a 50 MB body is a failed attempt: last_error '$too_big'");
is($node->safe_psql('postgres', row('huge', 'last_status IS NULL, delivered_at IS NULL')),
	't|t', 'the cut-off response counts as a transport error: no last_status, not delivered');
my ($secs, $err) = split /\|/, first_attempt('huge'), 2;
note "first attempt to the 50 MB receiver: $secs s, error: $err";
is($err, $too_big, 'outbox.attempts records the same reason for the attempt');
cmp_ok($secs // 99, '<', 1, 'the attempt is cut off within the request timeout, by size');
my ($ans) = wait_for_answers($huge, 1, 10);
note sprintf('the 50 MB receiver wrote %d bytes of body before the client left (%s)',
	$ans->{body_sent} // -1, $ans->{error} // 'no error');
ok($ans && !$ans->{sent} && $ans->{body_sent} < 25_000_000,
	'the outbox stops reading: the receiver cannot write even half of its 50 MB');

# --- endless chunked body --------------------------------------------------

ok( poll_until(
		$node, row('endless', 'state, attempts >= 1, last_error'),
		"pending|t|$too_big"),
	"an endless chunked body is cut off at 1 MB too: last_error '$too_big'");
($secs, $err) = split /\|/, first_attempt('endless'), 2;
note "first attempt to the endless receiver: $secs s, error: $err";
cmp_ok($secs // 99, '<', 1,
	'the endless body attempt ends within the request timeout, by size');

# --- status line, then nothing ----------------------------------------------

ok( poll_until(
		$node,
		row('stall', "state, attempts >= 1, last_status IS NULL, last_error ~* 'timed? ?out'"),
		'pending|t|t|t'),
	'a receiver that never finishes its headers: failed attempt, last_error says it timed out');
($secs, $err) = split /\|/, first_attempt('stall'), 2;
note "first attempt to the stalling receiver: $secs s, error: $err";
ok(defined $secs && $secs > 0.8 && $secs < 3,
	'the stalled attempt is cut after about outbox.request_timeout (1 s)');

# --- 302 with a Location -----------------------------------------------------

ok( poll_until(
		$node, row('redirect', 'state, attempts >= 1, last_status'), 'pending|t|302'),
	'a 302 is a failed attempt with last_status 302');
like($node->safe_psql('postgres', row('redirect', 'last_error')),
	qr{^HTTP/1\.1 302\b}, 'its last_error is the status line');

# --- the outbox goes on -------------------------------------------------------

ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE message_id IN "
		  . "('huge', 'endless', 'stall', 'redirect') AND attempts >= 2",
		'4'),
	'every hostile message is retried after its failed attempt');
is(scalar(read_requests($elsewhere)), 0,
	'the Location of the 302 is never requested');
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE target = 'ok' "
		  . "AND message_id LIKE 'ok-%' AND state = 'delivered'",
		$healthy),
	"all $healthy messages queued meanwhile for the healthy target are delivered");
my %got = map { ($_->{headers}{'webhook-id'} // '') => 1 }
  grep { ($_->{headers}{'webhook-id'} // '') =~ /^ok-/ } read_requests($ok);
is(scalar(keys %got), $healthy, 'the healthy receiver got each of them');

is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(backend_type || '=' || pid, ',' ORDER BY backend_type) "
		  . "FROM pg_stat_activity "
		  . "WHERE backend_type IN ('outbox dispatcher', 'outbox decoder')"),
	"outbox decoder=$decoder,outbox dispatcher=$dispatcher",
	'the server and both workers are still up, with the same pids');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC|server process .* exited with exit code/,
	'no process crashed or exited');

$node->stop;
done_testing();
