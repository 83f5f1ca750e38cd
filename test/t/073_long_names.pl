
# Names too long for what the workers make of them stop the server from
# starting, with a message saying the limit: a database name of 64 bytes or
# more (outbox.database or outbox.databases), and an outbox.slot_name so
# long that the slot names made from it (with several databases, or before
# the list changed) would not be longer than it.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Start a node with these settings; returns (started?, its log)
sub start_with
{
	my ($name, $conf) = @_;
	my $node = outbox_node($name, conf => $conf, start => 0);
	my $started = $node->start(fail_ok => 1);
	$node->stop if $started;
	return ($started, slurp_file($node->logfile));
}

my $db64 = 'd' x 64;
my ($started, $log) = start_with('long_database', "outbox.database = '$db64'");
ok(!$started, 'a 64-byte outbox.database stops the server from starting');
like($log,
	qr/FATAL:  database name "$db64" is too long in "outbox\.database"\n.*HINT:  Database names are at most 63 bytes long\./,
	'the log says which name is too long, and the limit');

($started, $log) = start_with('long_databases',
	"outbox.databases = 'postgres, $db64'");
ok(!$started, 'a 64-byte name in outbox.databases stops the server from starting');
like($log,
	qr/FATAL:  database name "$db64" is too long in "outbox\.databases"\n.*HINT:  Database names are at most 63 bytes long\./,
	'the log says which name is too long, and the limit');

($started, $log) = start_with('twice_databases',
	"outbox.databases = 'postgres, postgres'");
ok(!$started, 'a database listed twice in outbox.databases stops the server from starting');
like($log, qr/FATAL:  database "postgres" is listed twice in "outbox\.databases"/,
	'the log says which database');

my $slot63 = 's' x 63;
($started, $log) = start_with('long_slot', "outbox.slot_name = '$slot63'");
ok(!$started, 'a 63-byte outbox.slot_name stops the server from starting');
like($log,
	qr/FATAL:  "outbox\.slot_name" is too long: "$slot63"\n.*HINT:  outbox\.slot_name is at most 53 bytes long/,
	'the log says the limit');

($started, $log) = start_with('bad_slot', "outbox.slot_name = 'Bad-Slot'");
ok(!$started, 'an invalid outbox.slot_name stops the server from starting');
like($log, qr/FATAL:  replication slot name "Bad-Slot" contains invalid character/,
	'the log says why');

# The longest name allowed works, and the decoder keeps its slot
my $slot53 = 's' x 53;
my $node = outbox_node('slot53', conf => "outbox.slot_name = '$slot53'");
ok(poll_until($node,
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot53'", '1'),
	'a 53-byte outbox.slot_name is used as the slot name');
$node->restart;
wait_seconds(2);
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot53'"),
	'1', 'after a restart the decoder still has its slot');
unlike(slurp_file($node->logfile), qr/dropped replication slot/,
	'and dropped none');
$node->stop;

done_testing();
