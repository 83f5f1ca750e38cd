
# Messages committed while no worker could deliver them are delivered after
# a restart: the table, not the WAL stream, is the source of truth.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('server_stopped',
	targets => 'orders=' . receiver_url($orders, '/hooks/orders'));

# The workers run; make sure the pipeline works before stopping anything.
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 0}', message_id => 'warmup')});
is(scalar wait_for_requests($orders, 1), 1, 'delivery works before the restart');

# --- 1. queued while the library is not preloaded (no workers) -------------

$node->stop;
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''");
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
	'the server runs without the outbox workers');

$node->safe_psql('postgres', q{
BEGIN;
SELECT outbox_queue('orders', '{"n": 1}', message_id => 'offline-1');
SELECT outbox_queue('orders', '{"n": 2}', message_id => 'offline-2');
COMMIT;
});
$node->safe_psql('postgres',
	q{SELECT outbox_send('orders', '{"n": 3}', message_id => 'offline-3')});
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'offline-%' AND state = 'pending'}),
	'3',
	'outbox_queue and outbox_send work without the library preloaded');

wait_seconds(1);
is(scalar(read_requests($orders)), 1, 'nothing is sent while no worker runs');

$node->stop;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'outbox'");
$node->start;

my @offline = wait_for_requests($orders, 3, $OutboxTest::timeout,
	with_id_like(qr/^offline-/));
is_deeply(
	[ sort map { $_->{headers}{'webhook-id'} } @offline ],
	[ 'offline-1', 'offline-2', 'offline-3' ],
	'messages committed while no worker ran are delivered after a restart');
ok( poll_until(
		$node,
		q{SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'offline-%' AND state = 'delivered'},
		'3'),
	'their rows become delivered');

# --- 2. pending when the server crashes (immediate stop) ------------------

stop_receiver($orders);
$node->safe_psql('postgres', q{
BEGIN;
SELECT outbox_queue('orders', '{"n": 4}', message_id => 'crash-1');
SELECT outbox_queue('orders', '{"n": 5}', message_id => 'crash-2');
COMMIT;
});
ok( poll_until(
		$node,
		q{SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'crash-%' AND state = 'pending' AND attempts > 0},
		'2'),
	'messages to a stopped receiver are pending after a failed attempt');

$node->stop('immediate');
$orders = start_receiver(name => 'orders', port => $orders->{port});
$node->start;

my @crash = wait_for_requests($orders, 2, $OutboxTest::timeout,
	with_id_like(qr/^crash-/));
is_deeply(
	[ sort map { $_->{headers}{'webhook-id'} } @crash ],
	[ 'crash-1', 'crash-2' ],
	'pending messages survive an immediate shutdown and are delivered after it');
ok( poll_until(
		$node,
		q{SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'crash-%' AND state = 'delivered'},
		'2'),
	'their rows become delivered after the crash restart');

# --- 3. committed just before a clean stop ----------------------------------

$node->safe_psql('postgres', q{
BEGIN;
SELECT outbox_queue('orders', ('{"n": ' || g || '}')::jsonb, message_id => 'stop-' || g)
  FROM generate_series(1, 20) g;
COMMIT;
});
$node->stop('fast');
$node->start;
my @stop = wait_for_requests($orders, 20, $OutboxTest::timeout,
	with_id_like(qr/^stop-/));
my %seen = map { $_->{headers}{'webhook-id'} => 1 } @stop;
is(scalar(keys %seen), 20,
	'every message committed right before a fast shutdown is delivered (at least once)');
ok( poll_until(
		$node,
		q{SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'stop-%' AND state = 'delivered'},
		'20'),
	'all of them end up delivered');

$node->stop;
done_testing();
