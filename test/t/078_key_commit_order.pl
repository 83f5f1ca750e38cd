
# Per-key order is commit order on every path.  Two producers queue for one
# key; the second tries to commit first.  The producers of one (target, key)
# serialise: the second waits (pg_locks shows it) until the first commits,
# so the ids, the commits and the deliveries are in one order, whether the
# messages travel the WAL fast path, the table scan (outbox_send, here
# scheduled a little later; outbox_queue with wal_level = replica), or wait
# out a receiver that is down.  Other keys and unkeyed messages do not
# wait; two transactions taking two keys in opposite orders deadlock, and
# PostgreSQL ends one of them.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $sink = start_receiver(name => 'sink');
my $slow = start_receiver(name => 'slow');
my $node = outbox_node('key_commit_order',
	targets => 'sink=' . receiver_url($sink, '/sink')
	  . ', slow=' . receiver_url($slow, '/slow'),
	conf => 'track_commit_timestamp = on');

# P1 queues for $key and stays open; P2 queues for $key and commits at once,
# without waiting for its answer; then P1 commits.  $call is the function
# call with %s for the producer's number.  Returns the message_ids in commit
# order (by the commit timestamps of the producers' transactions), and
# whether P2 was seen waiting for a lock while P1 was open.  $while_open is
# run while P1 is open, after P2 was started.
sub race
{
	my ($key, $call, $while_open) = @_;
	my $p1 = $node->background_psql('postgres');
	my $p2 = $node->background_psql('postgres');

	my $xid1 = $p1->query_safe('BEGIN; SELECT pg_current_xact_id()');
	$p1->query_safe('SELECT ' . sprintf($call, 1));
	my $xid2 = $p2->query_safe('BEGIN; SELECT pg_current_xact_id()');
	my $pid2 = $p2->query_safe('SELECT pg_backend_pid()');
	$p2->query_until(qr/p2 sent/,
		"\\echo p2 sent\nSELECT " . sprintf($call, 2) . ";\nCOMMIT;\n");

	# P2 either committed or waits
	poll_until($node,
		"SELECT pg_xact_status('$xid2') = 'committed' OR EXISTS "
		  . "(SELECT FROM pg_locks WHERE pid = $pid2 AND NOT granted)",
		't');
	my $waited = $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_locks WHERE pid = $pid2 AND NOT granted "
		  . "AND locktype = 'advisory'");
	$while_open->() if $while_open;

	$p1->query_safe('COMMIT');
	$p1->quit;
	$p2->query_safe('SELECT 1');
	$p2->quit;

	my $order = $node->safe_psql('postgres',
		"SELECT string_agg(p, ' ' ORDER BY pg_xact_commit_timestamp(x::text::xid)) "
		  . "FROM (VALUES ('$key-p1', '$xid1'), ('$key-p2', '$xid2')) AS c(p, x)");
	return ($order, $waited);
}

# The message_ids of $key in the order of their first requests.
sub delivery_order
{
	my ($r, $key) = @_;
	my @reqs = wait_for_requests($r, 2, undef,
		sub { ($_[0]{headers}{'outbox-key'} // '') eq $key && $_[0]{n} == 1 });
	return join ' ', map { $_->{headers}{'webhook-id'} } @reqs;
}

sub ids_order
{
	my ($key) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(message_id, ' ' ORDER BY id) FROM outbox.messages "
		  . "WHERE key = '$key' AND message_id LIKE '$key-p%'");
}

# --- the WAL fast path -------------------------------------------------------

my ($committed, $waited) = race(
	'live',
	"outbox_queue('sink', '{\"p\": %1\$s}', key => 'live', message_id => 'live-p%1\$s')",
	sub {
		is( $node->safe_psql(
				'postgres', q{
SET statement_timeout = '5s';
SELECT outbox_queue('sink', '{"other": 1}', key => 'another-key', message_id => 'other-1') > 0,
       outbox_queue('sink', '{"other": 2}', message_id => 'other-2') > 0,
       outbox_queue('slow', '{"other": 3}', key => 'live', message_id => 'other-3') > 0}),
			't|t|t',
			'while a producer of a key is open, other keys, unkeyed messages and the '
			  . 'same key of another target are queued without waiting');
	});
is($waited, 1, 'the second producer of a key waits for the first (pg_locks shows it)');
is($committed, 'live-p1 live-p2', 'so the first producer commits first');
is(ids_order('live'), $committed, 'ids are in commit order');
is(delivery_order($sink, 'live'), $committed,
	'the WAL fast path delivers in commit order');

# --- the table scan ------------------------------------------------------

($committed, $waited) = race(
	'scan',
	"outbox_send('sink', '{\"p\": %1\$s}', key => 'scan', message_id => 'scan-p%1\$s', "
	  . "deliver_at => now() + interval '2 seconds')");
is($waited, 1, 'with outbox_send, the second producer waits too');
is(ids_order('scan'), $committed, 'ids are in commit order');
is(delivery_order($sink, 'scan'), $committed,
	'the table scan delivers in commit order');

# --- a backlog: the receiver is down while they commit ------------------

stop_receiver($slow);
($committed, $waited) = race('backlog',
	"outbox_queue('slow', '{\"p\": %1\$s}', key => 'backlog', message_id => 'backlog-p%1\$s')");
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE key = 'backlog' AND state = 'pending'",
		'2'),
	'with the receiver down, both messages are pending');
wait_seconds(1);
$slow = start_receiver(name => 'slow', port => $slow->{port});
is(delivery_order($slow, 'backlog'), $committed,
	'a backlog is delivered in commit order');

# --- two transactions that take two keys in opposite orders ----------------

# Each holds one key and waits for the other's: PostgreSQL's deadlock
# detector ends one of them (40P01), the other goes on.
my @tx = map { $node->background_psql('postgres', on_error_stop => 0) } 1 .. 2;
$_->query_safe('\set VERBOSITY verbose') for @tx;
my $queue = "SELECT outbox_queue('sink', '{}', key => 'dl-%s', message_id => 'dl-%s-%s')";
$tx[0]->query_safe('BEGIN; ' . sprintf($queue, 'a', 1, 'a'));
$tx[1]->query_safe('BEGIN; ' . sprintf($queue, 'b', 2, 'b'));
my $pid0 = $tx[0]->query_safe('SELECT pg_backend_pid()');
$tx[0]->query_until(qr/t0 sent/, "\\echo t0 sent\n" . sprintf($queue, 'b', 1, 'b') . ";\n");
ok(poll_until($node, "SELECT count(*) FROM pg_locks WHERE pid = $pid0 AND NOT granted", '1'),
	'a transaction that holds key a waits for key b');
$tx[1]->query(sprintf($queue, 'a', 2, 'a'));
$_->query('COMMIT') for @tx;
my $errors = join '', map { $_->{stderr} } @tx;
$_->quit for @tx;
like($errors, qr/ERROR:\s+40P01: deadlock detected/,
	'the other, taking them in the opposite order, makes a deadlock that PostgreSQL detects');
my $queued = $node->safe_psql('postgres',
	"SELECT string_agg(message_id, ' ' ORDER BY message_id) FROM outbox.messages "
	  . "WHERE message_id LIKE 'dl-%'");
ok($queued eq 'dl-1-a dl-1-b' || $queued eq 'dl-2-a dl-2-b',
	'one of them commits both its messages, the other none') or diag $queued;
$node->stop;

# --- wal_level = replica: outbox_queue rows are found by table scans ------

# The dispatcher is held (SIGSTOP) while the producers commit, so that one
# scan finds both messages, as after a restart.
$node = outbox_node('key_commit_order_replica',
	targets => 'sink=' . receiver_url($sink, '/sink'),
	conf => "track_commit_timestamp = on\nwal_level = replica");
my $dispatcher = worker_pid($node, 'outbox dispatcher');
ok(kill('STOP', $dispatcher), 'the dispatcher is held');
($committed, $waited) = race('replica',
	"outbox_queue('sink', '{\"p\": %1\$s}', key => 'replica', message_id => 'replica-p%1\$s')");
ok(kill('CONT', $dispatcher), 'and goes on once both producers committed');
is($waited, 1, 'with wal_level = replica, the second producer waits too');
is(delivery_order($sink, 'replica'), $committed,
	'and the table scan delivers in commit order');
$node->stop;

done_testing();
