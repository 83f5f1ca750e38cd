
# No role but a superuser ever sees a signing secret: not the members of
# pg_monitor or pg_read_all_settings (the role metrics exporters run as),
# through SHOW, current_setting() or any column of pg_settings.  Secrets can
# also be kept in outbox.secrets_file, a file only the server's operating
# system user can read: a file others could read is refused (logged once
# with the fix; deliveries wait, never sent unsigned).  With the library not
# preloaded, PostgreSQL shows the raw value of outbox.secrets to every role,
# and only the file keeps secrets sealed.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my ($orders_key, $orders_secret) = random_key(32);
my ($billing_key, $billing_secret) = random_key(32);
my $orders = start_receiver(name => 'orders');
my $billing = start_receiver(name => 'billing');
my $targets = 'orders=' . receiver_url($orders, '/o')
  . ', billing=' . receiver_url($billing, '/b');

# The secret text a reader must never see: the whsec_ form or its base64
my $secret_re = qr/whsec_[A-Za-z0-9+\/]|\Q${\ substr($orders_secret, 6)}\E|\Q${\ substr($billing_secret, 6)}\E/;

sub write_secrets_file
{
	my ($node, $mode, $text) = @_;
	my $file = $node->data_dir . '/outbox_secrets';
	open my $fh, '>', $file or die "$file: $!";
	print $fh $text;
	close $fh;
	chmod $mode, $file or die "chmod $file: $!";
	return $file;
}

# Everything a role can read about outbox.secrets and outbox.secrets_file
my $reads = q{
SHOW outbox.secrets;
SELECT current_setting('outbox.secrets', true);
SELECT concat_ws(' ', name, setting, reset_val, boot_val) FROM pg_settings WHERE name LIKE 'outbox.secret%';
};

sub read_as
{
	my ($node, $role, $sql) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role ]);
	return "$out\n$err";
}

my $node = outbox_node('secrets_sealed', targets => $targets, start => 0,
	conf => "outbox.secrets = 'orders=$orders_secret'\n"
	  . "outbox.secrets_file = 'outbox_secrets'");
write_secrets_file($node, 0600,
	"# billing's key\n\nbilling=$billing_secret\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION outbox;
CREATE ROLE mon LOGIN IN ROLE pg_monitor;
CREATE ROLE app LOGIN;
});

# --- pg_monitor members see no secret -----------------------------------

my $seen = read_as($node, 'mon', $reads);
unlike($seen, $secret_re,
	'a pg_monitor member sees no secret in SHOW, current_setting() or pg_settings (setting, reset_val, boot_val)');
like($seen, qr/orders=\*\*\*/,
	'a pg_monitor member sees which targets have a secret, masked');
unlike(read_as($node, 'app', $reads), $secret_re,
	'a role without privileges sees no secret either');
is($node->safe_psql('postgres', 'SHOW outbox.secrets'), "orders=$orders_secret",
	'a superuser sees outbox.secrets');

# --- secrets from the file -------------------------------------------------

$node->safe_psql('postgres', q{
SELECT outbox_queue('orders', '{"n": 1}', message_id => 'from-setting');
SELECT outbox_queue('billing', '{"n": 2}', message_id => 'from-file');
});
my ($o) = wait_for_requests($orders, 1, undef, with_id('from-setting'));
ok(is_signed_with($o, $orders_key),
	'a target with a secret in outbox.secrets is signed with it');
my ($b) = wait_for_requests($billing, 1, undef, with_id('from-file'));
ok(is_signed_with($b, $billing_key),
	'a target with a secret in outbox.secrets_file is signed with it');
unlike(read_as($node, 'mon', q{
SHOW outbox.secrets_file;
SELECT pg_read_file(current_setting('outbox.secrets_file'));
}), $secret_re, 'a pg_monitor member cannot read the secrets file');

# --- a file others can read is refused -----------------------------------

my $log_offset = -s $node->logfile;
my $file = write_secrets_file($node, 0640, "billing=$billing_secret\n");
$node->reload;
wait_seconds(1);
$node->safe_psql('postgres',
	q{SELECT outbox_queue('billing', '{"n": 3}', message_id => 'held')});
ok( $node->wait_for_log(
		qr/outbox\.secrets cannot be used; messages wait until it is fixed\n.*DETAIL:  outbox\.secrets_file "[^"]*" has group or world access: run chmod 600 on it, then reload the configuration\./,
		$log_offset),
	'a secrets file with group or world access is reported, with the fix');
wait_seconds(2);
is(scalar(grep { with_id('held')->($_) } read_requests($billing)), 0,
	'while the file can be read by others nothing is sent');
is($node->safe_psql('postgres',
		q{SELECT state || '/' || attempts FROM outbox.messages WHERE message_id = 'held'}),
	'pending/0', 'the message waits, untried');
my $reports = () = substr(slurp_file($node->logfile), $log_offset)
  =~ /has group or world access/g;
is($reports, 1, 'the problem is logged once');

chmod 0600, $file or die;
$node->reload;
my ($h) = wait_for_requests($billing, 1, undef, with_id('held'));
ok(is_signed_with($h, $billing_key),
	'after chmod 600 and a reload the waiting message is delivered, signed');

unlike(slurp_file($node->logfile), $secret_re, 'no secret reaches the server log');
$node->stop;

# --- the library not preloaded ----------------------------------------------

my $plain = outbox_node('not_preloaded', targets => $targets, start => 0,
	conf => "shared_preload_libraries = ''\n"
	  . "outbox.secrets = 'orders=$orders_secret'\n"
	  . "outbox.secrets_file = 'outbox_secrets'");
write_secrets_file($plain, 0600, "billing=$billing_secret\n");
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION outbox; CREATE ROLE app LOGIN');
like(read_as($plain, 'app', 'SHOW outbox.secrets'), qr/\Q$orders_secret\E/,
	'not preloaded, outbox.secrets is a placeholder whose raw value every role can read');
my $billing_re = qr/\Q${\ substr($billing_secret, 6)}\E/;
unlike(read_as($plain, 'app', "$reads\nSHOW outbox.secrets_file;\n"
		  . "SELECT pg_read_file(current_setting('outbox.secrets_file'));"),
	$billing_re, 'not preloaded, no role can read a secret of the secrets file');

# Preloaded again, the file's secret signs
$plain->append_conf('postgresql.conf', "shared_preload_libraries = 'outbox'");
$plain->restart;
$plain->safe_psql('postgres',
	q{SELECT outbox_queue('billing', '{"n": 4}', message_id => 'after-preload')});
($b) = wait_for_requests($billing, 1, undef, with_id('after-preload'));
ok(is_signed_with($b, $billing_key),
	'with the library preloaded the secrets file signs deliveries');
$plain->stop;

done_testing();
