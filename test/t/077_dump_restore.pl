
# A logical backup keeps the outbox.  pg_dump of a database dumps every
# message and attempt (outbox.messages and outbox.attempts are the
# extension's configuration tables, and so is the identity sequence of
# messages.id); restored into another server that loads the extension, the
# dump runs without error, every row is there, that server delivers exactly
# the messages that were pending (delivered and dead ones are not sent
# again, and derived webhook-ids stay the same since the ids do), and new
# messages get ids after the restored ones.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# --- node A: delivered, dead and pending messages, with attempts ----------

my $sink_a = start_receiver(name => 'sink_a', control => 1);
my $nowhere = 'http://127.0.0.1:' . free_port() . '/down';
my $source = outbox_node('source',
	targets => 'sink=' . receiver_url($sink_a, '/sink') . ", down=$nowhere",
	conf => 'outbox.retry_max_delay = 200ms');

set_control($sink_a,
	{ by_id => { 'dr-dead-1' => { status => 410 }, 'dr-dead-2' => { status => 410 } } });
$source->safe_psql('postgres', q{
SELECT outbox_queue('sink', '{"n": 1}', message_id => 'dr-ok-1');
SELECT outbox_send('sink', '{"n": 2}', message_id => 'dr-ok-2', key => 'k');
SELECT outbox_queue('sink', '{"n": 3}', message_id => 'dr-dead-1');
SELECT outbox_send('sink', '{"n": 4}', message_id => 'dr-dead-2');
SELECT outbox_queue('down', '{"n": 5}', message_id => 'dr-pending-1', key => 'k');
SELECT outbox_queue('down', '{"n": 6}', message_id => 'dr-pending-2', key => 'k');
SELECT outbox_send('down', '{"n": 7}', message_id => 'dr-pending-3',
                   headers => '{"x-tenant": "acme"}');
});
my $derived_id = $source->safe_psql('postgres',
	q{SELECT outbox_queue('down', '{"n": 8}', message_type => 'NoMessageId')});

ok( poll_until(
		$source,
		"SELECT string_agg(message_id || ':' || state, ' ' ORDER BY id) "
		  . "FROM outbox.messages WHERE target = 'sink'",
		'dr-ok-1:delivered dr-ok-2:delivered dr-dead-1:dead dr-dead-2:dead'),
	'on A, two messages are delivered and two are dead');
ok( poll_until(
		$source,
		"SELECT count(DISTINCT a.message) >= 2 FROM outbox.attempts a "
		  . "JOIN outbox.messages m ON m.id = a.message WHERE m.target = 'down'",
		't'),
	'on A, the pending messages of the unreachable target have failed attempts');

# Stop serving A (a migration's cut-over), then dump what it holds.
$source->stop;
$source->append_conf('postgresql.conf', "shared_preload_libraries = ''");
$source->start;

my $messages_sql = 'SELECT * FROM outbox.messages ORDER BY id';
my $fixed_sql =
  'SELECT id, target, message_type, key, message_id, payload, headers, created_at, via_wal '
  . 'FROM outbox.messages ORDER BY id';
my $finished_sql = "SELECT * FROM outbox.messages WHERE message_id LIKE 'dr-ok-%' "
  . "OR message_id LIKE 'dr-dead-%' ORDER BY id";
my $attempts_sql = 'SELECT * FROM outbox.attempts ORDER BY message, attempt';
my %on_a = map { ($_ => $source->safe_psql('postgres', $_)) }
  ($messages_sql, $fixed_sql, $finished_sql, $attempts_sql);
is($source->safe_psql('postgres', "SELECT string_agg(DISTINCT state, ' ') FROM ($finished_sql) m"),
	'dead delivered', 'A holds delivered and dead messages');
my $pending_on_a = $source->safe_psql('postgres',
	"SELECT string_agg(coalesce(message_id, 'msg_' || id), ' ' ORDER BY id) "
	  . "FROM outbox.messages WHERE state = 'pending'");
is($pending_on_a, "dr-pending-1 dr-pending-2 dr-pending-3 msg_$derived_id",
	'A holds four pending messages');
my $max_id = $source->safe_psql('postgres', 'SELECT max(id) FROM outbox.messages');

my $plain = $PostgreSQL::Test::Utils::tmp_check . '/outbox_dump.sql';
my $custom = $PostgreSQL::Test::Utils::tmp_check . '/outbox_dump.custom';
$source->command_ok([ 'pg_dump', '-d', $source->connstr('postgres'), '-f', $plain ],
	'pg_dump of the database succeeds');
$source->command_ok([ 'pg_dump', '-Fc', '-d', $source->connstr('postgres'), '-f', $custom ],
	'pg_dump in the custom format succeeds');
my $dump = slurp_file($plain);
like($dump, qr/^COPY outbox\.messages /m, 'the dump holds the rows of outbox.messages');
like($dump, qr/^COPY outbox\.attempts /m, 'and of outbox.attempts');
like($dump, qr/setval\('outbox\.messages_id_seq', $max_id, true\)/,
	'and the position of the id sequence');
$source->stop;

# --- node B: the extension preloaded, a live receiver ---------------------

# B already has the (empty) extension and its decoder streams from its
# slot, so the restore's rows pass through the WAL fast path as well as
# through the table.
my $sink_b = start_receiver(name => 'sink_b');
my $target = outbox_node('target',
	targets => 'sink=' . receiver_url($sink_b, '/sink')
	  . ', down=' . receiver_url($sink_b, '/down'));
ok( poll_until(
		$target,
		'SELECT count(*) FROM pg_replication_slots WHERE slot_name = outbox.slot_name() '
		  . 'AND confirmed_flush_lsn IS NOT NULL',
		'1'),
	"B's decoder has its slot");
my $restore_start = $target->safe_psql('postgres', 'SELECT now()');

my ($out, $err) = ('', '');
my $ret = $target->psql('postgres', undef,
	extra_params => [ '-v', 'ON_ERROR_STOP=1', '-f', $plain ],
	stdout => \$out, stderr => \$err);
is($ret, 0, 'the plain dump restores with psql -v ON_ERROR_STOP=1');
is($err, '', 'without an error or warning, CREATE EXTENSION included');

is($target->safe_psql('postgres', $fixed_sql), $on_a{$fixed_sql},
	'every message is restored with its id, target, payload, headers and creation time');
is($target->safe_psql('postgres',
		"SELECT * FROM outbox.attempts WHERE started_at < '$restore_start' "
		  . 'ORDER BY message, attempt'),
	$on_a{$attempts_sql},
	'every attempt is restored');

# B delivers what was pending, and only that.
ok( poll_until(
		$target,
		"SELECT count(*) FROM outbox.messages WHERE state = 'pending'", '0'),
	'B delivers every pending message');
my $new_id = $target->safe_psql('postgres',
	q{SELECT outbox_queue('sink', '{"n": 9}', message_id => 'dr-new')});
cmp_ok($new_id, '>', $max_id, 'a message queued on B gets an id after the restored ones');
ok(poll_until($target, "SELECT state FROM outbox.messages WHERE id = $new_id", 'delivered'),
	'and is delivered');

my %seen;
$seen{ $_->{headers}{'webhook-id'} }++ for read_requests($sink_b);
is( join(' ', sort keys %seen),
	join(' ', sort(split(/ /, $pending_on_a), 'dr-new')),
	'the receiver got exactly the messages that were pending, and the new one');
is(scalar(requests_with_id($sink_b, "msg_$derived_id")), 1,
	'a message without message_id keeps its derived webhook-id');
is( join(' ',
		map { body_json($_)->{n} }
		  grep { ($_->{headers}{'outbox-key'} // '') eq 'k' } read_requests($sink_b)),
	'5 6', 'the pending messages of a key are delivered in their order');
wait_seconds(1);
is($target->safe_psql('postgres', $finished_sql), $on_a{$finished_sql},
	'delivered and dead messages are left as they were');
is(scalar(read_requests($sink_b)), scalar(keys %seen),
	'and nothing is sent twice');

# Into a database without the extension (here one the workers do not
# serve, so nothing is delivered from it), the dump's CREATE EXTENSION
# creates it, then the rows go in: with psql, and with pg_restore for a
# custom-format dump.
$target->safe_psql('postgres', 'CREATE DATABASE plain');
($out, $err) = ('', '');
$ret = $target->psql('plain', undef,
	extra_params => [ '-v', 'ON_ERROR_STOP=1', '-f', $plain ],
	stdout => \$out, stderr => \$err);
ok($ret == 0 && $err eq '',
	'into a database without the extension, the plain dump restores without an error')
  or diag "exit $ret: $err";
is($target->safe_psql('plain', $messages_sql), $on_a{$messages_sql},
	'with every message as it was on A');

$target->safe_psql('postgres', 'CREATE DATABASE copy');
$target->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $target->connstr('copy'), $custom ],
	'the custom-format dump restores with pg_restore --exit-on-error');
is($target->safe_psql('copy', $messages_sql), $on_a{$messages_sql},
	'with every message as it was on A');
is($target->safe_psql('copy', $attempts_sql), $on_a{$attempts_sql},
	'and every attempt');
cmp_ok(
	$target->safe_psql('copy',
		q{SELECT outbox_send('sink', '{"n": 10}', message_id => 'dr-copy')}),
	'>', $max_id, 'where new ids continue after the restored ones as well');

$target->stop;
done_testing();
