
# Helpers for the outbox TAP tests: a PostgreSQL node configured for the
# extension, HTTP receivers (test/receiver.py) and waiting helpers.

package OutboxTest;

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname basename);
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(
  outbox_node free_port start_receiver stop_receiver receiver_url
  read_requests wait_for_requests requests_with_id poll_until body_json
  sql_epoch wait_seconds
);

# Directory holding receiver.py (this file is test/lib/OutboxTest.pm).
my $test_dir = abs_path(dirname(__FILE__) . '/..');
my $receiver_script = "$test_dir/receiver.py";
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
	my $conf = <<"EOC";
# outbox test settings
shared_preload_libraries = 'outbox'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 4
output_plugin_libraries = 'pgoutput, test_decoding, outbox'
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

=item start_receiver(name => $name, port => $port, args => [...])

Start test/receiver.py in the background on $port (a fresh free port when
not given) and wait until it accepts connections.  Returns a hash:
{ name, port, log, url => "http://127.0.0.1:PORT", handle }.
The request log is tmp_check/log/<test>_receiver_<name>.jsonl; starting a
receiver again with the same name appends to the same log.

=cut

sub start_receiver
{
	my (%opt) = @_;
	my $name = $opt{name} || 'r' . ++$receiver_seq;
	my $port = $opt{port} || free_port();
	my $test = basename($0);
	$test =~ s/\.[^.]+$//;
	my $log = "$PostgreSQL::Test::Utils::log_path/${test}_receiver_$name.jsonl";

	my @cmd = (
		$python, $receiver_script,
		'--port' => $port,
		'--log' => $log,
		'--max-seconds' => 900,
		@{ $opt{args} || [] });
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', \$out, '2>', \$err);
	my $r = {
		name => $name,
		port => $port,
		log => $log,
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

=item read_requests($r_or_logfile)

All requests logged so far, as a list of hashes
{ t, method, path, headers => { lower-case name => value }, body, status,
peer }.  A partly written last line is ignored.

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
	return grep { ($_->{headers}{'webhook-id'} // '') eq $id }
	  read_requests($r);
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

=item poll_until($node, $sql, $expected, $timeout)

Run $sql (in database postgres) every 50 ms until its output equals
$expected or $timeout seconds (default $OutboxTest::timeout) pass.  Returns
true on success; on timeout prints the last output with diag and returns
false.

=cut

sub poll_until
{
	my ($node, $sql, $expected, $wait) = @_;
	$wait = _wait_limit($wait);
	my $deadline = time() + $wait;
	my ($stdout, $stderr) = ('', '');
	while (1)
	{
		($stdout, $stderr) = ('', '');
		$node->psql('postgres', $sql,
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

END
{
	local $?;    # keep the test's exit status
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

=back

=cut

1;
