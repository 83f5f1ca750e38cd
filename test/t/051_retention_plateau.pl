
# Retention keeps the tables flat under a steady load.  With
# outbox.retention = '5s' and ~150 messages/s for 90 s (pgbench -R, to a
# healthy receiver), the dispatcher removes delivered messages and attempt
# rows once they are older than the retention (it prunes every 10 s, more
# often while its 1000-row batches are full), and with autovacuum on the
# sizes of outbox.messages and outbox.attempts level off instead of growing
# with the number of messages sent: the largest size in the last third of
# the run is at most 1.25x the largest in the middle third (a size growing
# linearly from zero would give 1.5x).  Every message is delivered.

use strict;
use warnings;

use List::Util qw(max);
use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $rate = 150;       # messages per second
my $seconds = 90;     # of load
my $every = 10;       # seconds between samples
my $slack = 15;       # seconds allowed past the retention (prune interval 10 s)
my $retention = 5;

my $r = start_receiver(name => 'sink');
my $node = outbox_node('retention_plateau',
	targets => 'sink=' . receiver_url($r, '/sink'),
	conf => "outbox.retention = '${retention}s'\n"
	  . "autovacuum = on\n"
	  . "autovacuum_naptime = '1s'\n"
	  . "log_autovacuum_min_duration = 0");

my $script = "$PostgreSQL::Test::Utils::tmp_check/051_producer.sql";
open my $fh, '>', $script or die "cannot write $script: $!";
print $fh "SELECT outbox_queue('sink', jsonb_build_object('n', random(), "
  . "'pad', repeat('x', 200)));\n";
close $fh;

my ($pgb_out, $pgb_err) = ('', '');
my $pgbench = IPC::Run::start(
	[
		'pgbench', '-n', '-h', $node->host, '-p', $node->port,
		'-c', 2, '-j', 2, '-R', $rate, '-T', $seconds,
		'-f', $script, 'postgres'
	],
	'<', \undef, '>', \$pgb_out, '2>', \$pgb_err);
my $t0 = time();
note "pgbench: $rate messages/s for $seconds s";

my @samples;
for my $i (1 .. $seconds / $every)
{
	my $at = $t0 + $i * $every;
	wait_seconds($at - time()) if $at > time();
	my ($msgs, $atts, $delivered, $pending, $stale_m, $stale_a, $fresh) =
	  split /\|/, $node->safe_psql('postgres', qq{
SELECT pg_total_relation_size('outbox.messages'),
       pg_total_relation_size('outbox.attempts'),
       (SELECT count(*) FROM outbox.messages WHERE state = 'delivered'),
       (SELECT count(*) FROM outbox.messages WHERE state = 'pending'),
       (SELECT count(*) FROM outbox.messages WHERE state = 'delivered'
           AND delivered_at < now() - interval '@{[ $retention + $slack ]} s'),
       (SELECT count(*) FROM outbox.attempts
         WHERE started_at < now() - interval '@{[ $retention + $slack ]} s'),
       (SELECT count(*) FROM outbox.messages WHERE state = 'delivered'
           AND delivered_at > now() - interval '@{[ $retention - 2 ]} s')});
	note '  kB per relation: ' . $node->safe_psql('postgres', q{
SELECT string_agg(c.relname || ' ' || pg_relation_size(c.oid) / 1024, ', '
                  ORDER BY c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'outbox' AND c.relkind IN ('r', 'i')});
	push @samples, {
		t => $i * $every,
		messages => $msgs,
		attempts => $atts,
		stale_messages => $stale_m,
		stale_attempts => $stale_a,
		fresh => $fresh
	};
	note sprintf('t=%3ds messages %6d kB, attempts %6d kB; rows: %d delivered, '
		  . '%d pending; older than %ds: %d messages, %d attempts',
		$i * $every, $msgs / 1024, $atts / 1024, $delivered, $pending,
		$retention + $slack, $stale_m, $stale_a);
}

my $pgb_ok = eval { $pgbench->finish; 1 } && $pgbench->result == 0;
ok($pgb_ok, 'pgbench ran to the end') or diag "pgbench: $pgb_err";
my ($sent) = $pgb_out =~ /number of transactions actually processed: (\d+)/;
$sent //= 0;
note "pgbench queued $sent messages";
cmp_ok($sent, '>=', 0.8 * $rate * $seconds,
	"the load was steady: at least 80% of $rate/s x $seconds s queued");

# Samples after the first retention + slack + one prune interval.
my @settled = grep { $_->{t} >= $retention + $slack + $every } @samples;
is(max(map { $_->{stale_messages} } @settled),
	0,
	"no delivered message outlives the retention by more than ${slack} s");
is(max(map { $_->{stale_attempts} } @settled),
	0, "no attempt row outlives the retention by more than ${slack} s");
cmp_ok($samples[-1]{fresh}, '>', 0,
	'messages delivered within the retention are kept');

my $n = scalar @samples;
my @middle = @samples[ int($n / 3) .. int(2 * $n / 3) - 1 ];
my @last = @samples[ int(2 * $n / 3) .. $n - 1 ];
for my $rel (qw(messages attempts))
{
	my $mid = max(map { $_->{$rel} } @middle);
	my $end = max(map { $_->{$rel} } @last);
	note sprintf('outbox.%s: max %d kB in the middle third, %d kB in the last third '
		  . '(%.2fx)', $rel, $mid / 1024, $end / 1024, $end / $mid);
	cmp_ok($end, '<=', 1.25 * $mid,
		"outbox.$rel levels off: its size in the last third of the run is at "
		  . 'most 1.25x the middle third');
}
# Autovacuum only sees what the statistics report: rows inserted, updated
# and deleted by the dispatcher count only once it reports them.
note 'table statistics: '
  . $node->safe_psql('postgres',
	"SELECT string_agg(format('%s: %s inserted, %s updated, %s deleted, %s dead, "
	  . "%s autovacuums', relname, n_tup_ins, n_tup_upd, n_tup_del, n_dead_tup, "
	  . "autovacuum_count), '; ' ORDER BY relname) "
	  . "FROM pg_stat_user_tables WHERE schemaname = 'outbox'");

ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE state <> 'delivered'", '0'),
	'no message is left pending or dead');
my @reqs = wait_for_requests($r, $sent, 10);
my %ids = map { ($_->{headers}{'webhook-id'} // '') => 1 } @reqs;
is(scalar(keys %ids), $sent, 'the receiver got every message queued');

$node->stop;
done_testing();
