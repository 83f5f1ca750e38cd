
# A retry found by a dispatcher transaction that fails is not sent.  Message
# u's first attempt failed, and its outcome cannot be recorded: every
# transaction also records another message's 2xx, which a deferred
# constraint trigger makes fail at commit.  A scan in such a transaction
# sees u's failure recorded and u due again after its backoff, but only in
# its own update, which is rolled back.  Sending u then would send attempts
# the table never counts, at the pace of the failing transactions instead
# of the backoff, and u would never be dead at outbox.max_attempts.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders', control => 1);
my $node = outbox_node('failed_scan',
	targets => 'orders=' . receiver_url($orders, '/o'),
	conf => "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '100ms'\n"
	  . "outbox.max_attempts = 3\n"
	  . "outbox.circuit_failures = 1000");

ok(wait_for_decoding($node), 'the decoder streams from its slot');

# The messages whose id is in public.faults cannot be recorded as delivered
fail_delivered_commits($node);

set_control($orders, { by_id => { 'd-1' => { status => 200 }, '*' => { status => 500 } } });
my $log = log_position($node);
$node->safe_psql('postgres', <<'SQL');
BEGIN;
INSERT INTO public.faults
SELECT outbox_queue('orders', '{"n": 1}', message_id => 'd-1');
SELECT outbox_queue('orders', '{"u": 1}', message_id => 'u-1');
COMMIT;
SQL

ok(wait_for_requests($orders, 1, undef, with_id('u-1')), 'message u is sent');
ok(wait_for_failed_commit($node, 'scan outbox.messages', $log),
	'a scan that records its failure fails at commit');
wait_seconds(2);
is(sent_ids($orders, qr/^u-/), 'u-1',
	'its retry is not sent while its first attempt is not recorded');
is($node->safe_psql('postgres',
		"SELECT state || ' ' || attempts FROM outbox.messages WHERE message_id = 'u-1'"),
	'pending 0', 'the table still has it pending with no attempt');

# The table recovers: the retries go at their pace, and u is dead after
# outbox.max_attempts
$node->safe_psql('postgres', 'DELETE FROM public.faults');
ok(poll_until($node,
		"SELECT state || ' ' || attempts FROM outbox.messages WHERE message_id = 'u-1'",
		'dead 3'),
	'message u is dead after outbox.max_attempts attempts');
is(sent_ids($orders, qr/^u-/), 'u-1,u-1,u-1', 'each of them sent once');

$node->stop;
done_testing();
