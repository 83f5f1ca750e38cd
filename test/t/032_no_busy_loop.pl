
# The dispatcher sleeps when there is nothing to send: idle, with 5000
# messages scheduled an hour ahead, and with messages waiting for a target
# whose circuit is open, it uses almost no CPU (measured from
# /proc/<pid>/stat); so does the decoder when no WAL comes in.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

plan skip_all => 'needs /proc/<pid>/stat' unless -r "/proc/$$/stat";

my $orders = start_receiver(name => 'orders');
my $down_port = free_port();    # nothing listens there
my $node = outbox_node('no_busy_loop',
	targets => 'orders=' . receiver_url($orders, '/o')
	  . ", down=http://127.0.0.1:$down_port/d",
	conf => "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '1s'\n"
	  . "outbox.circuit_failures = 3");

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"warm": 1}', message_id => 'warmup')});
ok(scalar(wait_for_requests($orders, 1)), 'the dispatcher delivers');
my $pid = worker_pid($node, 'outbox dispatcher');
my $decoder = worker_pid($node, 'outbox decoder');
ok($pid && $decoder, 'the dispatcher and the decoder run')
  or do { done_testing(); exit 1 };

# CPU seconds the dispatcher (or the given process) uses in $secs seconds
# of wall time.
sub cpu_over
{
	my ($secs, $p) = @_;
	$p //= $pid;
	my $before = cpu_seconds($p);
	wait_seconds($secs);
	my $after = cpu_seconds($p);
	return defined $before && defined $after ? $after - $before : undef;
}

my $d_before = cpu_seconds($decoder);
my $idle = cpu_over(5);
my $d_idle = cpu_seconds($decoder) - $d_before;
note sprintf('idle: dispatcher %.3f s, decoder %.3f s of CPU in 5 s',
	$idle // -1, $d_idle);
cmp_ok($idle // 99, '<', 0.2, 'an idle dispatcher uses under 0.2 s of CPU in 5 s');
cmp_ok($d_idle, '<', 0.2, 'an idle decoder uses under 0.2 s of CPU in 5 s');

$node->safe_psql('postgres', q{
SELECT count(outbox_send('orders', jsonb_build_object('n', g),
                         message_id => 'later-' || g,
                         deliver_at => now() + interval '1 hour'))
  FROM generate_series(1, 5000) g;
});
wait_seconds(1);    # let it look at them once
my $waiting = cpu_over(5);
note sprintf('5000 messages due in an hour: %.3f s of CPU in 5 s', $waiting // -1);
cmp_ok($waiting // 99, '<', 0.2,
	'with 5000 messages due in an hour it uses under 0.2 s of CPU in 5 s');
is(scalar(grep { $_->{headers}{'webhook-id'} =~ /^later-/ } read_requests($orders)),
	0, 'none of them is sent early');

$node->safe_psql('postgres', q{
SELECT count(outbox_queue('down', jsonb_build_object('n', g), message_id => 'down-' || g))
  FROM generate_series(1, 200) g;
});
ok( poll_until(
		$node, "SELECT circuit FROM outbox.targets WHERE target = 'down'", 'open'),
	"the unreachable target's circuit opens");
wait_seconds(1);
my $open = cpu_over(5);
note sprintf('200 messages behind an open circuit: %.3f s of CPU in 5 s', $open // -1);
cmp_ok($open // 99, '<', 0.2,
	'with 200 messages waiting behind an open circuit it uses under 0.2 s of CPU in 5 s');
is(worker_pid($node, 'outbox dispatcher'), $pid,
	'it is the same dispatcher process throughout');

$node->stop;
done_testing();
