
# webhook-id is the message_id when one was given, else msg_<id>, and it is
# the same on every attempt: across retries, a server restart and
# outbox_redrive().  Receivers de-duplicate on it.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $orders = start_receiver(name => 'orders', control => 1);
set_control($orders, { status => 500 });
my $node = outbox_node('stable_ids',
	targets => 'orders=' . receiver_url($orders, '/o'),
	conf => <<'EOC');
outbox.retry_base_delay = '50ms'
outbox.retry_max_delay = '200ms'
outbox.max_attempts = 1000
outbox.circuit_failures = 1000
EOC

# a: outbox_queue with message_id; b: outbox_queue without; c: outbox_send without
my ($id_a, $id_b, $id_c) = split /\n/, $node->safe_psql('postgres', q{
SELECT outbox_queue('orders', '{"m": "a"}', message_id => 'stable-a');
SELECT outbox_queue('orders', '{"m": "b"}');
SELECT outbox_send('orders', '{"m": "c"}');
});
my %expected_id = (a => 'stable-a', b => "msg_$id_b", c => "msg_$id_c");

# Requests for message $m (by payload), optionally only those after time $t
sub requests_of
{
	my ($m, $after) = @_;
	return grep {
		my $b = body_json($_);
		$b && ($b->{m} // '') eq $m && (!defined $after || $_->{t} > $after)
	} read_requests($orders);
}

sub wait_each
{
	my ($n, $after, $filter) = @_;
	foreach my $m (qw(a b c))
	{
		wait_for_requests($orders, $n, undef,
			sub {
				my $b = body_json($_[0]);
				$b && ($b->{m} // '') eq $m
				  && (!defined $after || $_[0]{t} > $after)
				  && (!$filter || $filter->($_[0]));
			});
	}
	return;
}

# --- retries ----------------------------------------------------------------

wait_each(2);
ok((grep { scalar(requests_of($_)) >= 2 } qw(a b c)) == 3,
	'every message is retried while the target answers 500');
my %last_attempt_before;
foreach my $m (qw(a b c))
{
	my @r = requests_of($m);
	$last_attempt_before{$m} = $r[-1]{headers}{'outbox-attempt'};
}

# --- restart ----------------------------------------------------------------

$node->restart;
my $restarted = time();
wait_each(1, $restarted);
ok((grep { scalar(requests_of($_, $restarted)) >= 1 } qw(a b c)) == 3,
	'every message is tried again after a restart');
my @not_counted = grep {
	my ($first) = requests_of($_, $restarted);
	!($first && $first->{headers}{'outbox-attempt'} > $last_attempt_before{$_});
} qw(a b c);
is("@not_counted", '', 'outbox-attempt keeps counting across the restart');

# --- dead, then redriven ----------------------------------------------------

$node->append_conf('postgresql.conf', 'outbox.max_attempts = 1');
$node->reload;
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE state = 'dead'", '3'),
	'the messages go dead once max_attempts is lowered');
set_control($orders, { status => 200 });
my $redriven = time();
is($node->safe_psql('postgres', q{SELECT outbox_redrive('orders')}),
	'3', 'outbox_redrive brings back the three dead messages');
wait_each(1, $redriven, sub { $_[0]{status} == 200 });
ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE state = 'delivered'", '3'),
	'the redriven messages are delivered');
is($node->safe_psql('postgres', 'SELECT count(*) FROM outbox.messages'),
	'3', 'redrive makes no new rows');

# --- the ids ------------------------------------------------------------------

foreach my $m (qw(a b c))
{
	my @all = requests_of($m);
	my @ids = map { $_->{headers}{'webhook-id'} // '(none)' } @all;
	my %distinct = map { $_ => 1 } @ids;
	my $phases = join ', ',
	  scalar(grep { $_->{t} < $restarted } @all) . ' before the restart',
	  scalar(grep { $_->{t} > $restarted && $_->{t} < $redriven } @all)
	  . ' after it',
	  scalar(grep { $_->{t} > $redriven } @all) . ' after the redrive';
	is_deeply([ sort keys %distinct ], [ $expected_id{$m} ],
		"message $m: all " . scalar(@all) . " requests ($phases) carry webhook-id $expected_id{$m}");
}

$node->stop;
done_testing();
