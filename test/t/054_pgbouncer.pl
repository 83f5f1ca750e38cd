
# outbox_queue works through PgBouncer in transaction pooling mode.  The
# commit wake-up belongs to the transaction, not to the connection, so when
# eight clients share two server connections every committed message is
# delivered within milliseconds (the safety nets, the decoder's 1 s nap and
# the dispatcher's 5 s table scan, would take up to seconds), a rolled-back
# transaction sends nothing, and a server connection that ran a rolled-back
# transaction of one client runs the committed one of the next client as if
# it were fresh.  PgBouncer runs on 127.0.0.1, started and stopped by the
# test.

use strict;
use warnings;

use IPC::Run;
use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $pgbouncer_bin = '/usr/sbin/pgbouncer';
plan skip_all => "$pgbouncer_bin not found (test/install-deps.sh installs pgbouncer)"
  unless -x $pgbouncer_bin;

my $clients = 8;          # client connections to PgBouncer
my $server_conns = 2;     # server connections they share
my $per_client = 20;      # transactions per client, one message each
my $rollback_every = 5;   # every 5th transaction of a client rolls back

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('pgbouncer',
	targets => 'orders=' . receiver_url($orders, '/hooks/orders'));

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"warm": 1}', message_id => 'warmup')});
ok(scalar(wait_for_requests($orders, 1)), 'the first message is delivered');

# --- PgBouncer -------------------------------------------------------------

my $user = getpwuid($<);
my $port = free_port();
my $dir = PostgreSQL::Test::Utils::tempdir('pgbouncer');
my $bouncer_log = "$PostgreSQL::Test::Utils::log_path/054_pgbouncer_pgbouncer.log";
my $server = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';

open my $fh, '>', "$dir/userlist.txt" or die "cannot write userlist: $!";
print $fh qq{"$user" ""\n};
close $fh;
open $fh, '>', "$dir/pgbouncer.ini" or die "cannot write pgbouncer.ini: $!";
print $fh <<"EOC";
[databases]
; the clients' pool: $server_conns server connections
postgres = $server pool_size=$server_conns
; a pool of one server connection, shared by whoever comes next
single = $server pool_size=1

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = $user
pool_mode = transaction
default_pool_size = $server_conns
max_client_conn = 100
server_check_delay = 0
logfile = $bouncer_log
EOC
close $fh;

# setpriv --pdeathsig: PgBouncer dies with the test even if the test is
# killed before its END block runs.
my @bouncer_cmd = ($pgbouncer_bin, "$dir/pgbouncer.ini");
unshift @bouncer_cmd, qw(setpriv --pdeathsig KILL --)
  if -x '/usr/bin/setpriv';
my ($bouncer_out, $bouncer_err) = ('', '');
my $bouncer = IPC::Run::start(\@bouncer_cmd,
	'<', \undef, '>', \$bouncer_out, '2>', \$bouncer_err);

END
{
	local $?;
	if ($bouncer)
	{
		eval {
			$bouncer->signal('INT') if $bouncer->pumpable;
			$bouncer->finish;
		};
		eval { $bouncer->kill_kill };
	}
}

my $via_bouncer = "host=127.0.0.1 port=$port dbname=postgres";

# Runs $sql with psql through PgBouncer (database $db); returns
# (exit status == 0, stdout, stderr).
sub bouncer_psql
{
	my ($sql, $db) = @_;
	my $conn = "host=127.0.0.1 port=$port dbname=" . ($db // 'postgres');
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[ 'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', $conn ],
		'<', \$sql, '>', \$out, '2>', \$err);
	return ($ok, $out, $err);
}

my $started = 0;
my $deadline = time() + 30;
while (time() < $deadline)
{
	my ($ok, $out) = bouncer_psql('SELECT 1');
	if ($ok && $out eq "1\n")
	{
		$started = 1;
		last;
	}
	$bouncer->pump_nb;
	last unless $bouncer->pumpable;
	usleep(100_000);
}
ok($started, 'PgBouncer accepts connections on 127.0.0.1')
  or do
{
	diag "pgbouncer: $bouncer_err\n" . slurp_file($bouncer_log);
	done_testing();
	exit 1;
};

my (undef, $config) = bouncer_psql('SHOW CONFIG', 'pgbouncer');
like($config, qr/^pool_mode\|transaction\|/m,
	'PgBouncer runs in transaction pooling mode');

# --- eight clients, two server connections ---------------------------------

# Each client runs $per_client transactions, one message each, and prints
# for each "c|<id>|<message_id>|<backend pid>|<epoch just before COMMIT>"
# ("r|..." for the rolled-back ones); the latency measured from that epoch
# includes the COMMIT round trip.  Clients pause 50 ms between
# transactions, so each commit must wake the workers itself.
my @handles;
for my $c (1 .. $clients)
{
	my $script = '';
	for my $i (1 .. $per_client)
	{
		my $rollback = $i % $rollback_every == 0;
		my $id = ($rollback ? 'rb' : 'pb') . "-$c-$i";
		$script .= "BEGIN;\n"
		  . "SELECT '" . ($rollback ? 'r' : 'c') . "', "
		  . "outbox_queue('orders', jsonb_build_object('client', $c, 'n', $i), "
		  . "message_id => '$id'), "
		  . "'$id', pg_backend_pid(), extract(epoch FROM clock_timestamp());\n"
		  . ($rollback ? "ROLLBACK;\n" : "COMMIT;\n")
		  . "\\! sleep 0.05\n";
	}
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'psql', '-X', '-q', '-At', '-F', '|', '-v', 'ON_ERROR_STOP=1',
			'-d', $via_bouncer
		],
		'<', \$script, '>', \$out, '2>', \$err);
	push @handles, { h => $h, out => \$out, err => \$err };
}

my (%commit_t, %pid_used, %clients_of_pid, @rolled_back, $client_failures);
$client_failures = 0;
for my $c (1 .. $clients)
{
	my $cl = $handles[ $c - 1 ];
	my $ok = eval { $cl->{h}->finish; 1 } && $cl->{h}->result == 0;
	if (!$ok)
	{
		$client_failures++;
		diag "client failed: ${ $cl->{err} }";
	}
	for my $line (split /\n/, ${ $cl->{out} })
	{
		my ($kind, undef, $id, $pid, $t) = split /\|/, $line;
		$pid_used{$pid}++;
		$clients_of_pid{$pid}{$c} = 1;
		if ($kind eq 'c') { $commit_t{$id} = $t }
		else { push @rolled_back, $id }
	}
}
is($client_failures, 0, "all $clients clients ran their transactions through PgBouncer");
my $committed = $clients * ($per_client - int($per_client / $rollback_every));
is(scalar(keys %commit_t), $committed, "$committed transactions committed");
cmp_ok(scalar(keys %pid_used), '<=', $server_conns,
	"the $clients clients shared at most $server_conns server connections");
my ($most_clients) = sort { $b <=> $a }
  map { scalar keys %{ $clients_of_pid{$_} } } keys %clients_of_pid;
cmp_ok($most_clients // 0, '>', 1,
	'transactions of different clients ran on the same server connection');
note 'transactions per server connection (backend pid): '
  . join(', ', map { "$_: $pid_used{$_}" } sort keys %pid_used);

my @reqs = wait_for_requests($orders, $committed, 60,
	with_id_like(qr/^pb-/));
my %first;
for my $r (@reqs)
{
	my $id = $r->{headers}{'webhook-id'};
	$first{$id} = $r->{t} if !defined $first{$id} || $r->{t} < $first{$id};
}
is(scalar(grep { !defined $first{$_} } keys %commit_t), 0,
	'every message committed through PgBouncer is delivered');
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'pb-%' AND state = 'delivered'",
		$committed),
	'their rows are delivered');

my @lat = sort { $a <=> $b }
  map { $first{$_} - $commit_t{$_} } grep { defined $first{$_} } keys %commit_t;
my $p50 = @lat ? $lat[ int($#lat / 2) ] : 99;
my $p90 = @lat ? $lat[ int($#lat * 0.9) ] : 99;
my $max = @lat ? $lat[-1] : 99;
diag sprintf('through PgBouncer (%d clients, %d server connections): '
	  . 'commit-to-request latency p50 %.1f ms, p90 %.1f ms, max %.1f ms over %d messages',
	$clients, scalar(keys %pid_used), $p50 * 1000, $p90 * 1000, $max * 1000,
	scalar @lat);
cmp_ok($p50, '<', 0.2,
	'the median commit-to-request latency through PgBouncer is under 200 ms (no polling fallback)');

# --- rolled back through the pooler ----------------------------------------

# A message committed after all the clients finished: once it is delivered,
# anything queued earlier would have been too.
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"last": 1}', message_id => 'marker')});
ok(scalar(wait_for_requests($orders, 1, undef,
	with_id('marker'))),
	'a message committed after the clients finished is delivered');
is(scalar(@rolled_back), $clients * int($per_client / $rollback_every),
	'the rolled-back transactions ran');
is(scalar(grep { ($_->{headers}{'webhook-id'} // '') =~ /^rb-/ } read_requests($orders)),
	0, 'no message of a transaction rolled back through PgBouncer is sent');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'rb-%'}),
	'0', 'nor kept in the table');

# --- rollback, then commit, on one server connection -----------------------

# Two clients of the one-connection pool "single": the first queues and
# rolls back, the second queues and commits on the same server connection.
my ($ok1, $out1, $err1) = bouncer_psql(q{
BEGIN;
SELECT outbox_queue('orders', '{"single": 1}', message_id => 'single-rolled-back') IS NOT NULL;
SELECT pg_backend_pid();
ROLLBACK;
}, 'single');
my ($ok2, $out2, $err2) = bouncer_psql(q{
BEGIN;
SELECT outbox_queue('orders', '{"single": 2}', message_id => 'single-committed') IS NOT NULL;
SELECT pg_backend_pid(), extract(epoch FROM clock_timestamp());
COMMIT;
}, 'single');
ok($ok1 && $ok2, 'both clients of the one-connection pool ran their transactions')
  or diag "$err1$err2";
my (undef, $pid1) = split /\n/, $out1;
my (undef, $pid_t2) = split /\n/, $out2;
my ($pid2, $t2) = split /\|/, ($pid_t2 // '');
ok(defined $pid1 && defined $pid2 && $pid1 eq $pid2,
	'they ran on the same server connection');
my ($req) = wait_for_requests($orders, 1, undef,
	with_id('single-committed'));
ok($req, 'the committed message after a rolled-back one on that connection is delivered');
note sprintf('rollback, then commit on one server connection: %.1f ms from commit to request',
	($req->{t} - $t2) * 1000) if $req && $t2;
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"last": 2}', message_id => 'marker-2')});
wait_for_requests($orders, 1, undef,
	with_id('marker-2'));
is(scalar(requests_with_id($orders, 'single-rolled-back')), 0,
	'the rolled-back message on that connection is not sent');

$bouncer->signal('INT');    # PgBouncer's "shut down now"
eval { $bouncer->finish };
$node->stop;
done_testing();
