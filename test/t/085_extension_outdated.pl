
# After a new version of the library is installed and the server restarted,
# the extension's SQL objects stay at the old version until ALTER EXTENSION
# UPDATE.  The workers must not run the new version's queries against the
# old objects: they say once what to run, and the messages wait for it.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('outdated',
	targets => 'orders=' . receiver_url($orders, '/o'),
	create_extension => 0);
my $library = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'outbox'");

my $offset = log_position($node);
$node->safe_psql('postgres', q{
CREATE EXTENSION outbox VERSION '0.2';
SELECT outbox_queue('orders', '{"n": 1}', message_id => 'waits');
});
ok(wait_for_log_line($node,
		qr/outbox extension in database "postgres" is at version 0\.2, but the library is at version \Q$library\E; messages wait\n.*HINT:  If the library is the newer one, run ALTER EXTENSION outbox UPDATE;/s,
		$offset),
	'the dispatcher says the extension must be updated, and how');
ok( poll_until(
		$node,
		"SELECT string_agg(state, ',' ORDER BY worker) FROM outbox.workers",
		'waiting for ALTER EXTENSION outbox UPDATE,waiting for ALTER EXTENSION outbox UPDATE'),
	'outbox.workers shows both workers waiting for the update');
wait_seconds(2);
is(scalar(read_requests($orders)), 0, 'nothing is sent meanwhile');
my $log = slurp_file($node->logfile, $offset);
my $said = () = $log =~ /is at version 0\.2, but the library/g;
is($said, 1, 'it is said once');
unlike($log, qr/ERROR/, 'and no query fails');

$node->safe_psql('postgres', 'ALTER EXTENSION outbox UPDATE');
ok(scalar(wait_for_requests($orders, 1, undef,
	with_id('waits'))),
	'after ALTER EXTENSION UPDATE the waiting message is delivered');
ok(wait_for_decoding($node), 'and the decoder streams');

$node->stop;
done_testing();
