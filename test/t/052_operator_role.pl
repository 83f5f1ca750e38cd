
# Privilege boundaries, with real non-superuser roles.  A producer given
# only EXECUTE on outbox_queue and outbox_send can queue (and its messages
# are delivered), but cannot read or change any message, attempt or view,
# cannot steer dead letters, reset counters or purge, cannot see
# outbox.secrets, cannot change outbox.targets, and cannot make the server
# call a URL that is not configured.  An operator given exactly the
# README's grants can read every view, redrive and purge dead letters (the
# redriven ones are then delivered) and reset the counters, but cannot queue
# nor read outbox.secrets.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
my $sink = start_receiver(name => 'sink', control => 1);
my $evil = start_receiver(name => 'evil');
my $evil_url = receiver_url($evil, '/steal');
my $node = outbox_node('operator_role',
	targets => 'sink=' . receiver_url($sink, '/sink'),
	conf => "outbox.secrets = 'sink=$secret'");

$node->safe_psql('postgres', q{
CREATE ROLE producer LOGIN;
CREATE ROLE ops LOGIN;
-- the README's grants, exactly
GRANT EXECUTE ON FUNCTION outbox_queue(text, jsonb, text, text, text, jsonb),
                          outbox_send(text, jsonb, text, text, text, jsonb, timestamptz) TO producer;
GRANT USAGE ON SCHEMA outbox TO ops;
GRANT SELECT ON outbox.messages, outbox.attempts, outbox.targets,
                outbox.status, outbox.stats, outbox.workers TO ops;
GRANT EXECUTE ON FUNCTION outbox.target_state(), outbox.worker_state(), outbox.slot_name(),
                          outbox_stats(), outbox_stats_reset(), outbox_retry(bigint),
                          outbox_redrive(text), outbox_purge_dead(interval) TO ops;
});

# Run $sql as $role; returns (exit code, stdout, stderr).
sub as_role
{
	my ($role, $sql) = @_;
	my ($out, $err) = ('', '');
	my $ret = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role ]);
	return ($ret, $out, $err);
}

sub allowed
{
	my ($role, $sql, $name) = @_;
	my ($ret, $out, $err) = as_role($role, $sql);
	ok($ret == 0 && $err eq '', $name) or diag "$sql\n$err";
	return $out;
}

sub denied
{
	my ($role, $sql, $re, $name) = @_;
	my ($ret, $out, $err) = as_role($role, $sql);
	ok($ret != 0 && $err =~ $re, $name) or diag "$sql\nexit $ret, stdout: $out\nstderr: $err";
	return $err;
}

my $no_priv = qr/ERROR:\s+42501: permission denied/;

sub state_of
{
	my ($id) = @_;
	return "SELECT state FROM outbox.messages WHERE message_id = '$id'";
}

# --- the producer ----------------------------------------------------------

like(allowed('producer',
		q{SELECT outbox_queue('sink', '{"p": 1}', message_id => 'prod-q')},
		'the producer can call outbox_queue'),
	qr/^\d+$/, 'outbox_queue returns the message id to the producer');
allowed('producer',
	q{SELECT outbox_send('sink', '{"p": 2}', message_id => 'prod-s')},
	'the producer can call outbox_send');
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE message_id IN ('prod-q', 'prod-s') "
		  . "AND state = 'delivered'",
		'2'),
	"the producer's messages are delivered");
is(scalar(requests_with_id($sink, 'prod-q')) + scalar(requests_with_id($sink, 'prod-s')),
	2, 'the receiver got them');

for my $rel (qw(outbox.messages outbox.attempts outbox.targets outbox.status
	outbox.stats outbox.workers))
{
	denied('producer', "SELECT * FROM $rel", $no_priv,
		"the producer cannot read $rel");
}
denied('producer', 'SELECT * FROM outbox_stats()', $no_priv,
	'the producer cannot call outbox_stats()');
denied('producer',
	q{INSERT INTO outbox.messages (target, payload, state) VALUES ('sink', '{}', 'pending')},
	$no_priv, 'the producer cannot insert into outbox.messages directly');
denied('producer', q{UPDATE outbox.messages SET payload = '{"x": 1}'},
	$no_priv, 'the producer cannot change messages');
denied('producer', 'DELETE FROM outbox.messages', $no_priv,
	'the producer cannot delete messages');

my $dead_id = 0;    # any id: the call must be refused before it is looked at
for my $call ("outbox_retry($dead_id)", "outbox_redrive('sink')", 'outbox_redrive()',
	"outbox_purge_dead('0')", 'outbox_stats_reset()')
{
	denied('producer', "SELECT $call", $no_priv, "the producer cannot call $call");
}

is($node->safe_psql('postgres', 'SHOW outbox.secrets'), "sink=$secret",
	'a superuser sees outbox.secrets (the secret to be hidden is set)');
denied('producer', 'SHOW outbox.secrets',
	qr/must be superuser|permission denied/, 'the producer cannot SHOW outbox.secrets');
denied('producer', q{SELECT current_setting('outbox.secrets')},
	qr/must be superuser|permission denied/,
	"nor read it with current_setting('outbox.secrets')");
my $all = allowed('producer',
	"SELECT string_agg(name || '=' || setting, ' ') FROM pg_settings;\nSHOW ALL;",
	'the producer can list the settings it may see');
unlike($all, qr/\Q$secret\E|MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/,
	'the secret is in neither pg_settings nor SHOW ALL');

my $evil_targets = "sink=$evil_url";
denied('producer', "ALTER SYSTEM SET outbox.targets = '$evil_targets'",
	qr/must be superuser|permission denied/,
	'the producer cannot ALTER SYSTEM SET outbox.targets');
denied('producer', "SET outbox.targets = '$evil_targets'",
	qr/cannot be changed now|permission denied/,
	'nor SET it for its session');
denied('producer', "SELECT set_config('outbox.targets', '$evil_targets', false)",
	qr/cannot be changed now|permission denied/,
	'nor set_config() it');
my $auto = slurp_file($node->data_dir . '/postgresql.auto.conf');
unlike($auto, qr/outbox/, 'postgresql.auto.conf still holds no outbox setting');

denied('producer', q{SELECT outbox_queue('nosuch', '{"p": 3}')},
	qr/ERROR:\s+42704:/, 'outbox_queue to a target that is not configured is an error (42704)');
denied('producer', qq{SELECT outbox_queue('$evil_url', '{"p": 4}')},
	qr/ERROR:\s+42704:/, 'so is outbox_queue with a URL as the target');
denied('producer', qq{SELECT outbox_send('$evil_url', '{"p": 5}')},
	qr/ERROR:\s+42704:/, 'and outbox_send with a URL as the target');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM outbox.messages WHERE target <> 'sink'"),
	'0', 'none of them queued a message');
is($node->safe_psql('postgres', 'SELECT target, url FROM outbox.targets'),
	'sink|' . receiver_url($sink, '/sink'), 'the configured targets are unchanged');
wait_seconds(1);
is(scalar(read_requests($evil)), 0, 'the unconfigured URL never gets a request');

# --- the operator, with the README's grants ------------------------------

set_control($sink,
	{ by_id => { map { ($_ => [ { status => 410 }, { status => 200 } ]) } qw(dead-1 dead-2) } });
my $dead1 = $node->safe_psql('postgres',
	q{SELECT outbox_queue('sink', '{"d": 1}', message_id => 'dead-1')});
$node->safe_psql('postgres',
	q{SELECT outbox_queue('sink', '{"d": 2}', message_id => 'dead-2')});
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'dead-%' AND state = 'dead'",
		'2'),
	'two messages are dead (410)');

is(allowed('ops', "SELECT state, last_status FROM outbox.messages WHERE id = $dead1",
		'the operator can read outbox.messages'),
	'dead|410', 'and sees the dead message and why');
is(allowed('ops', "SELECT target, circuit FROM outbox.targets",
		'the operator can read outbox.targets'),
	'sink|closed', 'and sees each target and its circuit');
is(allowed('ops', "SELECT outbox_retry($dead1)", 'the operator can call outbox_retry'),
	't', 'outbox_retry by the operator returns true for a dead message');
ok(poll_until($node, state_of('dead-1'), 'delivered'),
	'the message it retried is delivered');
is(allowed('ops', "SELECT outbox_redrive('sink')", 'the operator can call outbox_redrive'),
	'1', 'outbox_redrive by the operator returns the number of dead messages');
ok(poll_until($node, state_of('dead-2'), 'delivered'),
	'the message it redrove is delivered');

denied('ops', q{SELECT outbox_queue('sink', '{"o": 1}')}, $no_priv,
	'the operator cannot call outbox_queue');
denied('ops', q{SELECT outbox_send('sink', '{"o": 2}')}, $no_priv,
	'the operator cannot call outbox_send');
denied('ops', q{UPDATE outbox.messages SET state = 'pending'}, $no_priv,
	'the operator cannot change messages directly');
denied('ops', 'SHOW outbox.secrets', qr/must be superuser|permission denied/,
	'the operator cannot SHOW outbox.secrets');
denied('ops', "ALTER SYSTEM SET outbox.targets = '$evil_targets'",
	qr/must be superuser|permission denied/,
	'the operator cannot ALTER SYSTEM SET outbox.targets');

# --- the operator's view of the outbox ---------------------------------------

cmp_ok(allowed('ops', 'SELECT requests FROM outbox.stats',
		'the operator can read outbox.stats'),
	'>', 0, 'and sees the request counter');
is(allowed('ops', 'SELECT count(*) FROM outbox.workers WHERE pid IS NOT NULL',
		'the operator can read outbox.workers'),
	'2', 'and sees both workers');
is(allowed('ops', "SELECT pending, dead FROM outbox.status WHERE target = 'sink'",
		'the operator reads outbox.status'),
	'0|0', 'which shows nothing pending or dead');
is(allowed('ops', "SELECT count(*) > 0 FROM outbox.attempts WHERE message = $dead1",
		'the operator reads outbox.attempts'),
	't', "which holds the retried message's attempts");

set_control($sink, { by_id => { 'dead-3' => { status => 410 } } });
$node->safe_psql('postgres',
	q{SELECT outbox_queue('sink', '{"d": 3}', message_id => 'dead-3')});
ok(poll_until($node, state_of('dead-3'), 'dead'), 'a third message is dead');
is(allowed('ops', "SELECT outbox_purge_dead('0')",
		'the operator can purge dead messages'),
	'1', 'outbox_purge_dead by the operator removes the dead message');
allowed('ops', 'SELECT outbox_stats_reset()',
	'the operator can reset the counters');
is($node->safe_psql('postgres', 'SELECT requests FROM outbox.stats'), '0',
	'the counters are reset');
denied('ops', q{SELECT outbox_queue('sink', '{"o": 3}')}, $no_priv,
	'the operator still cannot queue');
denied('ops', 'SHOW outbox.secrets', qr/must be superuser|permission denied/,
	'nor read outbox.secrets');

$node->stop;
done_testing();
