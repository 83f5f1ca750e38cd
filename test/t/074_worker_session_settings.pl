
# Settings given to a database's sessions (ALTER DATABASE ... SET), meant for
# applications, do not stop the workers: with read-only transactions,
# tiny timeouts, serializable isolation, replica mode, no temporary files,
# exit_on_error and a non-superuser role set for the database, messages are
# still delivered and every outcome recorded.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $orders = start_receiver(name => 'orders');
my $failing = start_receiver(name => 'failing', args => [ '--status' => 500 ]);
my $node = outbox_node('worker_settings',
	targets => 'orders=' . receiver_url($orders, '/o')
	  . ', failing=' . receiver_url($failing, '/f'),
	conf => "outbox.max_attempts = 2");

# setting => [ for the database, the default ]
my %settings = (
	default_transaction_read_only => [ 'on', 'off' ],
	statement_timeout => [ '1ms', '0' ],
	lock_timeout => [ '1ms', '0' ],
	idle_in_transaction_session_timeout => [ '1ms', '0' ],
	idle_session_timeout => [ '1ms', '0' ],
	default_transaction_isolation => [ 'serializable', 'read committed' ],
	default_transaction_deferrable => [ 'on', 'off' ],
	session_replication_role => [ 'replica', 'origin' ],
	temp_file_limit => [ '0', '-1' ],
	exit_on_error => [ 'on', 'off' ],
	role => [ 'nobody', 'none' ]);

# The test's own sessions (role tester) keep the defaults
my $sql = "CREATE ROLE nobody; CREATE ROLE tester LOGIN SUPERUSER;\n";
foreach my $name (sort keys %settings)
{
	my ($db, $default) = @{ $settings{$name} };
	$sql .= "ALTER DATABASE postgres SET $name = '$db';\n";
	$sql .= "ALTER ROLE tester IN DATABASE postgres SET $name = '$default';\n";
}
$node->safe_psql('postgres', $sql);
$node->restart;

sub query
{
	my ($q) = @_;
	return $node->safe_psql('postgres', $q, extra_params => [ '-U', 'tester' ]);
}

is( query(q{SELECT current_setting('default_transaction_read_only')
                || ' ' || current_user}),
	'off tester', 'the test session itself keeps the defaults');
my $applied = query(q{
SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
 WHERE d.datname = 'postgres' AND s.setrole = 0});
is($applied, '1', 'the settings are set for the database');

query(q{
SELECT outbox_queue('orders', '{"n": 1}', message_id => 'ok');
SELECT outbox_queue('failing', '{"n": 2}', message_id => 'fails');
});
ok(scalar(wait_for_requests($orders, 1)), 'the message is sent');
my $poll = q{SELECT string_agg(message_id || ':' || state || '/' || attempts, ' ' ORDER BY message_id)
  FROM outbox.messages};
my $deadline = time() + $OutboxTest::timeout;
my $states = '';
while (time() < $deadline)
{
	$states = query($poll);
	last if $states eq 'fails:dead/2 ok:delivered/1';
	usleep(200_000);
}
is($states, 'fails:dead/2 ok:delivered/1',
	'the delivery, the failed attempts and the dead letter are recorded');
is(query(q{SELECT count(*) FROM outbox.attempts}), '3',
	'every attempt is in outbox.attempts');
unlike(slurp_file($node->logfile),
	qr/canceling statement due to statement timeout|read-only transaction|permission denied/,
	'no worker statement failed');

$node->stop;
done_testing();
