
# The order pipeline of examples/order-pipeline runs, in its quick mode, as
# part of the test suite, so that the example cannot rot.  Its run.sh starts
# its own cluster and a read-model consumer that fails a fifth of its
# requests, produces a burst of 300 orders (created, paid, shipped: one
# event each, key = order id) from concurrent clients, and prints a final
# check: the read model must match the orders table row by row, and no
# order's event may arrive before the previous one.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Utils;
use Test::More;

my ($status, $out) = run_example('order-pipeline');

is($status, 0, 'examples/order-pipeline/run.sh --quick exits with 0')
  or diag $out;

like($out, qr/^producer: 300 orders created, \d+ paid, \d+ shipped: \d+ transactions/m,
	'the producer creates 300 orders and pays and ships most of them');
like($out, qr/^orders \(shop database\)\s+300$/m, 'the shop has the 300 orders');
like($out, qr/^events queued \(one per order change\)\s+\d+\s+ok$/m,
	'every change of an order queued exactly one event');
like($out, qr/^  delivered\s+\d+\s+ok$/m, 'every event is delivered');
like($out, qr/^  pending or dead\s+0\s+ok$/m, 'no event is pending or dead');

my ($failed_on_purpose) = $out =~ /^  answered 500 on purpose\s+(\d+)$/m;
cmp_ok($failed_on_purpose // 0, '>', 0,
	'the consumer failed some requests on purpose');
like($out, qr/^  events applied\s+\d+\s+ok$/m,
	'the consumer applied each event exactly once');
like($out, qr/^  duplicate deliveries absorbed \(version check\)\s+\d+$/m,
	'the check reports the repeated deliveries the version check absorbed');
like($out, qr/^  events seen before the previous one of their order\s+0\s+ok$/m,
	'no event of an order arrives before the previous event of that order');

like($out, qr/^read model rows\s+300\s+ok$/m, 'the read model has one row per order');
like($out, qr/^rows that differ from the orders table\s+0\s+ok$/m,
	'the read model matches the orders table row by row');

like($out, qr/^RESULT: OK$/m, 'the final check says OK');

done_testing();
