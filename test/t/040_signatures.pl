
# Requests to a target with a secret in outbox.secrets carry a Standard
# Webhooks signature per secret; targets without one are not signed.  A
# malformed outbox.secrets holds every delivery back (nothing goes out
# unsigned) until it is fixed.  No other role can read the secrets, and they
# never reach the server log.
#
# The signatures are checked with Digest::SHA and MIME::Base64, an
# implementation independent of the server's.

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_base64);
use Encode qw(encode_utf8);
use MIME::Base64 qw(encode_base64 decode_base64);
use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Standard Webhooks: base64 of HMAC-SHA256(key, "id.timestamp.body")
sub expected_signature
{
	my ($key, $id, $ts, $body) = @_;
	my $sig = hmac_sha256_base64(encode_utf8("$id.$ts.$body"), $key);
	$sig .= '=' while length($sig) % 4;    # Digest::SHA leaves out padding
	return $sig;
}

# The v1 signatures of a request, in header order
sub signatures
{
	my ($req) = @_;
	my $h = $req->{headers}{'webhook-signature'};
	return () unless defined $h;
	return map { /^v1,(.*)\z/ ? $1 : "not-v1:$_" } split / /, $h, -1;
}

# Does every signature of the request match the keys, one to one, in order?
sub signed_with
{
	my ($req, @keys) = @_;
	my @got = signatures($req);
	my @want = map {
		expected_signature($_, $req->{headers}{'webhook-id'},
			$req->{headers}{'webhook-timestamp'}, $req->{body})
	} @keys;
	return 1 if "@got" eq "@want";
	diag "signatures of $req->{headers}{'webhook-id'}: got [@got], want [@want]";
	return 0;
}

# The verifier itself reproduces the Standard Webhooks reference vector.
is( expected_signature(
		decode_base64('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'),
		'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}'),
	'g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
	'the test computes the Standard Webhooks reference signature');

# Keys: raw bytes, written as whsec_<base64>.  key_a's base64 has '+', '/'
# and '=' padding; the others are random.
my $key_a = pack('C*', 0xfb, 0xef, 0xbe, 0xff, 0xff, 0xff, map { int(rand(256)) } 1 .. 25);
my $key_new = pack('C*', map { int(rand(256)) } 1 .. 32);
my $key_old = pack('C*', map { int(rand(256)) } 1 .. 24);
my %b64 = map { $_->[0] => encode_base64($_->[1], '') }
  ([ a => $key_a ], [ new => $key_new ], [ old => $key_old ]);
like($b64{a}, qr{^\+\+\+\+////.*=\z}, "key a's base64 has +, / and padding");

# orders: one secret; billing: two (rotation, new first); plain: none.
# Every first attempt at orders fails, so retries are signed too.
my $orders = start_receiver(name => 'orders', args => [ '--fail-first' => 1 ]);
my $billing = start_receiver(name => 'billing');
my $plain = start_receiver(name => 'plain');
my $targets =
	'orders=' . receiver_url($orders, '/o')
  . ', billing=' . receiver_url($billing, '/b')
  . ', plain=' . receiver_url($plain, '/p');
my $good_secrets =
	"orders=whsec_$b64{a}, billing=whsec_$b64{new}, billing=whsec_$b64{old}";

my $node = outbox_node('signatures', targets => $targets,
	conf => "outbox.secrets = '$good_secrets'");

# --- signed requests -----------------------------------------------------

my $payload = '{"order": 1, "name": "Zoë ✓", "nested": {"a": [1, 2.5, null]}}';
my ($id_plainid) = split /\n/, $node->safe_psql('postgres', qq{
SELECT outbox_queue('orders', '{"n": 2}');
SELECT outbox_queue('orders', '$payload', message_id => 'sig-1');
SELECT outbox_send('billing', '$payload', message_id => 'sig-rot');
SELECT outbox_queue('plain', '$payload', message_id => 'sig-none');
});

my @o = wait_for_requests($orders, 2, undef, with_id('sig-1'));
is(scalar @o, 2, 'the message to orders is tried twice (first attempt fails)');
is(scalar(signatures($o[0])), 1,
	'a target with one secret gets one signature');
ok($o[0] && signed_with($o[0], $key_a),
	'the signature is v1,base64(HMAC-SHA256(key, id.timestamp.body))');
ok($o[1] && signed_with($o[1], $key_a),
	'a retry is signed over its own timestamp');

my ($o2) = wait_for_requests($orders, 1, undef,
	sub { $_[0]{status} == 200 && with_id("msg_$id_plainid")->($_[0]) });
ok($o2 && signed_with($o2, $key_a),
	'a message without message_id is signed over webhook-id msg_<id>');

my ($b) = wait_for_requests($billing, 1, undef, with_id('sig-rot'));
is(scalar(signatures($b)), 2,
	'a target listed twice in outbox.secrets gets two signatures');
like($b->{headers}{'webhook-signature'} // '', qr/^v1,\S+ v1,\S+\z/,
	'the two signatures are separated by one space');
ok($b && signed_with($b, $key_new, $key_old),
	'each signature matches its secret, in the order listed');

my ($p) = wait_for_requests($plain, 1, undef, with_id('sig-none'));
ok($p, 'a target without a secret gets its message');
ok($p && !exists $p->{headers}{'webhook-signature'},
	'a target without a secret gets no webhook-signature header');

# --- nobody but superusers can read outbox.secrets -------------------------

$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');
my %reads = (
	'SHOW outbox.secrets' => 'SHOW',
	q{SELECT current_setting('outbox.secrets')} => 'current_setting',
	q{SELECT current_setting('outbox.secrets', true)} => 'current_setting(missing_ok)',
	q{SELECT setting FROM pg_settings WHERE name = 'outbox.secrets'} => 'pg_settings',
	'SHOW ALL' => 'SHOW ALL',
	'SELECT * FROM pg_file_settings' => 'pg_file_settings');
my @leaks;
foreach my $sql (sort keys %reads)
{
	my ($out, $err) = ('', '');
	$node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		extra_params => [ '-U', 'app' ]);
	push @leaks, $reads{$sql} if "$out$err" =~ /whsec_|\Q$b64{a}\E|\Q$b64{new}\E/;
}
is("@leaks", '', 'a non-superuser sees no secret through any of: '
	  . join(', ', sort values %reads));
my ($ret, $out, $err) = $node->psql('postgres', 'SHOW outbox.secrets',
	extra_params => [ '-U', 'app' ]);
# (15 says "must be superuser or have privileges of pg_read_all_settings",
# 17 and 18 "permission denied to examine" with a detail naming that role)
like($err, qr/ERROR:  (must be superuser|permission denied to examine).*pg_read_all_settings/s,
	'SHOW outbox.secrets is refused to a non-superuser');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_settings WHERE name = 'outbox.secrets'},
		extra_params => [ '-U', 'app' ]),
	'0', 'pg_settings has no outbox.secrets row for a non-superuser');

# --- a malformed outbox.secrets holds everything back ----------------------

my $log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf',
	"outbox.secrets = 'billing=whsec_$b64{new}, orders=notwhsec'");
$node->reload;
wait_seconds(1);    # the dispatcher has taken the reload
$node->safe_psql('postgres', q{
SELECT outbox_queue('orders', '{"held": 1}', message_id => 'held-orders');
SELECT outbox_send('billing', '{"held": 2}', message_id => 'held-billing');
SELECT outbox_queue('plain', '{"held": 3}', message_id => 'held-plain');
});
ok( $node->wait_for_log(
		qr/outbox\.secrets cannot be used; messages wait until it is fixed/,
		$log_offset),
	'the dispatcher reports that outbox.secrets cannot be used');
my $tail = substr(slurp_file($node->logfile), $log_offset);
like($tail,
	qr/outbox\.secrets cannot be used.*\n.*DETAIL:  .*entry 2 \(target "orders"\)/,
	'the report names the entry number and target of the bad secret');
wait_seconds(3);
my @held = grep { ($_->{headers}{'webhook-id'} // '') =~ /^held-/ }
  (read_requests($orders), read_requests($billing), read_requests($plain));
is(scalar @held, 0,
	'while outbox.secrets is malformed nothing is sent, signed or not');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(state || '/' || attempts, ',' ORDER BY message_id)
		  FROM outbox.messages WHERE message_id LIKE 'held-%'}),
	'pending/0,pending/0,pending/0',
	'the held messages wait, pending and untried');
$tail = substr(slurp_file($node->logfile), $log_offset);
my $reports = () = $tail =~ /outbox\.secrets cannot be used/g;
is($reports, 1, 'the problem is logged once');
my ($report) = $tail =~ /^(.*outbox\.secrets cannot be used.*\n(?:.*(?:DETAIL|HINT):.*\n)*)/m;
ok($report && $report !~ /notwhsec|whsec_[A-Za-z0-9+\/]/,
	"the dispatcher's report quotes neither the bad value nor any secret")
  or diag $report;

# --- fixed and reloaded: the waiting messages go out, signed ---------------

$node->append_conf('postgresql.conf', "outbox.secrets = '$good_secrets'");
$node->reload;
my ($ho) = wait_for_requests($orders, 1, undef,
	sub { $_[0]{status} == 200 && with_id('held-orders')->($_[0]) });
my ($hb) = wait_for_requests($billing, 1, undef, with_id('held-billing'));
my ($hp) = wait_for_requests($plain, 1, undef, with_id('held-plain'));
ok($ho && $hb && $hp,
	'after the fix and a reload the waiting messages are delivered');
ok($ho && signed_with($ho, $key_a) && $hb && signed_with($hb, $key_new, $key_old),
	'the waiting messages are signed with the fixed secrets');
ok($hp && !exists $hp->{headers}{'webhook-signature'},
	'the waiting message of the unsigned target is still unsigned');

# --- the server log -------------------------------------------------------

my @log = split /\n/, slurp_file($node->logfile);
my @echoed = grep { /notwhsec/ } @log;
is(scalar @echoed, 0,
	'the malformed outbox.secrets value is never echoed in the server log')
  or diag join("\n", @echoed);
my @leaked = grep { my $l = $_; grep { index($l, $_) >= 0 } values %b64 } @log;
is(scalar @leaked, 0, 'no secret appears in the server log')
  or diag join("\n", @leaked);

$node->stop;
done_testing();
