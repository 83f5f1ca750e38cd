
# The patient-registration saga of examples/patient-registration runs, in
# its quick mode, as part of the test suite, so that the example cannot rot.
# Its run.sh starts its own cluster and services, submits 60 registrations
# while the identity provider fails a third of its calls and the clinic
# service is killed and restarted once, and prints a final check: every
# registration must end registered or cleanly reverted, never half-done.

use strict;
use warnings;

use OutboxTest;
use PostgreSQL::Test::Utils;
use Test::More;

my ($status, $out) = run_example('patient-registration');

is($status, 0, 'examples/patient-registration/run.sh --quick exits with 0')
  or diag $out;

like($out, qr/^\s*killed the clinic service \(SIGKILL\) with \d+ registration/m,
	'the clinic service is killed with SIGKILL in the middle of the run');
like($out, qr/^\s*restarted it/m, 'and restarted');
like($out, qr/^client: 60 registrations accepted/m,
	'the client gets every registration accepted, retrying while the service is down');

like($out, qr/^registrations\s+60\s+ok$/m, 'the check finds the 60 registrations');
like($out, qr/^  registered \(patient \+ IdP user \+ 1 success event\)\s+48$/m,
	'48 end registered: a patient row, an IdP user and exactly one success event');
like($out, qr/^  reverted \(no patient, no IdP user, 1 failure event\)\s+12$/m,
	'12 end reverted: no patient row, no IdP user and exactly one failure event');
like($out, qr/^    invalid insurance number\s+6$/m,
	'6 are reverted because the clinic rejects them after the IdP step');
like($out, qr/^    the identity provider refused the user\s+3$/m,
	'3 are reverted because the identity provider refuses them');
like($out, qr/^    a patient with this insurance number exists\s+3$/m,
	'3 are reverted because the same person registered twice');
like($out, qr/^  half-done\s+0\s+ok$/m, 'no registration is half-done');
like($out, qr/^registrations with an unexpected outcome\s+0\s+ok$/m,
	'every registration has the outcome its data calls for');
like($out, qr/^IdP users without a registered patient\s+0\s+ok$/m,
	'the identity provider keeps no user of a failed registration');
like($out, qr/^  pending or dead\s+0\s+ok$/m,
	'every outbox message is delivered, none is dead');

my ($failed_on_purpose) = $out =~ /^  failed on purpose\s+(\d+)$/m;
cmp_ok($failed_on_purpose // 0, '>', 0,
	'the identity provider failed some calls on purpose');
my ($retried) = $out =~ /^  HTTP attempts that failed and were retried\s+(\d+)$/m;
cmp_ok($retried // 0, '>', 0, 'the outbox retried failed deliveries');
like($out, qr/^duplicate deliveries absorbed by idempotency\s+\d+$/m,
	'the check reports the duplicate deliveries absorbed');

like($out, qr/^RESULT: OK$/m, 'the final check says OK');

done_testing();
