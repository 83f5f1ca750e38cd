
# Credentials in target URLs (user:password@, ?token=...) and in
# outbox.proxy are for superusers and libcurl only.  Other roles (pg_monitor
# members included) and the server log see the URL with its user
# information and query masked: SHOW, current_setting(), pg_settings, the
# outbox.targets view, the reload log line and validation errors.  URLs are
# checked by libcurl's parser.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $port = $orders->{port};
my $url = "http://hookuser:hookpass\@127.0.0.1:$port/o?token=tok1secret";
my $masked = "http://***\@127.0.0.1:$port/o?***";
my $leak_re = qr/hookuser|hookpass|tok1secret|tok2secret|proxypass/;

my $node = outbox_node('urls_sealed', targets => "orders=$url");
$node->safe_psql('postgres', q{
CREATE ROLE mon LOGIN IN ROLE pg_monitor;
CREATE ROLE app LOGIN;
GRANT USAGE ON SCHEMA outbox TO app;
GRANT SELECT ON outbox.targets TO app;
GRANT EXECUTE ON FUNCTION outbox.target_state() TO app;
});

my $reads = q{
SHOW outbox.targets;
SELECT current_setting('outbox.targets');
SELECT concat_ws(' ', setting, reset_val, boot_val) FROM pg_settings WHERE name = 'outbox.targets';
SELECT url FROM outbox.targets;
};

sub read_as
{
	my ($role, $sql) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role ]);
	return "$out\n$err";
}

# --- what roles see ---------------------------------------------------------

my $seen = read_as('app', $reads);
unlike($seen, $leak_re,
	'a role without privileges sees no URL credentials in SHOW, current_setting(), pg_settings or outbox.targets');
like($seen, qr/\Q$masked\E/, 'it sees the URL with user information and query masked');
unlike(read_as('mon', $reads), $leak_re, 'so does a pg_monitor member');
is($node->safe_psql('postgres', 'SHOW outbox.targets'), "orders=$url",
	'a superuser sees the whole URL in SHOW');
is($node->safe_psql('postgres', 'SELECT url FROM outbox.targets'), $url,
	'and in the outbox.targets view');

# --- the credentials still reach the target ----------------------------------

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 1}', message_id => 'creds')});
my ($req) = wait_for_requests($orders, 1);
is($req && $req->{path}, '/o?token=tok1secret', 'the target gets the query');
is($req && $req->{headers}{authorization}, 'Basic aG9va3VzZXI6aG9va3Bhc3M=',
	'and the user information, as basic authentication');

# --- the server log ---------------------------------------------------------

my $log_offset = -s $node->logfile;
my $url2 = "https://hookuser:hookpass\@127.0.0.1:$port/p?token=tok2secret";
$node->append_conf('postgresql.conf', "outbox.targets = 'orders=$url2'");
$node->reload;
ok($node->wait_for_log(qr/parameter "outbox\.targets" changed to/, $log_offset),
	'the reload is logged');
my $tail = substr(slurp_file($node->logfile), $log_offset);
like($tail,
	qr/parameter "outbox\.targets" changed to "orders=https:\/\/\*\*\*\@127\.0\.0\.1:$port\/p\?\*\*\*"/,
	'the reload log line shows the masked URL');

# A refused value names the target and the problem, never the URL
$log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf',
	"outbox.targets = 'orders=$url2, bad=ftp://hookuser:hookpass\@127.0.0.1/x?token=tok2secret'");
$node->reload;
ok( $node->wait_for_log(
		qr/invalid value for parameter "outbox\.targets"\n.*DETAIL:  The URL of target "bad" is not a valid http:\/\/ or https:\/\/ URL: the scheme must be http or https\./,
		$log_offset),
	'a URL of another scheme is refused, the target named');
ok(!eval { $node->safe_psql('postgres', q{ALTER SYSTEM SET outbox.targets = 'a=http://'}); 1 },
	'a URL without a host is refused');
like($@, qr/The URL of target "a" is not a valid/, 'with the reason');
unlike(slurp_file($node->logfile), $leak_re, 'no URL credentials reach the server log');

# ALTER SYSTEM writes the real URL, not the masked one (its statement is not
# logged here: log_statement would log it, as the README warns)
$node->safe_psql('postgres', "SET log_statement = 'none';\n"
	  . "ALTER SYSTEM SET outbox.targets = 'orders=$url'");
$node->reload;
ok(poll_until($node, 'SHOW outbox.targets', "orders=$url"),
	'a URL set with ALTER SYSTEM is taken as written');
$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 2}', message_id => 'altered')});
($req) = wait_for_requests($orders, 1, undef,
	with_id('altered'));
is($req && $req->{headers}{authorization}, 'Basic aG9va3VzZXI6aG9va3Bhc3M=',
	'and its credentials reach the target');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET outbox.targets');

# --- outbox.proxy is masked the same way -------------------------------------

my $proxy = start_receiver(name => 'proxy');
$log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf',
	"outbox.targets = 'orders=$url'\n"
	  . "outbox.proxy = 'http://proxyuser:proxypass\@127.0.0.1:$proxy->{port}'");
$node->reload;
ok($node->wait_for_log(qr/parameter "outbox\.proxy" changed to "http:\/\/\*\*\*\@127\.0\.0\.1:$proxy->{port}\/?"/,
		$log_offset), 'the reload log line shows the proxy URL masked');
is($node->safe_psql('postgres', 'SHOW outbox.proxy'),
	"http://proxyuser:proxypass\@127.0.0.1:$proxy->{port}",
	'a superuser sees the whole proxy URL');
my $mon_proxy = read_as('mon',
	q{SHOW outbox.proxy; SELECT concat_ws(' ', setting, reset_val) FROM pg_settings WHERE name = 'outbox.proxy';});
unlike($mon_proxy, $leak_re, 'a pg_monitor member sees no proxy credentials');
like($mon_proxy, qr/\Q***\E\@127\.0\.0\.1/, 'it sees the proxy URL masked');
like(read_as('app', 'SHOW outbox.proxy'), qr/(must be superuser|permission denied to examine).*pg_read_all_settings/s,
	'a role without privileges cannot read outbox.proxy');
unlike(slurp_file($node->logfile), $leak_re, 'still no credentials in the server log');

$node->stop;
done_testing();
