/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  The failure policy: what an attempt's result means for its message
 *	  (delivered, retried at some time, dead) and for its target (fair share
 *	  of requests, slow-down, circuit breaker).
 *
 * A message is retried after an exponential backoff with full jitter, or
 * after the delay a 429/503 asked for with Retry-After; 410 Gone and a
 * "webhook-delivery: abort-message" response header make it dead at once,
 * and so does reaching outbox.max_attempts.
 *
 * A target whose attempts keep failing (transport errors, timeouts, 5xx,
 * 408, 429) is probably down, not each of its messages bad.  After
 * outbox.circuit_failures such failures in a row its circuit opens: its
 * messages wait in the table, and one probe at a time goes out on the
 * backoff schedule.  The first 2xx closes the circuit.  A probe is an
 * attempt like any other request (the outbox-attempt header, the message's
 * attempts and outbox.attempts count every request), but a failed one is
 * also counted in probe_failures, and max_attempts and the backoff only
 * count the others.  So a target that is down for a day loses nothing to
 * max_attempts.
 *
 * The state lives in the dispatcher; a copy is published in shared memory
 * for the outbox.targets view.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "config.h"
#include "dispatcher.h"
#include "http.h"
#include "outbox.h"
#include "policy.h"
#include "shmem.h"

/* Every target ever configured, by name; entries are never freed */
static HTAB *all_targets = NULL;

/* The configured ones, in outbox.targets order */
static List *targets = NIL;

static bool status_changed = true;

/*
 * Bring the target list in line with outbox.targets.  A target that is no
 * longer configured keeps its entry, since requests to it may still be in
 * flight; outbox_target_get() no longer finds it.
 */
void
outbox_targets_sync(void)
{
	HASH_SEQ_STATUS status;
	OutboxTarget *target;
	MemoryContext oldcxt;

	if (all_targets == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = OUTBOX_TARGET_NAME_MAXLEN + 1;
		ctl.entrysize = sizeof(OutboxTarget);
		ctl.hcxt = outbox_dispatcher_context;
		all_targets = hash_create("outbox targets", OUTBOX_MAX_TARGETS, &ctl,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}

	list_free(targets);
	targets = NIL;
	oldcxt = MemoryContextSwitchTo(outbox_dispatcher_context);
	for (int i = 0; i < outbox_target_count(); i++)
	{
		bool		found;

		target = hash_search(all_targets, outbox_target_name(i), HASH_ENTER,
							 &found);
		if (!found)
		{
			memset((char *) target + sizeof(target->name), 0,
				   sizeof(OutboxTarget) - sizeof(target->name));
			target->concurrency = INT_MAX;
		}
		targets = lappend(targets, target);
	}
	MemoryContextSwitchTo(oldcxt);

	hash_seq_init(&status, all_targets);
	while ((target = hash_seq_search(&status)) != NULL)
	{
		target->concurrency = Min(target->concurrency,
								  outbox_target_limit(target));
	}
	status_changed = true;
}

/* The target of that name, or NULL if outbox.targets does not list it */
OutboxTarget *
outbox_target_get(const char *name)
{
	OutboxTarget *target;

	if (all_targets == NULL || strlen(name) > OUTBOX_TARGET_NAME_MAXLEN ||
		outbox_target_url(name) == NULL)
		return NULL;
	target = hash_search(all_targets, name, HASH_FIND, NULL);
	return target;
}

List *
outbox_target_all(void)
{
	return targets;
}

/*
 * How many requests the target may have in flight: its fair share of
 * outbox.max_inflight, so that a slow or dead target cannot take every
 * request slot, lowered further while the target asks us to slow down.
 */
int
outbox_target_limit(OutboxTarget *target)
{
	int			share = Max(1, outbox_max_inflight / Max(1, list_length(targets)));

	return Min(share, target->concurrency);
}

/* Upper bound of the delay after the given number of failed attempts */
static double
backoff_cap_ms(int attempts)
{
	double		cap = outbox_retry_base_delay * pow(2.0, Min(Max(attempts, 1) - 1, 40));

	return Min(cap, (double) outbox_retry_max_delay);
}

/* Full-jitter exponential backoff: uniform in [0, cap] */
static TimestampTz
retry_time(TimestampTz now, int attempts)
{
	double		delay_ms = pg_prng_double(&pg_global_prng_state) *
		backoff_cap_ms(attempts);

	return now + (TimestampTz) (delay_ms * 1000.0);
}

/* Probes wait at least half the cap, so a dead target is not hammered */
static TimestampTz
probe_time(TimestampTz now, int probes)
{
	double		cap = backoff_cap_ms(probes);
	double		delay_ms = cap / 2 + pg_prng_double(&pg_global_prng_state) * cap / 2;

	return now + (TimestampTz) (delay_ms * 1000.0);
}

void
outbox_target_sent(OutboxTarget *target, bool probe)
{
	target->inflight++;
	if (probe)
		target->probing = true;
	status_changed = true;
}

static bool
is_success(OutboxHttpResult *r)
{
	return !r->transport_error && r->status >= 200 && r->status < 300;
}

/* A failure that says the target, not the message, is in trouble */
static bool
is_target_failure(OutboxHttpResult *r)
{
	return r->transport_error || r->status >= 500 || r->status == 429 ||
		r->status == 408;
}

/* A response that asks us to send less */
static bool
is_throttle(OutboxHttpResult *r)
{
	return !r->transport_error &&
		(r->status == 429 || r->status == 502 || r->status == 503 ||
		 r->status == 504);
}

static void
update_target(OutboxTarget *target, OutboxHttpResult *r, bool probe,
			  TimestampTz now)
{
	if (is_success(r))
	{
		target->failures = 0;
		target->last_success_at = now;
		if (target->open)
			ereport(LOG,
					(errmsg("outbox target \"%s\" is reachable again; its circuit is closed",
							target->name)));
		target->open = false;
		target->probes = 0;
		if (target->concurrency < INT_MAX)
			target->concurrency++;
		return;
	}

	target->last_failure_at = now;
	if (r->error[0])
		strlcpy(target->last_error, r->error, sizeof(target->last_error));
	else
		snprintf(target->last_error, sizeof(target->last_error), "HTTP %ld",
				 r->status);

	if (is_throttle(r))
		target->concurrency = Max(1, outbox_target_limit(target) / 2);

	if (!is_target_failure(r))
	{
		target->failures = 0;
		return;
	}
	target->failures++;
	if (probe)
	{
		target->probes++;
		target->probe_at = probe_time(now, target->probes + 1);
	}
	else if (!target->open && target->failures >= outbox_circuit_failures)
	{
		target->open = true;
		target->opened_at = now;
		target->probes = 0;
		target->probe_at = probe_time(now, 1);
		ereport(LOG,
				(errmsg("outbox target \"%s\" failed %d times in a row; its circuit is open",
						target->name, target->failures),
				 errdetail("Last error: %s", target->last_error),
				 errhint("Its messages wait; probes are sent until it answers with 2xx, and failed probes do not count toward outbox.max_attempts.")));
	}
}

/*
 * Judge the result of one attempt of a message that had made "attempts"
 * attempts before, "probe_failures" of them failed probes: update the
 * target, and fill in what to record for the message.
 */
void
outbox_judge(OutboxTarget *target, int32 attempts, int32 probe_failures,
			 bool probe, OutboxHttpResult *r, TimestampTz now,
			 OutboxVerdict *v)
{
	bool		was_open = target->open;
	int32		counted;		/* attempts that count toward max_attempts */

	target->inflight--;
	if (probe)
		target->probing = false;
	update_target(target, r, probe, now);
	status_changed = true;

	v->attempts = attempts + 1;
	v->probe_failures = probe_failures;
	v->next_attempt_at = 0;
	counted = Max(v->attempts - probe_failures, 1);

	if (r->abort_message || (!r->transport_error && r->status == 410))
		v->state = OUTBOX_DEAD;
	else if (is_success(r))
		v->state = OUTBOX_DELIVERED;
	else if (was_open)
	{
		/*
		 * Sent while the circuit was open (a probe): it does not count
		 * toward max_attempts.  It is due again at the next probe, behind
		 * the messages due before, so that the next probe tries another
		 * message: one bad message must not keep its target closed to all
		 * the others.
		 */
		v->state = OUTBOX_PENDING;
		v->probe_failures = probe_failures + 1;
		v->next_attempt_at = Max(target->probe_at, now);
	}
	else if (counted >= outbox_max_attempts && !target->open)
		v->state = OUTBOX_DEAD;
	else
	{
		v->state = OUTBOX_PENDING;
		if (r->retry_after_ms >= 0 &&
			(r->status == 429 || r->status == 503))
			v->next_attempt_at = now +
				Min(r->retry_after_ms, (int64) outbox_retry_max_delay) * 1000;
		else
			v->next_attempt_at = retry_time(now, counted);
	}
}

/*
 * The open circuits whose probe is due at "now", in a list made in the
 * current memory context.  Each one's next probe is set "recheck_ms"
 * later, until the outcome of the probe sets it: there may be nothing to
 * probe with, or its message may still be in flight.
 */
List *
outbox_targets_to_probe(TimestampTz now, int recheck_ms)
{
	List	   *due = NIL;
	ListCell   *lc;

	foreach(lc, targets)
	{
		OutboxTarget *target = lfirst(lc);

		if (target->open && !target->probing && now >= target->probe_at)
		{
			target->probe_at = TimestampTzPlusMilliseconds(now, recheck_ms);
			due = lappend(due, target);
		}
	}
	return due;
}

/* When the next probe is due, or 0 if no circuit is waiting for one */
TimestampTz
outbox_next_probe_at(void)
{
	TimestampTz next = 0;
	ListCell   *lc;

	foreach(lc, targets)
	{
		OutboxTarget *target = lfirst(lc);

		if (target->open && !target->probing &&
			(next == 0 || target->probe_at < next))
			next = target->probe_at;
	}
	return next;
}

const char *
outbox_state_name(OutboxState state)
{
	static const char *const names[] = {"pending", "delivered", "dead"};

	return names[state];
}

/* Copy the targets' state to shared memory, for the outbox.targets view */
void
outbox_targets_publish(void)
{
	ListCell   *lc;
	int			n = 0;

	if (!status_changed)
		return;
	status_changed = false;

	LWLockAcquire(outbox_shared->status_lock, LW_EXCLUSIVE);
	foreach(lc, targets)
	{
		OutboxTarget *target = lfirst(lc);
		OutboxTargetStatus *st = &outbox_shared->targets[n++];

		strlcpy(st->name, target->name, sizeof(st->name));
		st->circuit_open = target->open;
		st->circuit_opened_at = target->open ? target->opened_at : 0;
		st->next_probe_at = target->open ? target->probe_at : 0;
		st->consecutive_failures = target->failures;
		st->concurrency = outbox_target_limit(target);
		st->inflight = target->inflight;
		st->last_success_at = target->last_success_at;
		st->last_failure_at = target->last_failure_at;
		strlcpy(st->last_error, target->last_error, sizeof(st->last_error));
	}
	outbox_shared->n_targets = n;
	LWLockRelease(outbox_shared->status_lock);
}
