
# PostgreSQL invalidates the slot while messages are pending: the decoder
# recreates it, the dispatcher finds what was committed meanwhile in the
# table, nothing is lost, and the WAL fast path works again.
#
# The cause is the one each major makes easiest to trigger honestly, always
# at a checkpoint while the decoder is away (SIGTERM: the postmaster starts
# it again after 5 s) and the slot is inactive: on PostgreSQL 18,
# idle_replication_slot_timeout (in seconds, set to 1 s); before 18,
# max_slot_wal_keep_size (1 MB) exceeded by two WAL segment switches.  An
# invalidated slot keeps its restart_lsn on 18 (only WAL removal clears
# it), so the decoder must look at the recorded cause, not only at
# restart_lsn.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('slot_invalidated',
	targets => 'orders=' . receiver_url($orders, '/orders'),
	start => 0);
my $idle = $node->pg_version >= 18;
my $cause = $idle ? 'idle_timeout' : 'wal_removed';
$node->append_conf('postgresql.conf',
	$idle
	? "idle_replication_slot_timeout = '1s'"
	: "max_slot_wal_keep_size = '1MB'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION outbox');

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"before": 1}', message_id => 'before')});
ok(scalar(wait_for_requests($orders, 1, undef, with_id('before'))),
	'a message is delivered through the slot');

# The decoder goes away; its slot stays, inactive.
my $pid = worker_pid($node, 'outbox decoder');
my $offset = log_position($node);
kill 'TERM', $pid;
ok( poll_until(
		$node,
		q{SELECT active FROM pg_replication_slots WHERE slot_name = 'outbox'},
		'f'),
	'the decoder is gone and the slot inactive');

# Committed while nothing decodes: the new slot will start after them.
$node->safe_psql('postgres', q{
SELECT count(outbox_queue('orders', jsonb_build_object('n', g),
                          message_id => 'meanwhile-' || g))
  FROM generate_series(1, 20) g;
});
if ($idle)
{
	usleep(1_500_000);    # idle for longer than the timeout
}
else
{
	for (1 .. 2)
	{
		$node->safe_psql('postgres',
			q{SELECT pg_switch_wal(); CREATE TABLE filler AS SELECT 1 AS x; DROP TABLE filler;});
	}
}
$node->safe_psql('postgres', 'CHECKPOINT');
my $status_sql = $node->pg_version >= 17
  ? q{SELECT invalidation_reason FROM pg_replication_slots WHERE slot_name = 'outbox'}
  : q{SELECT CASE wal_status WHEN 'lost' THEN 'wal_removed' END FROM pg_replication_slots WHERE slot_name = 'outbox'};
is($node->safe_psql('postgres', $status_sql), $cause,
	"the checkpoint invalidated the slot ($cause)");

ok( wait_for_log_line(
		$node,
		qr/outbox replication slot "outbox" was invalidated \($cause\); recreating it/,
		$offset),
	'the restarted decoder says it recreates the invalidated slot, and why');
ok( poll_until(
		$node,
		q{SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'meanwhile-%' AND state = 'delivered'},
		'20'),
	'every message committed while the slot was away is delivered');
my %seen;
$seen{ $_->{headers}{'webhook-id'} }++ for read_requests($orders);
is(scalar(grep { !$seen{"meanwhile-$_"} } 1 .. 20), 0,
	'the receiver got every one of them');
is($node->safe_psql('postgres', $status_sql), '',
	'the slot is valid again');

# New messages take the WAL fast path through the new slot.
my $t0 = sql_epoch($node, 'clock_timestamp()');
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"after": 1}', message_id => 'after')});
my ($req) = wait_for_requests($orders, 1, undef, with_id('after'));
ok($req, 'a message queued after the slot was recreated is delivered');
ok($req && $req->{t} - $t0 < 1,
	'it arrives within a second (the fast path, not the safety scan)');
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok( slot_confirmed_past($node, $lsn),
	'the new slot is confirmed past that message');
is( $node->safe_psql('postgres',
		q{SELECT decoder_starts FROM outbox.stats}),
	'2',
	'the decoder started twice: at startup and after SIGTERM, never crash-looping');

$node->stop;
done_testing();
