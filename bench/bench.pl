
# The outbox benchmark proper: perl bench.pl full|quick|soak [MINUTES]
#
# Normally started by bench/run.sh, as an unprivileged user (initdb refuses
# root), in a scratch directory (TESTDIR: PostgreSQL::Test::Utils puts
# tmp_check/ there, the cluster and the logs), with PostgreSQL's TAP modules
# and test/lib on @INC.  Everything it starts listens on 127.0.0.1 only and
# is stopped when it exits.  The phases, each a subroutine whose results go
# to %r:
#
#   cluster     a throwaway cluster (conf/outbox.conf, fsync on), table orders
#   receiver    nginx as the webhook receiver (POST /hook -> 204, keep-alive,
#               an access log of webhook-id, time, status, connection,
#               requests on it, outbox-key); keep-alive checked with curl,
#               one outbox delivery end to end
#   capacity    the receiver's capacity, with wrk
#   producers   pgbench: the business transaction alone (baseline); with a
#               plain row in a plain table (the plain-row limit); with
#               outbox_queue in a second database the workers do not serve
#               (a diagnostic: the producer's own cost, nothing delivered);
#               with outbox_queue (unpaced: also the latency at the highest
#               rate the producers reach)
#   drain       nginx stopped, a backlog queued, nginx started again, timed
#               until nothing is pending.  Stopping the receiver exercises
#               the circuit breaker as a real outage does; retry_max_delay
#               = 1s bounds the wait for the probe that closes it
#   ordered     the same with backlogs of one size with no key, 16 keys,
#               1,000 keys and a key per message; per key, the receiver
#               must get them in id order
#   paced       latency at a paced rate (pgbench -R), RSS sampled
#   keyed       latency at a paced rate over 1,000 keys
#   big         4 more targets, slow or down, each with large payloads
#               queued: the dispatcher's private memory sampled meanwhile
#   analysis    the access log loaded into the database and analysis.sql:
#               lost and duplicated messages, latency, per-key order
#
# soak: cluster, receiver, then soak in place of the rest: producers paced
# at 1000/s for MINUTES, the workers' memory sampled.
#
# Only what the report marks PASS/FAIL fails the run: lost, duplicated,
# failed, stray or out-of-order messages, error lines in the server's or
# nginx's log, broken machinery (a worker restart, a failed command); the
# timings and the memory verdicts (PASS/MISS) never do.

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Copy qw(copy);
use IO::Socket::INET;
use IPC::Run ();
use List::Util qw(max min);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time usleep);

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More ();

my ($mode, $soak_minutes) = @ARGV;
$mode //= '';
die "usage: bench.pl full|quick|soak [MINUTES]\n"
  unless $mode =~ /^(full|quick|soak)$/;
$soak_minutes //= 10;
die "bench.pl soak: MINUTES must be a whole number >= 2\n"
  if $mode eq 'soak' && !($soak_minutes =~ /^\d+$/ && $soak_minutes >= 2);

# Sizes and durations, full and quick.  quick is for the test suite: it
# checks the machinery (no message lost, per-key order), not the timing
# targets.
my %size_table = (
	wrk_secs => [ 5, 1 ],          # the receiver's capacity
	run_secs => [ 30, 3 ],         # each unpaced producer run
	paced_rate => [ 1000, 200 ],   # latency, unkeyed
	paced_secs => [ 30, 3 ],
	keyed_rate => [ 1000, 200 ],   # latency over 1,000 keys
	keyed_secs => [ 30, 3 ],
	backlog => [ 60000, 5000 ],    # the drain
	backlog_txns => [ 4, 1 ],
	ordered => [ 20000, 2000 ],    # each ordered drain
	ordered_secs => [ 30, 20 ],    # waited for at most (then reported as such)
	big_per_target => [ 500, 20 ], # messages of 1 MB per slow or dead target
	big_secs => [ 30, 3 ],         # sampled for this long after queueing
	drain_timeout => [ 300, 90 ],
	settle_timeout => [ 120, 30 ],);
my %s =
	$mode eq 'soak'
  ? (paced_rate => 1000, paced_secs => $soak_minutes * 60, drain_timeout => 300)
  : map { $_ => $size_table{$_}[ $mode eq 'full' ? 0 : 1 ] } keys %size_table;
my ($clients, $threads) = (4, 2);
my $pad = 'x' x 104;    # makes the payload ~200 bytes of JSON
my $keys_paced = 1000;    # keys of the keyed latency phase
my $big_bytes = 1_000_000;    # "1 MB": under outbox.max_payload_size (1 MiB)
my @big_targets = qw(slow1 slow2 hang down);

my $dir = $ENV{TESTDIR} or die "bench.pl: TESTDIR is not set\n";
my $root = dirname(__FILE__) . '/..';    # the tree bench/run.sh copied
my $out = Test::More->builder->output;   # the real stdout (PostgreSQL::Test::Utils
my $err = Test::More->builder->failure_output;  # sends STDOUT to its log)
my $started = time();

my %r;           # the results of every phase
my $node;        # the cluster
my %children;    # pid => name of every process started here, still running
my $ngx = "$dir/nginx";
my ($hport, $hang_socket);

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

sub say_line { print $out @_, "\n"; return }

sub logline
{
	say_line(POSIX::strftime('%H:%M:%S', localtime), '  ', @_);
	return;
}

sub query { return $node->safe_psql($_[1] // 'postgres', $_[0]) }

sub checkpoint { query('CHECKPOINT'); return }

# The next transaction id: the difference is how many transactions wrote
# meanwhile (the workers', autovacuum's), counted without waiting for the
# workers to report their statistics
sub next_xid
{
	return query('SELECT pg_snapshot_xmax(pg_current_snapshot())');
}

sub max_id { return query('SELECT coalesce(max(id), 0) FROM outbox.messages') }

sub pending
{
	return query("SELECT count(*) FROM outbox.messages "
		  . "WHERE state = 'pending' AND target = 'orders'");
}

# Waits until no message of orders is pending; dies after $wait seconds
sub wait_drained
{
	my ($wait) = @_;
	my $deadline = time() + $wait;
	while ((my $n = pending()) != 0)
	{
		if (time() > $deadline)
		{
			print $err query("SELECT state, attempts, last_status, last_error, count(*)
				FROM outbox.messages WHERE state <> 'delivered' GROUP BY 1, 2, 3, 4")
			  . "\n";
			die "$n messages still pending after $wait s\n";
		}
		usleep(100_000);
	}
	return;
}

# Starts @cmd in the background, its output to $file; returns its pid
sub spawn
{
	my ($file, @cmd) = @_;
	my $pid = fork() // die "fork: $!\n";
	if ($pid == 0)
	{
		open STDIN, '<', '/dev/null';
		open STDOUT, '>', $file or POSIX::_exit(126);
		open STDERR, '>&', \*STDOUT;
		exec @cmd or POSIX::_exit(127);
	}
	$children{$pid} = $cmd[0];
	return $pid;
}

# True while the process spawned as $pid runs; once it has ended, false,
# and its exit status is in $children_status{$pid}
my %children_status;

sub running
{
	my ($pid) = @_;
	return 0 unless exists $children{$pid};
	return 1 if waitpid($pid, WNOHANG) == 0;
	$children_status{$pid} = $?;
	delete $children{$pid};
	return 0;
}

# Waits for $pid (polling, so that a signal is handled at once); its status
sub finish
{
	my ($pid) = @_;
	usleep(20_000) while running($pid);
	return delete $children_status{$pid};
}

# Runs a command to the end, its output to $file; dies when it fails
sub run_to_file
{
	my ($file, @cmd) = @_;
	finish(spawn($file, @cmd)) == 0
	  or die "$cmd[0] failed:\n" . tail($file, 30);
	return;
}

sub tail
{
	my ($file, $n) = @_;
	open my $fh, '<', $file or return '';
	my @lines = <$fh>;
	return join '', @lines[ max(0, $#lines - $n + 1) .. $#lines ];
}

# pgbench on database $db, in the background; returns a handle for pgbench_done
sub pgbench_start
{
	my ($name, $db, @args) = @_;
	my $file = "$dir/pgbench-$name.txt";
	my $pid = spawn($file, 'pgbench', '-n', '-M', 'prepared', '-c', $clients,
		'-j', $threads, @args, $node->connstr($db));
	return { name => $name, pid => $pid, file => $file };
}

# Waits for pgbench; returns (tps, transactions); dies when it failed
sub pgbench_done
{
	my ($h) = @_;
	my $status = finish($h->{pid});
	my $text = PostgreSQL::Test::Utils::slurp_file($h->{file});
	die "pgbench ($h->{name}) failed:\n" . tail($h->{file}, 30) if $status;
	die "pgbench ($h->{name}): clients aborted\n" . tail($h->{file}, 30)
	  if $text =~ /aborted/;
	my ($tps) = $text =~ /^tps = ([\d.]+)/m
	  or die "pgbench ($h->{name}): no tps\n" . tail($h->{file}, 30);
	my ($txns) = $text =~ /^number of transactions actually processed: (\d+)/m;
	return ($tps, $txns);
}

sub pgbench_run { return pgbench_done(pgbench_start(@_)) }

# kB of a /proc/<pid>/status field (VmRSS, VmHWM, RssAnon), 0 once it is gone
sub status_kb
{
	my ($pid, $field) = @_;
	open my $fh, '<', "/proc/$pid/status" or return 0;
	while (my $line = <$fh>)
	{
		return $1 if $line =~ /^$field:\s+(\d+)/;
	}
	return 0;
}

# CPU seconds of a process, 0 once it is gone
sub cpu { return cpu_seconds($_[0]) // 0 }

# Percent of a core from CPU seconds over wall seconds
sub pct { return sprintf('%.0f', 100 * $_[0] / $_[1]) }

# CPU of the workers (and nginx's worker, when it runs) from now: a mark
# for cpu_since
sub cpu_mark
{
	my $m = { t => time() };
	$m->{$_} = cpu($r{pid}{$_}) for grep { $r{pid}{$_} } qw(disp dec rcv);
	return $m;
}

# CPU seconds each used since the mark, and the wall seconds
sub cpu_since
{
	my ($m) = @_;
	my %d = (secs => time() - $m->{t});
	$d{$_} = cpu($r{pid}{$_}) - $m->{$_} for grep { $_ ne 't' } keys %$m;
	return \%d;
}

# Calls $sample->() every $every seconds until the process $pid ends (or,
# without a pid, for $secs seconds)
sub sample_while
{
	my ($pid, $every, $sample, $secs) = @_;
	my $t0 = time();
	my $k = 0;
	while ($pid ? running($pid) : time() < $t0 + $secs)
	{
		$sample->($k);
		$k++;
		usleep(20_000) while time() < $t0 + $k * $every && ($pid ? running($pid) : 1);
	}
	return;
}

sub worker_mem
{
	my %m;
	for my $w (qw(disp dec))
	{
		$m{"${w}_rss"} = status_kb($r{pid}{$w}, 'VmRSS');
		$m{"${w}_anon"} = status_kb($r{pid}{$w}, 'RssAnon');
	}
	return \%m;
}

# ---------------------------------------------------------------------------
# The receiver: nginx
# ---------------------------------------------------------------------------

sub nginx_conf
{
	return <<"EOC";
# Runs as the invoking (unprivileged) user: no "user" directive.
worker_processes 1;
pid $ngx/nginx.pid;
error_log $ngx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $ngx/body;
    proxy_temp_path $ngx/proxy;
    fastcgi_temp_path $ngx/fastcgi;
    uwsgi_temp_path $ngx/uwsgi;
    scgi_temp_path $ngx/scgi;
    # one line per request: the webhook-id, the time it was answered, the
    # status, the connection's serial number, its request count, the key
    log_format hook '\$http_webhook_id \$msec \$status \$connection \$connection_requests \$http_outbox_key';
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    # the slow receivers of the memory phase: 10 requests a second each,
    # the others held (up to 100,000) until their turn
    limit_req_zone \$server_port zone=slow1:1m rate=10r/s;
    limit_req_zone \$server_port zone=slow2:1m rate=10r/s;
    limit_req_status 503;
    client_body_buffer_size 64k;
    client_max_body_size 2m;
    server {
        listen 127.0.0.1:$hport;
        location = /hook {
            # "return" discards (reads) the request body before answering,
            # so the connection stays usable: checked below with curl
            access_log $ngx/hooks.log hook buffer=256k flush=1s;
            return 204;
        }
        location = /slow1 {
            limit_req zone=slow1 burst=100000;
            access_log $ngx/slow.log hook;
            return 204;
        }
        location = /slow2 {
            limit_req zone=slow2 burst=100000;
            access_log $ngx/slow.log hook;
            return 204;
        }
        location / { return 404; }
    }
}
EOC
}

sub nginx_start
{
	system('nginx', '-p', $ngx, '-c', "$ngx/nginx.conf", '-e', "$ngx/error.log") == 0
	  or die "nginx did not start (see $ngx/error.log)\n";
	for (1 .. 100)
	{
		return if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$hport");
		usleep(50_000);
	}
	die "nginx does not listen on $hport\n";
}

# Stops nginx and waits for it to be gone (flushing the buffered access log)
sub nginx_stop
{
	open my $fh, '<', "$ngx/nginx.pid" or return;
	my $pid = <$fh> // '';
	chomp $pid;
	return unless $pid =~ /^\d+$/ && kill('QUIT', $pid);
	for (1 .. 200)
	{
		return unless kill(0, $pid);
		usleep(50_000);
	}
	kill 'TERM', $pid;
	usleep(500_000);
	return;
}

# ---------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------

sub phase_cluster
{
	$node = PostgreSQL::Test::Cluster->new('bench');
	$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
	$node->append_conf('postgresql.conf',
		    "\n# outbox benchmark: a durable server that logs quietly, unlike\n"
		  . "# PostgreSQL::Test::Cluster's test settings above\n"
		  . "fsync = on\nsynchronous_commit = on\nlog_statement = none\n"
		  . "log_replication_commands = off\nlog_line_prefix = '%m [%p] %b: '\n"
		  . "max_connections = 50\nshared_buffers = 256MB\n"
		  . PostgreSQL::Test::Utils::slurp_file("$root/conf/outbox.conf")
		  . "outbox.targets = 'orders=http://127.0.0.1:$hport/hook'\n"
		  . "# the drains stop the receiver: let the circuit close quickly after\n"
		  . "outbox.retry_base_delay = '100ms'\noutbox.retry_max_delay = '1s'\n");
	$node->start;
	logline("bench ($mode): PostgreSQL on port ", $node->port,
		", receiver on 127.0.0.1:$hport, in $dir");

	setup_database('postgres');
	query('CREATE TABLE plain_messages (
	       id         bigserial PRIMARY KEY,
	       payload    jsonb,
	       created_at timestamptz DEFAULT now())');

	# The producers' scripts: the business transaction alone (the
	# baseline), with a plain row, with outbox_queue, keyed
	my $payload = "jsonb_build_object('order_id', currval('orders_id_seq'), "
	  . "'customer', :c::int, 'total', :t::int / 100.0, 'note', '$pad', "
	  . "'ts', extract(epoch FROM clock_timestamp()))";
	my %scripts = (
		baseline => '',
		plain => "INSERT INTO plain_messages (payload) VALUES ($payload);\n",
		outbox => "SELECT outbox_queue('orders', $payload);\n",
		keyed => "SELECT outbox_queue('orders', $payload, key => 'k' || :k);\n",);
	for my $name (keys %scripts)
	{
		PostgreSQL::Test::Utils::append_to_file("$dir/$name.sql",
			    "\\set c random(1, 100000)\n\\set t random(100, 1000000)\n"
			  . "\\set k random(1, $keys_paced)\nBEGIN;\n"
			  . "INSERT INTO orders (customer, total) VALUES (:c, :t / 100.0);\n"
			  . $scripts{$name}
			  . "COMMIT;\n");
	}

	$r{pid}{disp} = worker_pid($node, 'outbox dispatcher')
	  or die "the outbox dispatcher is not running\n";
	$r{pid}{dec} = worker_pid($node, 'outbox decoder')
	  or die "the outbox decoder is not running\n";
	return;
}

# The extension and the producers' table, in database $db
sub setup_database
{
	my ($db) = @_;
	query('CREATE EXTENSION outbox;
	   CREATE TABLE orders (
	       id         bigserial PRIMARY KEY,
	       customer   int,
	       total      numeric,
	       created_at timestamptz DEFAULT now())', $db);
	return;
}

sub phase_receiver
{
	mkdir $ngx;
	PostgreSQL::Test::Utils::append_to_file("$ngx/nginx.conf", nginx_conf());
	nginx_start();

	# Keep-alive with a body: two POSTs over one connection, both answered 204
	my $body = qq({"ts": 1700000000.123456, "note": "$pad", "total": 123.45, )
	  . qq("customer": 12345, "order_id": 123456});
	my @post = ('-X', 'POST', '-H', 'Content-Type: application/json',
		'--data-binary', $body, "http://127.0.0.1:$hport/hook");
	my $check = "$dir/curl-check.txt";
	run_to_file($check, 'curl', '-sv', '-o', '/dev/null', '-H', 'webhook-id: check_1',
		@post, '--next', '-o', '/dev/null', '-H', 'webhook-id: check_2', @post);
	my $said = PostgreSQL::Test::Utils::slurp_file($check);
	my $answers = () = $said =~ /^< HTTP\/1.1 204/mg;
	die "nginx did not answer both POSTs with 204:\n$said" unless $answers == 2;
	die "nginx did not keep the connection alive after a POST:\n$said"
	  unless $said =~ /Re-using existing connection/;
	logline('receiver: nginx answers POST /hook with 204 and keeps the connection alive (curl)');

	# One outbox delivery end to end
	my $id = query(q{SELECT outbox_queue('orders', '{"check": true}')});
	poll_until($node, "SELECT state FROM outbox.messages WHERE id = $id", 'delivered', 10);
	my ($st, $code, $att) = split /\|/,
	  query("SELECT state, last_status, attempts FROM outbox.messages WHERE id = $id");
	die "the first message was not delivered with 204 "
	  . "(state $st, last_status " . ($code // '') . ", attempts $att)\n"
	  unless $st eq 'delivered' && $code == 204;
	logline("outbox: message $id delivered, HTTP $code, $att attempt(s)");
	return;
}

sub phase_capacity
{
	my $file = "$dir/wrk.txt";
	run_to_file($file, 'wrk', '-t', 2, '-c', 16, '-d', "$s{wrk_secs}s", '-s',
		"$root/bench/wrk-post.lua", "http://127.0.0.1:$hport/hook");
	my $text = PostgreSQL::Test::Utils::slurp_file($file);
	($r{capacity}) = $text =~ /^Requests\/sec:\s+([\d.]+)/m
	  or die "no Requests/sec from wrk:\n$text";
	die "the receiver answered wrk with errors:\n$text"
	  if $text =~ /Non-2xx|Socket errors/;
	logline("receiver capacity (wrk, $s{wrk_secs}s, 16 connections): $r{capacity} requests/s");
	return;
}

sub phase_producers
{
	my @run = ('-T', $s{run_secs});
	my $p = $r{producers} = {};

	checkpoint();
	my $m = cpu_mark();
	($p->{baseline}, $p->{baseline_txns}) =
	  pgbench_run('baseline', 'postgres', @run, '-f', "$dir/baseline.sql");
	$p->{baseline_cpu} = cpu_since($m);
	logline("baseline (INSERT; COMMIT), $clients clients, $s{run_secs}s: $p->{baseline} tps");

	checkpoint();
	($p->{plain}) = pgbench_run('plain', 'postgres', @run, '-f', "$dir/plain.sql");
	logline("plain-row limit (INSERT; INSERT plain row; COMMIT): $p->{plain} tps");

	# Diagnostic: the producer's own cost.  The same script in another
	# database with the extension: messages are queued there but never
	# delivered (the workers serve outbox.database only), so no decoding or
	# HTTP competes.
	query('CREATE DATABASE nodelivery');
	setup_database('nodelivery');
	checkpoint();
	($p->{nodelivery}) =
	  pgbench_run('nodelivery', 'nodelivery', @run, '-f', "$dir/outbox.sql");
	logline("with outbox_queue, no delivery (other database): $p->{nodelivery} tps");

	checkpoint();
	# nginx's worker process (it runs one): the receiver shares the cores too
	($r{pid}{rcv}) = split /\n/, `pgrep -P \$(cat $ngx/nginx.pid)`;
	my $lo = max_id();
	$m = cpu_mark();
	($p->{outbox}) = pgbench_run('outbox', 'postgres', @run, '-f', "$dir/outbox.sql");
	wait_drained($s{drain_timeout});
	$p->{live_cpu} = cpu_since($m);
	delete $r{pid}{rcv};
	$r{phase}{live} = [ $lo, max_id() ];
	logline("with outbox_queue: $p->{outbox} tps (", $r{phase}{live}[1] - $lo,
		' messages, all delivered)');
	return;
}

# Stops the receiver, queues $n messages to orders in $txns transactions
# (key $key, an SQL expression over the order's id o.id), waits for the
# circuit to open and the decoder to go quiet, starts the receiver again and
# waits until all are delivered (dies after $s{drain_timeout} s), or for at
# most $limit s when given.  Returns the drain's numbers: lo, hi (the ids),
# n, queue_secs, delivered (n unless the limit cut the wait short), first
# (s from receiver up to the first delivery), secs (to the last, or to the
# limit), rate (delivered / secs), rate_ff (first to last delivery), cpu
# (the decoder from the first queued row to quiet, the dispatcher from
# receiver up), idle_cpu (the dispatcher's, circuit open, when $idle)
sub drain_backlog
{
	my ($n, $txns, $key, $idle, $limit) = @_;
	my %d;
	checkpoint();
	nginx_stop();
	$d{lo} = max_id();
	my $dec0 = cpu($r{pid}{dec});
	my $per = int($n / $txns);
	my $t0 = time();
	query(join '', map { <<"SQL" } 1 .. $txns);
WITH o AS (
     INSERT INTO orders (customer, total)
     SELECT 1 + (random() * 99999)::int, round((random() * 10000)::numeric, 2)
       FROM generate_series(1, $per)
     RETURNING id, customer, total)
SELECT count(outbox_queue('orders', jsonb_build_object(
         'order_id', o.id, 'customer', o.customer, 'total', o.total,
         'note', '$pad', 'ts', extract(epoch FROM clock_timestamp())), key => $key))
  FROM o;
SQL
	$d{queue_secs} = time() - $t0;
	$d{hi} = max_id();
	$d{n} = query("SELECT count(*) FROM outbox.messages WHERE id > $d{lo} AND id <= $d{hi}");

	# Let the circuit open and the decoder go quiet (it has decoded the
	# backlog) before the receiver comes back
	poll_until($node, "SELECT circuit FROM outbox.targets WHERE target = 'orders'",
		'open', $s{settle_timeout})
	  or die "the circuit of orders did not open with the receiver down\n";
	my $deadline = time() + $s{settle_timeout};
	for (my $quiet = 0; $quiet < 2;)
	{
		die "the decoder did not go quiet with the receiver down\n" if time() > $deadline;
		my $a = cpu($r{pid}{dec});
		usleep(300_000);
		$quiet = cpu($r{pid}{dec}) - $a <= 0.01 ? $quiet + 1 : 0;
	}
	if ($idle)
	{
		# what the dispatcher spends with nothing to do but probe
		my $m = cpu_mark();
		wait_seconds(2);
		my $c = cpu_since($m);
		$d{idle_cpu} = pct($c->{disp}, $c->{secs});
	}
	$d{cpu_dec} = cpu($r{pid}{dec}) - $dec0;
	$d{pending} = pending();
	my $disp0 = cpu($r{pid}{disp});
	my $xids0 = next_xid();
	nginx_start();
	my $t_up = time();
	my $range = "FROM outbox.messages WHERE id > $d{lo} AND id <= $d{hi}";
	if (defined $limit)
	{
		usleep(100_000) while time() < $t_up + $limit
		  && query("SELECT count(*) $range AND state <> 'delivered'") > 0;
	}
	else
	{
		wait_drained($s{drain_timeout});
	}
	my $t_end = time();
	$d{cpu_disp} = cpu($r{pid}{disp}) - $disp0;
	$d{xids} = next_xid() - $xids0;
	my ($delivered, $first, $last) = split /\|/, query("SELECT count(*) FILTER
		(WHERE state = 'delivered'), extract(epoch FROM min(delivered_at)),
		extract(epoch FROM max(delivered_at)) $range");
	$d{delivered} = $delivered;
	$last = $t_end if $delivered < $d{n} || $last eq '';
	$first = $t_end if $first eq '';
	$d{first} = $first - $t_up;
	$d{secs} = $last - $t_up;
	$d{rate} = $delivered / $d{secs};
	$d{rate_ff} = $delivered / max($last - $first, 0.001);
	return \%d;
}

sub phase_drain
{
	my $d = $r{drain} = drain_backlog($s{backlog}, $s{backlog_txns}, 'NULL', 1);
	$r{phase}{drain} = [ $d->{lo}, $d->{hi} ];
	logline(sprintf('drain: %d messages queued in %.1f s; the dispatcher used %s%% '
		  . 'of a core, circuit open; drained in %.3f s from receiver up '
		  . '(%.0f msg/s; first delivery after %.3f s; %.0f msg/s first to last)',
		@$d{qw(n queue_secs idle_cpu secs rate first rate_ff)}));
	return;
}

# Backlogs of one size with no key, 16 keys, 1,000 keys and a key per
# message.  A transaction takes a lock per key it queues (README, "Rely on
# order"), so the backlog is queued 1,000 messages a transaction.  Each is
# waited for at most $s{ordered_secs} s: what is left then stays pending
# (and fails the run as "rows not delivered"), so this phase comes after
# the latency phases.
sub phase_ordered
{
	my $n = $s{ordered};
	# fewest messages per key first: a drain cut short leaves its backlog
	# to compete with the next ones
	my @kinds = (
		[ none => 'NULL' ],
		[ distinct => q{'d' || o.id} ],
		[ k1000 => q{'k' || o.id % 1000} ],
		[ k16 => q{'k' || o.id % 16} ],);
	for my $kind (@kinds)
	{
		my ($name, $key) = @$kind;
		my $d = $r{ordered}{$name} =
		  drain_backlog($n, max(1, $n / 1000), $key, 0, $s{ordered_secs});
		$r{phase}{"ordered_$name"} = [ $d->{lo}, $d->{hi} ];
		logline(sprintf('ordered drain (%s): %d of %d messages delivered, %.0f msg/s '
			  . 'first to last (%.3f s from receiver up)', $name, @$d{qw(delivered n rate_ff secs)}));
	}
	return;
}

sub phase_paced
{
	my $p = $r{paced} = {};
	checkpoint();
	my $lo = max_id();
	my $m = cpu_mark();
	my $h = pgbench_start('paced', 'postgres', '-R', $s{paced_rate}, '-T',
		$s{paced_secs}, '-f', "$dir/outbox.sql");
	my @samples;
	sample_while($h->{pid}, 1,
		sub { push @samples, { t => time(), disp_cpu => cpu($r{pid}{disp}), %{ worker_mem() } } });
	($p->{tps}) = pgbench_done($h);
	wait_drained($s{drain_timeout});
	$p->{cpu} = cpu_since($m);
	$r{phase}{paced} = [ $lo, max_id() ];
	$p->{samples} = \@samples;
	# the dispatcher's CPU second by second: the busiest second
	$p->{disp_peak} = max(0, map {
			my ($a, $b) = @samples[ $_ - 1, $_ ];
			($b->{disp_cpu} - $a->{disp_cpu}) / ($b->{t} - $a->{t})
	} 1 .. $#samples);
	logline("paced at $s{paced_rate}/s for $s{paced_secs}s: $p->{tps} tps (",
		$r{phase}{paced}[1] - $lo, ' messages, all delivered)');

	# Nothing to do, receiver up: what do the workers spend?
	$m = cpu_mark();
	wait_seconds(2);
	$p->{idle} = cpu_since($m);
	logline('idle, receiver up: dispatcher ', pct($p->{idle}{disp}, $p->{idle}{secs}),
		'%, decoder ', pct($p->{idle}{dec}, $p->{idle}{secs}), '% of a core');
	return;
}

sub phase_keyed
{
	checkpoint();
	my $lo = max_id();
	($r{keyed}{tps}) = pgbench_run('keyed', 'postgres', '-R', $s{keyed_rate}, '-T',
		$s{keyed_secs}, '-f', "$dir/keyed.sql");
	wait_drained($s{drain_timeout});
	$r{phase}{keyed} = [ $lo, max_id() ];
	logline("keyed, paced at $s{keyed_rate}/s over $keys_paced keys: $r{keyed}{tps} tps (",
		$r{phase}{keyed}[1] - $lo, ' messages, all delivered)');
	return;
}

# Four more targets: two slow receivers (nginx, 10 answers a second each),
# one that accepts connections and never answers (a listening socket
# nobody accepts on: the requests wait for outbox.request_timeout), one
# down (nothing listens).  $s{big_per_target} messages of 1 MB queued for
# each, 10 to a transaction, while the dispatcher's RssAnon is sampled every
# 0.2 s, and for $s{big_secs} s more.  They stay pending (no check counts
# them), so this phase comes last.
sub phase_big
{
	my $b = $r{big} = {};
	# the report's memory rows (but this phase's) are of the phases before
	$r{hwm}{$_} = status_kb($r{pid}{$_}, 'VmHWM') for qw(disp dec);
	$r{anon}{$_} = status_kb($r{pid}{$_}, 'RssAnon') for qw(disp dec);
	my $down = free_port();
	my $hang = free_port();
	$hang_socket = IO::Socket::INET->new(
		LocalAddr => "127.0.0.1:$hang", Listen => 128, ReuseAddr => 1)
	  or die "cannot listen on $hang: $!\n";
	my %url = (
		slow1 => "http://127.0.0.1:$hport/slow1",
		slow2 => "http://127.0.0.1:$hport/slow2",
		hang => "http://127.0.0.1:$hang/hook",
		down => "http://127.0.0.1:$down/hook",);
	$node->append_conf('postgresql.conf',
		"outbox.targets = 'orders=http://127.0.0.1:$hport/hook, "
		  . join(', ', map { "$_=$url{$_}" } @big_targets) . "'\n");
	$node->reload;
	poll_until($node, 'SELECT count(*) FROM outbox.targets', scalar(@big_targets) + 1)
	  or die "the targets of the memory phase did not appear\n";

	my $lo = max_id();
	my $per_txn = min(10, $s{big_per_target});
	my $sql = "$dir/big.sql";
	for (1 .. $s{big_per_target} / $per_txn)
	{
		PostgreSQL::Test::Utils::append_to_file($sql,
			"SELECT count(outbox_queue('$_', jsonb_build_object('n', g, "
			  . "'blob', repeat('x', $big_bytes)))) FROM generate_series(1, $per_txn) g;\n")
		  for @big_targets;
	}
	$b->{anon0} = status_kb($r{pid}{disp}, 'RssAnon');
	my $peak = $b->{anon0};
	my $sample = sub { $peak = max($peak, status_kb($r{pid}{disp}, 'RssAnon')) };
	my $t0 = time();
	my $pid = spawn("$dir/big.out", 'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1',
		'-f', $sql, '-d', $node->connstr('postgres'));
	sample_while($pid, 0.2, $sample);
	finish($pid) == 0 or die "queueing the large payloads failed:\n" . tail("$dir/big.out", 30);
	$b->{queue_secs} = time() - $t0;
	sample_while(undef, 0.2, $sample, $s{big_secs});
	$b->{peak} = $peak;
	$b->{hwm} = status_kb($r{pid}{disp}, 'VmHWM');
	$b->{n} = query("SELECT count(*) FROM outbox.messages WHERE id > $lo");
	$b->{delivered} = query("SELECT count(*) FROM outbox.messages WHERE id > $lo AND state = 'delivered'");
	$b->{secs} = time() - $t0;
	logline(sprintf('large payloads: %d x 1 MB queued in %.1f s for %s; after %.0f s, '
		  . '%d delivered; dispatcher RssAnon %d kB -> peak %d kB',
		$b->{n}, $b->{queue_secs}, join(', ', @big_targets), $b->{secs},
		$b->{delivered}, $b->{anon0}, $peak));
	return;
}

# The workers' pids must not have changed
sub restarts
{
	my @restarted;
	push @restarted, 'dispatcher'
	  unless (worker_pid($node, 'outbox dispatcher', timeout => 5) // 0) == $r{pid}{disp};
	push @restarted, 'decoder'
	  unless (worker_pid($node, 'outbox decoder', timeout => 5) // 0) == $r{pid}{dec};
	return join(' ', @restarted);
}

# Stops nginx (which flushes its access log), loads the log and runs
# analysis.sql over the phases' id ranges: $r{a}{phase}{measure}
sub phase_analysis
{
	$r{restarted} = restarts();
	nginx_stop();
	my $lines = () = PostgreSQL::Test::Utils::slurp_file("$ngx/hooks.log") =~ /\n/g;
	logline("analysing $lines access log lines");
	query('CREATE TABLE bench_phase (name text, lo bigint, hi bigint);'
		  . join('', map { "INSERT INTO bench_phase VALUES ('$_', $r{phase}{$_}[0], $r{phase}{$_}[1]);" }
			  sort keys %{ $r{phase} }));
	my ($stdout, $stderr) = ('', '');
	IPC::Run::run([ 'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1',
		'-v', "hooks_log=$ngx/hooks.log", '-v', 'target=orders',
		'-f', "$root/bench/analysis.sql", '-d', $node->connstr('postgres') ],
		'<', \undef, '>', \$stdout, '2>', \$stderr)
	  or die "analysis.sql failed:\n$stderr";
	for (split /\n/, $stdout)
	{
		my ($phase, $measure, $value) = split /\|/;
		$r{a}{$phase}{$measure} = $value;
	}

	my @problems = grep { /(ERROR|FATAL|PANIC|WARNING):/ }
	  split /\n/, PostgreSQL::Test::Utils::slurp_file($node->logfile);
	$r{server_problems} = \@problems;
	$r{ngx_problems} = () = PostgreSQL::Test::Utils::slurp_file("$ngx/error.log")
	  =~ /\[(?:error|crit|alert|emerg)\]/g;
	return;
}

# ---------------------------------------------------------------------------
# The soak: producers paced for MINUTES, the workers' memory sampled
# ---------------------------------------------------------------------------

my $flat_growth_kb = 2048;
my $flat_slope_kb = 200;

# Memory-context grand total of a worker in bytes, '-' if it does not
# answer within 5 s.  The dump is logged when the worker next checks for
# interrupts; its last line is "Grand total: N bytes in B blocks; ...".
sub memctx
{
	my ($pid) = @_;
	my $re = qr/\[$pid\] .*Grand total: (\d+) bytes/;
	my $offset = log_position($node);
	return '-' unless eval { query("SELECT pg_log_backend_memory_contexts($pid)") eq 't' };
	for (1 .. 50)
	{
		my @totals = PostgreSQL::Test::Utils::slurp_file($node->logfile, $offset) =~ /$re/g;
		return $totals[-1] if @totals;
		usleep(100_000);
	}
	return '-';
}

# One sample; with $ctx, the memory contexts too.  Never dies (a failed
# query leaves '-'): the sampling must not stop quietly.
sub soak_sample
{
	my ($t0, $ctx) = @_;
	my $s = { el => time() - $t0, epoch => int(time()), %{ worker_mem() } };
	my $pd = eval { query("SELECT (SELECT count(*) FROM outbox.messages WHERE state = 'pending'),
		(SELECT sum(responses_2xx) FROM outbox.stats)") } // '-|-';
	@$s{qw(pending delivered)} = map { $_ eq '' ? '-' : $_ } split /\|/, $pd, -1;
	@$s{qw(disp_ctx dec_ctx)} =
	  $ctx ? (memctx($r{pid}{disp}), memctx($r{pid}{dec})) : ('-', '-');
	return $s;
}

my @soak_columns = qw(el epoch disp_rss disp_anon dec_rss dec_anon pending delivered disp_ctx dec_ctx);

# /proc/<pid>/smaps of both workers, for a look at where the memory is
sub smaps
{
	my ($when) = @_;
	copy("/proc/$r{pid}{disp}/smaps", "$dir/smaps-dispatcher-$when.txt");
	copy("/proc/$r{pid}{dec}/smaps", "$dir/smaps-decoder-$when.txt");
	return;
}

sub phase_soak
{
	my $file = "$dir/soak-samples.txt";
	logline("soak: pgbench -R $s{paced_rate} -T $s{paced_secs} ($soak_minutes minutes), "
		  . "samples every 10 s in $file");
	PostgreSQL::Test::Utils::append_to_file($file,
		"# elapsed_s epoch disp_rss_kB disp_anon_kB dec_rss_kB dec_anon_kB pending "
		  . "delivered_2xx disp_memctx_B dec_memctx_B\n");
	checkpoint();
	my $lo = max_id();
	my $m = cpu_mark();
	my $t0 = time();
	my @samples;
	my $keep = sub {
		my ($s) = @_;
		push @samples, $s;
		PostgreSQL::Test::Utils::append_to_file($file,
			join(' ', map { /^\d+\.\d+$/ ? sprintf('%.1f', $_) : $_ } @$s{@soak_columns}) . "\n");
	};
	my $h = pgbench_start('soak', 'postgres', '-R', $s{paced_rate}, '-T', $s{paced_secs},
		'-f', "$dir/outbox.sql");
	sample_while($h->{pid}, 10, sub {
			my ($k) = @_;
			my $s = soak_sample($t0, $k % 6 == 0);
			$keep->($s);
			smaps('1min') if $k == 6;
			logline(sprintf('soak %d/%d min: RssAnon dispatcher %s kB, decoder %s kB; '
				  . 'memory contexts %s / %s bytes; pending %s; delivered %s',
				$k / 6, $soak_minutes, @$s{qw(disp_anon dec_anon disp_ctx dec_ctx pending delivered)}))
			  if $k % 6 == 0;
		});
	($r{soak}{tps}) = pgbench_done($h);
	wait_drained($s{drain_timeout});
	$r{soak}{cpu} = cpu_since($m);
	$r{phase}{soak} = [ $lo, max_id() ];
	# the last sample: everything delivered
	$keep->(soak_sample($t0, 1));
	smaps('end');
	$r{soak}{samples} = \@samples;
	$r{soak}{delivered} = query("SELECT count(*) FROM outbox.messages
		WHERE id > $lo AND id <= $r{phase}{soak}[1] AND state = 'delivered'");
	logline("soak: $r{soak}{tps} tps, ", $r{phase}{soak}[1] - $lo,
		' messages, all delivered; ', scalar(@samples), ' samples');
	return;
}

# Memory of one worker ('disp' or 'dec') from the soak's samples: RssAnon
# at minute 1, at the end, its max, its slope in kB/min by least squares
# over minute 1 to the end; VmRSS at minute 1 and at the end; the memory
# contexts at minute 1 (the first dump from then on) and at the end (the
# last dump); the number of samples from minute 1
sub soak_memory
{
	my ($w) = @_;
	my @all = @{ $r{soak}{samples} };
	my @from1 = grep { $_->{el} >= 59.5 } @all;
	@from1 = ($all[-1]) unless @from1;
	my @ctx = grep { $_ ne '-' } map { $_->{"${w}_ctx"} } @from1;
	my ($n, $sx, $sy, $sxx, $sxy) = (scalar(@from1), 0, 0, 0, 0);
	for (@from1)
	{
		my ($x, $y) = ($_->{el} / 60, $_->{"${w}_anon"});
		$sx += $x;
		$sy += $y;
		$sxx += $x * $x;
		$sxy += $x * $y;
	}
	my $d = $n * $sxx - $sx * $sx;
	my $slope = $n > 1 && $d > 0 ? ($n * $sxy - $sx * $sy) / $d : 0;
	my %m = (
		a1 => $from1[0]{"${w}_anon"},
		ae => $all[-1]{"${w}_anon"},
		amax => max(map { $_->{"${w}_anon"} } @all),
		slope => sprintf('%.0f', $slope) + 0,
		r1 => $from1[0]{"${w}_rss"},
		re => $all[-1]{"${w}_rss"},
		c1 => $ctx[0] // '-',
		ce => $ctx[-1] // '-',
		n => $n,);
	$m{trend} =
	  $m{ae} - $m{a1} < $flat_growth_kb && $m{slope} < $flat_slope_kb ? 'flat' : 'GROWING';
	return \%m;
}

# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------

sub row { say_line(sprintf('%-46s %-24s %-20s %s', map { $_ // '' } @_[ 0 .. 3 ])); return }
sub rule { say_line('-' x 100); return }
sub mark { return $_[0] ? 'PASS' : 'MISS' }
sub check { return $_[0] ? 'PASS' : 'FAIL' }
sub f0 { return sprintf('%.0f', $_[0]) }
sub f1 { return sprintf('%.1f', $_[0]) }
sub f2 { return sprintf('%.2f', $_[0]) }
sub f3 { return sprintf('%.3f', $_[0]) }
sub mb { return int($_[0] / 1024) }
sub signed { return $_[0] >= 0 ? "+$_[0]" : $_[0] }

sub bytes
{
	my ($b) = @_;
	return $b eq '-' ? 'n/a' : sprintf('%s B (%.2f MB)', $b, $b / 1048576);
}

sub title
{
	my ($what) = @_;
	my (undef, undef, $release, undef, $machine) = POSIX::uname();
	my $cpus = () = PostgreSQL::Test::Utils::slurp_file('/proc/cpuinfo') =~ /^processor\s/mg;
	say_line('');
	say_line("outbox $what — ", POSIX::strftime('%Y-%m-%d %H:%M UTC', gmtime),
		" — $cpus CPUs, PostgreSQL ", query('SHOW server_version'), ', Linux ',
		"$release $machine");
	return;
}

# The rows every mode ends its table with
sub outcome_rows
{
	my $a = $r{a}{all};
	row('messages queued (whole run)', $a->{queued});
	row('messages lost (never received with 2xx)', $a->{lost}, '0', check($a->{lost} == 0));
	row('messages received more than once', $a->{duplicates}, '0',
		check($a->{duplicates} == 0));
	row('TCP connections used by the outbox',
		"$a->{connections} (~$a->{requests_per_connection} requests each)");
	row('non-2xx answers / rows not delivered', "$a->{not_ok} / $a->{undelivered}",
		'0 / 0', check($a->{not_ok} == 0 && $a->{undelivered} == 0));
	return;
}

sub problem_rows
{
	my $n = @{ $r{server_problems} };
	row('server log ERROR/WARNING/FATAL lines', $n, '0', check($n == 0));
	row('nginx error log lines', $r{ngx_problems}, '0', check($r{ngx_problems} == 0));
	row('worker restarts', $r{restarted} || 'none', 'none', check(!$r{restarted}));
	return;
}

# "flat" when the private memory grew by less than 1 MB over the paced run
sub trend
{
	my ($kb0, $kb1) = @_;
	my $growth = $kb1 - $kb0;
	return $growth < 1024 ? "flat ($growth kB)" : "GROWING (+$growth kB)";
}

sub report
{
	my $p = $r{producers};
	my $d = $r{drain};
	my ($lp, $lu, $lk) = @{ $r{a} }{qw(paced live keyed)};
	my $o = $r{ordered};
	my $live_n = $r{phase}{live}[1] - $r{phase}{live}[0];
	my $paced_n = $r{phase}{paced}[1] - $r{phase}{paced}[0];
	# CPU seconds per 10k messages
	my $per10k = sub { f3($_[0] / $_[1] * 10000) };
	my ($lc, $pc) = ($p->{live_cpu}, $r{paced}{cpu});
	my @samples = @{ $r{paced}{samples} };
	my ($s0, $s1) = @samples[ 0, -1 ];
	my $ratio = $p->{outbox} / $p->{baseline};
	my $ratio_plain = $p->{outbox} / $p->{plain};
	my $receiver_x = $r{capacity} / $d->{rate_ff};
	my $drain_x = $d->{rate_ff} / $p->{plain};
	my $idle = $r{paced}{idle};
	my $big = $r{big};
	my $violations = join(' / ', map { $r{a}{"ordered_$_"}{order_violations} // 0 } qw(k16 k1000 distinct));

	title("benchmark ($mode)");
	say_line("producers: pgbench -M prepared -c $clients -j $threads; payload ~",
		$lu->{payload_bytes}, ' bytes of JSON');
	rule();
	row('measure', 'value', 'target');
	rule();
	row("receiver capacity (wrk, $s{wrk_secs}s)", f0($r{capacity}) . ' req/s', '>= 3x drain rate',
		($receiver_x >= 3 ? 'ok' : 'RECEIVER-BOUND') . sprintf(' (%.1fx)', $receiver_x));
	row("TPS baseline (INSERT; COMMIT), $s{run_secs}s", f0($p->{baseline}));
	row("TPS plain-row limit (INSERT; plain row)", f0($p->{plain})
		  . sprintf(' (%.2fx baseline)', $p->{plain} / $p->{baseline}));
	row("TPS with outbox_queue, $s{run_secs}s", f0($p->{outbox}));
	row('ratio with/without outbox', f3($ratio), '>= 0.77', mark($ratio >= 0.77));
	row('ratio outbox_queue / plain-row limit', f3($ratio_plain), '>= 0.85',
		mark($ratio_plain >= 0.85));
	row('TPS outbox_queue, no delivery (diagnostic)', f0($p->{nodelivery})
		  . sprintf(' (%.2fx baseline)', $p->{nodelivery} / $p->{baseline}));
	row('  no delivery / plain-row limit', f3($p->{nodelivery} / $p->{plain}));
	row('drain: backlog queued (receiver down)', sprintf('%d msgs in %.1f s', $d->{n}, $d->{queue_secs}));
	row('drain: receiver up -> first delivery', f3($d->{first}) . ' s');
	row('drain: receiver up -> all delivered', f3($d->{secs}) . ' s');
	row('drain rate (from receiver up)', f0($d->{rate}) . ' msg/s',
		'>= ' . f0($p->{outbox}) . ' (outbox TPS)', mark($d->{rate} >= $p->{outbox}));
	row('drain rate (first to last delivery)', f0($d->{rate_ff}) . ' msg/s');
	row('  / plain-row limit TPS', f2($drain_x), '>= 2.5', mark($drain_x >= 2.5));
	row("ordered drain, no key ($o->{none}{n} msgs)"
		  . ($o->{none}{delivered} < $o->{none}{n} ? " (ONLY $o->{none}{delivered})" : ''),
		f0($o->{none}{rate_ff}) . ' msg/s');
	for ([ k16 => '16 keys', 0.5 ], [ k1000 => '1000 keys', 0.8 ], [ distinct => 'a key per message', 0.8 ])
	{
		my ($k, $label, $target) = @$_;
		my $x = $o->{$k}{rate_ff} / $o->{none}{rate_ff};
		$label .= " (ONLY $o->{$k}{delivered} IN $s{ordered_secs} s)"
		  if $o->{$k}{delivered} < $o->{$k}{n};
		row("  $label", f0($o->{$k}{rate_ff}) . sprintf(' msg/s (%.2fx)', $x), ">= $target",
			mark($x >= $target));
	}
	row('  per-key order violations 16/1000/distinct', $violations, '0 / 0 / 0',
		check($violations eq '0 / 0 / 0'));
	# work per message, which a busy machine does not change as it does rates
	my @kinds = qw(none k16 k1000 distinct);
	row('  write txns/1k msgs, none/16/1000/distinct',
		join(' / ', map { f0($o->{$_}{xids} / max(1, $o->{$_}{delivered}) * 1000) } @kinds));
	row('  dispatcher CPU s/10k msgs, same order',
		join(' / ', map { $per10k->($o->{$_}{cpu_disp}, max(1, $o->{$_}{delivered})) } @kinds));
	row('dispatcher CPU, receiver down (circuit open)', "$d->{idle_cpu}% of a core", '<= 5%',
		mark($d->{idle_cpu} <= 5));
	row("latency paced $s{paced_rate}/s ($lp->{latency_n} msgs) p50", "$lp->{p50} ms", '<= 3 ms',
		mark($lp->{p50} <= 3));
	row('  p95', "$lp->{p95} ms");
	row('  p99', "$lp->{p99} ms", '<= 10 ms', mark($lp->{p99} <= 10));
	row('  max', "$lp->{max} ms");
	row('latency unpaced ' . f0($p->{outbox}) . "/s ($lu->{latency_n} msgs) p50/p95",
		"$lu->{p50} / $lu->{p95} ms");
	row('  p99/max', "$lu->{p99} / $lu->{max} ms");
	row("latency keyed $s{keyed_rate}/s, $keys_paced keys ($lk->{latency_n}) p50",
		"$lk->{p50} ms" . sprintf(' (%.2fx unkeyed)', $lk->{p50} / max($lp->{p50}, 0.1)));
	row('  p99', "$lk->{p99} ms" . sprintf(' (%.2fx unkeyed)', $lk->{p99} / max($lp->{p99}, 0.1)),
		'<= 10 ms', mark($lk->{p99} <= 10));
	row('  per-key order violations', $r{a}{keyed}{order_violations} // 0, '0',
		check(($r{a}{keyed}{order_violations} // 0) == 0));
	outcome_rows();
	row('dispatcher CPU s/10k msgs live/paced/drain', join(' / ', $per10k->($lc->{disp}, $live_n),
		$per10k->($pc->{disp}, $paced_n), $per10k->($d->{cpu_disp}, $d->{n})));
	row('decoder CPU s/10k msgs live/paced/backlog', join(' / ', $per10k->($lc->{dec}, $live_n),
		$per10k->($pc->{dec}, $paced_n), $per10k->($d->{cpu_dec}, $d->{n})));
	row('decoder CPU s/10k unrelated txns (baseline)',
		$per10k->($p->{baseline_cpu}{dec}, $p->{baseline_txns}));
	row('CPU unpaced run, dispatcher / decoder',
		pct($lc->{disp}, $lc->{secs}) . '% / ' . pct($lc->{dec}, $lc->{secs}) . '% of a core');
	row('  receiver (nginx) in the same run', pct($lc->{rcv}, $lc->{secs}) . '% of a core');
	row('CPU at paced rate, dispatcher / decoder',
		pct($pc->{disp}, $pc->{secs}) . '% / ' . pct($pc->{dec}, $pc->{secs}) . '% of a core');
	row('  dispatcher, busiest second of paced run', pct($r{paced}{disp_peak}, 1) . '% of a core');
	my ($idle_disp, $idle_dec) = map { pct($idle->{$_}, $idle->{secs}) } qw(disp dec);
	row('CPU idle (receiver up), dispatcher / decoder', "$idle_disp% / $idle_dec% of a core",
		'<= 5%', mark($idle_disp + $idle_dec <= 5));
	row('peak RSS (VmHWM) dispatcher / decoder', mb($r{hwm}{disp}) . ' / ' . mb($r{hwm}{dec}) . ' MB');
	row('  of which private (RssAnon) at the end',
		mb($r{anon}{disp}) . ' / ' . mb($r{anon}{dec}) . ' MB');
	row('RSS paced run, dispatcher (' . @samples . ' samples)', mb($s0->{disp_rss}) . '->'
		  . mb($s1->{disp_rss}) . ' MB, max ' . mb(max(map { $_->{disp_rss} } @samples)));
	row('  private (RssAnon)', mb($s0->{disp_anon}) . '->' . mb($s1->{disp_anon}) . ' MB', '',
		trend($s0->{disp_anon}, $s1->{disp_anon}));
	row('RSS paced run, decoder', mb($s0->{dec_rss}) . '->' . mb($s1->{dec_rss}) . ' MB, max '
		  . mb(max(map { $_->{dec_rss} } @samples)));
	row('  private (RssAnon)', mb($s0->{dec_anon}) . '->' . mb($s1->{dec_anon}) . ' MB', '',
		trend($s0->{dec_anon}, $s1->{dec_anon}));
	row("dispatcher RssAnon, 4 slow/down targets x $s{big_per_target} x 1 MB",
		sprintf('peak %d MB (%.2fx target)', mb($big->{peak}), $big->{peak} / (256 * 1024)),
		'< 256 MB', mark($big->{peak} < 256 * 1024));
	row('  before / VmHWM; delivered in ' . f0($big->{secs}) . ' s',
		mb($big->{anon0}) . ' MB / ' . mb($big->{hwm}) . " MB; $big->{delivered} of $big->{n}");
	problem_rows();
	rule();
	say_line(<<'EOT' . sprintf('whole run: %.0f s', time() - $started));
latency = receipt - commit, an upper bound: commit = clock_timestamp() in the outbox_queue
statement (before COMMIT and its fsync); receipt = nginx $msec + 1 ms ($msec is truncated
to the millisecond). Drain: the receiver is stopped while the backlog is queued and timed
from its restart; the first delivery waits for the open circuit's probe. Ordered drains and
drain / plain-row limit: first to last delivery. CPU per 10k messages counts the dispatcher
from the receiver's restart, the decoder from the first queued row. Timing and memory
targets never fail the run; lost, duplicated and out-of-order messages do.
EOT
	say_line('(--quick: short runs and small sizes; the numbers are indicative only)')
	  if $mode eq 'quick';
	return;
}

sub report_soak
{
	my ($dm, $em) = map { soak_memory($_) } qw(disp dec);
	my $lp = $r{a}{soak};
	my $n = $r{phase}{soak}[1] - $r{phase}{soak}[0];
	my $c = $r{soak}{cpu};
	my $file = "$dir/soak-samples.txt";
	my @samples = @{ $r{soak}{samples} };
	my $max_pending = max(0, grep { $_ ne '-' } map { $_->{pending} } @samples);
	my $hwm = { map { $_ => status_kb($r{pid}{$_}, 'VmHWM') } qw(disp dec) };

	title("soak ($soak_minutes minutes)");
	say_line("producers: pgbench -M prepared -c $clients -j $threads -R $s{paced_rate} -T ",
		"$s{paced_secs}, outbox.sql; payload ~$lp->{payload_bytes} bytes of JSON");
	say_line('workers sampled every 10 s (', scalar(@samples), " samples, $dm->{n} from minute 1), "
		  . 'memory contexts every minute');
	rule();
	row('worker memory', 'dispatcher', 'decoder');
	rule();
	row('RssAnon (private) at minute 1', "$dm->{a1} kB", "$em->{a1} kB");
	row('RssAnon at the end', "$dm->{ae} kB", "$em->{ae} kB");
	row('RssAnon max', "$dm->{amax} kB", "$em->{amax} kB");
	row('RssAnon growth, minute 1 -> end', signed($dm->{ae} - $dm->{a1}) . ' kB',
		signed($em->{ae} - $em->{a1}) . ' kB', "< $flat_growth_kb kB");
	row("RssAnon slope, minutes 1-$soak_minutes (least sq.)", signed($dm->{slope}) . ' kB/min',
		signed($em->{slope}) . ' kB/min', "< $flat_slope_kb kB/min");
	row('VmRSS minute 1 -> end (peak VmHWM)',
		mb($dm->{r1}) . '->' . mb($dm->{re}) . ' MB (' . mb($hwm->{disp}) . ')',
		mb($em->{r1}) . '->' . mb($em->{re}) . ' MB (' . mb($hwm->{dec}) . ')');
	row('memory contexts, grand total, minute 1', bytes($dm->{c1}), bytes($em->{c1}));
	row('memory contexts, grand total, end', bytes($dm->{ce}), bytes($em->{ce}));
	row("CPU at $s{paced_rate}/s", pct($c->{disp}, $c->{secs}) . '% of a core',
		pct($c->{dec}, $c->{secs}) . '% of a core');
	rule();
	row('measure', 'value', 'target');
	rule();
	row("TPS paced (pgbench -R $s{paced_rate})", f1($r{soak}{tps}));
	row('messages queued (soak)', $n);
	row('messages delivered (soak)', $r{soak}{delivered}, $n, check($r{soak}{delivered} == $n));
	row('pending, max of the 10 s samples', $max_pending);
	row("latency ($lp->{latency_n} msgs) p50", "$lp->{p50} ms", '<= 3 ms', mark($lp->{p50} <= 3));
	row('  p95', "$lp->{p95} ms");
	row('  p99', "$lp->{p99} ms", '<= 10 ms', mark($lp->{p99} <= 10));
	row('  max', "$lp->{max} ms");
	outcome_rows();
	problem_rows();
	rule();
	for ([ 'dispatcher:' => $dm ], [ 'decoder:   ' => $em ])
	{
		my ($w, $m) = @$_;
		say_line("verdict $w $m->{trend} (RssAnon ", signed($m->{ae} - $m->{a1}),
			' kB from minute 1 to the end, ', signed($m->{slope}), ' kB/min; memory contexts ',
			bytes($m->{c1}), ' -> ', bytes($m->{ce}), ')');
	}
	say_line(<<"EOT" . sprintf('whole run: %.0f s', time() - $started));
flat: RssAnon grew by less than $flat_growth_kb kB from minute 1 to the end and by less than
$flat_slope_kb kB/min (least squares over minute 1 to the end). End = after the last message
was delivered. Latency as in the full benchmark (an upper bound). Memory verdicts and timing
targets never fail the run.
raw samples (every 10 s; columns in the first line): $file
smaps of the workers at minute 1 and at the end: $dir/smaps-{dispatcher,decoder}-{1min,end}.txt
EOT
	return;
}

# After the table: the server's problems and what the workers logged
sub server_log_summary
{
	my @problems = @{ $r{server_problems} };
	if (@problems)
	{
		say_line("\nserver log problems (first 20):");
		say_line($_) for @problems[ 0 .. min(19, $#problems) ];
	}
	say_line("\noutbox lines of the server log:");
	my %count;
	for (split /\n/, PostgreSQL::Test::Utils::slurp_file($node->logfile))
	{
		next unless s/^[^]]*\] (outbox (?:decoder|dispatcher):)/$1/;
		next if /^outbox \w+: LOG:  (level: \d+;|Grand total:|logging memory contexts)/;
		$count{$_}++;
	}
	my @top = (sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count)[ 0 .. 19 ];
	say_line(sprintf('%7d %s', $count{$_}, $_)) for grep { defined } @top;
	return;
}

# The checks marked PASS/FAIL fail the run: lost, duplicated, failed,
# stray or out-of-order messages, errors logged, broken machinery; never a
# timing (nor a memory trend)
sub verdict
{
	my $a = $r{a}{all};
	my @failed;
	push @failed, "$a->{lost} message(s) lost" if $a->{lost};
	push @failed, "$a->{duplicates} message(s) received more than once" if $a->{duplicates};
	push @failed, "$a->{not_ok} non-2xx answer(s)" if $a->{not_ok};
	push @failed, "$a->{undelivered} message(s) not delivered" if $a->{undelivered};
	push @failed, "$a->{stray} received id(s) that were never queued" if $a->{stray};
	push @failed, "worker(s) restarted: $r{restarted}" if $r{restarted};
	push @failed, scalar(@{ $r{server_problems} }) . ' ERROR/WARNING/FATAL line(s) in the server log'
	  if @{ $r{server_problems} };
	push @failed, "$r{ngx_problems} line(s) in nginx's error log" if $r{ngx_problems};
	for my $phase (sort keys %{ $r{a} })
	{
		my $v = $r{a}{$phase};
		push @failed, "$phase: $v->{order_violations} message(s) received out of key order"
		  if $v->{order_violations};
		push @failed, "$phase: $v->{key_mismatch} message(s) with a wrong outbox-key"
		  if $v->{key_mismatch};
	}
	print $err "bench: FAILED: $_\n" for @failed;
	return !@failed;
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

# Everything started here is stopped however the run ends
sub cleanup
{
	local $SIG{INT} = 'IGNORE';
	local $SIG{TERM} = 'IGNORE';
	kill 'TERM', $_ for keys %children;
	finish($_) for keys %children;
	nginx_stop();
	close $hang_socket if $hang_socket;
	return;
}

$SIG{INT} = sub { die "interrupted\n" };
$SIG{TERM} = sub { die "interrupted\n" };

$hport = free_port();
my $ok = eval {
	phase_cluster();
	phase_receiver();
	if ($mode eq 'soak')
	{
		phase_soak();
	}
	else
	{
		phase_capacity();
		phase_producers();
		phase_drain();
		phase_paced();
		phase_keyed();
		phase_ordered();
		phase_big();
	}
	phase_analysis();
	$mode eq 'soak' ? report_soak() : report();
	server_log_summary();
	1;
};
my $error = $@;
cleanup();
if (!$ok)
{
	print $err "bench: FAILED: $error";
	if ($node && -f $node->logfile && $error ne "interrupted\n")
	{
		print $err "---- server log (last 40 lines) ----\n", tail($node->logfile, 40);
	}
	exit($error eq "interrupted\n" ? 130 : 1);
}
if (!verdict())
{
	exit 1;
}
say_line("\nbench: OK (no message lost, duplicated or out of order)");
exit 0;
