
# Idempotent enqueue under concurrency, as the receiver sees it: when two
# producers race over one (target, message_id), exactly one message is
# delivered, once, with the payload of the call that created the row; if
# the first rolls back, the second's message is delivered.  Who waits for
# whom, and that other message_ids and targets do not wait, is specified
# at the SQL level by the isolation test specs/concurrent_enqueue.spec.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('idempotent_concurrent',
	targets => 'orders=' . receiver_url($orders, '/o'));

# Each query of a session may take 30 s at most, so a wait that never ends
# fails the test instead of hanging it.
my $s1 = $node->background_psql('postgres', timeout => 30);
my $s2 = $node->background_psql('postgres', timeout => 30);
$_->set_query_timer_restart for $s1, $s2;
my $pid2 = $s2->query_safe('SELECT pg_backend_pid()');

# Start $sql in session 2 without waiting for it to finish
sub start_in_s2
{
	my ($sql) = @_;
	$s2->query_until(qr/started\n/, "\\echo started\n$sql\n");
	return;
}

sub s2_is_waiting
{
	return poll_until($node,
		"SELECT wait_event_type FROM pg_stat_activity WHERE pid = $pid2",
		'Lock', 10);
}

sub rows
{
	my ($target, $message_id) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM outbox.messages WHERE target = '$target' AND message_id = '$message_id'");
}

# --- same message_id from two sessions, both outbox_queue -------------------

$s1->query_safe('BEGIN');
$s2->query_safe('BEGIN');
my $id1 = $s1->query_safe(
	q{SELECT outbox_queue('orders', '{"from": 1}', message_id => 'conc-1')});
start_in_s2(
	q{SELECT outbox_queue('orders', '{"from": 2}', message_id => 'conc-1');});
ok(s2_is_waiting(), 'the second session waits for the first');
$s1->query_safe('COMMIT');
my $id2 = $s2->query_safe('COMMIT');
like($id1, qr/^\d+$/, 'the first session gets an id');
is($id2, $id1, 'the second session gets the same id once the first commits');
is(rows('orders', 'conc-1'), '1', 'one row exists for the message_id');

# --- outbox_send against outbox_queue ----------------------------------------

$s1->query_safe('BEGIN');
$s2->query_safe('BEGIN');
$id1 = $s1->query_safe(
	q{SELECT outbox_send('orders', '{"from": 1}', message_id => 'conc-2')});
start_in_s2(
	q{SELECT outbox_queue('orders', '{"from": 2}', message_id => 'conc-2');});
ok(s2_is_waiting(), 'outbox_queue waits for a concurrent outbox_send');
$s1->query_safe('COMMIT');
$id2 = $s2->query_safe('COMMIT');
is($id2, $id1, 'outbox_queue returns the id of the concurrent outbox_send');
is(rows('orders', 'conc-2'), '1', 'one row exists for the mixed pair');

# --- the first session rolls back -------------------------------------------

$s1->query_safe('BEGIN');
$s2->query_safe('BEGIN');
$id1 = $s1->query_safe(
	q{SELECT outbox_queue('orders', '{"from": 1}', message_id => 'conc-3')});
start_in_s2(
	q{SELECT outbox_send('orders', '{"from": 2}', message_id => 'conc-3');});
ok(s2_is_waiting(), 'the second session waits while the first is undecided');
$s1->query_safe('ROLLBACK');
$id2 = $s2->query_safe('COMMIT');
like($id2, qr/^\d+$/, 'after the first rolls back, the second gets an id');
isnt($id2, $id1, 'that id is a new message, not the rolled-back one');
is(rows('orders', 'conc-3'), '1', 'one row exists after the rollback');

# --- duplicates in one transaction, through both functions ------------------

my ($d1, $d2) = split /\n/, $node->safe_psql('postgres', q{
BEGIN;
SELECT outbox_send('orders', '{"from": 1}', message_id => 'conc-4');
SELECT outbox_queue('orders', '{"from": 2}', message_id => 'conc-4');
COMMIT;
});
is($d2, $d1, 'outbox_queue after outbox_send in one transaction returns the same id');

$s1->quit;
$s2->quit;

# --- deliveries -------------------------------------------------------------

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"marker": true}', message_id => 'marker')});
wait_for_requests($orders, 1, undef,
	with_id('marker'));
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE state <> 'delivered'", '0'),
	'every queued message is delivered');
wait_seconds(0.5);

foreach my $c (
	[ 'conc-1', 1, 'both outbox_queue' ],
	[ 'conc-2', 1, 'outbox_send first' ],
	[ 'conc-3', 2, 'first rolled back' ],
	[ 'conc-4', 1, 'same transaction' ])
{
	my ($mid, $from, $what) = @$c;
	my @r = requests_with_id($orders, $mid);
	is(scalar @r, 1, "$mid ($what) is delivered exactly once");
	is($r[0] && body_json($r[0])->{from}, $from,
		"$mid carries the payload of the call that created the row");
}

$node->stop;
done_testing();
