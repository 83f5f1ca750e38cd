
# Per-key order when message n's transaction has committed (its commit
# record is flushed, so the decoder hands n over) but is not visible yet
# (the backend has not left the proc array): message n+1 of the same key,
# committed after it, must not be sent before n got its 2xx, whenever n
# becomes visible.  gdb holds the first producer between the two steps of
# its commit, and the dispatcher at the moment n becomes visible.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('invisible_head',
	targets => 'orders=' . receiver_url($orders, '/o'));

ok(wait_for_decoding($node), 'the decoder streams from its slot');

my $first = $node->background_psql('postgres', timeout => 60);
my $second = $node->background_psql('postgres', timeout => 60);
my $pid = $first->query_safe('SELECT pg_backend_pid()');

$first->query_safe('BEGIN');
$first->query_safe(
	q{SELECT outbox_queue('orders', '{"n": 1}', key => 'k', message_id => 'k-1')});

# Stop the first producer after its commit record is flushed, before it
# becomes visible.
my $gdb = gdb_attach($pid);
gdb_command($gdb, 'break ProcArrayEndTransaction', qr/Breakpoint 1 at/);
gdb_command($gdb, 'continue');
$first->query_until(qr/committing\n/, "\\echo committing\nCOMMIT;\n");
ok(gdb_wait($gdb, qr/Breakpoint 1, /),
	'the first producer is held between its commit record and its visibility');

# The second producer queues the next message of the key and commits, or
# waits for the first one: either way message n+1 comes after n.
$second->query_until(qr/queueing\n/,
	"\\echo queueing\n"
	  . q{SELECT outbox_queue('orders', '{"n": 2}', key => 'k', message_id => 'k-2');}
	  . "\n");
wait_seconds(2);
is(scalar(requests_with_id($orders, 'k-2')), 0,
	'message n+1 is not sent while message n is committed but not visible');

# Message n becomes visible just after the dispatcher checked the order of
# its queue and before it starts requests: hold the dispatcher there
# (outbox_http_inflight() is called as it starts requests), let the first
# producer finish, then let the dispatcher go on.
my $dispatcher = gdb_attach(worker_pid($node, 'outbox dispatcher'));
gdb_command($dispatcher, 'break outbox_http_inflight', qr/Breakpoint 1 at/);
gdb_command($dispatcher, 'continue');
ok(gdb_wait($dispatcher, qr/Breakpoint 1, /),
	'the dispatcher is held as it starts requests');
gdb_detach($gdb);
$first->query_until(qr/committed\n/, "\\echo committed\n");
gdb_detach($dispatcher);
$first->quit;
$second->quit;

my @reqs = wait_for_requests($orders, 2, undef,
	sub { $_[0]{headers}{'webhook-id'} =~ /^k-/ });
is(join(',', map { $_->{headers}{'webhook-id'} } @reqs), 'k-1,k-2',
	'once it is visible, message n is sent, then message n+1');
my ($answer) = grep { with_id('k-1')->($_) } read_answers($orders);
ok($answer && @reqs == 2 && $reqs[1]{t} >= $answer->{t_done},
	'message n+1 is sent only after message n got its answer');
ok(poll_until($node,
		"SELECT string_agg(state, ',' ORDER BY id) FROM outbox.messages",
		'delivered,delivered'),
	'both are recorded as delivered');

$node->stop;
done_testing();
