
# Message n+1 of a key is sent only once message n's 2xx is durable.  The
# dispatcher commits its bookkeeping asynchronously, and flushes the WAL
# itself before it sends the next message of a key.  Here the WAL writer
# is held off for 10 s and autovacuum is off, so that nothing else writes
# the WAL out, and a crash (an immediate stop) the moment n+1 arrives
# loses every outcome that was not written:
# had n's been among them, n would be pending again after the restart, and
# sent after n+1.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders', control => 1);
my $node = outbox_node('key_durable',
	targets => 'orders=' . receiver_url($orders, '/o'),
	conf => "wal_writer_delay = '10s'\n"
	  . "autovacuum = off\n"
	  . "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '100ms'");

ok(wait_for_decoding($node), 'the decoder streams from its slot');

# k-2's first request is held until the server is gone; it is answered
# after the restart
set_control($orders,
	{ by_id => { 'k-2' => [ { delay => 60 }, { status => 200 } ], '*' => { status => 200 } } });
$node->safe_psql('postgres', <<'SQL');
BEGIN;
SELECT outbox_queue('orders', '{"n": 1}', key => 'k', message_id => 'k-1');
SELECT outbox_queue('orders', '{"n": 2}', key => 'k', message_id => 'k-2');
COMMIT;
SQL

ok(wait_for_requests($orders, 1, undef, with_id('k-2')),
	'message n+1 is sent once message n got its 2xx');
$node->stop('immediate');
$node->start;

ok(poll_until($node,
		"SELECT string_agg(message_id || ' ' || state, ', ' ORDER BY id) FROM outbox.messages",
		'k-1 delivered, k-2 delivered'),
	'after the crash, both are delivered');
is(sent_ids($orders, qr/^k-/), 'k-1,k-2,k-2',
	'message n is not sent again after message n+1: its 2xx was durable when n+1 went');

$node->stop;
done_testing();
