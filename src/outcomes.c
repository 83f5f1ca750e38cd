/*-------------------------------------------------------------------------
 *
 * outcomes.c
 *	  The outcomes of attempts that the dispatcher holds until it records
 *	  them, in batches.
 *
 * Outcomes are recorded in batches: each turn of the loop writes all
 * outcomes collected so far with one UPDATE in one transaction (see
 * outbox_store_outcomes()).  An outcome is only ever recorded after its
 * HTTP response (at-least-once).  The dispatcher records the batch at the
 * start of every transaction it runs (see run_in_transaction()), so no scan
 * ever sees a row as pending after it was sent; this file says what is
 * held and when it is time to record it.
 *
 * The batch lives in outbox_dispatcher_context: it is kept across turns of
 * the loop, and across transactions that fail.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "dispatcher.h"
#include "http.h"
#include "message.h"
#include "outcomes.h"
#include "policy.h"
#include "store.h"

/*
 * Outcomes wait this long, or until this many are held, to be recorded
 * together: one statement and one commit for many deliveries.  Every other
 * transaction of the dispatcher records them first, so no scan ever sees a
 * row as pending after it was sent.
 */
#define OUTCOME_LINGER_MS		20
#define OUTCOME_BATCH			1000

static Outcome *outcomes;
static int	n_outcomes = 0;
static int	max_outcomes = 0;
static TimestampTz outcomes_flush_at = 0;	/* when to record them */

/*
 * Hold the outcome of the attempt of message id, started at started_at.
 * (The transaction that looks up the next message of its key records it
 * first, as every transaction of the dispatcher does.)
 */
void
outbox_outcome_add(int64 id, const OutboxMessage *msg, TimestampTz started_at,
				   const OutboxVerdict *v, const OutboxHttpResult *r,
				   TimestampTz now)
{
	Outcome    *o;
	bool		delivered = (v->state == OUTBOX_DELIVERED);

	if (n_outcomes == max_outcomes)
	{
		max_outcomes = Max(64, max_outcomes * 2);
		outcomes = outcomes == NULL ?
			MemoryContextAlloc(outbox_dispatcher_context,
							   sizeof(Outcome) * max_outcomes) :
			repalloc(outcomes, sizeof(Outcome) * max_outcomes);
	}
	if (n_outcomes == 0)
		outcomes_flush_at = TimestampTzPlusMilliseconds(now, OUTCOME_LINGER_MS);
	o = &outcomes[n_outcomes++];
	o->id = id;
	o->attempt = msg->attempts + 1;
	o->keyed = (msg->key != NULL);
	o->started_at = started_at;
	o->finished_at = now;
	o->state = v->state;
	o->attempts = v->attempts;
	o->probe_failures = v->probe_failures;
	o->status = r->transport_error ? 0 : (int32) r->status;
	o->error = delivered ? NULL :
		MemoryContextStrdup(outbox_dispatcher_context, r->error);
	o->delivered_at = delivered ? now : 0;
	o->next_attempt_at = v->next_attempt_at;

	if (n_outcomes >= OUTCOME_BATCH)
		outcomes_flush_at = Min(outcomes_flush_at, now);
}

/* How many outcomes are held */
int
outbox_outcomes_held(void)
{
	return n_outcomes;
}

/* When the outcomes held are to be recorded */
TimestampTz
outbox_outcomes_flush_at(void)
{
	return outcomes_flush_at;
}

/* Record them at "at" instead: recording them failed */
void
outbox_outcomes_postpone(TimestampTz at)
{
	outcomes_flush_at = at;
}

/*
 * Write the outcomes held, in the caller's transaction with SPI connected.
 * They are still held: outbox_outcomes_forget() once it has committed.
 * Returns true if some are of keyed messages.
 *
 * The transaction commits asynchronously (see outbox_dispatcher_main), as
 * an outcome lost in a crash only means the message is sent again.  Not
 * so for a keyed message: should message n become pending again after
 * message n+1 was sent, the crash would send n after n+1.  The dispatcher
 * flushes the WAL of such a commit before it sends a message of any key
 * that it found next after it (see await_durable() in dispatcher.c), so
 * that many keys share one flush, and the commits that let no message go
 * wait for none.
 */
bool
outbox_outcomes_record(void)
{
	bool		keyed = false;

	if (n_outcomes == 0)
		return false;
	for (int i = 0; i < n_outcomes; i++)
		keyed |= outcomes[i].keyed;
	outbox_store_outcomes(outcomes, n_outcomes);
	return keyed;
}

/* Drop the outcomes held: recorded, or their rows went away */
void
outbox_outcomes_forget(void)
{
	for (int i = 0; i < n_outcomes; i++)
		if (outcomes[i].error)
			pfree(outcomes[i].error);
	n_outcomes = 0;
}
