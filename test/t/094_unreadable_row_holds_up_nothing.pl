
# A row the dispatcher cannot read holds up no other message.  Here a
# superuser has let a row without a payload into outbox.messages (after
# dropping a NOT NULL constraint), as corruption might: building its
# message fails, and with it the scan's transaction, each time a scan
# reaches it, or a key lookup or a probe.  The messages a sweep reads
# before it in the same scan, and those after it, are delivered all the
# same, while other messages are queued; it stays pending, the error names
# it, and a later message of its key waits for it.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $audit = start_receiver(name => 'audit', control => 1);
my $node = outbox_node('unreadable_row',
	targets => 'orders=' . receiver_url($orders, '/o') . ',audit=' . receiver_url($audit, '/a'),
	conf => "outbox.retry_base_delay = '100ms'\noutbox.retry_max_delay = '500ms'");

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

# A key whose next message cannot be read waits for it; other keys, and
# outbox_send messages committed all the while, do not
$log = log_position($node);
$node->safe_psql('postgres', q{
BEGIN;
SELECT outbox_send('orders', '{"n": 1}', key => 'k', message_id => 'k-1');
INSERT INTO outbox.messages (target, key, payload) VALUES ('orders', 'k', NULL);
SELECT outbox_send('orders', '{"n": 3}', key => 'k', message_id => 'k-3');
SELECT outbox_send('orders', '{"n": 1}', key => 'j', message_id => 'j-1');
SELECT outbox_send('orders', '{"n": 2}', key => 'j', message_id => 'j-2');
COMMIT;});
my $bad_keyed = $node->safe_psql('postgres',
	"SELECT id FROM outbox.messages WHERE payload IS NULL AND key = 'k'");
for my $i (1 .. 10)
{
	$node->safe_psql('postgres',
		"SELECT outbox_send('orders', '{\"steady\": $i}', message_id => 'steady-$i')");
	wait_seconds(0.3);
}
ok(wait_for_log_line($node,
		qr/outbox dispatcher passes message $bad_keyed by: its row could not be read/, $log),
	'the keyed row that cannot be read is passed by, and the log says so');
ok(poll_until($node, q{
	SELECT string_agg(message_id, ',' ORDER BY id) FROM outbox.messages
	 WHERE state = 'delivered' AND (key IS NOT NULL OR message_id LIKE 'steady-%')},
		'k-1,j-1,j-2,' . join(',', map { "steady-$_" } 1 .. 10)),
	'the messages of other keys, and those queued meanwhile, are delivered');
is($node->safe_psql('postgres',
		"SELECT string_agg(state, ',' ORDER BY id) FROM outbox.messages WHERE key = 'k'"),
	'delivered,pending,pending',
	'the next message of its key waits for it');
is(sent_ids($orders, qr/^k-/), 'k-1', 'and is not sent');

# An open circuit whose oldest message cannot be read is probed with the
# next one, and closes
set_control($audit, { status => 500 });
$log = log_position($node);
$node->safe_psql('postgres',
	"INSERT INTO outbox.messages (target, payload) VALUES ('audit', NULL)");
my $bad_probe = $node->safe_psql('postgres',
	"SELECT id FROM outbox.messages WHERE payload IS NULL AND target = 'audit'");
ok(wait_for_log_line($node,
		qr/outbox dispatcher passes message $bad_probe by: its row could not be read/, $log),
	'the oldest message of another target cannot be read');
$node->safe_psql('postgres',
	"SELECT outbox_queue('audit', jsonb_build_object('a', g), message_id => 'a-' || g) FROM generate_series(1, 5) g");
ok(poll_until($node, "SELECT circuit FROM outbox.targets WHERE target = 'audit'", 'open'),
	'its circuit opens');
set_control($audit, { status => 200 });
ok(poll_until($node,
		"SELECT count(*) FROM outbox.messages WHERE target = 'audit' AND state = 'delivered'", '5'),
	'a probe with the next message closes it, and its messages are delivered');

$node->stop;
done_testing();
