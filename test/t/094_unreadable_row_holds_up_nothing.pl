
# A row the dispatcher cannot read holds up no other message.  Here a
# superuser has let a row without a payload into outbox.messages (after
# dropping a NOT NULL constraint), as corruption might: building its
# message fails, and with it the scan's transaction, each time a scan
# reaches it.  The messages a sweep reads before it in the same scan, and
# those after it, are delivered all the same; it stays pending, and the
# error names it.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('unreadable_row',
	targets => 'orders=' . receiver_url($orders, '/o'));

ok(wait_for_decoding($node), 'the decoder streams from its slot');

# Due together in 2 s, so that one scan reads them all, in id order
my $log = log_position($node);
$node->safe_psql('postgres', q{
ALTER TABLE outbox.messages ALTER COLUMN payload DROP NOT NULL;
BEGIN;
SELECT outbox_send('orders', '{"n": 1}', message_id => 'before-1', deliver_at => now() + interval '2 s');
SELECT outbox_send('orders', '{"n": 2}', message_id => 'before-2', deliver_at => now() + interval '2 s');
INSERT INTO outbox.messages (target, payload, next_attempt_at)
VALUES ('orders', NULL, now() + interval '2 s');
SELECT outbox_send('orders', '{"n": 3}', message_id => 'after-1', deliver_at => now() + interval '2 s');
COMMIT;});
my $bad = $node->safe_psql('postgres',
	'SELECT id FROM outbox.messages WHERE payload IS NULL');

ok(wait_for_log_line($node, qr/outbox message $bad has no target or payload/, $log),
	'the scan that reads the row fails, and says which');
ok(poll_until($node,
		"SELECT string_agg(message_id, ',' ORDER BY id) FROM outbox.messages WHERE state = 'delivered'",
		'before-1,before-2,after-1'),
	'the messages before it and after it are delivered');
is($node->safe_psql('postgres', "SELECT state FROM outbox.messages WHERE id = $bad"),
	'pending', 'the unreadable row stays pending');
is(join(',', sort split /,/, sent_ids($orders, qr/./)), 'after-1,before-1,before-2',
	'each of them sent once');

$node->stop;
done_testing();
