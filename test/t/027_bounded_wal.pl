
# The slot does not hold WAL for undelivered messages: with the target down,
# 30 MB of messages are queued, and after a checkpoint the WAL retained by
# the slot 'outbox' (current LSN - restart_lsn) is small.  The messages wait
# in the table, and are all delivered once the target is up.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $port = free_port();    # the target is down
my $node = outbox_node('bounded_wal',
	targets => "orders=http://127.0.0.1:$port/hooks/orders");

ok( poll_until(
		$node,
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'outbox'",
		'1'),
	'the decoder has created its slot');

my $n_tx = 30;
my $per_tx = 100;
my $total = $n_tx * $per_tx;
my $lsn0 = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
for my $tx (1 .. $n_tx)
{
	# 10 kB of hex digits per message: pglz cannot shrink it much.
	$node->safe_psql('postgres', qq{
SELECT count(outbox_queue('orders',
         jsonb_build_object('tx', $tx, 'n', g, 'pad',
           (SELECT string_agg(md5(random()::text || g || i), '')
              FROM generate_series(1, 320) i)),
         message_id => 'big-$tx-' || g))
  FROM generate_series(1, $per_tx) g;
});
}
my $wal_mb = $node->safe_psql('postgres',
	"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0') / 1048576");
note sprintf('WAL written while queuing: %.1f MB', $wal_mb);
cmp_ok($wal_mb, '>=', 25, 'queuing the messages wrote more than 25 MB of WAL');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM outbox.messages WHERE state = 'pending'"),
	$total, "all $total messages are pending (the target is down)");

# restart_lsn only moves at a running-xacts record; CHECKPOINT logs one.
ok( poll_until(
		$node,
		"CHECKPOINT; SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) "
		  . "< 8 * 1048576 FROM pg_replication_slots WHERE slot_name = 'outbox'",
		't'),
	'after a checkpoint the slot retains less than 8 MB of WAL');
my $retained = $node->safe_psql('postgres',
	"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) / 1048576 "
	  . "FROM pg_replication_slots WHERE slot_name = 'outbox'");
note sprintf('WAL retained by the slot: %.2f MB', $retained);
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM outbox.messages WHERE state = 'pending'"),
	$total, 'the messages are still pending: they wait in the table, not in WAL');

my $orders = start_receiver(name => 'orders', port => $port);
ok( poll_until(
		$node,
		"SELECT state, count(*) FROM outbox.messages GROUP BY state",
		"delivered|$total", 60),
	'once the target is up every message is delivered');
# 30 MB of JSON is slow to decode in Perl: pick the two fields by pattern.
my %seen;
open my $fh, '<', $orders->{log} or die "cannot read $orders->{log}: $!";
while (my $line = <$fh>)
{
	my ($id) = $line =~ /"webhook-id": "([^"]+)"/;
	my ($len) = $line =~ /"content-length": "(\d+)"/;
	$seen{$id} = $len if defined $id;
}
close $fh;
is(scalar(grep { /^big-/ } keys %seen), $total, 'the receiver got all of them');
is(scalar(grep { $_ < 10000 } values %seen), 0, 'each with its whole payload');

$node->stop;
done_testing();
