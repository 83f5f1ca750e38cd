
# Failover loses nothing.  PostgreSQL 15 does not copy logical slots to a
# standby, so after a promotion the slot is gone.  A primary and a streaming
# standby share the outbox configuration; while it is a standby no outbox
# worker runs there and it sends nothing.  A producer streams messages into
# the primary while the receiver is slow, so a backlog is pending; the
# primary crashes (pg_ctl stop -m immediate) and the standby is promoted.
# On the promoted server the workers start, create a fresh slot, and every
# message that reached it from the old primary is delivered at least once,
# from the table; new messages take the WAL fast path there.  Duplicates and
# the time from promotion to the first delivery are reported.
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

$primary->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"warm": 1}', message_id => 'warmup')});
ok(scalar(wait_for_requests($orders, 1)),
	'the primary delivers its first message');

# --- a streaming standby with the same configuration -----------------------

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf',
	"outbox.targets = 'orders=" . receiver_url($orders, '/standby/orders') . "'");
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
is( $standby->safe_psql('postgres',
		'SELECT count(*) FROM pg_replication_slots'),
	'0',
	'the standby has no replication slot (PostgreSQL 15 does not copy logical slots)');

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
ok( poll_until(
		$standby,
		q{SELECT plugin FROM pg_replication_slots WHERE slot_name = 'outbox'},
		'outbox'),
	'the promoted server has a fresh outbox slot');
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
diag sprintf('failover: %d messages reached the promoted server, %d pending there '
	  . 'at the crash; %d sent more than once (%d extra requests); first '
	  . 'delivery from the promoted server %.2f s after the promotion began',
	scalar(@survived), $pending_on_standby, scalar(@dup_ids), $extra,
	$first_delivery);

# --- the WAL fast path on the promoted server ------------------------------

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
ok( poll_until(
		$standby,
		"SELECT confirmed_flush_lsn >= '$lsn_after' FROM pg_replication_slots "
		  . "WHERE slot_name = 'outbox'",
		't'),
	'the new slot is confirmed past that message');

$standby->stop;
done_testing();
