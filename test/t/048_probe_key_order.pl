
# Per-key order holds while a target's circuit is open.  Probes are real
# messages; when a probe fails, the next probe takes another message.  That
# other message must never be a later message of the key whose first message
# is still pending: a probe that succeeded with it would deliver message n+1
# before message n.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders', control => 1);
my $node = outbox_node('probe_key_order',
	targets => 'orders=' . receiver_url($orders, '/orders'),
	conf => "outbox.circuit_failures = 1\n");

# The first message of key A always fails; any other message would succeed.
set_control($orders, { by_id => { 'a1' => { status => 500 }, '*' => { status => 200 } } });
$node->safe_psql('postgres', q{
BEGIN;
SELECT outbox_queue('orders', '{"n": 1}', key => 'A', message_id => 'a1');
SELECT outbox_queue('orders', '{"n": 2}', key => 'A', message_id => 'a2');
SELECT outbox_queue('orders', '{"n": 3}', key => 'A', message_id => 'a3');
COMMIT;
});

ok(poll_until($node, 'SELECT circuit FROM outbox.targets', 'open'),
	'the failed first message of key A opens the circuit');
my @a1 = wait_for_requests($orders, 4, undef,
	with_id('a1'));
cmp_ok(scalar(@a1), '>=', 4,
	'the circuit is probed again and again (each probe fails)');
is(scalar(requests_with_id($orders, 'a2')) + scalar(requests_with_id($orders, 'a3')),
	0, 'no probe takes a later message of key A while its first one is pending');
is( $node->safe_psql(
		'postgres', q{SELECT string_agg(state, ',' ORDER BY id) FROM outbox.messages}),
	'pending,pending,pending', 'and all three are still pending');

# Once the first message goes through, the others follow, in order.
set_control($orders, { status => 200 });
ok( poll_until(
		$node, q{SELECT count(*) FROM outbox.messages WHERE state = 'delivered'}, '3'),
	'when the receiver recovers, all three are delivered');
my @order = map { $_->{'webhook-id'} }
  grep { $_->{status} == 200 } read_answers($orders);
is(join(',', @order), 'a1,a2,a3', 'in the order they were queued');

$node->stop;
done_testing();
