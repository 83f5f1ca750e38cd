
# Per-key order when one sweep reads two messages of a key, and the first
# in key order is not the first it reads.  Message n+1 failed and is
# retried; message n, which was dead, is retried with outbox_retry() after
# it, so a sweep in (next_attempt_at, id) order reads n before n+1.  But a
# message already attempted comes first in its key: n+1 goes first.  The
# dispatcher asks the table only about the first of a key's rows in a
# sweep, in key order: taking n for the first would have the table refuse
# both, and the key would wait forever.  A restart after both are due
# makes the first sweep read both.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders', control => 1);
my $node = outbox_node('sweep_retry_first',
	targets => 'orders=' . receiver_url($orders, '/o'));

ok(wait_for_decoding($node), 'the decoder streams from its slot');

# Message n is dead at once; message n+1 is answered 503, Retry-After: 5
set_control($orders,
	{ by_id => {
		'k-1' => [ { status => 410 } ],
		'k-2' => [ { status => 503, headers => { 'Retry-After' => '5' } } ] } });
$node->safe_psql('postgres', q{
	SELECT outbox_queue('orders', '{"n": 1}', key => 'k', message_id => 'k-1');
	SELECT outbox_queue('orders', '{"n": 2}', key => 'k', message_id => 'k-2');});
ok(poll_until($node,
		"SELECT string_agg(state || ' ' || attempts, ',' ORDER BY id) FROM outbox.messages",
		'dead 1,pending 1'),
	'message n is dead, message n+1 failed once');

$node->safe_psql('postgres',
	"SELECT outbox_retry(id) FROM outbox.messages WHERE message_id = 'k-1'");
is($node->safe_psql('postgres', q{
	SELECT string_agg(message_id, ',' ORDER BY next_attempt_at, id)
	  FROM outbox.messages WHERE state = 'pending'}),
	'k-1,k-2', 'a sweep reads message n before message n+1');

# Down until both are due; the first sweep after the start reads both
$node->stop;
set_control($orders, { status => 200 });
wait_seconds(5.5);
$node->start;

ok(poll_until($node,
		"SELECT count(*) FROM outbox.messages WHERE state = 'delivered'", '2'),
	'both are delivered');
is(sent_ids($orders, qr/^k-/), 'k-1,k-2,k-2,k-1',
	'message n+1, attempted before, goes first');

$node->stop;
done_testing();
