
# Per-key order when the search for a probe fails.  Message n of a key got
# its 2xx, and the target's circuit opened before the outcome was recorded.
# The transaction that looks for a probe records the outcomes held first,
# so it sees n delivered and takes message n+1, first in its key, as the
# probe; if that transaction then fails, n's outcome is not recorded, and
# sending n+1 would let a crash send n again after it.  A deferred
# constraint trigger makes every commit that records n as delivered fail:
# no probe may go until one succeeds.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders', control => 1);
my $node = outbox_node('failed_probe_search',
	targets => 'orders=' . receiver_url($orders, '/o'),
	conf => "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '200ms'\n"
	  . "outbox.max_attempts = 1000\n"
	  . "outbox.circuit_failures = 3");

ok(wait_for_decoding($node), 'the decoder streams from its slot');

# The messages whose id is in public.faults cannot be recorded as delivered
fail_delivered_commits($node);

# Message n is answered 2xx at once; three unkeyed messages sent with it
# are answered 500 a second later, which opens the circuit after n's 2xx.
set_control($orders,
	{ by_id => { 'k-1' => { status => 200 }, '*' => { status => 500, delay => 1 } } });
my $log = log_position($node);
$node->safe_psql('postgres', <<'SQL');
BEGIN;
INSERT INTO public.faults
SELECT outbox_queue('orders', '{"n": 1}', key => 'k', message_id => 'k-1');
SELECT outbox_queue('orders', '{"n": 2}', key => 'k', message_id => 'k-2');
SELECT count(outbox_queue('orders', jsonb_build_object('u', g), message_id => 'u-' || g))
  FROM generate_series(1, 3) g;
COMMIT;
SQL

ok(wait_for_requests($orders, 1, undef, with_id('k-1')), 'message n is sent');
ok(poll_until($node, 'SELECT circuit FROM outbox.targets', 'open'),
	'the circuit opens after its 2xx');
ok(wait_for_failed_commit($node, 'find probe messages', $log),
	'the search for a probe fails to record the outcome of message n');
wait_seconds(2);
is(scalar(requests_with_id($orders, 'k-2')), 0,
	'message n+1 is not sent as a probe while the outcome of message n is not recorded');
is(join(',', sort split /,/, sent_ids($orders, qr/./)), 'k-1,u-1,u-2,u-3',
	'nor is any other probe: only the first requests went');
is($node->safe_psql('postgres',
		"SELECT state FROM outbox.messages WHERE message_id = 'k-1'"),
	'pending', 'message n is still pending in the table');

# The receiver and the table recover: the key goes on in order
set_control($orders, { status => 200 });
$node->safe_psql('postgres', 'DELETE FROM public.faults');
ok(poll_until($node,
		"SELECT count(*) FROM outbox.messages WHERE state = 'delivered'", '5'),
	'every message is delivered');
is(sent_ids($orders, qr/^k-/), 'k-1,k-2',
	'message n+1 follows message n once its outcome is recorded, n not sent again');

$node->stop;
done_testing();
