
# Failover loses nothing.  A primary and a streaming standby share the
# outbox configuration; while it is a standby no outbox worker runs there
# and it sends nothing.  A producer streams messages into the primary while
# the receiver is slow, so a backlog is pending; the primary crashes
# (pg_ctl stop -m immediate) and the standby is promoted.  Every message
# that reached the promoted server from the old primary is delivered at
# least once, from the table; new messages take the WAL fast path there.
# Lost messages (none), duplicates and the time from promotion to the first
# delivery are reported.
#
# PostgreSQL 15 does not copy logical slots to a standby: the promoted
# server's decoder creates a fresh slot.  On 17 and later the outbox slot is
# a failover slot; the standby is set up for slot synchronisation
# (sync_replication_slots, hot_standby_feedback, primary_slot_name, a
# primary_conninfo with dbname; the primary names the standby's physical
# slot in synchronized_standby_slots), keeps a synced copy of it, and the
# promoted server's decoder resumes decoding from that copy.
#
# Both servers post to the same receiver, at different paths (/primary/...,
# /standby/...), so the receiver log tells which server sent a request.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $orders = start_receiver(name => 'orders', control => 1);
my $primary = outbox_node('primary',
	targets => 'orders=' . receiver_url($orders, '/primary/orders'));
my $synced_slots = $primary->pg_version >= 17;
if ($synced_slots)
{
	$primary->safe_psql('postgres',
		q{SELECT pg_create_physical_replication_slot('standby')});
	$primary->append_conf('postgresql.conf',
		"synchronized_standby_slots = 'standby'");
	$primary->reload;
}

$primary->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"warm": 1}', message_id => 'warmup')});
ok(scalar(wait_for_requests($orders, 1)),
	'the primary delivers its first message');
if ($synced_slots)
{
	is( $primary->safe_psql('postgres',
			q{SELECT failover FROM pg_replication_slots WHERE slot_name = 'outbox'}),
		't',
		'the primary\'s outbox slot is a failover slot');
}

# --- a streaming standby with the same configuration -----------------------

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf',
	"outbox.targets = 'orders=" . receiver_url($orders, '/standby/orders') . "'");
if ($synced_slots)
{
	my $conninfo = $primary->connstr . ' dbname=postgres';
	$standby->append_conf('postgresql.conf', <<"EOC");
primary_slot_name = 'standby'
primary_conninfo = '$conninfo'
hot_standby_feedback = on
sync_replication_slots = on
EOC
}
$standby->start;

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery');
is( $standby->safe_psql('postgres',
		q{SELECT current_setting('shared_preload_libraries'), current_setting('outbox.database')}),
	'outbox|postgres',
	'the standby loads outbox with the configuration of the primary');

# Requests that the standby sent (it posts to /standby/...).
sub standby_requests
{
	return grep { $_->{path} =~ m{^/standby/} } read_requests($orders);
}

# The outbox workers of the standby, seen three ways.
sub standby_workers
{
	my $in_stat = $standby->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'outbox%'});
	my $pm_pid = (split /\n/,
		slurp_file($standby->data_dir . '/postmaster.pid'))[0];
	my @ps = grep { /outbox/ } split /\n/,
	  `ps -o pid=,args= --ppid $pm_pid`;
	my @log = grep { /outbox (decoder|dispatcher)/ && !/statement:/ }
	  split /\n/, slurp_file($standby->logfile);
	return ($in_stat, scalar(@ps), scalar(@log));
}

# --- a stream of messages with a slow receiver -----------------------------

set_control($orders, { delay => 3 });
my $p = start_producer($primary, batches => 150, per_batch => 10,
	pause => 0.02, seconds => 60);

ok( poll_until(
		$primary,
		"SELECT count(*) >= 500 FROM outbox.messages WHERE message_id LIKE 'p-%'",
		't', 60),
	'the producer has committed 500 messages on the primary');

# What the primary has committed so far, and a WAL position after all of it.
my ($committed, $lsn) = split /\n/, $primary->safe_psql('postgres', q{
SELECT string_agg(message_id, ' ') FROM outbox.messages WHERE message_id LIKE 'p-%';
SELECT pg_current_wal_lsn();
});
my @committed_before = split / /, $committed;
ok( poll_until(
		$standby,
		"SELECT pg_last_wal_replay_lsn() >= '$lsn'", 't', 60),
	'the standby has replayed what the primary had committed');

my $pending_on_standby = $standby->safe_psql('postgres',
	q{SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'p-%' AND state = 'pending'});
cmp_ok($pending_on_standby, '>', 100,
	'a backlog of pending messages has reached the standby');

my ($stat_workers, $ps_workers, $log_lines) = standby_workers();
is($stat_workers, 0, 'no outbox worker is in the standby\'s pg_stat_activity');
is($ps_workers, 0, 'no outbox worker process runs under the standby\'s postmaster');
is($log_lines, 0, 'the standby\'s log has no line from an outbox worker');
is(scalar(standby_requests()), 0,
	'the receiver got no request from the standby while it was a standby');
if ($synced_slots)
{
	# Synchronised, and persistent: a slot the standby could not yet use is
	# kept temporary (and dropped at promotion).
	ok( poll_until(
			$standby,
			q{SELECT synced AND NOT temporary AND invalidation_reason IS NULL
			  FROM pg_replication_slots WHERE slot_name = 'outbox'},
			't', 60),
		'the standby keeps a synced copy of the outbox slot');
}
else
{
	is( $standby->safe_psql('postgres',
			'SELECT count(*) FROM pg_replication_slots'),
		'0',
		'the standby has no replication slot (PostgreSQL 15 does not copy logical slots)');
}

# --- the primary crashes, the standby is promoted --------------------------

$primary->stop('immediate');
note 'primary stopped with -m immediate, while the producer was running';
$p->{handle}->kill_kill;
set_control($orders, undef);    # the receiver answers at once again

my $t_promote = time();
$standby->promote;
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	'f', 'the standby is promoted');

ok(worker_pid($standby, 'outbox decoder'),
	'the decoder runs on the promoted server');
ok(worker_pid($standby, 'outbox dispatcher'),
	'the dispatcher runs on the promoted server');
if ($synced_slots)
{
	ok( poll_until(
			$standby,
			q{SELECT synced AND active FROM pg_replication_slots WHERE slot_name = 'outbox'},
			't'),
		'the decoder of the promoted server decodes from the synced slot');
	unlike(slurp_file($standby->logfile),
		qr/outbox decoder (created|dropped) replication slot/,
		'it neither dropped nor created a slot');
	ok( wait_for_log_line(
			$standby,
			qr/outbox decoder resumes from replication slot "outbox", synchronized from the former primary/),
		'the log says the decoder resumes from the synced slot');

	# The promoted server inherited synchronized_standby_slots = 'standby',
	# the slot of the standby it was: the decoder waits for it, as
	# PostgreSQL's own logical decoding does, so the backlog comes from the
	# table until that setting is amended.
	ok( wait_for_log_line(
			$standby,
			qr/replication slot "standby" specified in parameter "synchronized_standby_slots" does not exist/),
		'the decoder waits for the standby named in synchronized_standby_slots, and PostgreSQL says why');
}
else
{
	ok( poll_until(
			$standby,
			q{SELECT plugin FROM pg_replication_slots WHERE slot_name = 'outbox'},
			'outbox'),
		'the promoted server has a fresh outbox slot');
}
($stat_workers, $ps_workers, $log_lines) = standby_workers();
ok($stat_workers >= 2 && $ps_workers >= 2 && $log_lines > 0,
	'the same three checks see both workers once the server is promoted')
  or diag("pg_stat_activity: $stat_workers, ps: $ps_workers, log lines: $log_lines");

# Every message that reached the promoted server: committed on the old
# primary and replicated before the crash.
my @survived = split / /, $standby->safe_psql('postgres',
	q{SELECT string_agg(message_id, ' ' ORDER BY id) FROM outbox.messages WHERE message_id LIKE 'p-%'});
my %survived = map { $_ => 1 } @survived;
is(scalar(grep { !$survived{$_} } @committed_before), 0,
	'every message the standby had replayed before the crash is on the promoted server');
note scalar(@survived) . ' producer messages reached the promoted server, '
  . scalar(@committed_before) . ' of them before the last replay check';

ok( poll_until(
		$standby,
		q{SELECT count(*) FROM outbox.messages WHERE state <> 'delivered'},
		'0', 60),
	'every message on the promoted server ends delivered');

my %seen;
$seen{ $_->{headers}{'webhook-id'} // '' }++ for read_requests($orders);
my @lost = grep { !$seen{$_} } @survived;
is(scalar @lost, 0,
	'the receiver got every message that reached the promoted server, at least once')
  or diag('never received: ' . join(' ', @lost[ 0 .. ($#lost < 9 ? $#lost : 9) ]));

my %ok200;
$ok200{ $_->{'webhook-id'} } ||= ($_->{sent} && $_->{status} == 200)
  for read_answers($orders);
is(scalar(grep { !$ok200{$_} } @survived), 0,
	'the receiver answered 200 to every one of them');

my @from_new = sort { $a->{t} <=> $b->{t} } standby_requests();
ok(scalar(@from_new), 'the promoted server delivers the backlog of the old primary');
my $first_delivery = @from_new ? $from_new[0]{t} - $t_promote : -1;
my @dup_ids = grep { $seen{$_} > 1 } @survived;
my $extra = 0;
$extra += $seen{$_} - 1 for @dup_ids;
my ($decoded, $scanned) = split /\|/, $standby->safe_psql('postgres',
	'SELECT decoded_from_wal, found_by_scan FROM outbox.stats');
diag sprintf('failover (PostgreSQL %s, %s): %d messages reached the promoted '
	  . 'server, %d pending there at the crash; %d lost; %d sent more than '
	  . 'once (%d extra requests); first delivery from the promoted server '
	  . '%.2f s after the promotion began; there %d were decoded from the '
	  . 'slot, %d found by the table scan',
	$primary->pg_version, $synced_slots ? 'synced slot' : 'fresh slot',
	scalar(@survived), $pending_on_standby, scalar(@lost),
	scalar(@dup_ids), $extra, $first_delivery, $decoded, $scanned);

# --- the WAL fast path on the promoted server ------------------------------

if ($synced_slots)
{
	is($decoded, '0',
		'while it waited the decoder handed the dispatcher nothing');
	$standby->append_conf('postgresql.conf', "synchronized_standby_slots = ''");
	$standby->reload;
	my $lsn_reload = $standby->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	ok( slot_confirmed_past($standby, $lsn_reload),
		'once the setting is amended the decoder goes on from the synced slot');
}

my $t0 = sql_epoch($standby, 'clock_timestamp()');
my $id = $standby->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"after": 1}', message_id => 'after-promotion')});
my ($req) = wait_for_requests($orders, 1, undef,
	with_id('after-promotion'));
ok($req && $req->{path} eq '/standby/orders',
	'a message queued on the promoted server is delivered');
ok($req && $req->{t} - $t0 < 1,
	'it arrives within a second (the WAL fast path, not the safety scan)');
note sprintf('after promotion: %.1f ms from commit to request',
	($req->{t} - $t0) * 1000) if $req;
ok( poll_until(
		$standby,
		"SELECT state, via_wal FROM outbox.messages WHERE id = $id",
		'delivered|t'),
	'its row is delivered, via the WAL');
my $lsn_after = $standby->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok( slot_confirmed_past($standby, $lsn_after),
	'the slot is confirmed past that message');

$standby->stop;
done_testing();
