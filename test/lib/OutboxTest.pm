
# Helpers for the outbox TAP tests: a PostgreSQL node configured for the
# extension, HTTP receivers (test/receiver.py) and waiting helpers.

package OutboxTest;

use strict;
use warnings;

use Cwd qw(abs_path);
use Digest::SHA ();
use Encode ();
use MIME::Base64 ();
use Exporter qw(import);
use File::Basename qw(dirname basename);
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes qw(time usleep);

our @EXPORT = qw(
  outbox_node free_port start_receiver stop_receiver receiver_url
  read_requests wait_for_requests requests_with_id with_id with_id_like
  seq_of key_of poll_until body_json
  sql_epoch wait_seconds
  set_control read_answers wait_for_answers log_position wait_for_log_line
  http_date worker_pid cpu_seconds
  start_producer wait_producer producer_ids check_no_loss run_example
  gdb_attach gdb_command gdb_wait gdb_detach wait_for_decoding
  slot_confirmed_past
  is_signed_with random_key
  fail_delivered_commits wait_for_failed_commit sent_ids
);

# Directory holding receiver.py (this file is test/lib/OutboxTest.pm).
my $test_dir = abs_path(dirname(__FILE__) . '/..');
my $receiver_script = "$test_dir/receiver.py";
# What every server running the outbox needs, shared with the benchmark, the
# demo and the examples
my $outbox_conf = "$test_dir/../conf/outbox.conf";
my $python = $ENV{OUTBOX_PYTHON} || 'python3';

# Seconds to wait for things that must happen "eventually".  Once one wait
# in a test file has timed out, later waits are cut to 5 s so that a broken
# build fails quickly instead of waiting out every assertion.
our $timeout = $ENV{OUTBOX_TEST_TIMEOUT} || 30;
my $timed_out = 0;

sub _wait_limit
{
	my ($wait) = @_;
	$wait //= $timeout;
	$wait = 5 if $timed_out && $wait > 5;
	return $wait;
}

my @receivers;    # every receiver started, killed at END
my @producers;    # IPC::Run handles of start_producer, killed at END
my @debuggers;    # gdb sessions of gdb_attach, detached at END
my $receiver_seq = 0;

=pod

=head1 FUNCTIONS

=over

=item outbox_node($name, targets => $str, conf => $lines, start => 1,
  create_extension => 1)

Create a node whose postgresql.conf loads outbox (shared_preload_libraries,
wal_level = logical, output_plugin_libraries, outbox.database = 'postgres',
short retry delays), start it and run CREATE EXTENSION outbox in postgres.
C<conf> is appended last, so it overrides the defaults.

=cut

sub outbox_node
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
	my $conf = PostgreSQL::Test::Utils::slurp_file($outbox_conf) . <<"EOC";
# outbox test settings
max_replication_slots = 10
max_wal_senders = 4
outbox.database = 'postgres'
outbox.request_timeout = '5s'
outbox.connect_timeout = '2s'
outbox.max_inflight = 64
outbox.retry_base_delay = '100ms'
outbox.retry_max_delay = '1s'
outbox.max_attempts = 12
EOC
	$conf .= "outbox.targets = '$opt{targets}'\n" if defined $opt{targets};
	$conf .= "$opt{conf}\n" if defined $opt{conf};
	$node->append_conf('postgresql.conf', $conf);

	return $node if defined $opt{start} && !$opt{start};

	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION outbox')
	  unless defined $opt{create_extension} && !$opt{create_extension};
	return $node;
}

=pod

=item free_port()

A free TCP port on 127.0.0.1, reserved for this test run (nothing listens
on it until a receiver is started there).

=cut

sub free_port
{
	return PostgreSQL::Test::Cluster::get_free_port();
}

=pod

=item start_receiver(name => $name, port => $port, args => [...],
  control => 1)

Start test/receiver.py in the background on $port (a fresh free port when
not given) and wait until it accepts connections.  Returns a hash:
{ name, port, log, answers, control, url => "http://127.0.0.1:PORT",
handle }.
The request log is tmp_check/log/<test>_receiver_<name>.jsonl (one line per
request, written on arrival, before the answer); the answer log
tmp_check/log/<test>_receiver_<name>_answers.jsonl has one line per answer
(see read_answers).  Starting a receiver again with the same name appends
to the same logs.  With C<control =E<gt> 1> the receiver reads the control
file $r->{control} (absent at first: the receiver answers as its args say);
change it with set_control.

=cut

sub start_receiver
{
	my (%opt) = @_;
	my $name = $opt{name} || 'r' . ++$receiver_seq;
	my $port = $opt{port} || free_port();
	my $test = basename($0);
	$test =~ s/\.[^.]+$//;
	my $log = "$PostgreSQL::Test::Utils::log_path/${test}_receiver_$name.jsonl";
	my $answers =
	  "$PostgreSQL::Test::Utils::log_path/${test}_receiver_${name}_answers.jsonl";
	my $control =
	  $opt{control}
	  ? "$PostgreSQL::Test::Utils::tmp_check/${test}_control_$name.json"
	  : undef;

	my @cmd = (
		$python, $receiver_script,
		'--port' => $port,
		'--log' => $log,
		'--answer-log' => $answers,
		'--max-seconds' => 900,
		($control ? ('--control' => $control) : ()),
		@{ $opt{args} || [] });
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', \$out, '2>', \$err);
	my $r = {
		name => $name,
		port => $port,
		log => $log,
		answers => $answers,
		control => $control,
		url => "http://127.0.0.1:$port",
		handle => $h,
		out => \$out,
		err => \$err,
	};
	push @receivers, $r;

	my $deadline = time() + 30;
	while (1)
	{
		my $sock = IO::Socket::INET->new(
			PeerAddr => '127.0.0.1',
			PeerPort => $port,
			Proto => 'tcp',
			Timeout => 1);
		if ($sock)
		{
			close $sock;
			last;
		}
		$h->pump_nb;
		if (!$h->pumpable || time() > $deadline)
		{
			BAIL_OUT("receiver $name on port $port did not start: $err");
		}
		usleep(50_000);
	}
	note "receiver $name listening on port $port, log $log";
	return $r;
}

=pod

=item stop_receiver($r)

Stop a receiver (SIGTERM) and wait for it to exit.  The port stays
reserved, so start_receiver(port => $r->{port}) can bring it back.

=cut

sub stop_receiver
{
	my ($r) = @_;
	my $h = $r->{handle};
	return unless $h;
	eval {
		$h->signal('TERM') if $h->pumpable;
		$h->finish;
	};
	$h->kill_kill if $@;
	delete $r->{handle};
	note "receiver $r->{name} on port $r->{port} stopped";
	return;
}

=pod

=item receiver_url($r, $path)

"http://127.0.0.1:PORT$path".

=cut

sub receiver_url
{
	my ($r, $path) = @_;
	return $r->{url} . ($path // '');
}

=pod

=item set_control($r_or_file, $data)

Replace the receiver's control file atomically with $data (a hash or array
reference, encoded as JSON, or a JSON string); with $data undef, remove it.
Every request after this call is answered by the new rules, e.g.
{ status => 429, headers => { 'Retry-After' => '2' } }, { delay => 30 },
{ by_id => { 'm-1' => [ { status => 410 }, { status => 200 } ], '*' => {...} } }
(see test/receiver.py).

=cut

sub set_control
{
	my ($r, $data) = @_;
	my $file = ref $r eq 'HASH' ? $r->{control} : $r;
	die "set_control: receiver $r->{name} was not started with control => 1"
	  unless defined $file;
	if (!defined $data)
	{
		unlink $file;
		return;
	}
	my $json = ref $data ? JSON::PP->new->canonical->encode($data) : $data;
	my $tmp = "$file.tmp$$";
	open my $fh, '>', $tmp or die "set_control: cannot write $tmp: $!";
	print $fh $json;
	close $fh or die "set_control: cannot write $tmp: $!";
	rename $tmp, $file or die "set_control: cannot rename $tmp: $!";
	return;
}

=pod

=item read_answers($r)

The receiver's answers so far, one hash per request answered (or cut):
{ t (arrival), t_done, 'webhook-id', status (0 for a drop), sent (true when
the whole response was written to the connection), error }.

=cut

sub read_answers
{
	my ($r) = @_;
	return read_requests($r->{answers});
}

=pod

=item wait_for_answers($r, $n, $timeout, $filter)

Like wait_for_requests, for the answer log: wait until at least $n answers
(matching $filter, when given) are logged; returns them.

=cut

sub wait_for_answers
{
	my ($r, $n, $wait, $filter) = @_;
	$wait = _wait_limit($wait);
	my $deadline = time() + $wait;
	my @answers;
	while (1)
	{
		@answers = read_answers($r);
		@answers = grep { $filter->($_) } @answers if $filter;
		return @answers if @answers >= $n;
		last if time() >= $deadline;
		usleep(20_000);
	}
	$timed_out = 1;
	diag "wait_for_answers: receiver $r->{name} has "
	  . scalar(@answers) . " matching answer(s) of $n after ${wait}s";
	return @answers;
}

=pod

=item read_requests($r_or_logfile)

All requests logged so far, as a list of hashes
{ t (arrival), method, path, headers => { lower-case name => value }, body,
status (to be answered; 0 for a drop), n (1 for the first request with
that webhook-id, 2, ...), peer }.  A request is logged on arrival, before
it is answered (read_answers tells whether and when it was).  A partly
written last line is ignored.

=cut

sub read_requests
{
	my ($r) = @_;
	my $file = ref $r ? $r->{log} : $r;
	my @reqs;
	open my $fh, '<:raw', $file or return ();
	while (my $line = <$fh>)
	{
		next unless $line =~ /\n\z/;
		my $req = eval { JSON::PP->new->utf8->decode($line) };
		push @reqs, $req if $req;
	}
	close $fh;
	return @reqs;
}

=pod

=item wait_for_requests($r, $n, $timeout, $filter)

Wait until the receiver has logged at least $n requests (only those for
which $filter->($req) is true, when a filter is given).  Returns the
matching requests as a list; fewer than $n when the timeout (seconds,
default $OutboxTest::timeout) ran out.

=cut

sub wait_for_requests
{
	my ($r, $n, $wait, $filter) = @_;
	$wait = _wait_limit($wait);
	my $deadline = time() + $wait;
	my @reqs;
	while (1)
	{
		@reqs = read_requests($r);
		@reqs = grep { $filter->($_) } @reqs if $filter;
		return @reqs if @reqs >= $n;
		last if time() >= $deadline;
		usleep(20_000);
	}
	$timed_out = 1;
	diag "wait_for_requests: receiver $r->{name} has "
	  . scalar(@reqs) . " matching request(s) of $n after ${wait}s";
	return @reqs;
}

=pod

=item requests_with_id($r, $webhook_id)

The logged requests whose webhook-id header is $webhook_id.

=cut

sub requests_with_id
{
	my ($r, $id) = @_;
	return grep { with_id($id)->($_) } read_requests($r);
}

=pod

=item sent_ids($r, $regexp)

The webhook-ids of the receiver's logged requests that match $regexp, in
the order they arrived, joined with commas (a repeat appears twice).

=cut

sub sent_ids
{
	my ($r, $re) = @_;
	return join(',', grep { $_ =~ $re } map { _webhook_id($_) } read_requests($r));
}

=pod

=item with_id($id), with_id_like($regexp)

Filters for wait_for_requests and wait_for_answers: the requests (or
answers) whose webhook-id is $id, or matches $regexp.

=cut

sub _webhook_id
{
	my ($r) = @_;
	return ($r->{headers} ? $r->{headers}{'webhook-id'} : $r->{'webhook-id'})
	  // '';
}

sub with_id
{
	my ($id) = @_;
	return sub { _webhook_id($_[0]) eq $id };
}

sub with_id_like
{
	my ($re) = @_;
	return sub { _webhook_id($_[0]) =~ $re };
}

=pod

=item seq_of($req), key_of($req)

The "seq" member of the request's JSON body (undef if none), and its
outbox-key header ('' if none): what the per-key order tests compare.

=cut

sub seq_of
{
	my $body = body_json($_[0]);
	return $body ? $body->{seq} : undef;
}

sub key_of
{
	return $_[0]{headers}{'outbox-key'} // '';
}

=pod

=item body_json($req)

The request body decoded as JSON (undef when it is not JSON).

=cut

sub body_json
{
	my ($req) = @_;
	return undef unless $req && defined $req->{body};
	return eval { JSON::PP->new->allow_nonref->decode($req->{body}) };
}

=pod

=item poll_until($node, $sql, $expected, $timeout, $dbname)

Run $sql (in database $dbname, default postgres) every 50 ms until its
output equals $expected or $timeout seconds (default $OutboxTest::timeout)
pass.  Returns true on success; on timeout prints the last output with diag
and returns false.

=cut

sub poll_until
{
	my ($node, $sql, $expected, $wait, $dbname) = @_;
	$dbname //= 'postgres';
	$wait = _wait_limit($wait);
	my $deadline = time() + $wait;
	my ($stdout, $stderr) = ('', '');
	while (1)
	{
		($stdout, $stderr) = ('', '');
		$node->psql($dbname, $sql,
			stdout => \$stdout, stderr => \$stderr);
		return 1 if $stdout eq $expected && $stderr eq '';
		last if time() >= $deadline;
		usleep(50_000);
	}
	$timed_out = 1;
	diag "poll_until timed out after ${wait}s:\n$sql\nexpected: $expected\n"
	  . "last output: $stdout\nstderr: $stderr";
	return 0;
}

=pod

=item log_position($node)

The current size of the server log, to pass to wait_for_log_line as the
point after which a line must appear.

=cut

sub log_position
{
	my ($node) = @_;
	return -s $node->logfile // 0;
}

=pod

=item wait_for_log_line($node, $regexp, $offset, $timeout)

Wait until the server log, from byte $offset on, matches $regexp; like
$node->wait_for_log, but bounded by $timeout (default
$OutboxTest::timeout) instead of the 180 s default.  Returns true when it
matched.

=cut

sub wait_for_log_line
{
	my ($node, $re, $offset, $wait) = @_;
	$wait = _wait_limit($wait);
	$offset //= 0;
	my $deadline = time() + $wait;
	while (1)
	{
		my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile, $offset);
		return 1 if $log =~ m/$re/;
		last if time() >= $deadline;
		usleep(50_000);
	}
	$timed_out = 1;
	diag "wait_for_log_line: no match for $re after ${wait}s";
	return 0;
}

=pod

=item http_date($epoch)

$epoch as an HTTP date (RFC 9110 IMF-fixdate), e.g. for Retry-After.

=cut

sub http_date
{
	my ($epoch) = @_;
	my @d = gmtime(int($epoch));
	my @wd = qw(Sun Mon Tue Wed Thu Fri Sat);
	my @mon = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);
	return sprintf('%s, %02d %s %04d %02d:%02d:%02d GMT',
		$wd[ $d[6] ], $d[3], $mon[ $d[4] ], $d[5] + 1900, @d[ 2, 1, 0 ]);
}

=pod

=item worker_pid($node, $backend_type, not => $old_pid, timeout => $s)

The pid of the process whose pg_stat_activity.backend_type is
$backend_type ('outbox dispatcher', 'outbox decoder'), waiting for it to
appear (and to differ from $old_pid, when given: a restarted worker).
Works while the server restarts.  Returns undef after the timeout.

=cut

sub worker_pid
{
	my ($node, $type, %opt) = @_;
	my $wait = _wait_limit($opt{timeout});
	my $deadline = time() + $wait;
	my $sql =
	  "SELECT pid FROM pg_stat_activity WHERE backend_type = '$type'";
	$sql .= " AND pid <> $opt{not}" if $opt{not};
	while (1)
	{
		my ($stdout, $stderr) = ('', '');
		$node->psql('postgres', $sql, stdout => \$stdout, stderr => \$stderr);
		return 0 + $stdout if $stdout =~ /^\d+$/;
		last if time() >= $deadline;
		usleep(50_000);
	}
	$timed_out = 1;
	diag "worker_pid: no '$type' process"
	  . ($opt{not} ? " other than $opt{not}" : '') . " after ${wait}s";
	return undef;
}

=pod

=item cpu_seconds($pid)

CPU time (user + system, seconds) used so far by process $pid, from
/proc/$pid/stat; undef if it cannot be read.

=cut

sub cpu_seconds
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/stat" or return undef;
	my $stat = <$fh>;
	close $fh;
	# the fields after "(comm)": state is field 3, utime 14, stime 15
	$stat =~ s/^.*\)\s+// or return undef;
	my @f = split /\s+/, $stat;
	my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
	return ($f[11] + $f[12]) / $hz;
}

=pod

=item start_producer($node, target => 'orders', batches => 300,
  per_batch => 10, prefix => 'p', pause => 0, seconds => 120)

Start, in the background, a producer that commits $batches transactions,
each queuing $per_batch messages with outbox_queue to $target, whose
message_ids are "$prefix-<batch>-<n>" (see producer_ids).  It keeps going
through crashes and restarts of the server: when its psql loses the
connection it reconnects (every 0.2 s) and runs the batch whose COMMIT it
did not see again, which is harmless since a repeated message_id queues
nothing.  So once it has finished, every one of those messages is
committed exactly once.  $pause: seconds slept after each batch.  It gives
up after $seconds.  Returns a handle for wait_producer.

=cut

my $producer_script = <<'EOS';
conn=$1; n=$2; per=$3; target=$4; prefix=$5; seconds=$6; out=$7; pause=$8
deadline=$(( $(date +%s) + seconds ))
b=1
runs=0
while (( b <= n )); do
    if (( $(date +%s) > deadline )); then
        echo "producer: gave up at batch $b of $n" >&2
        exit 1
    fi
    runs=$(( runs + 1 ))
    for (( i = b; i <= n; i++ )); do
        echo "BEGIN;"
        echo "SELECT count(outbox_queue('$target', jsonb_build_object('batch', $i, 'n', g), message_id => '$prefix-$i-' || g)) FROM generate_series(1, $per) g;"
        echo "COMMIT;"
        if [[ $pause != 0 ]]; then echo "SELECT pg_sleep($pause);"; fi
        echo "\echo committed $i"
    done | psql -X -q -At -v ON_ERROR_STOP=1 -d "$conn" 2>>"$out.err" |
        grep --line-buffered '^committed ' >>"$out"
    last=$(tail -n 1 "$out" 2>/dev/null | sed -n 's/^committed //p')
    b=$(( ${last:-0} + 1 ))
    if (( b <= n )); then sleep 0.2; fi
done
echo "producer: $n batches committed, $runs psql run(s)" >&2
EOS

my $producer_seq = 0;

sub start_producer
{
	my ($node, %opt) = @_;
	my $p = {
		target => $opt{target} // 'orders',
		batches => $opt{batches} // 300,
		per_batch => $opt{per_batch} // 10,
		prefix => $opt{prefix} // 'p',
		pause => $opt{pause} // 0,
		seconds => $opt{seconds} // 120,
	};
	my $seq = ++$producer_seq;
	$p->{out} = "$PostgreSQL::Test::Utils::tmp_check/producer_$seq.out";
	unlink $p->{out}, "$p->{out}.err";
	my ($out, $err) = ('', '');
	$p->{err} = \$err;
	$p->{handle} = IPC::Run::start(
		[
			'bash', '-c', $producer_script, 'producer',
			$node->connstr('postgres'), $p->{batches}, $p->{per_batch},
			$p->{target}, $p->{prefix}, $p->{seconds}, $p->{out}, $p->{pause}
		],
		'<', \undef, '>', \$out, '2>', \$err);
	push @producers, $p->{handle};
	note "producer $seq: $p->{batches} x $p->{per_batch} messages to "
	  . "$p->{target}, ids $p->{prefix}-<batch>-<n>";
	return $p;
}

=pod

=item wait_producer($p)

Wait for the producer to finish; true when all its batches committed.

=cut

sub wait_producer
{
	my ($p) = @_;
	my $h = $p->{handle};
	my $ok = eval { $h->finish; 1 };
	$ok &&= $h->result == 0;
	note ${ $p->{err} } if ${ $p->{err} } ne '';
	return $ok;
}

=pod

=item producer_ids($p)

Every message_id the producer queues, in order.

=cut

sub producer_ids
{
	my ($p) = @_;
	my @ids;
	for my $b (1 .. $p->{batches})
	{
		push @ids, "$p->{prefix}-$b-$_" for 1 .. $p->{per_batch};
	}
	return @ids;
}

=pod

=item sql_epoch($node, $expr)

The value of a timestamptz SQL expression as float epoch seconds.

=cut

sub sql_epoch
{
	my ($node, $expr) = @_;
	return 0 + $node->safe_psql('postgres',
		"SELECT extract(epoch FROM ($expr))");
}

=pod

=item wait_seconds($s)

Sleep $s (fractional) seconds.

=cut

sub wait_seconds
{
	my ($s) = @_;
	usleep(int($s * 1_000_000));
	return;
}

=pod

=item slot_confirmed_past($node, $lsn, $slot)

Wait until the decoder's slot ($slot, default 'outbox') is confirmed at
or past WAL position $lsn: every message committed before it has been
decoded and handed over (or left for a scan).  Returns true when it is.

=cut

sub slot_confirmed_past
{
	my ($node, $lsn, $slot) = @_;
	$slot //= 'outbox';
	return poll_until($node,
		"SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots "
		  . "WHERE slot_name = '$slot'",
		't');
}

=pod

=item wait_for_decoding($node, $dbname)

Wait until the decoder streams from its slot (outbox.workers says
"decoding ..."), so that what commits from now on takes the WAL path.
Returns true when it does.

=cut

sub wait_for_decoding
{
	my ($node, $dbname) = @_;
	return poll_until($node,
		"SELECT state LIKE 'decoding%' FROM outbox.workers WHERE worker = 'decoder'",
		't', undef, $dbname);
}

=pod

=item gdb_attach($pid)

Attach gdb to process $pid of the test's server, to hold it at a chosen
point (a "committed but not yet visible" transaction, a worker stopped in
the middle of a pass).  The process stops while gdb is attached and runs
again with gdb_command($g, 'continue') or gdb_detach.  Returns a handle.
The signals PostgreSQL uses pass through without stopping it.

=cut

sub gdb_attach
{
	my ($pid) = @_;
	my ($in, $out) = ('', '');
	my $h = IPC::Run::start(
		[
			'gdb', '-q', '-nx', '-p', $pid,
			'-ex', 'set pagination off',
			'-ex', 'set confirm off',
			'-ex', 'handle SIGUSR1 SIGUSR2 SIGINT SIGTERM SIGHUP SIGPIPE SIGALRM SIGQUIT nostop noprint pass'
		],
		'<', \$in, '>&', \$out);
	my $g = { handle => $h, in => \$in, out => \$out, pid => $pid, seen => 0 };
	push @debuggers, $g;
	gdb_command($g, 'echo gdb-attached\n', qr/gdb-attached/)
	  or die "gdb could not attach to process $pid: $out";
	return $g;
}

=pod

=item gdb_command($g, $command, $expect, $timeout)

Send one command to gdb.  With $expect (a regexp), wait until gdb's output
after the command matches it and return true (false after the timeout);
without, return at once (for "continue", which returns when a breakpoint
is hit: see gdb_wait).

=cut

sub gdb_command
{
	my ($g, $cmd, $expect, $wait) = @_;
	$g->{seen} = length ${ $g->{out} };
	${ $g->{in} } .= "$cmd\n";
	$g->{handle}->pump_nb;
	return 1 unless $expect;
	return gdb_wait($g, $expect, $wait);
}

=pod

=item gdb_wait($g, $expect, $timeout)

Wait until gdb's output since the last command matches $expect, e.g.
qr/Breakpoint \d+, / once a breakpoint is hit.  Returns true if it did.

=cut

sub gdb_wait
{
	my ($g, $expect, $wait) = @_;
	$wait = _wait_limit($wait);
	my $deadline = time() + $wait;
	while (1)
	{
		$g->{handle}->pump_nb;
		return 1 if substr(${ $g->{out} }, $g->{seen}) =~ $expect;
		last if time() >= $deadline || !$g->{handle}->pumpable;
		usleep(20_000);
	}
	$timed_out = 1;
	diag "gdb_wait: no match for $expect after ${wait}s; gdb said:\n"
	  . substr(${ $g->{out} }, $g->{seen});
	return 0;
}

=pod

=item gdb_detach($g)

Remove breakpoints, let the process run on and end gdb.

=cut

sub gdb_detach
{
	my ($g) = @_;
	return unless $g->{handle};
	eval {
		if ($g->{handle}->pumpable)
		{
			# Stop it first if it runs, so that gdb reads the next commands
			kill 'INT', $g->{handle}->{KIDS}[0]{PID}
			  if ${ $g->{out} } =~ /Continuing\.\s*\z/;
			${ $g->{in} } .= "delete\ndetach\nquit\n";
			$g->{handle}->finish;
		}
	};
	$g->{handle}->kill_kill if $@;
	delete $g->{handle};
	return;
}

END
{
	local $?;    # keep the test's exit status
	gdb_detach($_) foreach @debuggers;
	foreach my $p (@producers)
	{
		eval { $p->kill_kill };
	}
	foreach my $r (@receivers)
	{
		my $h = $r->{handle} or next;
		eval {
			$h->signal('TERM') if $h->pumpable;
			$h->finish;
		};
		eval { $h->kill_kill };
	}
}

=pod

=item check_no_loss($node, $receiver, \@ids, $crash_time, $what)

After a producer ran through crashes: the table holds every committed
message (\@ids, the message_ids) once, every one ends delivered, the
receiver got every one at least once and answered 200, and got nothing that
was not committed.  Notes how many were sent more than once, and how many
of those had their delivery recorded before the first $what (at epoch
$crash_time).

=cut

sub check_no_loss
{
	my ($node, $r, $ids, $crash_time, $what) = @_;

	Test::More::is(
		$node->safe_psql(
			'postgres',
			"SELECT count(*), count(DISTINCT message_id) FROM outbox.messages "
			  . "WHERE message_id LIKE 'p-%'"),
		scalar(@$ids) . '|' . scalar(@$ids),
		'the table holds every committed message, once');
	Test::More::ok(
		poll_until(
			$node,
			"SELECT count(*) FROM outbox.messages WHERE state <> 'delivered'",
			'0', 90),
		'every committed message ends delivered');

	my %seen;
	$seen{ $_->{headers}{'webhook-id'} // '' }++ for read_requests($r);
	my @lost = grep { !$seen{$_} } @$ids;
	Test::More::is(scalar @lost, 0,
		'the receiver got every committed message at least once')
	  or Test::More::diag('never received: '
		  . join(' ', @lost[ 0 .. ($#lost < 9 ? $#lost : 9) ]));

	my %ok200;
	$ok200{ $_->{'webhook-id'} } ||= ($_->{sent} && $_->{status} == 200)
	  for read_answers($r);
	Test::More::is(scalar(grep { !$ok200{$_} } @$ids), 0,
		'the receiver answered 200 to every message');

	my %committed = map { $_ => 1 } @$ids, 'warmup';
	Test::More::is(scalar(grep { !$committed{$_} } keys %seen), 0,
		'the receiver got no message that was not committed');

	my @dup_ids = grep { $seen{$_} > 1 } keys %seen;
	my $extra = 0;
	$extra += $seen{$_} - 1 for @dup_ids;
	Test::More::note('duplicates: ' . scalar(@dup_ids)
		  . " message(s) were sent more than once ($extra extra request(s))");
	if (@dup_ids)
	{
		my $list = join(',', map { "'$_'" } @dup_ids);
		my $recorded = $node->safe_psql('postgres',
			"SELECT count(*) FROM outbox.messages WHERE message_id IN ($list) "
			  . "AND delivered_at < to_timestamp($crash_time)");
		Test::More::note(
			"duplicates whose delivery was recorded before the first $what: $recorded");
	}
	return;
}

=pod

=item run_example($name)

Run examples/$name/run.sh --quick with the extension as installed (the
test command installed it), for at most 300 s.  Its output goes to the
test's log directory too.  Returns (exit status, or a sentence saying it
was killed; output).

=cut

sub run_example
{
	my ($name) = @_;
	my $root = abs_path(dirname(__FILE__) . '/../..');
	my $test = basename($0);
	$test =~ s/_.*//;
	my $output_log = "$PostgreSQL::Test::Utils::log_path/${test}_example_output.log";
	my $out = '';
	my $started = time();
	local $ENV{OUTBOX_SKIP_INSTALL} = 1;
	my $exited = eval {
		IPC::Run::run([ 'bash', "$root/examples/$name/run.sh", '--quick' ],
			'<', \undef, '>&', \$out, IPC::Run::timeout(300));
		1;
	};
	my $status = $exited ? $? >> 8 : "killed after 300 s ($@)";
	PostgreSQL::Test::Utils::append_to_file($output_log, $out);
	note sprintf('run.sh --quick took %.0f s; its output is in %s',
		time() - $started, $output_log);
	return ($status, $out);
}

=pod

=item is_signed_with($req, @keys)

True if the request carries exactly one Standard Webhooks v1 signature per
key, in order, each base64(HMAC-SHA256(key, "id.timestamp.body")) computed
here with Digest::SHA (independently of the server); with no keys, true if
it carries no webhook-signature header.  Says what differs with diag.

=cut

sub is_signed_with
{
	my ($req, @keys) = @_;
	return 0 unless $req;
	my $h = $req->{headers};
	my @got =
	  defined $h->{'webhook-signature'}
	  ? split(/ /, $h->{'webhook-signature'}, -1)
	  : ();
	my @want = map {
		my $sig = Digest::SHA::hmac_sha256_base64(
			Encode::encode_utf8(
				"$h->{'webhook-id'}.$h->{'webhook-timestamp'}.$req->{body}"),
			$_);
		$sig .= '=' while length($sig) % 4;
		"v1,$sig";
	} @keys;
	return 1 if "@got" eq "@want";
	diag "signatures of " . ($h->{'webhook-id'} // '?')
	  . ": got [@got], want [@want]";
	return 0;
}

=pod

=item fail_delivered_commits($node)

Fault injection for the dispatcher's transactions: from now on, a commit
that records a message as delivered fails if the message's id is in the
table public.faults (created here), after everything the transaction did
(a deferred constraint trigger on outbox.messages raises at commit).
Insert ids into public.faults, for instance
C<INSERT INTO public.faults SELECT outbox_queue(...)>, and delete them to
let the commits succeed again.

=cut

sub fail_delivered_commits
{
	my ($node) = @_;
	$node->safe_psql('postgres', <<'SQL');
CREATE TABLE public.faults (id bigint PRIMARY KEY);
CREATE FUNCTION public.fail_commit() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF NEW.state = 'delivered'
       AND EXISTS (SELECT 1 FROM public.faults f WHERE f.id = NEW.id) THEN
        RAISE EXCEPTION 'injected failure: message % cannot be recorded', NEW.id;
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER fail_at_commit AFTER UPDATE ON outbox.messages
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION public.fail_commit();
SQL
	return;
}

=pod

=item wait_for_failed_commit($node, $activity, $offset)

Wait until the server log, from byte $offset on, shows a commit failed by
fail_delivered_commits in the dispatcher's transaction named $activity
(the errcontext of run_in_transaction, e.g. "scan outbox.messages"; or
a qr// of them). Returns true when it did.

=cut

sub wait_for_failed_commit
{
	my ($node, $activity, $offset) = @_;
	my $re = ref($activity) eq 'Regexp' ? $activity : qr/\Q$activity\E/;
	return wait_for_log_line($node,
		qr/fail_commit\(\) line \d+ at RAISE\n\toutbox dispatcher: $re /,
		$offset);
}

=pod

=item random_key($bytes)

A random signing key of $bytes bytes (32 if not given), as a list
(raw key, "whsec_<base64>").

=cut

sub random_key
{
	my ($bytes) = @_;
	my $key = pack('C*', map { int(rand(256)) } 1 .. ($bytes // 32));
	return ($key, 'whsec_' . MIME::Base64::encode_base64($key, ''));
}

=back

=cut

1;
