
# outbox.databases runs one decoder and one dispatcher per database, each
# with its own slot, counters and state; the messages of one database are
# never delivered by, or confused with, another's.  Going back to one
# database drops the slot the decoder no longer uses.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $r = start_receiver(name => 'orders');
my $node = outbox_node(
	'several',
	targets => 'orders=' . receiver_url($r, '/orders'),
	conf => qq{outbox.databases = 'app_a, "App-B"'},
	create_extension => 0);

# The databases come after the server: their workers start (and restart,
# every few seconds) until the databases exist.
$node->safe_psql('postgres', 'CREATE DATABASE app_a');
$node->safe_psql('postgres', 'CREATE DATABASE "App-B"');
$node->safe_psql('postgres', 'CREATE DATABASE unserved');
for my $db ('app_a', 'App-B', 'unserved')
{
	$node->safe_psql($db, 'CREATE EXTENSION outbox');
}

my $workers_sql = q{
SELECT datname, backend_type FROM pg_stat_activity
 WHERE backend_type LIKE 'outbox %' ORDER BY 1, 2};
ok( poll_until(
		$node, $workers_sql,
		"App-B|outbox decoder\nApp-B|outbox dispatcher\n"
		  . "app_a|outbox decoder\napp_a|outbox dispatcher",
		60),
	'each listed database has its own decoder and dispatcher, no other database has any');

my $slots_sql = q{
SELECT slot_name, database, plugin FROM pg_replication_slots ORDER BY 1};
ok( poll_until(
		$node, 'SELECT count(*) FROM pg_replication_slots WHERE plugin = \'outbox\'',
		'2', 30),
	'each listed database has a slot of its own');
my $slots = $node->safe_psql('postgres', $slots_sql);
like($slots, qr/^outbox_app_a\|app_a\|outbox$/m,
	'a database whose name is a valid slot name gets outbox.slot_name, "_" and that name');
like($slots, qr/^outbox_app_b_[0-9a-f]{8}\|App-B\|outbox$/m,
	'another name is folded to lower case and underscores, with a hash of the real name');

is($node->safe_psql('App-B', 'SELECT slot_name FROM outbox.workers WHERE worker = \'decoder\''),
	($slots =~ /^(outbox_app_b_[0-9a-f]{8})\|/m)[0],
	'outbox.workers shows the slot of its own database');

# --- messages of each database reach the target, each once, told apart -------

my $n = 25;
for my $db ('app_a', 'App-B')
{
	$node->safe_psql($db, qq{
SELECT outbox_queue('orders', jsonb_build_object('db', current_database(), 'n', i))
  FROM generate_series(1, $n) i});
}
my @reqs = wait_for_requests($r, 2 * $n);
is(scalar(@reqs), 2 * $n, 'every message of both databases is delivered');

my (%by_db, %ids);
for my $req (@reqs)
{
	my $body = body_json($req);
	push @{ $by_db{ $body->{db} } }, $body->{n};
	$ids{ $req->{headers}{'webhook-id'} }++;
}
is_deeply([ sort { $a <=> $b } @{ $by_db{app_a} || [] } ], [ 1 .. $n ],
	'database app_a: each of its messages once');
is_deeply([ sort { $a <=> $b } @{ $by_db{'App-B'} || [] } ], [ 1 .. $n ],
	'database App-B: each of its messages once');
is(scalar(keys %ids), 2 * $n,
	'webhook ids derived from row ids differ between databases, though both number rows from 1');
ok((grep { /^msg_app_a_\d+$/ } keys %ids) == $n,
	'a derived webhook id names its database: msg_<database>_<id>');

for my $db ('app_a', 'App-B')
{
	ok( poll_until(
			$node,
			"SELECT state, count(*) FROM outbox.messages GROUP BY 1",
			"delivered|$n", 30, $db),
		"$db: its rows are marked delivered by its own dispatcher");
	is( $node->safe_psql(
			$db, 'SELECT decoded_from_wal FROM outbox.stats'),
		$n,
		"$db: its counters count its own messages, decoded from its own slot");
}

# --- a database that is not listed is not served ------------------------------

$node->safe_psql('unserved', q{SELECT outbox_queue('orders', '{"db": "unserved"}')});
is($node->safe_psql('unserved', 'SELECT count(*) FROM outbox.workers'),
	'0', 'a database not listed shows no workers in outbox.workers');
sleep 2;
ok(!(grep { (body_json($_)->{db} // '') eq 'unserved' } read_requests($r)),
	'a message queued in a database not listed stays there, undelivered');
is($node->safe_psql('unserved', 'SELECT state FROM outbox.messages'),
	'pending', 'and pending: nothing is lost if the database is added later');

# --- a list that cannot work is refused when it is written -------------------

my ($ret, $out, $err) = $node->psql('postgres',
	q{ALTER SYSTEM SET outbox.databases = 'app_a', 'app_a'});
like($err, qr/invalid value for parameter "outbox.databases".*\n.*Database "app_a" is listed twice/,
	'a database listed twice is refused, naming it');

# --- back to one database: the slot of the other naming scheme goes away ------

my $offset = log_position($node);
$node->append_conf('postgresql.conf', qq{outbox.databases = ''\noutbox.database = 'app_a'});
$node->restart;
ok( wait_for_log_line(
		$node,
		qr/dropped replication slot "outbox_app_a": it was used before the list of databases changed; the slot is now "outbox"/,
		$offset),
	'one database again: the decoder says it drops the slot it used with several');
ok( poll_until(
		$node,
		"SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots WHERE database = 'app_a'",
		'outbox', 30),
	'and app_a keeps only the slot named outbox.slot_name, so no slot holds WAL for nobody');

$node->safe_psql('app_a', q{SELECT outbox_queue('orders', '{"db": "app_a", "n": 100}')});
ok( wait_for_requests($r, 1, undef,
		sub { (body_json($_[0])->{n} // 0) == 100 }),
	'and its messages are still delivered');
ok((grep { $_->{headers}{'webhook-id'} =~ /^msg_\d+$/ && body_json($_)->{n} == 100 } read_requests($r)),
	'with one database, derived webhook ids are msg_<id> again');

$node->stop;
done_testing();
