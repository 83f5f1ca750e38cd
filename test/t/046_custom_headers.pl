
# The message's headers object arrives as HTTP headers: several at once,
# UTF-8 values byte for byte, long values, values that replace what the HTTP
# client would send by itself, through both outbox_queue and outbox_send.
# A call with a refused header queues nothing.

use strict;
use warnings;

use Encode qw(encode);
use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('custom_headers',
	targets => 'orders=' . receiver_url($orders, '/o'));


# HTTP header values are bytes; the receiver reads them as ISO-8859-1.
# This gives back those bytes (this file's literals are bytes too).
sub as_bytes
{
	my ($v) = @_;
	return undef unless defined $v;
	return encode('iso-8859-1', $v);
}

my $long = 'v' x 4000;
my $headers = qq({"x-tenant": "acme", "X-Request-Id": "req-42",
  "x-trace": "abc.def.ghi", "x-colon": "a: b; c=d, e",
  "x-unicode": "Zoë ✓ 日本", "x-long": "$long", "x-tab": "a\\tb",
  "accept": "application/vnd.acme+json", "user-agent": "acme-app/1.0",
  "x-empty": ""});

foreach my $fn (qw(outbox_queue outbox_send))
{
	$node->safe_psql('postgres', qq{
SELECT $fn('orders', '{"n": 1}', message_id => 'h-$fn', headers => '$headers')});
	my ($req) = wait_for_requests($orders, 1, undef, with_id("h-$fn"));
	ok($req, "$fn: a message with ten headers is delivered");
	my $h = $req ? $req->{headers} : {};

	my @missing = grep { !exists $h->{$_} }
	  qw(x-tenant x-request-id x-trace x-colon x-unicode x-long x-tab);
	is("@missing", '', "$fn: every header arrives");
	is($h->{'x-tenant'}, 'acme', "$fn: a plain value arrives as given");
	is($h->{'x-request-id'}, 'req-42', "$fn: a mixed-case name arrives (case-insensitively)");
	is($h->{'x-trace'}, 'abc.def.ghi', "$fn: dots in a value survive");
	is($h->{'x-colon'}, 'a: b; c=d, e', "$fn: colons, semicolons and commas in a value survive");
	is(as_bytes($h->{'x-unicode'}), 'Zoë ✓ 日本',
		"$fn: a unicode value arrives as its UTF-8 bytes");
	is(length($h->{'x-long'} // ''), 4000, "$fn: a 4000-byte value arrives whole");
	is($h->{'x-tab'}, "a\tb", "$fn: a tab inside a value is kept");
	is($h->{accept}, 'application/vnd.acme+json',
		"$fn: an Accept header replaces the HTTP client's own");
	is($h->{'user-agent'}, 'acme-app/1.0',
		"$fn: a User-Agent header replaces the HTTP client's own");
	is($h->{'x-empty'}, '', "$fn: a header with an empty value arrives, empty");
	is($h->{'webhook-id'}, "h-$fn", "$fn: the outbox's own headers are still there");
}

# --- refused headers queue nothing ---------------------------------------------

my @refused = (
	q({"webhook-id": "spoofed"}),
	q({"Webhook-Signature": "v1,forged"}),
	q({"OUTBOX-attempt": "7"}),
	q({"Host": "evil.example"}),
	q({"Authorization": "Bearer stolen"}),
	q({"cookie": "session=1"}),
	q({"X-Forwarded-For": "10.0.0.1"}),
	q({"X-HTTP-Method-Override": "DELETE"}),
	q({"x-a": "b\r\nX-Injected: 1"}),
	q({"x-a": "b\nX-Injected: 1"}),
	q({"x a": "b"}));
my @accepted;
foreach my $i (0 .. $#refused)
{
	my ($ret, $out, $err) = $node->psql('postgres', qq{
\\set VERBOSITY verbose
SELECT outbox_queue('orders', '{"refused": $i}', message_id => 'refused-$i',
                    headers => '$refused[$i]')});
	push @accepted, "$refused[$i] ($err)"
	  unless $ret != 0 && $err =~ /ERROR:  22023:/;
}
my $rows = $node->safe_psql('postgres',
	q{SELECT count(*) FROM outbox.messages WHERE message_id LIKE 'refused-%'});
ok(@accepted == 0 && $rows eq '0',
	'calls with reserved names, CR/LF in values or bad names fail with 22023 and queue nothing')
  or diag "accepted: @accepted; rows: $rows";

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"marker": 1}', message_id => 'marker')});
wait_for_requests($orders, 1, undef, with_id('marker'));
is(scalar(grep { ($_->{headers}{'webhook-id'} // '') =~ /^refused-|^spoofed/ } read_requests($orders)),
	0, 'nothing of the refused calls is sent');

$node->stop;
done_testing();
