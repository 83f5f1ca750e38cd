/*-------------------------------------------------------------------------
 *
 * views.c
 *	  The functions behind the monitoring views: outbox.targets (each
 *	  target's delivery state), outbox.stats (live counters) and
 *	  outbox.workers (what each worker is doing).  They read the shared state
 *	  of the current database's workers, so they work, with empty answers,
 *	  when the library is not preloaded or no worker serves the database.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "config.h"
#include "outbox.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(outbox_target_state);
PG_FUNCTION_INFO_V1(outbox_stats);
PG_FUNCTION_INFO_V1(outbox_stats_reset);
PG_FUNCTION_INFO_V1(outbox_worker_state);
PG_FUNCTION_INFO_V1(outbox_slot_name_sql);

static Datum
timestamp_or_null(TimestampTz ts, bool *isnull)
{
	*isnull = (ts == 0);
	return TimestampTzGetDatum(ts);
}

/*
 * outbox.target_state()
 *		One row per configured target: its URL and the dispatcher's view of
 *		it (circuit, concurrency, last success and failure).
 */
Datum
outbox_target_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	OutboxTargetStatus *status = NULL;
	int			n_status = 0;

	InitMaterializedSRF(fcinfo, 0);

	if (outbox_shmem_lookup() != NULL)
	{
		LWLockAcquire(outbox_shared->status_lock, LW_SHARED);
		n_status = outbox_shared->n_targets;
		status = palloc(sizeof(OutboxTargetStatus) * Max(n_status, 1));
		memcpy(status, outbox_shared->targets,
			   sizeof(OutboxTargetStatus) * n_status);
		LWLockRelease(outbox_shared->status_lock);
	}

	for (int i = 0; i < outbox_target_count(); i++)
	{
		const char *name = outbox_target_name(i);
		OutboxTargetStatus *st = NULL;
		Datum		values[11];
		bool		nulls[11];

		for (int j = 0; j < n_status; j++)
			if (strcmp(status[j].name, name) == 0)
				st = &status[j];

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(name);
		/* Credentials in a URL are for superusers only */
		values[1] = CStringGetTextDatum(superuser() ?
										outbox_target_url(name) :
										outbox_mask_url(outbox_target_url(name)));
		values[2] = CStringGetTextDatum(st && st->circuit_open ? "open" : "closed");
		if (st == NULL)
		{
			for (int c = 3; c < 11; c++)
				nulls[c] = true;
		}
		else
		{
			values[3] = timestamp_or_null(st->circuit_opened_at, &nulls[3]);
			values[4] = Int32GetDatum(st->consecutive_failures);
			values[5] = Int32GetDatum(st->concurrency);
			values[6] = Int32GetDatum(st->inflight);
			values[7] = timestamp_or_null(st->last_success_at, &nulls[7]);
			values[8] = timestamp_or_null(st->last_failure_at, &nulls[8]);
			values[9] = CStringGetTextDatum(st->last_error);
			nulls[9] = (st->last_error[0] == '\0');
			values[10] = timestamp_or_null(st->next_probe_at, &nulls[10]);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * outbox_stats()
 *		The counters since the last reset, requests in flight now, and when
 *		the counters were reset.
 */
Datum
outbox_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[OUTBOX_NUM_COUNTERS + 2];
	bool		nulls[OUTBOX_NUM_COUNTERS + 2];
	int64		inflight = 0;

	InitMaterializedSRF(fcinfo, 0);
	memset(nulls, 0, sizeof(nulls));
	if (outbox_shmem_lookup() == NULL)
	{
		for (int i = 0; i < lengthof(nulls); i++)
			nulls[i] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		return (Datum) 0;
	}

	for (int i = 0; i < OUTBOX_NUM_COUNTERS; i++)
		values[i] = Int64GetDatum((int64) pg_atomic_read_u64(&outbox_shared->counters[i]));
	LWLockAcquire(outbox_shared->status_lock, LW_SHARED);
	for (int i = 0; i < outbox_shared->n_targets; i++)
		inflight += outbox_shared->targets[i].inflight;
	LWLockRelease(outbox_shared->status_lock);
	values[OUTBOX_NUM_COUNTERS] = Int64GetDatum(inflight);
	SpinLockAcquire(&outbox_shared->mutex);
	values[OUTBOX_NUM_COUNTERS + 1] = TimestampTzGetDatum(outbox_shared->stats_reset);
	SpinLockRelease(&outbox_shared->mutex);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/*
 * outbox_stats_reset()
 *		Set the counters to zero.
 */
Datum
outbox_stats_reset(PG_FUNCTION_ARGS)
{
	if (outbox_shmem_lookup() == NULL)
		PG_RETURN_VOID();
	for (int i = 0; i < OUTBOX_NUM_COUNTERS; i++)
		pg_atomic_write_u64(&outbox_shared->counters[i], 0);
	SpinLockAcquire(&outbox_shared->mutex);
	outbox_shared->stats_reset = GetCurrentTimestamp();
	SpinLockRelease(&outbox_shared->mutex);
	PG_RETURN_VOID();
}

/*
 * outbox.worker_state()
 *		One row per worker: its pid (NULL if it is not running) and state.
 */
Datum
outbox_worker_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	OutboxWorkerState workers[2];
	const char *names[2] = {"decoder", "dispatcher"};

	InitMaterializedSRF(fcinfo, 0);
	if (outbox_shmem_lookup() == NULL)
		return (Datum) 0;

	SpinLockAcquire(&outbox_shared->mutex);
	workers[0] = outbox_shared->decoder;
	workers[1] = outbox_shared->dispatcher;
	SpinLockRelease(&outbox_shared->mutex);

	for (int i = 0; i < lengthof(workers); i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, workers[i].pid == 0, false};

		values[0] = CStringGetTextDatum(names[i]);
		values[1] = Int32GetDatum(workers[i].pid);
		values[2] = CStringGetTextDatum(workers[i].state[0] ? workers[i].state : "not started");
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * outbox.slot_name()
 *		The slot of this database's decoder, for the outbox.workers view;
 *		NULL when no outbox worker serves this database.
 */
Datum
outbox_slot_name_sql(PG_FUNCTION_ARGS)
{
	if (outbox_shmem_lookup() == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(outbox_shared->slot_name));
}
