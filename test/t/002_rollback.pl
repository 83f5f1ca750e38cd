
# A message queued by a transaction (or subtransaction) that rolls back is
# never delivered; messages queued by the committed parts are.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('rollback',
	targets => 'orders=' . receiver_url($orders, '/hooks/orders'));

# A whole transaction rolled back.
$node->safe_psql('postgres', q{
BEGIN;
SELECT outbox_queue('orders', '{"n": "rolled back"}', message_id => 'rb-tx');
ROLLBACK;
});

# A transaction that fails with an error after queueing.
my ($rc) = $node->psql('postgres', q{
BEGIN;
SELECT outbox_queue('orders', '{"n": "failed tx"}', message_id => 'rb-error');
SELECT 1 / 0;
COMMIT;
});
isnt($rc, 0, 'a statement error aborts the transaction that queued a message');

# A committed transaction whose subtransaction rolled back.
$node->safe_psql('postgres', q{
BEGIN;
SELECT outbox_queue('orders', '{"n": "kept before"}', message_id => 'kept-1');
SAVEPOINT s1;
SELECT outbox_queue('orders', '{"n": "rolled back to savepoint"}', message_id => 'rb-savepoint');
ROLLBACK TO SAVEPOINT s1;
SELECT outbox_queue('orders', '{"n": "kept after"}', message_id => 'kept-2');
COMMIT;
});

# A later committed marker: once it arrived, everything before it was
# decoded and dispatched.
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": "marker"}', message_id => 'marker')});

my @marker = wait_for_requests($orders, 1, $OutboxTest::timeout,
	with_id('marker'));
is(scalar @marker, 1, 'a committed marker message is delivered');
my @kept = wait_for_requests($orders, 2, $OutboxTest::timeout,
	with_id_like(qr/^kept-/));
is(scalar @kept, 2,
	'the messages of a committed transaction around a rolled-back savepoint are delivered');
ok(poll_until($node,
		q{SELECT count(*) FROM outbox.messages WHERE state = 'pending'}, '0'),
	'no message is left pending');

# Give a wrongly sent message a moment to show up.
wait_seconds(0.5);
my @rb = grep { ($_->{headers}{'webhook-id'} // '') =~ /^rb-/ }
  read_requests($orders);
is(scalar @rb, 0, 'no rolled-back message is ever sent')
  or diag explain [ map { $_->{headers}{'webhook-id'} } @rb ];
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'rb-%'}),
	'0', 'rolled-back messages leave no row behind');
is(scalar(read_requests($orders)), 3,
	'exactly the three committed messages were sent');

$node->stop;
done_testing();
