
# A failing message never holds up other messages: a message its receiver
# always answers 500 to ("poison") keeps being retried while the other
# messages of the same target (without key) and of other targets are
# delivered at once, also after the poison message has failed many times
# in a row on its own (default outbox.circuit_failures and max_attempts).

use strict;
use warnings;

use List::Util qw(max);
use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $orders = start_receiver(name => 'orders', control => 1);
my $billing = start_receiver(name => 'billing');
my $node = outbox_node('poison_message',
	targets => 'orders=' . receiver_url($orders, '/o')
	  . ', billing=' . receiver_url($billing, '/b'),
	conf => "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '500ms'\n"
	  . "outbox.max_attempts = 12\n"
	  . "outbox.circuit_failures = 5");
set_control($orders, { by_id => { poison => { status => 500 } } });

# Queue $n messages "$prefix-<i>" to $target; return the seconds from the
# commit to the arrival of the last one (undef if they do not all arrive).
sub delivery_time
{
	my ($r, $target, $prefix, $n, $wait) = @_;
	my $out = $node->safe_psql('postgres', qq{
SELECT count(outbox_queue('$target', jsonb_build_object('n', g),
                          message_id => '$prefix-' || g))
  FROM generate_series(1, $n) g;
SELECT extract(epoch FROM clock_timestamp());
});
	my ($committed) = $out =~ /([\d.]+)\z/;
	my @got = wait_for_requests($r, $n, $wait,
		sub { $_[0]{headers}{'webhook-id'} =~ /^$prefix-/ });
	return undef unless @got >= $n;
	my $took = max(map { $_->{t} } @got) - $committed;
	note sprintf('%s: %d messages delivered in %.3f s', $prefix, $n, $took);
	return $took;
}

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"poison": true}', message_id => 'poison')});
ok(scalar(wait_for_requests($orders, 1)), 'the poison message is sent');

my $took = delivery_time($orders, 'orders', 'with', 30, 10);
ok(defined $took && $took < 1,
	'30 messages queued right after it to the same target arrive within 1 s');

# The poison message now fails alone, again and again.
my $so_far = $node->safe_psql('postgres',
	"SELECT attempts FROM outbox.messages WHERE message_id = 'poison'");
ok( poll_until(
		$node,
		"SELECT attempts >= $so_far + 6 OR (SELECT circuit = 'open' FROM outbox.targets "
		  . "WHERE target = 'orders'), state FROM outbox.messages WHERE message_id = 'poison'",
		't|pending'),
	'the poison message has failed at least 6 times in a row on its own, and is still pending');
my $targets = $node->safe_psql('postgres',
	"SELECT circuit, consecutive_failures FROM outbox.targets WHERE target = 'orders'");
note "orders circuit, consecutive failures: $targets";
my $poison_sent = scalar(requests_with_id($orders, 'poison'));
ok( scalar(wait_for_requests($orders, $poison_sent + 8, 20,
		with_id('poison'))) >= $poison_sent + 8,
	'and it keeps being sent (retried or probed), eight more times');

$took = delivery_time($orders, 'orders', 'after', 5, 10);
ok(defined $took && $took < 3,
	'messages queued after the poison message failed many times in a row still arrive within 3 s'
);
$took = delivery_time($billing, 'billing', 'other', 5, 10);
ok(defined $took && $took < 1, 'messages to another target arrive within 1 s');

ok( poll_until(
		$node,
		"SELECT count(*) FROM outbox.messages WHERE message_id <> 'poison' "
		  . "AND state <> 'delivered'",
		'0', 10),
	'every message but the poison one is delivered');

$node->stop;
done_testing();
