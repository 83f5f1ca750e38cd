
# While a target's circuit is open, probes are requests like any other:
# each is one attempt, with its own outbox-attempt number and its own row
# in outbox.attempts, and messages.attempts counts them all.  A failed probe
# is also counted in probe_failures, which max_attempts does not count.  And
# a probe never takes a message before its time.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders', control => 1);
my $node = outbox_node('probe_attempts',
	targets => 'orders=' . receiver_url($orders, '/o'),
	conf => "outbox.circuit_failures = 1\n"
	  . "outbox.max_attempts = 2\n"
	  . "outbox.retry_base_delay = '100ms'\n"
	  . "outbox.retry_max_delay = '300ms'\n");

# --- one request, one attempt --------------------------------------------

set_control($orders, { status => 500 });
$node->safe_psql('postgres',
	"SELECT outbox_queue('orders', '{\"n\": 1}', message_id => 'probed')");
my @reqs = wait_for_requests($orders, 4, undef,
	with_id('probed'));
ok(poll_until($node, 'SELECT circuit FROM outbox.targets', 'open'),
	'the first failure opens the circuit; the message is then sent as probes');
set_control($orders, { status => 200 });
ok(poll_until($node,
		"SELECT state FROM outbox.messages WHERE message_id = 'probed'",
		'delivered'),
	'a probe that succeeds delivers it, although it was sent more often than max_attempts');

@reqs = requests_with_id($orders, 'probed');
my $sent = scalar @reqs;
is(join(',', map { $_->{headers}{'outbox-attempt'} } @reqs),
	join(',', 1 .. $sent), 'each request has the next outbox-attempt number');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(attempt::text, ',' ORDER BY attempt) FROM outbox.attempts a"
		  . " JOIN outbox.messages m ON m.id = a.message WHERE m.message_id = 'probed'"),
	join(',', 1 .. $sent), 'outbox.attempts has one row per request, numbered alike');
is( $node->safe_psql(
		'postgres',
		"SELECT attempts, probe_failures FROM outbox.messages WHERE message_id = 'probed'"),
	"$sent|" . ($sent - 2),
	'messages.attempts counts every request; probe_failures the failed probes');

# --- a probe waits for the message's time ---------------------------------

set_control($orders, { status => 500 });
$node->safe_psql('postgres',
	"SELECT outbox_queue('orders', '{\"n\": 2}', message_id => 'opener')");
ok(poll_until($node, 'SELECT circuit FROM outbox.targets', 'open'),
	'the circuit opens again');
# The only other message is dead, so the message for later is the only
# pending one a probe could take.
$node->safe_psql('postgres',
	"UPDATE outbox.messages SET state = 'dead' WHERE message_id = 'opener'");
$node->safe_psql('postgres',
	"SELECT outbox_send('orders', '{\"n\": 3}', message_id => 'later', deliver_at => now() + interval '1 hour')");
wait_seconds(8);
is(scalar(requests_with_id($orders, 'later')), 0,
	'no probe takes a message before its deliver_at');
is( $node->safe_psql(
		'postgres',
		"SELECT state, attempts FROM outbox.messages WHERE message_id = 'later'"),
	'pending|0', 'it waits, untried');

$node->stop;
done_testing();
