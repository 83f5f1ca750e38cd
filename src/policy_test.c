/*-------------------------------------------------------------------------
 *
 * policy_test.c
 *	  A test-only SQL function that runs the failure policy (policy.c)
 *	  against a script of attempt results, on a clock of its own.
 *
 * The dispatcher judges each attempt with outbox_judge(), passing the time
 * explicitly; here the time is the script's.  Each step is one attempt of
 * a message to one target: the step happens when the message is due (or,
 * with the circuit open, when the probe is due), so a whole day of retries
 * runs in a millisecond and its timings can be checked exactly.  Once a
 * message is delivered or dead, the next step is the first attempt of
 * another message.
 *
 * The extension's scripts do not create the function; the pg_regress test
 * "policy" does, as a superuser, with CREATE FUNCTION ... LANGUAGE C.
 * The settings are the server's (outbox.max_attempts, outbox.retry_*,
 * outbox.circuit_failures, outbox.max_inflight).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "policy.h"

PG_FUNCTION_INFO_V1(outbox_test_policy);

/*
 * A step of the script: "200", "500", ... (an HTTP status), "error" (no
 * response), "abort" (a 400 with webhook-delivery: abort-message) or a
 * status followed by " retry-after=<ms>".
 */
static void
parse_step(const char *step, OutboxHttpResult *r)
{
	char	   *end;
	const char *ra = strstr(step, " retry-after=");

	memset(r, 0, sizeof(*r));
	r->retry_after_ms = -1;
	if (strcmp(step, "error") == 0)
	{
		r->transport_error = true;
		strlcpy(r->error, "connection refused (test)", sizeof(r->error));
		return;
	}
	if (strcmp(step, "abort") == 0)
	{
		r->status = 400;
		r->abort_message = true;
		return;
	}
	r->status = strtol(step, &end, 10);
	if (end == step || r->status < 100 || r->status > 599 ||
		(*end != '\0' && end != ra))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid policy step \"%s\"", step),
				 errhint("Write a status (\"503\"), \"error\", \"abort\", or a status and \" retry-after=<ms>\".")));
	if (ra)
		r->retry_after_ms = strtol(ra + strlen(" retry-after="), NULL, 10);
}

/*
 * outbox_test_policy(steps text[], start timestamptz) returns a row per
 * step: what was sent (a probe or not) at what time, and what the policy
 * decided for the message and the target.
 */
Datum
outbox_test_policy(PG_FUNCTION_ARGS)
{
	ArrayType  *steps = PG_GETARG_ARRAYTYPE_P(0);
	TimestampTz now = PG_GETARG_TIMESTAMPTZ(1);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	OutboxTarget target;
	Datum	   *items;
	bool	   *item_nulls;
	int			n;
	int32		attempts = 0;
	int32		probe_failures = 0;

	InitMaterializedSRF(fcinfo, 0);
	memset(&target, 0, sizeof(target));
	strlcpy(target.name, "test", sizeof(target.name));
	target.concurrency = INT_MAX;

	deconstruct_array(steps, TEXTOID, -1, false, TYPALIGN_INT,
					  &items, &item_nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *step = item_nulls[i] ? "" : TextDatumGetCString(items[i]);
		bool		probe = target.open;
		OutboxHttpResult r;
		OutboxVerdict v;
		Datum		values[11];
		bool		nulls[11] = {0};

		parse_step(step, &r);
		outbox_target_sent(&target, probe);
		outbox_judge(&target, attempts, probe_failures, probe, &r, now, &v);

		values[0] = Int32GetDatum(i + 1);
		values[1] = CStringGetTextDatum(step);
		values[2] = TimestampTzGetDatum(now);
		values[3] = BoolGetDatum(probe);
		values[4] = CStringGetTextDatum(outbox_state_name(v.state));
		values[5] = Int32GetDatum(v.attempts);
		values[6] = Int32GetDatum(v.probe_failures);
		values[7] = TimestampTzGetDatum(v.next_attempt_at);
		nulls[7] = (v.next_attempt_at == 0);
		values[8] = Int32GetDatum(outbox_target_limit(&target));
		values[9] = BoolGetDatum(target.open);
		values[10] = TimestampTzGetDatum(target.probe_at);
		nulls[10] = !target.open;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 values, nulls);

		/* The next attempt: of this message when it is due, else the next */
		if (v.state == OUTBOX_PENDING)
		{
			attempts = v.attempts;
			probe_failures = v.probe_failures;
			now = Max(now, v.next_attempt_at);
		}
		else
			attempts = probe_failures = 0;
		if (target.open)
			now = Max(now, target.probe_at);
	}
	return (Datum) 0;
}
