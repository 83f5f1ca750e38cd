
# Proxy variables in the server's environment (http_proxy, HTTPS_PROXY,
# all_proxy, ...) are ignored: the target gets every request and the
# "proxy" none of them, so no body, signature or URL credential goes to
# whoever set the variable.  Only outbox.proxy (superuser-only, reloadable)
# sends requests through a proxy.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $target = start_receiver(name => 'target');
my $proxy = start_receiver(name => 'proxy');
my $target_url = receiver_url($target, '/hooks/orders');
my (undef, $secret) = random_key();

my $node = outbox_node('proxy_environment', targets => "orders=$target_url",
	conf => "outbox.secrets = 'orders=$secret'", start => 0);
{
	local $ENV{http_proxy} = $proxy->{url};
	local $ENV{HTTP_PROXY} = $proxy->{url};
	local $ENV{https_proxy} = $proxy->{url};
	local $ENV{HTTPS_PROXY} = $proxy->{url};
	local $ENV{all_proxy} = $proxy->{url};
	local $ENV{ALL_PROXY} = $proxy->{url};
	local $ENV{no_proxy} = '';
	local $ENV{NO_PROXY} = '';
	$node->start;
}
$node->safe_psql('postgres', 'CREATE EXTENSION outbox');

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 1}', message_id => 'direct')});
ok(scalar(wait_for_requests($target, 1, undef, with_id('direct'))),
	'with proxy variables in the environment the target gets the request');
ok(poll_until($node,
		q{SELECT state FROM outbox.messages WHERE message_id = 'direct'},
		'delivered'), 'and the message is delivered');
is(scalar(read_requests($proxy)), 0, 'the proxy of the environment gets nothing');

# outbox.proxy: requests go through the proxy
$node->safe_psql('postgres', "ALTER SYSTEM SET outbox.proxy = '$proxy->{url}'");
$node->reload;
wait_seconds(1);
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 2}', message_id => 'proxied')});
my ($p) = wait_for_requests($proxy, 1, undef, with_id('proxied'));
is($p && $p->{path}, $target_url,
	'with outbox.proxy set the request goes to that proxy, for the target URL');
ok(poll_until($node,
		q{SELECT state FROM outbox.messages WHERE message_id = 'proxied'},
		'delivered'), 'and the message is delivered');
is(scalar(grep { with_id('proxied')->($_) } read_requests($target)), 0,
	'the target is not called directly');

# Back to no proxy
$node->safe_psql('postgres', 'ALTER SYSTEM RESET outbox.proxy');
$node->reload;
wait_seconds(1);
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 3}', message_id => 'direct-again')});
ok(scalar(wait_for_requests($target, 1, undef, with_id('direct-again'))),
	'with outbox.proxy reset the target is called directly again');
is(scalar(grep { with_id('direct-again')->($_) } read_requests($proxy)), 0,
	'and the proxy gets nothing');

like($node->safe_psql('postgres', q{
CREATE ROLE app LOGIN;
SET ROLE app;
SELECT 1 FROM pg_settings WHERE name = 'outbox.proxy'
UNION ALL SELECT 0;}), qr/^0\z/, 'outbox.proxy is hidden from roles without privileges');
ok(!eval { $node->safe_psql('postgres', "ALTER SYSTEM SET outbox.proxy = 'ftp://x'"); 1 },
	'a proxy URL of another scheme is refused');

$node->stop;
done_testing();
