
# What a receiver sends back is stored as valid text: the status line of an
# answer goes into outbox.messages.last_error, outbox.attempts.error, the
# outbox.targets view and the server log with printable ASCII kept and
# every other byte written \xNN.  Invalid UTF-8 and control characters in
# it cannot break a SELECT (even with client_encoding LATIN1) nor the log,
# and a long multi-byte reason is not cut inside a character.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;

my $r = start_receiver(name => 'hostile', control => 1);
my $node = outbox_node('receiver_bytes',
	targets => 'hostile=' . receiver_url($r, '/h'),
	conf => "outbox.max_attempts = 1000\noutbox.circuit_failures = 1");

# Status lines as bytes (each character below 256 is sent as that byte)
my $bad = "HTTP/1.1 503 Bad \xff\xfe bytes \x01\x1b[31m\x7f tab\there";
my $long = "HTTP/1.1 500 " . ("\xc3\xa9" x 200);    # "é" x 200, in UTF-8
# As JSON with \u00NN escapes, the control file stays ASCII
sub status_line
{
	my ($line) = @_;
	set_control($r, JSON::PP->new->ascii->encode({ status_line => $line }));
}
status_line($bad);

$node->safe_psql('postgres',
	q{SELECT outbox_queue('hostile', '{"n": 1}', message_id => 'm1')});
ok(poll_until($node,
		q{SELECT attempts > 0 FROM outbox.messages WHERE message_id = 'm1'}, 't'),
	'the message is tried');

my @reads = (
	[ 'outbox.messages.last_error',
		q{SELECT last_error FROM outbox.messages WHERE message_id = 'm1'} ],
	[ 'outbox.attempts.error',
		q{SELECT error FROM outbox.attempts ORDER BY started_at LIMIT 1} ],
	[ 'outbox.targets.last_error',
		q{SELECT last_error FROM outbox.targets WHERE target = 'hostile'} ]);

# Each read, with client_encoding LATIN1; returns (ok, text)
sub read_latin1
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	my $ret = $node->psql('postgres', "SET client_encoding = 'LATIN1';\n$sql",
		stdout => \$out, stderr => \$err);
	return ($ret == 0 && $err eq '', $out, $err);
}

foreach my $read (@reads)
{
	my ($name, $sql) = @$read;
	my ($ok, $out, $err) = read_latin1($sql);
	ok($ok, "$name can be read with client_encoding LATIN1") or diag $err;
	like($out, qr/^[\x20-\x7e]+\z/,
		"$name is printable ASCII, no control characters");
	is($out, 'HTTP/1.1 503 Bad \xff\xfe bytes \x01\x1b[31m\x7f tab\x09here',
		"$name shows the other bytes as \\xNN");
}

my @lines = grep { /503 Bad/ } split /\n/, slurp_file($node->logfile);
ok(scalar @lines, 'the status line is in the server log');
is(scalar(grep { /[^\x20-\x7e]/ } @lines), 0,
	'the log lines holding it have no control character or non-ASCII byte');

# A long multi-byte reason
status_line($long);
ok(poll_until($node,
		q{SELECT last_error LIKE 'HTTP/1.1 500 %' FROM outbox.targets WHERE target = 'hostile'},
		't'), 'a later attempt stores the long status line');
my ($ok, $out, $err) = read_latin1(
	q{SELECT last_error FROM outbox.targets WHERE target = 'hostile'});
ok($ok, 'the long status line can be read with client_encoding LATIN1') or diag $err;
like($out, qr/^HTTP\/1\.1 500 (?:\\xc3\\xa9)*(?:\\xc3)?\z/,
	'it is cut between two escaped bytes, never inside one');
cmp_ok(length($out), '>', 200, 'it keeps as much as fits');

$node->stop;
done_testing();
