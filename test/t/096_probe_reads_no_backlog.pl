
# A probe of an open circuit reads a few rows, however many messages wait.
# While a target is down its backlog grows; the probe takes the target's
# oldest message that may go (no key, or the first of its key).  Asking
# the table for that in one query let the planner read and sort every
# pending message of the target for each probe, a cost that grew with the
# backlog of the target that was down (and held up the other targets'
# deliveries meanwhile).  Here 20,000 messages wait and the table's own
# counter of rows fetched says how many each probe read.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders', control => 1);
my $node = outbox_node('probe_batch',
	targets => 'orders=' . receiver_url($orders, '/o'),
	conf => "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '200ms'\n"
	  . "outbox.max_attempts = 1000\n"
	  . "outbox.circuit_failures = 3");

set_control($orders, { status => 500 });
$node->safe_psql('postgres', q{
SELECT count(outbox_queue('orders', jsonb_build_object('n', g),
                          key => CASE WHEN g % 2 = 0 THEN 'k' || (g % 100) END))
  FROM generate_series(1, 20000) g;
});
ok(poll_until($node, "SELECT circuit FROM outbox.targets", 'open'),
	'the circuit opens');

# The rows read from the table (through any index, or by a sequential
# scan: this query reads none), and the requests, all of them probes now
my $fetched_sql = q{
SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0)
  FROM pg_stat_all_tables WHERE relid = 'outbox.messages'::regclass};
wait_seconds(2);
my $fetched0 = $node->safe_psql('postgres', $fetched_sql);
my $probes0 = scalar(read_requests($orders));
wait_seconds(4);
my $fetched1 = $node->safe_psql('postgres', $fetched_sql);
my $probes1 = scalar(read_requests($orders));
my $probes = $probes1 - $probes0;
cmp_ok($probes, '>=', 5, 'probes are sent meanwhile');
my $per_probe = ($fetched1 - $fetched0) / ($probes || 1);
note sprintf('%d probes, %.0f rows fetched per probe', $probes, $per_probe);
cmp_ok($per_probe, '<', 500, 'each probe reads a few rows, not the 20,000 waiting');

# The first 2xx closes the circuit and everything goes
set_control($orders, { status => 200 });
ok(poll_until($node,
		"SELECT count(*) FROM outbox.messages WHERE state = 'delivered'",
		'20000', 60),
	'once the target answers, every message is delivered');

$node->stop;
done_testing();
