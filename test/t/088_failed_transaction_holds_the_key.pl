
# Per-key order when the dispatcher's transaction fails after it decided
# what may go.  The transaction that records message n's 2xx also looks up
# message n+1 of the key, and finds it first in its key because it sees its
# own update; if that transaction then fails, n's outcome is not recorded,
# and sending n+1 would let a crash send n again after it.  A deferred
# constraint trigger makes every commit that records n as delivered fail:
# n+1 must not be sent until one succeeds, and then the key goes on in
# order, n not sent again.  The same when it is a scan that finds n+1, or
# the gate that checks it.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('failed_transaction',
	targets => 'orders=' . receiver_url($orders, '/o'));

ok(wait_for_decoding($node), 'the decoder streams from its slot');

# The messages whose id is in public.faults cannot be recorded as delivered
fail_delivered_commits($node);

my $log = log_position($node);
$node->safe_psql('postgres', <<'SQL');
BEGIN;
INSERT INTO public.faults
SELECT outbox_queue('orders', '{"n": 1}', key => 'k', message_id => 'k-1');
SELECT outbox_queue('orders', '{"n": 2}', key => 'k', message_id => 'k-2');
SELECT outbox_queue('orders', '{"n": 3}', key => 'k', message_id => 'k-3');
COMMIT;
SQL

ok(wait_for_requests($orders, 1, undef, with_id('k-1')), 'message n is sent');
ok(wait_for_failed_commit($node, 'fetch the next message of keys', $log),
	'the transaction that records its 2xx and looks up message n+1 fails');

# Several failed attempts to record it, a sweep of the table among them
wait_seconds(3);
is(scalar(requests_with_id($orders, 'k-2')), 0,
	'message n+1 is not sent while the outcome of message n is not recorded');
is($node->safe_psql('postgres',
		"SELECT state FROM outbox.messages WHERE message_id = 'k-1'"),
	'pending', 'message n is still pending in the table');

$node->safe_psql('postgres', 'DELETE FROM public.faults');

ok(poll_until($node,
		"SELECT string_agg(state, ',' ORDER BY id) FROM outbox.messages",
		'delivered,delivered,delivered'),
	'once the outcome can be recorded, all three are delivered');
is(sent_ids($orders, qr/^k-/), 'k-1,k-2,k-3',
	'in order, message n not sent again');

# Message n of key $key is sent and answered 2xx, and recording it fails;
# then message n+1 is queued with $function, and $finder, the transaction
# named $activity, fails at commit after recording n's outcome first.
# n+1 waits until the outcome is recorded, then both go, in order.
sub next_waits_for_recorded_outcome
{
	my ($key, $function, $activity, $finder) = @_;
	my $offset = log_position($node);
	$node->safe_psql('postgres', <<"SQL");
INSERT INTO public.faults
SELECT outbox_queue('orders', '{"n": 1}', key => '$key', message_id => '$key-1');
SQL
	ok(wait_for_requests($orders, 1, undef, with_id("$key-1")), "$finder: message n is sent");
	ok(wait_for_failed_commit($node, 'record delivery outcomes', $offset),
		"$finder: recording its 2xx fails");
	$offset = log_position($node);
	$node->safe_psql('postgres',
		"SELECT $function('orders', '{\"n\": 2}', key => '$key', message_id => '$key-2')");
	ok(wait_for_failed_commit($node, $activity, $offset),
		"$finder: the transaction that finds message n+1 fails to record the outcome of message n");
	wait_seconds(2);
	is(scalar(requests_with_id($orders, "$key-2")), 0,
		"$finder: message n+1 is not sent while the outcome of message n is not recorded");

	$node->safe_psql('postgres', 'DELETE FROM public.faults');
	ok(poll_until($node,
			"SELECT count(*) FROM outbox.messages WHERE key = '$key' AND state = 'delivered'",
			'2'),
		"$finder: then both are delivered");
	is(sent_ids($orders, qr/^$key-/), "$key-1,$key-2",
		"$finder: in order, message n not sent again");
	return;
}

# The same when a scan finds message n+1: queued with outbox_send after n
# got its 2xx, it reaches the dispatcher only through the table, and the
# scan that finds it records n's outcome first.
next_waits_for_recorded_outcome('j', 'outbox_send', 'scan outbox.messages', 'a scan');

# The same when the gate checks message n+1: queued with outbox_queue after
# n got its 2xx, it comes through the WAL, and the transaction that asks
# the table whether it is first in its key records n's outcome first.  (A
# sweep may find it before the WAL brings it, rarely: then that fails.)
next_waits_for_recorded_outcome('g', 'outbox_queue',
	qr/(?:check the order of keyed messages|scan outbox\.messages)/, 'the gate');

$node->stop;
done_testing();
