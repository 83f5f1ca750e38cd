
# Per-key order under faults.  Messages with the same (target, key) are
# delivered one at a time in commit order: message n+1 is not sent until
# message n got a 2xx or is dead.  This holds while the receiver fails a
# random third of the attempts, across a kill -9 of the dispatcher, a
# pg_ctl restart and outbox_redrive(), for outbox_queue and outbox_send
# messages mixed in the same keys.  Other keys and unkeyed messages keep
# flowing meanwhile.

use strict;
use warnings;

use List::Util qw(shuffle);
use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $seed = $ENV{OUTBOX_SEED} || time() ^ $$;
srand($seed);
note "random seed (set OUTBOX_SEED to repeat the producer side): $seed";

# Every request takes 50 ms, and a random third of them are answered 500.
my $orders = start_receiver(
	name => 'orders',
	control => 1,
	args => [ '--fail-rate' => 0.33, '--delay' => 0.05 ]);
set_control($orders, { status => 200 });
my $node = outbox_node('key_order_faults',
	targets => 'orders=' . receiver_url($orders, '/o'),
	conf => <<'EOC');
outbox.retry_base_delay = '50ms'
outbox.retry_max_delay = '200ms'
outbox.max_attempts = 50
outbox.circuit_failures = 1000
restart_after_crash = on
EOC

sub is_2xx { return $_[0]{status} >= 200 && $_[0]{status} < 300 }

# The requests of one key in log order, optionally only those after $after.
# The receiver logs a request before answering it, so the log order of a
# 2xx and of a later request is the order the dispatcher saw them in.
sub key_requests
{
	my ($key, $after) = @_;
	return grep { key_of($_) eq $key && (!defined $after || $_->{t} > $after) }
	  read_requests($orders);
}

# Problems with the order of one key's requests, as text (empty when fine):
# the 2xx answers must come in sequence 1..n (a repeat of the last one,
# after a crash, is allowed), and no request of seq s may come before a 2xx
# of seq s-1.
sub order_problems
{
	my ($key, $n, $reqs) = @_;
	my @problems;
	my @ok = map { seq_of($_) } grep { is_2xx($_) } @$reqs;
	my @collapsed = grep { $_ == 0 || $ok[$_] != $ok[ $_ - 1 ] } 0 .. $#ok;
	my $got = join ',', map { $ok[$_] } @collapsed;
	push @problems, "$key: 2xx sequence $got" unless $got eq join ',', 1 .. $n;
	my %answered;
	foreach my $r (@$reqs)
	{
		my $s = seq_of($r);
		push @problems, "$key: seq $s sent before seq " . ($s - 1) . ' got a 2xx'
		  if $s > 1 && !$answered{ $s - 1 };
		$answered{$s} = 1 if is_2xx($r);
	}
	return @problems;
}


# --- phase 1: five keys, twenty messages each, queue and send mixed ----------

my @keys = map { "k$_" } 1 .. 5;
my $per_key = 20;

# Transaction j queues seq 2j-1 and 2j of every key, keys interleaved at
# random, each call through outbox_queue or outbox_send at random, plus two
# messages without a key.
sub transaction_sql
{
	my ($j) = @_;
	my @calls;
	foreach my $key (@keys)
	{
		push @calls, [ $key, 2 * $j - 1 ], [ $key, 2 * $j ];
	}
	# shuffle, then restore each key's order among its own positions
	my @mixed = shuffle @calls;
	my %next;
	foreach my $c (@mixed)
	{
		$next{ $c->[0] } //= 2 * $j - 1;
		$c = [ $c->[0], $next{ $c->[0] }++ ];
	}
	my $sql = "BEGIN;\n";
	foreach my $c (@mixed)
	{
		my ($key, $seq) = @$c;
		my $fn = rand() < 0.5 ? 'outbox_queue' : 'outbox_send';
		$sql .= "SELECT $fn('orders', '{\"key\": \"$key\", \"seq\": $seq}', "
		  . "key => '$key', message_id => '$key-$seq');\n";
		$sql .= "SELECT outbox_queue('orders', '{\"free\": $j$seq}', message_id => 'free-$key-$seq');\n"
		  if $key eq 'k1';
	}
	return $sql . "COMMIT;\n";
}

my $t0 = time();
$node->safe_psql('postgres', transaction_sql($_)) for 1 .. 5;

# kill -9 the dispatcher while the keys are flowing
my $pid = worker_pid($node, 'outbox dispatcher');
wait_for_requests($orders, 10, undef,
	sub { key_of($_[0]) ne '' && is_2xx($_[0]) });
ok($pid =~ /^\d+$/ && kill('KILL', $pid), 'the dispatcher is killed with SIGKILL mid-flow');
my $killed = time();
$node->poll_query_until('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'outbox dispatcher' AND pid <> $pid",
	'1')
  or diag 'the dispatcher did not come back after the crash';

$node->safe_psql('postgres', transaction_sql($_)) for 6 .. 10;

# pg_ctl restart while they are still flowing
my $recovered = time();
wait_for_requests($orders, 1, undef,
	sub { key_of($_[0]) ne '' && is_2xx($_[0]) && $_[0]{t} > $recovered });
$node->restart;
my $restarted = time();

ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE state = 'delivered'",
		scalar(@keys) * $per_key + $per_key, 40),
	'every message of phase 1 is delivered');
note sprintf('phase 1 took %.1f s; crash at +%.1f s, restart at +%.1f s',
	time() - $t0, $killed - $t0, $restarted - $t0);

my @all = read_requests($orders);
my $failed = grep { $_->{status} == 500 } @all;
note sprintf('%d requests, %d answered 500', scalar @all, $failed);
cmp_ok($failed, '>=', @all / 10, 'the receiver failed a good share of the attempts');
ok((grep { $_->{t} > $restarted && key_of($_) ne '' } @all),
	'keyed messages were still being sent after the restart');

my @problems = map { order_problems($_, $per_key, [ key_requests($_) ]) } @keys;
is(scalar @problems, 0,
	'for every key, 2xx answers come in commit order and no message is sent before the previous one got a 2xx')
  or diag join("\n", @problems);

# Several keys in flight at once: with a 50 ms answer, a serial dispatcher
# could not start two requests less than 50 ms apart.
my @keyed = grep { key_of($_) ne '' } @all;
my $overlaps = grep {
	$_ > 0
	  && key_of($keyed[$_]) ne key_of($keyed[ $_ - 1 ])
	  && $keyed[$_]{t} - $keyed[ $_ - 1 ]{t} < 0.03
} 0 .. $#keyed;
cmp_ok($overlaps, '>', 0, 'requests of different keys are in flight at the same time');
my @free = grep { ($_->{headers}{'webhook-id'} // '') =~ /^free-/ && is_2xx($_) } @all;
my %free_ids = map { $_->{headers}{'webhook-id'} => 1 } @free;
is(scalar keys %free_ids, $per_key, 'the unkeyed messages are all delivered alongside');

# --- phase 2: dead messages let the next one go; redrive keeps the order -----

my @rkeys = map { "r$_" } 1 .. 3;
my $per_rkey = 4;
set_control($orders, { status => 500 });
$node->append_conf('postgresql.conf', 'outbox.max_attempts = 3');
$node->reload;
wait_seconds(0.5);
my $sql = "BEGIN;\n";
foreach my $seq (1 .. $per_rkey)
{
	foreach my $key (shuffle @rkeys)
	{
		my $fn = rand() < 0.5 ? 'outbox_queue' : 'outbox_send';
		$sql .= "SELECT $fn('orders', '{\"key\": \"$key\", \"seq\": $seq}', "
		  . "key => '$key', message_id => '$key-$seq');\n";
	}
}
$node->safe_psql('postgres', "$sql COMMIT;");
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE key LIKE 'r%' AND state = 'dead'",
		scalar(@rkeys) * $per_rkey),
	'with every attempt failing, the messages go dead one after the other');

my @dead_problems;
foreach my $key (@rkeys)
{
	# in log order, seq s must not appear before seq s-1's third attempt
	my @reqs = key_requests($key);
	my %seen;
	foreach my $r (@reqs)
	{
		my $s = seq_of($r);
		push @dead_problems, "$key: seq $s sent before seq " . ($s - 1) . ' was dead'
		  if $s > 1 && ($seen{ $s - 1 } // 0) < 3;
		$seen{$s}++;
	}
}
is(scalar @dead_problems, 0,
	'message n+1 of a key is sent only after message n used its three attempts')
  or diag join("\n", @dead_problems);

set_control($orders, { status => 200 });    # back to a random third failing
$node->append_conf('postgresql.conf', 'outbox.max_attempts = 50');
$node->reload;
wait_seconds(0.5);
my $redriven = time();
is($node->safe_psql('postgres', q{SELECT outbox_redrive('orders')}),
	scalar(@rkeys) * $per_rkey, 'outbox_redrive brings the dead messages back');
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE key LIKE 'r%' AND state = 'delivered'",
		scalar(@rkeys) * $per_rkey),
	'the redriven messages are delivered');
@problems =
  map { order_problems($_, $per_rkey, [ key_requests($_, $redriven) ]) } @rkeys;
is(scalar @problems, 0,
	'after outbox_redrive, each key is again delivered in order, one at a time')
  or diag join("\n", @problems);

$node->stop;
done_testing();
