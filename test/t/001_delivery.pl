
# A committed outbox_queue() message is POSTed to its target's URL, with the
# documented headers, within milliseconds of the commit, and its row is
# marked delivered.

use strict;
use warnings;

use JSON::PP;
use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $orders = start_receiver(name => 'orders');
my $billing = start_receiver(name => 'billing');
my $targets =
	'orders=' . receiver_url($orders, '/hooks/orders')
  . ', billing=' . receiver_url($billing, '/b');

my $node = outbox_node('delivery', targets => $targets);

my $payload = '{"order_id": 1, "total": 9.5, "items": ["a", "b"], '
  . '"customer": {"name": "Zoë", "vip": true, "note": null}}';

# --- warm-up: the workers may still be starting (slot creation) -----------

my ($warm_commit) = $node->safe_psql('postgres', q{
SELECT outbox_queue('orders', '{"warmup": true}', message_id => 'warmup');
SELECT extract(epoch FROM clock_timestamp());
}) =~ /\n(.*)\z/;
my ($warm) = wait_for_requests($orders, 1, $OutboxTest::timeout,
	with_id('warmup'));
ok($warm, 'the first message after server start is delivered')
  or do { diag('no delivery at all; skipping the rest'); done_testing(); exit 1 };
note sprintf('first message after start: %.1f ms from commit to request',
	($warm->{t} - $warm_commit) * 1000);

# --- one message with every optional field -------------------------------

my ($id, $committed_at) = split /\n/, $node->safe_psql(
	'postgres', qq{
BEGIN;
SELECT outbox_queue('orders', '$payload'::jsonb,
                    message_type => 'OrderCreated',
                    key => 'customer-7',
                    message_id => 'order-1-created',
                    headers => '{"x-tenant": "acme", "x-trace": "t-123"}');
SELECT extract(epoch FROM clock_timestamp());
COMMIT;
});
like($id, qr/^\d+$/, 'outbox_queue returns the new message id');

my ($req) = wait_for_requests($orders, 1, $OutboxTest::timeout,
	with_id('order-1-created'));
ok($req, 'a committed message reaches its target');

my $latency = $req->{t} - $committed_at;
note sprintf('commit-to-request latency: %.1f ms', $latency * 1000);
cmp_ok($latency, '<', 2, 'the request arrives within 2 s of the commit');

is($req->{method}, 'POST', 'the request method is POST');
is($req->{path}, '/hooks/orders', 'the request goes to the path of the target URL');
like($req->{headers}{'content-type'} // '',
	qr{^application/json\b}, 'Content-Type is application/json');
is_deeply(body_json($req), decode_json($payload),
	'the body is the payload as JSON');
is($req->{headers}{'webhook-id'}, 'order-1-created',
	'webhook-id is the message_id given by the caller');
my $ts = $req->{headers}{'webhook-timestamp'} // '';
like($ts, qr/^\d+$/, 'webhook-timestamp is integer unix seconds');
cmp_ok(abs($ts - $req->{t}), '<=', 5,
	'webhook-timestamp is the time of the attempt');
is($req->{headers}{'outbox-attempt'}, '1', 'outbox-attempt is 1 on the first attempt');
is($req->{headers}{'outbox-type'}, 'OrderCreated', 'outbox-type is the message_type');
is($req->{headers}{'outbox-key'}, 'customer-7', 'outbox-key is the key');
is($req->{headers}{'x-tenant'}, 'acme', "the message's own headers are sent (1)");
is($req->{headers}{'x-trace'}, 't-123', "the message's own headers are sent (2)");

ok( poll_until(
		$node,
		"SELECT state FROM outbox.messages WHERE id = $id",
		'delivered'),
	'the row becomes delivered after a 2xx answer');
is( $node->safe_psql(
		'postgres',
		"SELECT attempts, last_status, delivered_at IS NOT NULL, "
		  . "delivered_at >= created_at FROM outbox.messages WHERE id = $id"),
	'1|200|t|t',
	'a delivered row records attempts = 1, last_status = 200 and delivered_at');

# --- a message without the optional fields --------------------------------

my $id2 = $node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"plain": true}')});
($req) = wait_for_requests($orders, 1, $OutboxTest::timeout,
	with_id("msg_$id2"));
ok($req, 'without a message_id, webhook-id is msg_<id>');
ok($req && !exists $req->{headers}{'outbox-type'},
	'outbox-type is absent when no message_type was given');
ok($req && !exists $req->{headers}{'outbox-key'},
	'outbox-key is absent when no key was given');
is_deeply($req ? body_json($req) : undef,
	{ plain => JSON::PP::true }, 'the body of the minimal message is its payload');

# --- several messages in one transaction ----------------------------------

my $sql = "BEGIN;\n";
$sql .= "SELECT outbox_queue('orders', '{\"n\": $_}', message_id => 'batch-$_');\n"
  for 1 .. 5;
$sql .= "COMMIT;\n";
$node->safe_psql('postgres', $sql);
my @batch = wait_for_requests($orders, 5, $OutboxTest::timeout,
	with_id_like(qr/^batch-/));
is_deeply(
	[ sort map { $_->{headers}{'webhook-id'} } @batch ],
	[ map { "batch-$_" } 1 .. 5 ],
	'every message of a multi-message transaction is delivered once');
is_deeply(
	[ sort map { body_json($_)->{n} } @batch ],
	[ 1 .. 5 ], 'each message of the transaction carries its own payload');
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages "
		  . "WHERE message_id LIKE 'batch-%' AND state = 'delivered'",
		'5'),
	'all rows of the transaction become delivered');

# --- two targets ----------------------------------------------------------

$node->safe_psql('postgres', q{
BEGIN;
SELECT outbox_queue('billing', '{"invoice": 10}', message_id => 'inv-10');
SELECT outbox_queue('orders', '{"order": 10}', message_id => 'ord-10');
COMMIT;
});
my ($b) = wait_for_requests($billing, 1, $OutboxTest::timeout,
	with_id('inv-10'));
my ($o) = wait_for_requests($orders, 1, $OutboxTest::timeout,
	with_id('ord-10'));
ok($b && $b->{path} eq '/b', "a billing message goes to billing's URL");
ok($o && $o->{path} eq '/hooks/orders', "an orders message goes to orders' URL");
is(scalar(requests_with_id($orders, 'inv-10')), 0,
	'the billing message is not sent to the orders receiver');
is(scalar(requests_with_id($billing, 'ord-10')), 0,
	'the orders message is not sent to the billing receiver');

$node->stop;
done_testing();
