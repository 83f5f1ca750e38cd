
# A signing key shorter than 24 bytes (decoded) is refused: the problem is
# logged once with the fix and deliveries wait, never sent unsigned or
# signed with a weak key.  Once the key is fixed, the waiting message is
# delivered, signed.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders = start_receiver(name => 'orders');
my $node = outbox_node('short_keys',
	targets => 'orders=' . receiver_url($orders, '/o'),
	conf => q{outbox.secrets = 'orders=whsec_AA=='});

$node->safe_psql('postgres',
	q{SELECT outbox_queue('orders', '{"n": 1}', message_id => 'weak')});
ok( $node->wait_for_log(
		qr/outbox\.secrets cannot be used; messages wait until it is fixed\n.*DETAIL:  The secret of entry 1 \(target "orders"\) is 1 bytes long, too short to sign with: use at least 24 random bytes/),
	'a one-byte key is reported, with the length needed');
wait_seconds(2);
is(scalar(read_requests($orders)), 0, 'nothing is sent');
is($node->safe_psql('postgres',
		q{SELECT state || '/' || attempts FROM outbox.messages WHERE message_id = 'weak'}),
	'pending/0', 'the message waits, untried');

# 23 bytes are still too short
my $log_offset = -s $node->logfile;
my (undef, $short) = random_key(23);
$node->append_conf('postgresql.conf', "outbox.secrets = 'orders=$short'");
$node->reload;
ok($node->wait_for_log(qr/is 23 bytes long, too short to sign with/, $log_offset),
	'a 23-byte key is refused too');
wait_seconds(2);
is(scalar(read_requests($orders)), 0, 'still nothing is sent');
my $reports = () = substr(slurp_file($node->logfile), $log_offset)
  =~ /too short to sign with/g;
is($reports, 1, 'the problem is logged once');

# 24 bytes are enough
my ($key, $secret) = random_key(24);
$node->append_conf('postgresql.conf', "outbox.secrets = 'orders=$secret'");
$node->reload;
my ($req) = wait_for_requests($orders, 1);
ok(is_signed_with($req, $key),
	'with a 24-byte key the waiting message is delivered, signed with it');
ok(poll_until($node,
		q{SELECT state FROM outbox.messages WHERE message_id = 'weak'},
		'delivered'), 'and recorded as delivered');

$node->stop;
done_testing();
