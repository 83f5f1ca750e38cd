
# A duplicate (target, message_id) returns the existing id and does not cause
# a second delivery.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $billing = start_receiver(name => 'billing');
my $node = outbox_node('idempotent',
	targets => 'orders=' . receiver_url($orders, '/o')
	  . ', billing=' . receiver_url($billing, '/b'));

# Twice in the same transaction.
my ($a1, $a2) = split /\n/, $node->safe_psql('postgres', q{
BEGIN;
SELECT outbox_queue('orders', '{"v": 1}', message_id => 'dup-1');
SELECT outbox_queue('orders', '{"v": 2}', message_id => 'dup-1');
COMMIT;
});
like($a1, qr/^\d+$/, 'the first call returns an id');
is($a2, $a1, 'a duplicate in the same transaction returns the same id');

# Again in a later transaction, while or after the first is delivered.
my $a3 = $node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"v": 3}', message_id => 'dup-1')});
is($a3, $a1, 'a duplicate in a later transaction returns the same id');

ok( poll_until(
		$node,
		"SELECT state FROM outbox.messages WHERE id = $a1", 'delivered'),
	'the message is delivered');

my $a4 = $node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"v": 4}', message_id => 'dup-1')});
is($a4, $a1, 'a duplicate after delivery returns the same id');
my $a5 = $node->safe_psql('postgres',
	q{SELECT outbox_send('orders', '{"v": 5}', message_id => 'dup-1')});
is($a5, $a1, 'outbox_send with a duplicate message_id returns the same id');

# The same message_id on another target is another message.
my $b1 = $node->safe_psql('postgres',
	q{SELECT outbox_queue('billing', '{"v": 1}', message_id => 'dup-1')});
isnt($b1, $a1, 'the same message_id on another target is a new message');

# A committed marker after all the duplicates.
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"marker": true}', message_id => 'marker')});
wait_for_requests($orders, 1, $OutboxTest::timeout,
	with_id('marker'));
wait_for_requests($billing, 1);
wait_seconds(0.5);

my @dups = requests_with_id($orders, 'dup-1');
is(scalar @dups, 1, 'a message queued several times is delivered exactly once');
is_deeply(body_json($dups[0]), { v => 1 },
	'the delivered payload is the one of the first call');
is(scalar(requests_with_id($billing, 'dup-1')), 1,
	'the other target gets its own message once');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM outbox.messages WHERE message_id = 'dup-1'}),
	'2', 'one row per (target, message_id)');
is( $node->safe_psql(
		'postgres',
		"SELECT attempts FROM outbox.messages WHERE id = $a1"),
	'1', 'the duplicates did not cause another attempt');

$node->stop;
done_testing();
