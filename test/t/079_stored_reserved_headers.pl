
# Headers a producer may not set are not sent from rows that hold them
# anyway (written by hand, or queued before 0.3 reserved them): the request
# carries the target URL's credentials, not the row's Authorization, and no
# Cookie, X-Forwarded-* or method override; the message's other headers
# still arrive.

use strict;
use warnings;

use MIME::Base64 qw(encode_base64);
use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $r = start_receiver(name => 'creds');
my $url = receiver_url($r, '/c');
$url =~ s{^http://}{http://hook:s3cret\@};
my $node = outbox_node('stored_reserved_headers', targets => "creds=$url");

$node->safe_psql('postgres', q{
INSERT INTO outbox.messages (target, payload, message_id, headers)
VALUES ('creds', '{"n": 1}', 'by-hand',
        '{"Authorization": "Bearer stolen", "Cookie": "session=1",
          "X-Forwarded-For": "10.0.0.1", "X-HTTP-Method-Override": "DELETE",
          "Proxy-Authorization": "Basic eDp5", "x-tenant": "acme"}');
});
# outbox_send wakes the dispatcher, whose scan finds both rows
$node->safe_psql('postgres', q{SELECT outbox_send('creds', '{"n": 2}', message_id => 'wake')});

my ($req) = wait_for_requests($r, 1, undef,
	with_id('by-hand'));
ok($req, 'the row written by hand is delivered');
my $h = $req ? $req->{headers} : {};
is($h->{authorization}, 'Basic ' . encode_base64('hook:s3cret', ''),
	"the request carries the URL's credentials, not the row's Authorization");
is(join(' ', grep { exists $h->{$_} }
		qw(cookie x-forwarded-for x-http-method-override proxy-authorization)),
	'', 'nor its Cookie, X-Forwarded-For, method override or Proxy-Authorization');
is($h->{'x-tenant'}, 'acme', 'its other headers arrive');
is($req ? $req->{method} : '', 'POST', 'and the request is a POST');

$node->stop;
done_testing();
