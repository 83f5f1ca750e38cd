
# outbox_send() messages are delivered like outbox_queue() ones, and a
# message with deliver_at is not sent before that time, but soon after.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('send',
	targets => 'orders=' . receiver_url($orders, '/hooks/orders'));

# --- immediate outbox_send ------------------------------------------------

my $id = $node->safe_psql('postgres', q{
SELECT outbox_send('orders', '{"kind": "now"}',
                   message_type => 'Notification', key => 'k1',
                   message_id => 'send-now', headers => '{"x-src": "send"}')});
like($id, qr/^\d+$/, 'outbox_send returns the new message id');
my ($req) = wait_for_requests($orders, 1, $OutboxTest::timeout,
	with_id('send-now'));
ok($req, 'an outbox_send message is delivered');
is_deeply(body_json($req), { kind => 'now' }, 'its body is the payload');
is($req && $req->{headers}{'outbox-type'}, 'Notification', 'it carries outbox-type');
is($req && $req->{headers}{'outbox-key'}, 'k1', 'it carries outbox-key');
is($req && $req->{headers}{'x-src'}, 'send', 'it carries its own headers');
is($req && $req->{headers}{'outbox-attempt'}, '1', 'it is the first attempt');
ok( poll_until(
		$node,
		"SELECT state, attempts, last_status FROM outbox.messages WHERE id = $id",
		'delivered|1|200'),
	'the outbox_send row becomes delivered');

# --- rolled-back outbox_send ----------------------------------------------

$node->safe_psql('postgres', q{
BEGIN;
SELECT outbox_send('orders', '{"kind": "rolled back"}', message_id => 'send-rb');
ROLLBACK;
});

# --- deferred outbox_send -------------------------------------------------

my ($id2, $deliver_at) = split /\|/, $node->safe_psql('postgres', q{
WITH t AS (SELECT clock_timestamp() + interval '3 seconds' AS at)
SELECT outbox_send('orders', '{"kind": "later"}', message_id => 'send-later',
                   deliver_at => t.at),
       extract(epoch FROM t.at)
FROM t});
like($id2, qr/^\d+$/, 'outbox_send with deliver_at returns an id');

# Just before deliver_at: still pending, nothing sent.
my $now = sql_epoch($node, 'clock_timestamp()');
wait_seconds($deliver_at - $now - 0.5) if $deliver_at - $now > 0.5;
is( $node->safe_psql(
		'postgres', "SELECT state, attempts FROM outbox.messages WHERE id = $id2"),
	'pending|0',
	'a deferred message is still pending shortly before deliver_at');
is(scalar(requests_with_id($orders, 'send-later')), 0,
	'a deferred message is not sent before deliver_at');

($req) = wait_for_requests($orders, 1, 10,
	with_id('send-later'));
ok($req, 'a deferred message is delivered after deliver_at');
if ($req)
{
	note sprintf('deferred message sent %.3f s after deliver_at',
		$req->{t} - $deliver_at);
	cmp_ok($req->{t}, '>=', $deliver_at - 0.001,
		'the request is not sent before deliver_at');
	cmp_ok($req->{t} - $deliver_at, '<', 2,
		'the request is sent within 2 s after deliver_at');
}
ok( poll_until(
		$node, "SELECT state FROM outbox.messages WHERE id = $id2",
		'delivered'),
	'the deferred row becomes delivered');

is(scalar(requests_with_id($orders, 'send-rb')), 0,
	'a rolled-back outbox_send is never sent');

$node->stop;
done_testing();
