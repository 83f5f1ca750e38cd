
# The failure policy and the targets are reloaded with SIGHUP, no restart:
# lowering outbox.max_attempts to 1 makes a failing message dead after its
# next attempt (and a new one after its first), and pointing a target at a
# new URL sends the next message there.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $old = start_receiver(name => 'old', args => [ '--status' => 500 ]);
my $new = start_receiver(name => 'new');
my $node = outbox_node('reload_policy',
	targets => 'orders=' . receiver_url($old, '/old'),
	conf => "outbox.max_attempts = 12\n"
	  . "outbox.retry_base_delay = '500ms'\n"
	  . "outbox.retry_max_delay = '1s'\n"
	  # keep the circuit closed: this test is about max_attempts
	  . "outbox.circuit_failures = 1000");
my $dispatcher = worker_pid($node, 'outbox dispatcher');

# Change a setting in postgresql.conf, reload, and wait until it shows.
sub reload_with
{
	my ($name, $value) = @_;
	$node->append_conf('postgresql.conf', "$name = '$value'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	my $ok = poll_until($node, "SELECT current_setting('$name')", $value);
	wait_seconds(0.5);    # the dispatcher reloads on its own SIGHUP
	return $ok;
}

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 1}', message_id => 'before')});
ok( poll_until(
		$node,
		"SELECT state, attempts >= 2 FROM outbox.messages WHERE message_id = 'before'",
		'pending|t'),
	'with max_attempts = 12 a failing message is retried');

ok(reload_with('outbox.max_attempts', '1'), 'outbox.max_attempts is reloaded to 1');
ok( poll_until(
		$node,
		"SELECT state, attempts < 12 FROM outbox.messages WHERE message_id = 'before'",
		'dead|t'),
	'the failing message goes dead at its next failed attempt, before 12 attempts');

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 2}', message_id => 'after')});
ok( poll_until(
		$node,
		"SELECT state, attempts, last_status FROM outbox.messages "
		  . "WHERE message_id = 'after'",
		'dead|1|500'),
	'a new failing message goes dead after one attempt');
wait_seconds(0.5);
is(scalar(requests_with_id($old, 'after')), 1, 'it was sent once');

ok( reload_with('outbox.targets', 'orders=' . receiver_url($new, '/new')),
	'outbox.targets is reloaded with a new URL for orders');
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 3}', message_id => 'moved')});
my ($req) = wait_for_requests($new, 1, undef,
	with_id('moved'));
ok($req, 'the next message goes to the new URL');
is($req && $req->{path}, '/new', 'with the new path');
is(scalar(requests_with_id($old, 'moved')), 0, 'the old URL does not get it');
ok( poll_until(
		$node,
		"SELECT state FROM outbox.messages WHERE message_id = 'moved'",
		'delivered'),
	'it is delivered');

is(worker_pid($node, 'outbox dispatcher'), $dispatcher,
	'the dispatcher was not restarted to apply the settings');

$node->stop;
done_testing();
