
# outbox.targets is reloadable: after pg_reload_conf() the next message goes
# to the new URL, and pending messages follow their target's new URL.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $old = start_receiver(name => 'old');
my $new = start_receiver(name => 'new');
my $dead_port = free_port();    # nothing ever listens here

my $node = outbox_node('reload_targets',
	targets => 'orders=' . receiver_url($old, '/old'),
	conf => "outbox.retry_base_delay = '100ms'\noutbox.retry_max_delay = '500ms'");

# Switch outbox.targets and wait until the server has re-read its file.
sub set_targets
{
	my ($targets) = @_;
	$node->append_conf('postgresql.conf', "outbox.targets = '$targets'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	poll_until($node, 'SHOW outbox.targets', $targets)
	  or die "the server did not pick up outbox.targets";
	# the workers process SIGHUP right after the postmaster
	wait_seconds(0.5);
}

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 1}', message_id => 'before')});
my ($req) = wait_for_requests($old, 1);
is($req && $req->{path}, '/old', 'before the reload, messages go to the old URL');

set_targets('orders=' . receiver_url($new, '/new'));

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 2}', message_id => 'after')});
($req) = wait_for_requests($new, 1, $OutboxTest::timeout,
	with_id('after'));
ok($req, 'after pg_reload_conf(), the next message goes to the new URL');
is($req && $req->{path}, '/new', 'the new URL path is used');
is(scalar(requests_with_id($old, 'after')), 0,
	'the old URL no longer receives messages');

# A message pending on an unreachable URL follows the target to a new URL.
set_targets("orders=http://127.0.0.1:$dead_port/dead");
my $id = $node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 3}', message_id => 'stuck')});
ok( poll_until(
		$node,
		"SELECT state, attempts > 0 FROM outbox.messages WHERE id = $id",
		'pending|t'),
	'a message to an unreachable URL is pending after a failed attempt');

set_targets('orders=' . receiver_url($new, '/new'));
($req) = wait_for_requests($new, 1, $OutboxTest::timeout,
	with_id('stuck'));
ok($req, 'a pending message is delivered to the URL its target has now');
ok( poll_until(
		$node,
		"SELECT state FROM outbox.messages WHERE id = $id", 'delivered'),
	'the pending message becomes delivered');

# A target added by a reload becomes usable.
set_targets('orders=' . receiver_url($new, '/new')
	  . ', billing=' . receiver_url($old, '/billing'));
$node->safe_psql('postgres',
	q{SELECT outbox_queue('billing', '{"n": 4}', message_id => 'added')});
($req) = wait_for_requests($old, 1, $OutboxTest::timeout,
	with_id('added'));
is($req && $req->{path}, '/billing', 'a target added by a reload receives its messages');

$node->stop;
done_testing();
