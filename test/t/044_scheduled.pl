
# outbox_send(..., deliver_at => ...) is not attempted before deliver_at and
# is attempted within a second after it, and the dispatcher does not
# busy-poll while it waits: it sleeps until the next message is due.

use strict;
use warnings;

use POSIX ();
use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('scheduled',
	targets => 'orders=' . receiver_url($orders, '/o'));





# Warm up: the workers have started, the slot exists, a delivery went through.
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"warmup": true}', message_id => 'warmup')});
ok(scalar(wait_for_requests($orders, 1, undef, with_id('warmup'))),
	'the outbox delivers');
my $pid = worker_pid($node, 'outbox dispatcher');
like($pid, qr/^\d+$/, 'the dispatcher is running');

# --- one message 3 s ahead, one an hour ahead ---------------------------------

my ($due) = split /\n/, $node->safe_psql('postgres', q{
SELECT extract(epoch FROM now() + interval '3 seconds');
SELECT outbox_send('orders', '{"when": "3s"}', message_id => 'in-3s',
                   deliver_at => now() + interval '3 seconds');
SELECT outbox_send('orders', '{"when": "1h"}', message_id => 'in-1h',
                   deliver_at => now() + interval '1 hour');
});
my $cpu_before = cpu_seconds($pid);
my $t_before = time();

my ($req) = wait_for_requests($orders, 1, 10, with_id('in-3s'));
ok($req, 'a message scheduled 3 s ahead is delivered');
if ($req)
{
	note sprintf('attempted %.3f s after deliver_at', $req->{t} - $due);
	cmp_ok($req->{t}, '>=', $due, 'it is not attempted before deliver_at');
	cmp_ok($req->{t} - $due, '<', 1.0,
		'it is attempted within 1 s after deliver_at');
}
my $cpu_used = cpu_seconds($pid) - $cpu_before;
note sprintf('dispatcher CPU while waiting %.1f s: %.3f s',
	time() - $t_before, $cpu_used);
cmp_ok($cpu_used, '<', 0.1,
	'the dispatcher uses under 0.1 s of CPU while it waits for the message');

# --- several messages due at different times -----------------------------------

my @at = (1, 1.5, 2.5);
my $sql = "SELECT extract(epoch FROM now());\n";
$sql .= "SELECT outbox_send('orders', '{\"at\": $_}', message_id => 'at-$_', "
  . "deliver_at => now() + interval '$_ seconds');\n"
  for @at;
my ($now) = split /\n/, $node->safe_psql('postgres', $sql);
my @late;
foreach my $s (@at)
{
	my ($r) = wait_for_requests($orders, 1, 10, with_id("at-$s"));
	my $delta = $r ? $r->{t} - ($now + $s) : undef;
	push @late, "at-$s: " . (defined $delta ? sprintf('%+.3f s', $delta) : 'never')
	  unless defined $delta && $delta >= 0 && $delta < 1.0;
}
is(scalar @late, 0,
	'messages due at 1, 1.5 and 2.5 s are each attempted within 1 s after their time, not before')
  or diag join("\n", @late);

# --- the far one waits, and so does the dispatcher -------------------------------

my $decoder = worker_pid($node, 'outbox decoder');
$cpu_before = cpu_seconds($pid);
my $decoder_before = cpu_seconds($decoder);
wait_seconds(3);
$cpu_used = cpu_seconds($pid) - $cpu_before;
my $decoder_used = cpu_seconds($decoder) - $decoder_before;
note sprintf('CPU over 3 idle seconds: dispatcher %.3f s, decoder %.3f s',
	$cpu_used, $decoder_used);
cmp_ok($cpu_used, '<', 0.1,
	'with only a message due in an hour, the dispatcher uses under 0.1 s of CPU in 3 s');
cmp_ok($decoder_used, '<', 0.1,
	'with nothing to decode, the decoder uses under 0.1 s of CPU in 3 s');
is(scalar(requests_with_id($orders, 'in-1h')), 0,
	'the message due in an hour is not attempted');
is( $node->safe_psql('postgres',
		q{SELECT state || '/' || attempts FROM outbox.messages WHERE message_id = 'in-1h'}),
	'pending/0', 'it stays pending and untried');
is(worker_pid($node, 'outbox dispatcher'), $pid, 'the same dispatcher process ran throughout');

$node->stop;
done_testing();
