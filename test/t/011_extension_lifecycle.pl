
# The workers wait for CREATE EXTENSION, and cope with DROP EXTENSION and a
# new CREATE EXTENSION while they run: the slot goes with the extension, and
# messages queued after it is created again are delivered.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('lifecycle',
	targets => 'orders=' . receiver_url($orders, '/hooks/orders'),
	create_extension => 0);

# --- before CREATE EXTENSION ---------------------------------------------

ok( $node->wait_for_log(
		qr/outbox dispatcher is waiting for CREATE EXTENSION outbox in database "postgres"/),
	'the dispatcher says once that it waits for CREATE EXTENSION');
ok( $node->wait_for_log(
		qr/outbox decoder is waiting for CREATE EXTENSION outbox in database "postgres"/),
	'the decoder says once that it waits for CREATE EXTENSION');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'outbox'"),
	'0', 'no slot exists before CREATE EXTENSION');

# --- CREATE EXTENSION: the first message is delivered ----------------------

$node->safe_psql('postgres', q{
CREATE EXTENSION outbox;
SELECT outbox_queue('orders', '{"n": 1}', message_id => 'first');
});
ok(scalar(wait_for_requests($orders, 1, undef,
	with_id('first'))),
	'a message queued right after CREATE EXTENSION is delivered');
ok(poll_until($node,
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'outbox' AND plugin = 'outbox'",
		'1'),
	'the decoder creates its slot with the outbox output plugin');

my $log = slurp_file($node->logfile);
my $waits = () = $log =~ /outbox dispatcher is waiting for CREATE EXTENSION/g;
is($waits, 1, 'the wait is logged once, not on every check');

# --- DROP EXTENSION: the slot goes too, nothing retains WAL ---------------

$node->safe_psql('postgres', 'DROP EXTENSION outbox');
ok(poll_until($node,
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'outbox'",
		'0'),
	'DROP EXTENSION outbox drops the slot');
ok($node->wait_for_log(qr/outbox decoder dropped replication slot "outbox"/),
	'the decoder says why the slot went away');

# --- CREATE EXTENSION again: delivery resumes ------------------------------

$node->safe_psql('postgres', q{
CREATE EXTENSION outbox;
SELECT outbox_queue('orders', '{"n": 2}', message_id => 'after-recreate');
SELECT outbox_send('orders', '{"n": 3}', message_id => 'send-after-recreate');
});
ok(scalar(wait_for_requests($orders, 1, undef,
	with_id('after-recreate'))),
	'outbox_queue delivers again after DROP and CREATE EXTENSION');
ok(scalar(wait_for_requests($orders, 1, undef,
	with_id('send-after-recreate'))),
	'outbox_send delivers again after DROP and CREATE EXTENSION');
ok(poll_until($node,
		"SELECT string_agg(state, ',' ORDER BY id) FROM outbox.messages",
		'delivered,delivered'),
	'the new table records both deliveries');
ok(poll_until($node,
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'outbox'",
		'1'),
	'the slot is back');

# The fast path works again: a message arrives well within the safety scan
my $t0 = sql_epoch($node, 'clock_timestamp()');
$node->safe_psql('postgres',
	"SELECT outbox_queue('orders', '{\"n\": 4}', message_id => 'fast-again')");
my ($req) = wait_for_requests($orders, 1, undef,
	with_id('fast-again'));
ok($req && $req->{t} - $t0 < 1.0,
	'the WAL fast path delivers in under a second after the re-create');

is(scalar(requests_with_id($orders, 'first')),
	1, 'nothing from the dropped table is sent again');

$node->stop;
done_testing();
