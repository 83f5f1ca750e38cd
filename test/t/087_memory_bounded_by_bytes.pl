
# The dispatcher's memory is bounded by bytes, not by the number of
# messages: with four targets that accept connections and never answer,
# and 100 messages of 1 MB queued for each (400 MB of payloads), its
# private memory (RssAnon) stays under 256 MB while it works through them.
# (The benchmark's memory phase does the same with 500 each, 2 GB.)  A
# producer that can only EXECUTE outbox_queue cannot get it killed by the
# kernel's OOM killer (which would restart the cluster, which would reload
# the same backlog).  Nothing is lost: every message is still pending.

use strict;
use warnings;

use IO::Socket::INET;
use Time::HiRes qw(usleep);
use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $per_target = 100;
my $limit_kb = 256 * 1024;

# Four "receivers" that complete the TCP handshake (the kernel does, from
# the listen backlog) and never read or answer: every request hangs.
my @silent = map {
	IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => 0,
		Listen => 512,
		Proto => 'tcp') or die "listen: $!"
} 1 .. 4;
my $targets = join ', ',
  map { "slow$_=http://127.0.0.1:" . $silent[ $_ - 1 ]->sockport . '/hook' }
  1 .. 4;

my $node = outbox_node('memory_bounded',
	targets => $targets,
	conf => "outbox.request_timeout = '10min'\n"
	  . "outbox.circuit_failures = 1000\n"
	  . "logical_decoding_work_mem = '64MB'");
my $dispatcher = worker_pid($node, 'outbox dispatcher');

# RssAnon of the dispatcher, in kB
sub rss_anon
{
	open my $fh, '<', "/proc/$dispatcher/status" or return 0;
	while (<$fh>)
	{
		return $1 if /^RssAnon:\s+(\d+)\s+kB/;
	}
	return 0;
}

# 1 MB of JSON each (a 32-byte pattern, so it compresses on disk), in
# transactions of 50 messages.
my $max_kb = 0;
for my $t (1 .. 4)
{
	for (my $first = 1; $first <= $per_target; $first += 50)
	{
		$node->safe_psql('postgres', qq{
SELECT count(outbox_queue('slow$t',
                          jsonb_build_object('n', g, 'pad', repeat(md5(g::text), 31250)),
                          message_id => 'big-$t-' || g))
  FROM generate_series($first, $first + 49) g});
		my $kb = rss_anon();
		$max_kb = $kb if $kb > $max_kb;
	}
}

# Until the decoder has passed every message (each is in the ring, or was
# left for a scan when the ring was full), sampling; then some seconds more
my $total = 4 * $per_target;
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
my $deadline = time() + 300;
my $passed = 'f';
while (time() < $deadline)
{
	my $kb = rss_anon();
	$max_kb = $kb if $kb > $max_kb;
	$passed = $node->safe_psql('postgres',
		"SELECT pg_wal_lsn_diff(confirmed_flush_lsn, '$lsn') >= 0"
		  . " FROM pg_replication_slots WHERE slot_name = 'outbox'");
	last if $passed eq 't';
	usleep(200_000);
}
is($passed, 't', 'the decoder passed every message');
for (1 .. 25)
{
	my $kb = rss_anon();
	$max_kb = $kb if $kb > $max_kb;
	usleep(200_000);
}

note sprintf 'dispatcher RssAnon: at most %.0f MB', $max_kb / 1024;
cmp_ok($max_kb, '<', $limit_kb,
	"the dispatcher's private memory stays under 256 MB with 400 MB of payloads queued");
is($node->safe_psql('postgres',
		"SELECT count(*) FROM outbox.messages WHERE state = 'pending'"),
	$total, 'every message is still pending: nothing was dropped');
is(worker_pid($node, 'outbox dispatcher'), $dispatcher,
	'the dispatcher did not restart');

$node->stop('immediate');
done_testing();
