/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *	  The dispatcher worker: finds messages, sends them, records outcomes.
 *
 * Messages reach the dispatcher two ways: decoded from WAL through the
 * shared ring (the fast path, no re-read of the table), and from table scans
 * (at start, for outbox_send rows, for due retries, and whenever the fast
 * path may have missed something).  Both give the same OutboxMessage.
 *
 * Every message the dispatcher holds is tracked by id (see tracking.c):
 * QUEUED, INFLIGHT, or DONE.  A scan skips messages that are queued or in
 * flight; the ring skips every tracked message, including DONE ones, which
 * are kept until the decoder has passed the WAL position of the scan that
 * found them (ring_covers).
 *
 * Outcomes are recorded in batches (see outcomes.c): each turn of the loop
 * writes all outcomes collected so far with one UPDATE in one transaction,
 * and every transaction records them before anything else it does.  An
 * outcome is only ever recorded after its HTTP response (at-least-once).
 *
 * Table scans sweep the due rows in (next_attempt_at, id) order with a
 * keyset cursor, and a sweep does not go back to the start when it reaches
 * the end: the next scan goes on from where the last one stopped and reads
 * only what became due since.  No row is passed by: the sweep's position is
 * at most the now() of the last scan, a retry is due after its attempt
 * ended, a message for later at its time, and a row committed with an
 * earlier time comes through the ring (outbox_queue) or asks for a sweep
 * from the start (outbox_send, outbox_redrive).  A message refused for its
 * key is looked up when the one in front of it is finished (see
 * ordering.c), together with the other keys finishing then.  Anything else
 * the dispatcher lets go of behind the sweep (a full queue, an open
 * circuit, a reload, a failed gate check) makes it start over, as it does
 * every SAFETY_SCAN_MS as a safety net.  A row whose message cannot be
 * built is passed by for a while (see unreadable), so that it holds up no
 * other message but the later ones of its key.
 *
 * This file is the event loop and what decides: startup, signals, reload
 * and shutdown, the checks of the extension, run_in_transaction(), and one
 * turn of the loop (take from the ring, look up keys, scan, gate, start
 * requests, probe, prune) with how long to sleep after it.  The rest is
 * behind headers of its own: every query on the tables in store.c, the
 * tracked messages in tracking.c, the outcomes held in outcomes.c, the
 * building of a request in request.c, the failure policy in policy.c and
 * the per-key bookkeeping in ordering.c.  Two pieces that read like other
 * files' business stay here.  The per-key gate's walk of the queues
 * (gate_keyed_messages()) decides, as start_requests() does, which queued
 * message may go, and both depend on commit visibility
 * (committed_visibly()); ordering.c keeps only the state of keys, which
 * knows nothing of queues.  The probes of open circuits (find_probes(),
 * send_probes()) take a message from the table, track it and start its
 * request, all of which is the dispatcher's; policy.c only says when a
 * probe is due and what its result means, and runs no SQL.
 *
 * Memory: one turn of the loop runs in turn_context, which is reset at the
 * start of the next turn, and a transaction's work in the SPI context,
 * gone at its end.  Anything that must live across turns (or past the
 * transaction that made it) goes in outbox_dispatcher_context or one of
 * its long-lived children, never in CurrentMemoryContext.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"


#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "lib/ilist.h"
#include "nodes/makefuncs.h"
#include "catalog/pg_extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "config.h"
#include "dispatcher.h"
#include "http.h"
#include "message.h"
#include "ordering.h"
#include "outbox.h"
#include "outcomes.h"
#include "policy.h"
#include "request.h"
#include "shmem.h"
#include "store.h"
#include "tracking.h"

/* Rows fetched by one table scan (keys looked up at once: ordering.h) */
#define SCAN_BATCH				1000
/*
 * Messages a target may hold in its queue, and bytes all queues together
 * may hold; more wait in the table.  A queue may always hold one message,
 * however large, so that every target makes progress.
 */
#define TARGET_QUEUE_CAP		1000
#define QUEUED_BYTES_MAX		(32 * 1024 * 1024)
/* Look again this soon for a probe whose message was still in flight */
#define PROBE_RECHECK_MS		200
/* Scan at least this often, whatever else happens (safety net) */
#define SAFETY_SCAN_MS			5000
/* How often to look for CREATE EXTENSION while it has not run */
#define EXTENSION_CHECK_MS		1000
/* Pause after a failed transaction before trying again */
#define ERROR_BACKOFF_MS		1000
/* How often retention passes run (see outbox_store_prune()) */
#define PRUNE_INTERVAL_MS		10000
#define PRUNE_AGAIN_MS			200
/* Longest wait for in-flight requests at shutdown */
#define SHUTDOWN_GRACE_MS		5000

/*
 * Memory: outbox_dispatcher_context holds what lives as long as the
 * process (tracking, key and target state, outcomes held); its children
 * hold the messages being handled (outbox_message_context, tracking.c),
 * scratch space reset after each use (request.c), and whatever one turn of
 * the loop allocates, reset at the end of the turn.
 */
MemoryContext outbox_dispatcher_context = NULL;
static MemoryContext turn_context;	/* reset after each turn of the loop */

/*
 * Every message committed before this WAL position that the ring will ever
 * carry has been taken from the ring already.
 */
static XLogRecPtr ring_covers = InvalidXLogRecPtr;

/*
 * Messages committed before the dispatcher started are found by its first
 * scan; copies of them that the decoder hands over again (it replays from
 * the slot's last saved position after a crash) are not sent again.
 */
static XLogRecPtr started_at_lsn = InvalidXLogRecPtr;

static bool extension_ready = false;
static Oid	extension_oid = InvalidOid;

/*
 * The outbox.messages that ids refer to.  A decoded message of another
 * table (one dropped with the extension) is never tracked: its id may be
 * that of another message now.
 */
static Oid	messages_relid = InvalidOid;

/*
 * The last message taken from the ring.  The ring carries messages in
 * commit order, and within a transaction in id order, so a message that
 * does not come after this one is a copy that a restarted decoder decoded
 * again: it was handled already.
 */
static XLogRecPtr ring_last_lsn = InvalidXLogRecPtr;
static int64 ring_last_id = 0;

/* Some queued keyed message has not been through the per-key gate yet */
static bool gate_needed = false;

/* Table scan state: a keyset cursor over (next_attempt_at, id) */
static bool scan_wanted = true; /* sweep on at the next turn */
static bool scan_restart = true;	/* ... from the start */
static bool cursor_valid = false;	/* the sweep has a position */
static TimestampTz cursor_time;
static int64 cursor_id;
static TimestampTz next_scan_at = 0;	/* sweep on then: rows become due */
static TimestampTz restart_scan_at = 0; /* sweep from the start then */

/*
 * Messages whose rows could not be read: building the message failed, and
 * with it the transaction.  Scans, key lookups and probes pass them by, so
 * that one such row (corruption, say) holds up no other message, and they
 * are tried again every UNREADABLE_RETRY_MS; a key whose first message it
 * is waits.  reading_id: the message being built (0: none).
 */
#define UNREADABLE_RETRY_MS		60000
typedef struct UnreadableRow
{
	int64		id;				/* hash key */
	TimestampTz retry_at;		/* read it again then */
} UnreadableRow;
static HTAB *unreadable = NULL;
static TimestampTz unreadable_retry_at = 0;	/* the earliest retry_at */
static int64 reading_id = 0;
static void pass_unreadable_by(void);

/* When to try again to fetch the next message of keys, after an error */
static TimestampTz lookup_retry_at = 0;

/*
 * The keys whose next message waits are looked up in batches.  A backlog
 * of few keys goes out a message per key at a time, and those requests
 * come back within a fraction of a millisecond of each other; looking up
 * the first keys at once would leave the others to the next transaction,
 * and split the keys into groups that each wait for the other's
 * transaction as well as their own.  So a batch is looked up once no
 * keyed request is in flight any more, or KEY_BATCH_MS after its first
 * key finished, whichever comes first.
 *
 * While the queues hold enough to keep outbox.max_inflight requests going,
 * the messages found would only wait behind them: keys wait too, up to
 * KEY_BATCH_WAIT_MS, so that a backlog of many keys is looked up a few
 * hundred keys to a transaction, and to a WAL flush (see await_durable()),
 * rather than a few.
 */
#define KEY_BATCH_MS			1
#define KEY_BATCH_WAIT_MS		10
static TimestampTz key_batch_at = 0;

static TimestampTz next_prune_at = 0;

/* Targets already reported as missing from outbox.targets */
static List *reported_targets = NIL;

/* ---- queueing ---- */

static void
report_missing_target(const char *target)
{
	MemoryContext oldcxt;
	ListCell   *lc;

	foreach(lc, reported_targets)
	{
		if (strcmp((char *) lfirst(lc), target) == 0)
			return;
	}
	ereport(LOG,
			(errmsg("outbox target \"%s\" is not configured; its messages wait",
					target),
			 errhint("Add %s=<url> to outbox.targets and reload the configuration.",
					 target)));
	oldcxt = MemoryContextSwitchTo(outbox_dispatcher_context);
	reported_targets = lappend(reported_targets, pstrdup(target));
	MemoryContextSwitchTo(oldcxt);
}

static bool secrets_problem_reported = false;

/*
 * Can outbox.secrets be used?  If not, nothing is sent (a message meant to
 * be signed must not go out unsigned) and the problem is logged once.
 */
static bool
secrets_usable(void)
{
	List	   *keys;
	const char *problem;

	if (outbox_target_secrets("", &keys, &problem))
		return true;
	if (!secrets_problem_reported)
	{
		outbox_set_state(&outbox_shared->dispatcher,
						 "misconfigured: outbox.secrets: %s", problem);
		ereport(LOG,
				(errmsg("outbox.secrets cannot be used; messages wait until it is fixed"),
				 errdetail("%s", problem),
				 errhint("Write outbox.secrets as name=whsec_<base64 key> pairs, comma separated, and reload the configuration.")));
	}
	secrets_problem_reported = true;
	return false;
}

/* Sweep the table from the start, at the next turn of the loop */
static void
rescan(void)
{
	scan_wanted = true;
	scan_restart = true;
}

/* Sweep from the start after ERROR_BACKOFF_MS: a transaction failed */
static void
rescan_after_error(void)
{
	restart_scan_at = Min(restart_scan_at,
						  TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  ERROR_BACKOFF_MS));
}

/*
 * The messages queued by the transaction now running, by id: a scan or a
 * key lookup found each due, and first in its key if it has one.  What the
 * transaction read includes the outcomes it recorded first; if it fails,
 * those are not recorded, and the table still says what it said before.
 * Sending the next message of a key before its predecessor's outcome is
 * committed would let a crash send the predecessor again after it (and
 * once committed, it waits for the flush: see await_durable()); sending
 * a retry would send an attempt the table never counts, before its
 * backoff, and at the pace of the failing transactions.  So when a
 * transaction fails, these wait in the table instead (see
 * run_in_transaction()).
 */
static int64 found_ids[Max(SCAN_BATCH, OUTBOX_KEY_LOOKUP_BATCH)];
static int	n_found = 0;

/*
 * The end of the last commit that recorded outcomes of keyed messages, and
 * how far the WAL is known to be flushed: a keyed message found first in
 * its key by a transaction goes once the outcomes that transaction saw are
 * durable (see outbox_outcomes_record()).  A dispatcher that starts may
 * find outcomes an earlier one committed and never flushed: it starts from
 * the WAL position of its start (see outbox_dispatcher_main()).
 */
static XLogRecPtr keyed_outcomes_end = InvalidXLogRecPtr;
static XLogRecPtr durable_upto = InvalidXLogRecPtr;

/*
 * Flush the WAL, if need be, before the keyed message t goes: it was found
 * first in its key on outcomes that were committed asynchronously.  One
 * flush serves every message found so far.
 */
static void
await_durable(Tracked *t)
{
	if (t->msg->key == NULL || t->durable_at <= durable_upto)
		return;
	XLogFlush(t->durable_at);
	durable_upto = t->durable_at;
}

/*
 * The table found message id due, and first in its key if it has one: it
 * needs no gate check.  One transaction finds at most a scan's or a
 * lookup's rows, one message per row; this fails before anything changes
 * should that ever not hold.
 */
static void
admit(int64 id)
{
	if (n_found == lengthof(found_ids))
		elog(ERROR, "outbox dispatcher found more than %d messages in one transaction",
			 (int) lengthof(found_ids));
	found_ids[n_found++] = id;
}

/*
 * The transaction that found them failed: the messages it queued wait in
 * the table, where the scan or the key lookup tried again finds them (a
 * failed scan leaves the sweep where it started, see dispatch(); a failed
 * lookup keeps its keys).  Each is kept as DONE
 * while the ring may still bring a copy, as a message sent is.
 */
static void
unfind_all(void)
{
	for (int i = 0; i < n_found; i++)
	{
		Tracked    *t = outbox_tracked_find(found_ids[i]);

		if (t == NULL || t->state != OUTBOX_TRACK_QUEUED)
			continue;
		outbox_queue_remove(t);
		if (t->msg->key)
			outbox_key_wait(t->target->name, t->msg->key);
		outbox_tracked_finished(t, ring_covers);
	}
	n_found = 0;
}

/*
 * The transaction that found them committed: those still queued go once
 * the outcomes it saw are durable.
 */
static void
stamp_found(void)
{
	for (int i = 0; i < n_found; i++)
	{
		Tracked    *t = outbox_tracked_find(found_ids[i]);

		if (t != NULL && t->state == OUTBOX_TRACK_QUEUED)
			t->durable_at = keyed_outcomes_end;
	}
	n_found = 0;
}

/*
 * Queue msg for sending; t is its DONE entry if it has one.  A message whose
 * target is not configured, or has an open circuit, is not queued: it waits
 * in the table.  Returns the entry, or NULL if the message was not queued.
 *
 * first_in_key: msg was read from the table, and has no key or is the
 * first pending message of it, so the per-key gate need not check it.  Such
 * a message is queued even when the queue has TARGET_QUEUE_CAP messages: a
 * key lookup finds one per keyed message finished, and a scan no more than
 * the queues have room for, so the queue stays bounded, and leaving a key's
 * head in the table would take a sweep from the start to find it again.
 * The byte bound holds for it too, since one key's head may be as large as
 * any message: then it waits for that sweep.
 */
static Tracked *
track(OutboxMessage *msg, XLogRecPtr forget_after, Tracked *t,
	  bool first_in_key)
{
	OutboxTarget *target = outbox_target_get(msg->target);
	TargetQueue *queue = target ? outbox_queue_of(target->name) : NULL;
	bool		full = queue != NULL && queue->length > 0 &&
		((!first_in_key && queue->length >= TARGET_QUEUE_CAP) ||
		 outbox_queued_bytes() + msg->size > QUEUED_BYTES_MAX);

	if (full)
		queue->overflowed = true;	/* scan for it when there is room */
	if (target == NULL || target->open || !secrets_usable() || full)
	{
		if (target == NULL)
			report_missing_target(msg->target);
		outbox_message_free(msg);
		if (t != NULL)
		{
			dlist_delete(&t->node);
			outbox_untrack(t);
		}
		return NULL;
	}

	if (first_in_key)
		admit(msg->id);
	else if (msg->key)
		gate_needed = true;
	t = outbox_tracked_enter(msg, forget_after, target, t);
	t->state = OUTBOX_TRACK_QUEUED;
	t->gate_ok = first_in_key;
	outbox_queue_push(queue, t);
	return t;
}

/*
 * Forget everything: the extension was dropped or recreated, so ids no longer
 * mean what they meant.  Requests in flight finish, and are ignored.
 */
static void
forget_all(void)
{
	outbox_tracked_forget_all();
	outbox_outcomes_forget();
	if (unreadable != NULL)
		hash_destroy(unreadable);
	unreadable = NULL;
	rescan();
}

/* ---- transactions ---- */

/* The extension's state, for the decoder and for check_extension() */
static OutboxExtensionState extension_state = OUTBOX_EXTENSION_UNKNOWN;
static char extension_version[NAMEDATALEN];

/*
 * Look up the extension in pg_extension: its OID (InvalidOid if missing)
 * and whether its SQL objects are at the library's version.  The library's
 * queries use what its own version's scripts create, so an installation
 * not yet updated with ALTER EXTENSION UPDATE must wait.
 */
static Oid
find_extension(bool *current)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			oid = InvalidOid;

	*current = false;
	extension_version[0] = '\0';
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(OUTBOX_EXTENSION_NAME));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		version = heap_getattr(tup, Anum_pg_extension_extversion,
										   RelationGetDescr(rel), &isnull);

		oid = ((Form_pg_extension) GETSTRUCT(tup))->oid;
		if (!isnull)
			text_to_cstring_buffer(DatumGetTextPP(version), extension_version,
								   sizeof(extension_version));
		*current = strcmp(extension_version, OUTBOX_VERSION) == 0;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return oid;
}

/*
 * Lock one of the extension's tables for the rest of the transaction, so
 * that it cannot be dropped (or dropped and made again) under our queries;
 * returns its OID, or InvalidOid if it does not exist.
 */
static Oid
lock_table(const char *name)
{
	return RangeVarGetRelidExtended(makeRangeVar(OUTBOX_SCHEMA_NAME,
												 (char *) name, -1),
									AccessShareLock, RVR_MISSING_OK,
									NULL, NULL);
}

/*
 * Find the extension and its table, and forget everything if they are not
 * the ones we knew: the extension was dropped or recreated, so ids no
 * longer mean what they meant.  The tables are locked first: a DROP
 * EXTENSION that has not committed yet makes us wait for it, so that what
 * we look up here is what our queries will use.  Otherwise an outcome held
 * for a message of the dropped table could be written to the new table's
 * row of the same id.
 */
static void
check_extension_objects(void)
{
	Oid			relid = lock_table(OUTBOX_TABLE_NAME);
	bool		current;
	Oid			oid;

	(void) lock_table("attempts");
	oid = find_extension(&current);
	if (!OidIsValid(oid))
		relid = InvalidOid;
	if (oid != extension_oid || relid != messages_relid)
	{
		if (OidIsValid(extension_oid) && OidIsValid(oid))
			ereport(LOG,
					(errmsg("outbox dispatcher found outbox.messages made again in database \"%s\"; it forgets what it held of the old one",
							outbox_shared->database)));
		forget_all();
		outbox_store_reset(relid);
		outbox_keys_forget();
		extension_oid = oid;
		messages_relid = relid;
	}
	extension_state = !OidIsValid(oid) ? OUTBOX_EXTENSION_MISSING :
		!current || !OidIsValid(relid) ? OUTBOX_EXTENSION_OUTDATED :
		OUTBOX_EXTENSION_READY;
	extension_ready = (extension_state == OUTBOX_EXTENSION_READY);
	SpinLockAcquire(&outbox_shared->mutex);
	outbox_shared->extension = extension_state;
	SpinLockRelease(&outbox_shared->mutex);
}

/*
 * Run fn(arg) inside a transaction with SPI connected, after recording the
 * outcomes held so far, so that fn never reads a row we sent as still
 * pending.  An ERROR is reported, the transaction is aborted and false
 * returned: the caller retries later, and nothing it holds is lost (the
 * outcomes are kept for the next transaction).  The extension is checked
 * first; if it is not ready (missing, or not at the library's version),
 * fn is not run and false is returned too.
 */
static bool
run_in_transaction(void (*fn) (void *arg), void *arg, const char *activity)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	bool		ok = true;
	bool		keyed_recorded = false;

	n_found = 0;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, activity);
	PG_TRY();
	{
		check_extension_objects();
		if (extension_ready)
		{
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			PushActiveSnapshot(GetTransactionSnapshot());
			if (outbox_outcomes_held() > 0)
			{
				/* fn must see them: a new command, a new snapshot */
				keyed_recorded = outbox_outcomes_record();
				PopActiveSnapshot();
				CommandCounterIncrement();
				PushActiveSnapshot(GetTransactionSnapshot());
			}
			fn(arg);
			PopActiveSnapshot();
			SPI_finish();
		}
		CommitTransactionCommand();
		if (keyed_recorded)
			keyed_outcomes_end = Max(keyed_outcomes_end, XactLastCommitEnd);
		if (extension_ready)
		{
			outbox_outcomes_forget();
			stamp_found();
		}
		else
			ok = false;			/* fn did not run */

		/*
		 * A background worker reports its table statistics itself; without
		 * them autovacuum would never learn of our updates and deletes.
		 */
		pgstat_report_stat(false);
	}
	PG_CATCH();
	{
		/*
		 * As autovacuum does for a work item: report the error as it came
		 * (SQLSTATE, detail and hint included) with what we were doing,
		 * abort, and carry on.
		 */
		HOLD_INTERRUPTS();
		errcontext("outbox dispatcher: %s (it will try again; no message is lost)",
				   activity);
		EmitErrorReport();
		AbortCurrentTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();
		if (reading_id != 0)
			pass_unreadable_by();
		unfind_all();
		ok = false;
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(oldcxt);
	return ok;
}

static void
noop(void *arg)
{
}

/* ---- scanning ---- */

/* Was building this message's row seen to fail (see unreadable)? */
static bool
unreadable_row(int64 id)
{
	return unreadable != NULL && hash_search(unreadable, &id, HASH_FIND, NULL);
}

/* The row as a message; should that fail, the row is passed by next time */
static OutboxMessage *
read_message(const MessageRow *row)
{
	OutboxMessage *msg;

	reading_id = row->id;
	msg = outbox_store_message(row, outbox_message_context);
	reading_id = 0;
	return msg;
}

/*
 * Read again the rows passed by longest enough ago, each UNREADABLE_RETRY_MS
 * after it failed: the table may have been repaired.
 */
static void
retry_unreadable(TimestampTz now)
{
	HASH_SEQ_STATUS status;
	UnreadableRow *u;

	unreadable_retry_at = DT_NOEND;
	hash_seq_init(&status, unreadable);
	while ((u = hash_seq_search(&status)) != NULL)
	{
		if (u->retry_at <= now)
			hash_search(unreadable, &u->id, HASH_REMOVE, NULL);
		else
			unreadable_retry_at = Min(unreadable_retry_at, u->retry_at);
	}
	rescan();
}

/* The rows passed by, as ids for a query; *n is set to how many */
static int64 *
unreadable_ids(int *n)
{
	HASH_SEQ_STATUS status;
	UnreadableRow *u;
	int64	   *ids;

	*n = 0;
	if (unreadable == NULL)
		return NULL;
	ids = palloc(sizeof(int64) * Max(1, hash_get_num_entries(unreadable)));
	hash_seq_init(&status, unreadable);
	while ((u = hash_seq_search(&status)) != NULL)
		ids[(*n)++] = u->id;
	return ids;
}

/* The transaction failed while reading_id was being built: pass it by */
static void
pass_unreadable_by(void)
{
	TimestampTz retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   UNREADABLE_RETRY_MS);
	UnreadableRow *u;

	if (unreadable == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(UnreadableRow);
		ctl.hcxt = outbox_dispatcher_context;
		unreadable = hash_create("outbox unreadable messages", 16, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	if (hash_get_num_entries(unreadable) == 0)
		unreadable_retry_at = retry_at;
	u = hash_search(unreadable, &reading_id, HASH_ENTER, NULL);
	u->retry_at = retry_at;
	ereport(LOG,
			(errmsg("outbox dispatcher passes message %lld by: its row could not be read",
					(long long) reading_id),
			 errdetail("It stays pending, and is read again in %d seconds; a message of the same key waits for it.",
					   UNREADABLE_RETRY_MS / 1000)));
	reading_id = 0;
}

/*
 * Can the target take more messages into its queue?  A slow target fills its
 * queue and is left out of scans, so it cannot crowd out the others; and
 * while the queues hold half their bytes, scans wait for them to drain.
 */
static bool
has_room(OutboxTarget *target)
{
	return !target->open &&
		outbox_queue_of(target->name)->length < TARGET_QUEUE_CAP / 2 &&
		outbox_queued_bytes() < QUEUED_BYTES_MAX / 2 &&
		secrets_usable();
}

static bool
any_room(void)
{
	ListCell   *lc;

	foreach(lc, outbox_target_all())
		if (has_room((OutboxTarget *) lfirst(lc)))
			return true;
	return false;
}

/*
 * The targets a scan looks for: those with room in their queue.  A target
 * left out for want of room is marked overflowed, since the sweep passes
 * its due rows by: when it has room again the sweep starts over.  (One with
 * an open circuit gets a new sweep when the circuit closes.)  *limit is set
 * to the rows that fit in every queue looked for, so that the scan cannot
 * overfill one and make the sweep start over.
 */
static List *
sendable_targets(int *limit)
{
	List	   *names = NIL;
	ListCell   *lc;

	*limit = SCAN_BATCH;
	foreach(lc, outbox_target_all())
	{
		OutboxTarget *target = lfirst(lc);
		TargetQueue *queue = outbox_queue_of(target->name);

		if (has_room(target))
		{
			names = lappend(names, target->name);
			*limit = Min(*limit, TARGET_QUEUE_CAP - queue->length);
		}
		else if (!target->open)
			queue->overflowed = true;
	}
	return names;
}

/* The first of the rows of one key seen so far, in mark_rows_behind() */
typedef struct KeyFirst
{
	uint64		hash;			/* hash key: of target and key */
	int			k;				/* its index in items[] */
} KeyFirst;

/*
 * Mark the keyed rows of one scan that come behind another of them of the
 * same key, in the per-key order: such a row is not first in its key, as
 * the gate would say after a query.  A sweep through a backlog of a few
 * keys meets many of them.  Two keys of the same hash are left to the gate.
 */
static void
mark_rows_behind(const GateItem *items, const bool *attempted, int n,
				 bool *behind)
{
	HASHCTL		ctl;
	HTAB	   *firsts;

	if (n == 0)
		return;
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(KeyFirst);
	ctl.hcxt = CurrentMemoryContext;
	firsts = hash_create("outbox keys of a scan", n, &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (int k = 0; k < n; k++)
	{
		uint64		hash = outbox_key_hash(items[k].target, items[k].key);
		bool		seen;
		KeyFirst   *f = hash_search(firsts, &hash, HASH_ENTER, &seen);
		int			j;

		behind[k] = false;
		if (!seen)
		{
			f->k = k;
			continue;
		}
		j = f->k;
		if (strcmp(items[j].target, items[k].target) != 0 ||
			strcmp(items[j].key, items[k].key) != 0)
			continue;
		if (outbox_key_precedes(attempted[j], items[j].id,
								attempted[k], items[k].id))
			behind[k] = true;
		else
		{
			behind[j] = true;
			f->k = k;
		}
	}
	hash_destroy(firsts);
}

/*
 * Fetch the next batch of due rows after the sweep's position and queue
 * those not already held.  Keyed rows that may go are asked about in the
 * same transaction: those the table says are first in their key are queued
 * past the gate.
 */
static void
scan_table(void *arg)
{
	List	   *targets;
	XLogRecPtr	scan_lsn;
	MessageRow *rows;
	int			nrows;
	int			limit;
	int		   *queue;			/* the rows to queue, by index */
	int			nqueue = 0;
	GateItem   *keyed;			/* those with a key */
	bool	   *attempted;		/* for each of those, was it sent before? */
	bool	   *behind;			/* ... is another of its key before it here? */
	bool	   *first;			/* ... may it go? */
	int			nkeyed = 0;
	GateItem   *gate;			/* those the table is asked about */
	bool	   *gate_ok;
	int			ngate = 0;

	targets = sendable_targets(&limit);
	nrows = outbox_store_scan(targets, cursor_valid ? cursor_time : DT_NOBEGIN,
							  cursor_valid ? cursor_id : 0, limit, &rows);

	/*
	 * Every row this scan saw was committed before this WAL position, so any
	 * copy of it in the ring has been put there once the decoder passed it.
	 */
	scan_lsn = GetXLogInsertRecPtr();

	queue = palloc(sizeof(int) * Max(nrows, 1));
	keyed = palloc(sizeof(GateItem) * Max(nrows, 1));
	attempted = palloc(sizeof(bool) * Max(nrows, 1));
	behind = palloc(sizeof(bool) * Max(nrows, 1));
	first = palloc(sizeof(bool) * Max(nrows, 1));
	gate = palloc(sizeof(GateItem) * Max(nrows, 1));
	gate_ok = palloc(sizeof(bool) * Max(nrows, 1));
	for (int i = 0; i < nrows; i++)
	{
		MessageRow *row = &rows[i];
		Tracked    *t = outbox_tracked_find(row->id);

		cursor_time = row->next_attempt_at;
		cursor_id = row->id;
		cursor_valid = true;

		if ((t != NULL && t->state != OUTBOX_TRACK_DONE) ||
			unreadable_row(row->id))
			continue;
		if (row->key != NULL)
		{
			/*
			 * Another message of its key is in flight: it waits, and is
			 * looked up when that one is finished.  The gate would say so
			 * too, after a query; a sweep meets many such while a key's
			 * backlog drains.
			 */
			if (outbox_key_busy(row->target, row->key))
			{
				outbox_key_wait(row->target, row->key);
				continue;
			}
			attempted[nkeyed] = row->attempts > 0;
			keyed[nkeyed].id = row->id;
			keyed[nkeyed].target = row->target;
			keyed[nkeyed++].key = row->key;
		}
		queue[nqueue++] = i;
	}

	/*
	 * The keyed ones go if they come first in their key: the table is asked
	 * about those that come first among the rows of their key read here.
	 */
	mark_rows_behind(keyed, attempted, nkeyed, behind);
	for (int k = 0; k < nkeyed; k++)
		if (!behind[k])
			gate[ngate++] = keyed[k];
	if (ngate > 0)
		outbox_store_gate(gate, ngate, gate_ok);
	for (int k = 0, g = 0; k < nkeyed; k++)
		first[k] = !behind[k] && gate_ok[g++];

	for (int j = 0, k = 0; j < nqueue; j++)
	{
		MessageRow *row = &rows[queue[j]];

		if (row->key != NULL && !first[k++])
		{
			outbox_key_wait(row->target, row->key);
			continue;
		}
		track(read_message(row), scan_lsn, outbox_tracked_find(row->id), true);
		outbox_count(OUTBOX_STAT_SCANNED, 1);
	}

	if (nrows < limit)
	{
		/*
		 * Reached the end: go on from here when the next row becomes due.
		 * Rows due later than now() are ahead of the sweep's position,
		 * which is at most now().
		 */
		TimestampTz due;

		scan_wanted = false;
		next_scan_at = restart_scan_at;
		if (outbox_store_next_due(targets, &due) && due < next_scan_at)
			next_scan_at = due;
	}
}

/*
 * Fetch the first pending message of each key due to be looked up (see
 * outbox_key_lookup()), in the order the per-key gate uses: the message in
 * front of it was delivered or is dead, or it is a retry now due.  Outcomes
 * held were recorded by run_in_transaction() before this runs.  One index
 * probe per key, however many messages wait.  Being first in its key, a
 * message found here needs no gate check.  One not due yet is looked up
 * again when it is.
 */
static void
fetch_key_heads(void *arg)
{
	/* Those due by now(), which decides whether a message is due, or by *upto */
	TimestampTz upto = Max(*(TimestampTz *) arg,
						   GetCurrentTransactionStartTimestamp());
	const int64 *ids;
	int			n = outbox_keys_due(upto, &ids);
	XLogRecPtr	scan_lsn;
	MessageRow *rows;
	int			nrows;

	if (n == 0)
		return;
	nrows = outbox_store_key_heads(ids, n, &rows);

	/* As in scan_table(): a copy in the ring comes before this position */
	scan_lsn = GetXLogInsertRecPtr();

	for (int i = 0; i < nrows; i++)
	{
		MessageRow *row = &rows[i];
		Tracked    *t = outbox_tracked_find(row->id);
		OutboxTarget *target = outbox_target_get(row->target);

		/*
		 * A removed target's messages wait for the reload that brings it
		 * back, which sweeps from the start; so does the closing of a
		 * circuit.  A full queue is no reason to wait: see track().
		 */
		if (target == NULL || target->open || unreadable_row(row->id))
			continue;

		/*
		 * Whatever becomes of this message, the messages behind it may have
		 * been refused: look up the key again when it is finished.
		 */
		outbox_key_wait(row->target, row->key);

		if (t != NULL && t->state != OUTBOX_TRACK_DONE)
		{
			/* Already queued from the ring or a scan, or in flight */
			if (t->state == OUTBOX_TRACK_QUEUED)
			{
				admit(t->id);
				t->gate_ok = true;
			}
			continue;
		}
		if (outbox_key_busy(row->target, row->key))
			continue;			/* another message of the key is in flight */
		if (!row->due)
		{
			outbox_key_lookup(row->id, row->next_attempt_at);
			continue;
		}
		if (track(read_message(row), scan_lsn, t, true))
			outbox_count(OUTBOX_STAT_SCANNED, 1);
	}
}

/* ---- recording outcomes ---- */

static void
flush_outcomes(void)
{
	if (outbox_outcomes_held() == 0)
		return;
	if (!run_in_transaction(noop, NULL, "record delivery outcomes"))
		outbox_outcomes_postpone(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															 ERROR_BACKOFF_MS));
}

static void
request_done(OutboxHttpResult *r)
{
	Tracked    *t = r->owner;
	OutboxTarget *target = t->target;
	bool		was_open = target->open;
	TimestampTz now = GetCurrentTimestamp();
	OutboxVerdict v;
	bool		waiting;
	bool		lets_next_go;	/* a later message of the key waits for it */

	outbox_judge(target, t->msg->attempts, t->msg->probe_failures, t->probe,
				 r, now, &v);
	if (t->orphaned)
	{
		/* Its row went away with the extension */
		outbox_tracked_free(t);
		return;
	}
	waiting = t->msg->key && outbox_key_finished(target->name, t->msg->key);
	lets_next_go = waiting && v.state != OUTBOX_PENDING;
	/* (A batch time further ahead than that: the clock went back) */
	if (lets_next_go &&
		(key_batch_at <= now ||
		 key_batch_at > TimestampTzPlusMilliseconds(now, KEY_BATCH_MS)))
		key_batch_at = TimestampTzPlusMilliseconds(now, KEY_BATCH_MS);

	/*
	 * A later message of the key waits for this outcome unless this one is
	 * retried (it stays first): the transaction that looks it up records
	 * the outcome first, as every transaction does.
	 */
	outbox_outcome_add(t->id, t->msg, t->started_at, &v, r, now);
	/* Sweep on when the retry is due, if that is sooner */
	if (v.next_attempt_at != 0 &&
		(v.next_attempt_at < next_scan_at || next_scan_at == 0))
		next_scan_at = v.next_attempt_at;

	if (t->msg->key)
	{
		bool		retry = (v.state == OUTBOX_PENDING);

		if (retry)
		{
			/*
			 * Still first in its key: later messages refused meanwhile wait
			 * for it.  It is fetched again when due, rather than when a scan
			 * reaches it behind newer messages (see ordering.c).
			 */
			if (waiting)
				outbox_key_wait(target->name, t->msg->key);
			outbox_key_lookup(t->id, v.next_attempt_at);
		}
		else if (lets_next_go)
		{
			/* A later message was refused: fetch it once this is recorded */
			outbox_key_lookup(t->id, key_batch_at);
		}
	}

	if (!was_open && target->open)
	{
		/* They wait in the table, spending nothing */
		outbox_queue_forget(outbox_queue_of(target->name));
	}
	else if (was_open && !target->open)
	{
		/* The target is back: everything due goes out at full speed */
		rescan();
	}

	outbox_tracked_finished(t, ring_covers);
}

/* ---- commit visibility ---- */

/* Some message waits for its transaction to become visible */
static bool awaiting_commit = false;

/*
 * Has the transaction that queued msg become visible to others?  The decoder
 * hands a transaction over once its commit record is flushed, which can be
 * a moment before the committing backend leaves the proc array; a message
 * sent in that moment would get an outcome that no UPDATE could see.
 */
static bool
committed_visibly(OutboxMessage *msg)
{
	if (!TransactionIdIsValid(msg->xid))
		return true;
	if (TransactionIdIsInProgress(msg->xid))
	{
		awaiting_commit = true;
		return false;
	}
	msg->xid = InvalidTransactionId;
	return true;
}

/* ---- per-key order ---- */

#define GATE_BATCH	1000

/* Queued keyed messages for the table to say whether they may go */
typedef struct GateBatch
{
	int			n;
	Tracked    *candidates[GATE_BATCH];
	GateItem	items[GATE_BATCH];
	bool		ok[GATE_BATCH];
} GateBatch;

/*
 * Is candidate i still held?  The gate's transaction may have found the
 * extension gone or recreated, and forgotten (freed) every message held
 * (check_extension_objects()).
 */
static bool
candidate_held(const GateBatch *batch, int i)
{
	return outbox_tracked_find(batch->items[i].id) == batch->candidates[i];
}

static void
check_gate(void *arg)
{
	GateBatch  *batch = arg;

	/* A candidate forgotten took its strings with it: none goes */
	for (int i = 0; i < batch->n; i++)
	{
		if (!candidate_held(batch, i))
		{
			memset(batch->ok, 0, sizeof(bool) * batch->n);
			return;
		}
	}
	outbox_store_gate(batch->items, batch->n, batch->ok);
}

/* Drop a queued message whose key must wait: it stays in the table */
static void
wait_for_key(Tracked *t)
{
	outbox_queue_remove(t);
	outbox_key_wait(t->target->name, t->msg->key);
	outbox_untrack(t);
}

/* Is key in the list of keys (char *)? */
static bool
key_listed(List *keys, const char *key)
{
	ListCell   *lc;

	foreach(lc, keys)
		if (strcmp((char *) lfirst(lc), key) == 0)
			return true;
	return false;
}

/*
 * Decide which queued keyed messages are first in their key and may go;
 * the others wait in the table for the message in front of them.
 *
 * A queue is in commit order, and each key is walked in that order: a
 * message whose transaction is not visible yet (see committed_visibly())
 * holds back every later message of its key, which the table check could
 * not see behind it.  A message of the key that is not in the queue is
 * visible to the table check: producers of one key serialise (see
 * lock_key() in api.c), so a message's transaction only gets its id once
 * the transaction of the one before it has become visible.
 */
static void
gate_keyed_messages(void)
{
	static GateBatch batch;		/* static: some 33 kB */
	ListCell   *lc;
	bool		checked;

	/* Walking the queues costs, while a backlog drains: only when needed */
	if (!gate_needed)
		return;
	gate_needed = false;

	batch.n = 0;
	foreach(lc, outbox_target_all())
	{
		OutboxTarget *target = lfirst(lc);
		List	   *held_keys = NIL;	/* behind an invisible message */
		dlist_mutable_iter iter;

		dlist_foreach_modify(iter, &outbox_queue_of(target->name)->messages)
		{
			Tracked    *t = dlist_container(Tracked, node, iter.cur);

			if (t->msg->key == NULL || t->gate_ok)
				continue;
			if (key_listed(held_keys, t->msg->key))
				continue;		/* looked at again with the one in front */
			if (!committed_visibly(t->msg))
			{
				gate_needed = true; /* look again next turn */
				held_keys = lappend(held_keys, t->msg->key);
				continue;
			}
			if (outbox_key_busy(target->name, t->msg->key))
				wait_for_key(t);
			else if (batch.n < GATE_BATCH)
			{
				batch.candidates[batch.n] = t;
				batch.items[batch.n].id = t->id;
				batch.items[batch.n].target = target->name;
				batch.items[batch.n++].key = t->msg->key;
			}
			else
				gate_needed = true; /* the rest next turn */
		}
		list_free(held_keys);
	}
	if (batch.n == 0)
		return;

	checked = run_in_transaction(check_gate, &batch,
								 "check the order of keyed messages");
	if (!checked)
	{
		/*
		 * The candidates wait in the table, first ones of their key
		 * included, and no finishing message will look them up: sweep from
		 * the start, after a pause.
		 */
		rescan_after_error();
	}
	for (int i = 0; i < batch.n; i++)
	{
		if (!candidate_held(&batch, i))
			continue;
		if (checked && batch.ok[i])
		{
			batch.candidates[i]->gate_ok = true;
			batch.candidates[i]->durable_at = keyed_outcomes_end;
		}
		else
			wait_for_key(batch.candidates[i]);
	}
}

/*
 * Start queued messages, taking one from each target in turn, as long as
 * the target and the whole dispatcher are below their limits.
 */
static void
start_requests(void)
{
	bool		started = true;

	while (started)
	{
		ListCell   *lc;

		started = false;
		foreach(lc, outbox_target_all())
		{
			OutboxTarget *target = lfirst(lc);
			TargetQueue *queue = outbox_queue_of(target->name);
			Tracked    *t = outbox_queue_head(queue);

			if (outbox_http_inflight() >= outbox_max_inflight)
				return;
			if (target->open || t == NULL ||
				target->inflight >= outbox_target_limit(target))
				continue;
			if (!committed_visibly(t->msg))
				continue;		/* a moment more: see committed_visibly() */
			if (t->msg->key && !t->gate_ok)
			{
				/*
				 * It became visible after the gate looked at its key: the
				 * gate decides at the next turn.  Dropping it would let the
				 * next message of its key, behind it, go first.
				 */
				gate_needed = true;
				continue;
			}
			if (t->msg->key && outbox_key_busy(target->name, t->msg->key))
				wait_for_key(t);	/* not first in its key after all */
			else
			{
				outbox_queue_remove(t);
				await_durable(t);
				outbox_request_start(t, false);
				started = true;
			}
			if (queue->overflowed && has_room(target))
			{
				/* Messages left in the table while the queue was full */
				queue->overflowed = false;
				rescan();
			}
		}
	}
}

/* ---- the ring ---- */

/*
 * Is this decoded message one to track?  Not if it was handled already: a
 * copy decoded again by a restarted decoder, one we hold or just sent, one
 * committed before we started (the first scan finds those), or a row of
 * another outbox.messages than ours.  For that last, a table we do not know
 * yet may have been created: look at the extension again, and sweep.
 *
 * The ring carries messages in commit order, and outbox_queue's messages of
 * one transaction in id order, so a copy decoded again never comes after
 * the last message taken.  Rows inserted otherwise (a restore of a dump)
 * may come out of id order within their transaction; such a row, and a
 * copy decoded again of a message the ring could not carry the first time,
 * are found by a sweep.
 */
static bool
ring_message_wanted(OutboxMessage *msg)
{
	if (msg->commit_lsn < ring_last_lsn ||
		(msg->commit_lsn == ring_last_lsn && msg->id <= ring_last_id))
	{
		rescan();
		return false;
	}
	ring_last_lsn = msg->commit_lsn;
	ring_last_id = msg->id;
	if (msg->relid != messages_relid)
	{
		rescan();
		return false;
	}
	return outbox_tracked_find(msg->id) == NULL && msg->commit_lsn >= started_at_lsn;
}

/*
 * Move decoded messages from the ring to their targets' queues (track()
 * leaves those of a full queue in the table), and advance ring_covers.
 */
static void
take_from_ring(StringInfo buf)
{
	XLogRecPtr	decoded_upto;
	bool		streaming;

	SpinLockAcquire(&outbox_shared->mutex);
	decoded_upto = outbox_shared->decoded_upto;
	streaming = outbox_shared->decoder_streaming;
	SpinLockRelease(&outbox_shared->mutex);

	for (;;)
	{
		MemoryContext oldcxt;
		OutboxMessage *msg;

		if (!outbox_ring_get(buf))
			break;
		oldcxt = MemoryContextSwitchTo(outbox_message_context);
		msg = outbox_message_decode(buf->data, buf->len);
		MemoryContextSwitchTo(oldcxt);
		if (ring_message_wanted(msg))
			track(msg, InvalidXLogRecPtr, NULL, false);
		else
			outbox_message_free(msg);
	}
	/* Without a streaming decoder nothing more is coming through the ring */
	ring_covers = streaming ? decoded_upto : PG_UINT64_MAX;
}

/* ---- retention ---- */

/* One pass of retention (see outbox_store_prune()) */
static void
prune(void *arg)
{
	bool		full = outbox_store_prune(outbox_retention);

	/* A full batch means there is more: come back soon */
	next_prune_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												full ?
												PRUNE_AGAIN_MS : PRUNE_INTERVAL_MS);
}

/* ---- probes ---- */

/* What find_probes() looks for, and what it finds */
typedef struct ProbeSearch
{
	List	   *targets;		/* open circuits whose probe is due */
	List	   *found;			/* Tracked entries to send as probes */
} ProbeSearch;

/*
 * For each target in search->targets, fetch its oldest due message to send as
 * the probe.  Only a due one: a probe that succeeds is a delivery, and
 * nothing is sent before its time (outbox_send's deliver_at, a retry's
 * backoff).  If the first message is not due yet, the probe waits for it.
 */
static void
find_probes(void *arg)
{
	ProbeSearch *search = arg;
	ListCell   *lc;
	int			nskip;
	int64	   *skip = unreadable_ids(&nskip);	/* never the probe */

	foreach(lc, search->targets)
	{
		OutboxTarget *target = lfirst(lc);
		MessageRow	row;
		Tracked    *t;
		MemoryContext oldcxt;

		if (!outbox_store_probe(target->name, skip, nskip, &row))
			continue;			/* nothing to probe with */
		if (!row.due)
		{
			/* Probe when the first message is due, or a new one may be */
			target->probe_at = Min(target->probe_at, row.next_attempt_at);
			continue;
		}
		t = outbox_tracked_find(row.id);
		if (t != NULL && t->state != OUTBOX_TRACK_DONE)
		{
			/*
			 * Still in flight from before the circuit opened: its answer
			 * sets no probe time, so look again soon rather than after
			 * SAFETY_SCAN_MS.
			 */
			target->probe_at =
				Min(target->probe_at,
					TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												PROBE_RECHECK_MS));
			continue;
		}
		t = outbox_tracked_enter(read_message(&row), GetXLogInsertRecPtr(),
								 target, t);
		oldcxt = MemoryContextSwitchTo(outbox_dispatcher_context);
		search->found = lappend(search->found, t);
		MemoryContextSwitchTo(oldcxt);
	}
}

/*
 * Send a probe to each open circuit whose time has come.  Until a probe's
 * outcome sets the next time, look again after SAFETY_SCAN_MS: there may be
 * nothing to probe with, or its message may still be in flight.
 */
static void
send_probes(void)
{
	ProbeSearch search = {NIL, NIL};
	ListCell   *lc;

	search.targets = outbox_targets_to_probe(GetCurrentTimestamp(),
											 SAFETY_SCAN_MS);
	if (search.targets == NIL)
		return;

	if (run_in_transaction(find_probes, &search, "find probe messages"))
	{
		foreach(lc, search.found)
		{
			Tracked    *t = lfirst(lc);

			t->durable_at = keyed_outcomes_end;
			await_durable(t);
			outbox_request_start(t, true);
		}
	}
	else
	{
		/*
		 * A keyed probe was chosen as the first of its key on outcomes that
		 * were not recorded after all (see unfind_all()): none goes, and
		 * they are looked for again after SAFETY_SCAN_MS.
		 */
		foreach(lc, search.found)
			outbox_untrack((Tracked *) lfirst(lc));
	}
	list_free(search.found);
	list_free(search.targets);
}

/* ---- the loop ---- */

/*
 * Do the queues hold enough to keep the requests going (see key_batch_at)?
 * Each target counts for no more than it may have in flight: a target held
 * back by its own limit keeps no other target's keys waiting.
 */
static bool
queues_stocked(void)
{
	int			queued = 0;
	int			could_go = 0;
	ListCell   *lc;

	foreach(lc, outbox_target_all())
	{
		OutboxTarget *target = lfirst(lc);
		int			limit = outbox_target_limit(target);

		if (target->open)
			continue;
		queued += Min(outbox_queue_of(target->name)->length, limit);
		could_go += limit;
	}
	return queued > 0 && queued >= Min(could_go, outbox_max_inflight);
}

/*
 * When the keys to look up first, due at lookup_at, are looked up: later
 * while the queues are stocked.  *upto is set to the time up to which keys
 * are taken then: a batch goes before its time once no keyed request is
 * left to join it.
 */
static TimestampTz
lookup_time(TimestampTz lookup_at, TimestampTz now, TimestampTz *upto)
{
	*upto = now;
	if (queues_stocked())
		return TimestampTzPlusMilliseconds(lookup_at, KEY_BATCH_WAIT_MS);
	if (outbox_keys_inflight() == 0 && key_batch_at > now)
		*upto = key_batch_at;
	return *upto >= lookup_at ? now : lookup_at;
}

static void
reload_configuration(void)
{
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	list_free_deep(reported_targets);
	reported_targets = NIL;
	if (secrets_problem_reported)
		outbox_set_state(&outbox_shared->dispatcher, "delivering");
	secrets_problem_reported = false;
	outbox_targets_sync();
	outbox_queues_sync();
	/* New targets may have messages waiting */
	rescan();
}

static void
shutdown_gracefully(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   Min(SHUTDOWN_GRACE_MS,
														   outbox_request_timeout));

	while (outbox_http_inflight() > 0)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
														   deadline);

		if (left <= 0)
			break;
		outbox_http_wait(left, PG_WAIT_EXTENSION);
		outbox_http_collect(request_done);
	}
	flush_outcomes();
	/* The next dispatcher may act on them at once: make them durable */
	XLogFlush(keyed_outcomes_end);
	proc_exit(1);
}

static void
dispatcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&outbox_shared->mutex);
	outbox_shared->dispatcher_latch = NULL;
	outbox_shared->dispatcher.pid = 0;
	SpinLockRelease(&outbox_shared->mutex);
}

/*
 * Until the extension is installed at the library's version, look for it
 * every EXTENSION_CHECK_MS, or at once when a commit asks for a scan.  What
 * is missing is logged once each time it changes.
 */
static void
check_extension(bool scan_requested)
{
	static TimestampTz next_check = 0;
	static OutboxExtensionState logged = OUTBOX_EXTENSION_UNKNOWN;
	TimestampTz now = GetCurrentTimestamp();
	Latch	   *decoder;

	if (now < next_check && !scan_requested)
		return;
	run_in_transaction(noop, NULL, "check for the extension");
	next_check = TimestampTzPlusMilliseconds(now, EXTENSION_CHECK_MS);
	if (extension_state == logged)
		return;
	logged = extension_state;
	switch (extension_state)
	{
		case OUTBOX_EXTENSION_READY:
			outbox_set_state(&outbox_shared->dispatcher, "delivering");
			break;
		case OUTBOX_EXTENSION_MISSING:
			outbox_set_state(&outbox_shared->dispatcher,
							 "waiting for CREATE EXTENSION outbox");
			ereport(LOG,
					(errmsg("outbox dispatcher is waiting for CREATE EXTENSION outbox in database \"%s\"",
							outbox_shared->database)));
			break;
		case OUTBOX_EXTENSION_OUTDATED:
			outbox_set_state(&outbox_shared->dispatcher,
							 "waiting for ALTER EXTENSION outbox UPDATE");
			ereport(LOG,
					(errmsg("outbox extension in database \"%s\" is at version %s, but the library is at version %s; messages wait",
							outbox_shared->database, extension_version,
							OUTBOX_VERSION),
					 errhint("If the library is the newer one, run ALTER EXTENSION outbox UPDATE; in database \"%s\". If the extension is, restart the server so that it loads the library installed with it.",
							 outbox_shared->database)));
			break;
		case OUTBOX_EXTENSION_UNKNOWN:
			/* the transaction failed: look again */
			return;
	}

	/* The decoder waits for this news, good or bad */
	SpinLockAcquire(&outbox_shared->mutex);
	decoder = outbox_shared->decoder_latch;
	SpinLockRelease(&outbox_shared->mutex);
	if (decoder)
		SetLatch(decoder);
}

/* One turn of the loop while the extension exists */
static void
dispatch(bool scan_requested, StringInfo ringbuf)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz lookup_at;
	TimestampTz lookups_upto;

	if (unreadable != NULL && hash_get_num_entries(unreadable) > 0 &&
		now >= unreadable_retry_at)
		retry_unreadable(now);
	if (scan_requested || now >= restart_scan_at)
		rescan();
	if (now >= next_scan_at)
		scan_wanted = true;

	take_from_ring(ringbuf);
	outbox_tracked_sweep_done(ring_covers);

	/* Keys to look up (see key_batch_at); the outcomes held are recorded first */
	if (outbox_keys_next_lookup(&lookup_at) &&
		now >= lookup_time(lookup_at, now, &lookups_upto) &&
		now >= lookup_retry_at)
	{
		if (run_in_transaction(fetch_key_heads, &lookups_upto,
							   "fetch the next message of keys"))
			outbox_keys_looked_up();
		else
			lookup_retry_at = TimestampTzPlusMilliseconds(now, ERROR_BACKOFF_MS);
	}

	/* A scan records the outcomes held first; else they wait a little */
	if (outbox_outcomes_held() > 0 && now >= outbox_outcomes_flush_at())
		flush_outcomes();
	if (scan_wanted && any_room())
	{
		bool		from_valid;
		TimestampTz from_time;
		int64		from_id;

		if (scan_restart)
		{
			elog(DEBUG1, "outbox dispatcher sweeps from the start");
			cursor_valid = false;
			scan_restart = false;
			restart_scan_at = TimestampTzPlusMilliseconds(now, SAFETY_SCAN_MS);
		}
		from_valid = cursor_valid;
		from_time = cursor_time;
		from_id = cursor_id;
		if (!run_in_transaction(scan_table, NULL, "scan outbox.messages"))
		{
			/*
			 * What it queued waits in the table (unfind_all()): the sweep
			 * goes on from where the scan started, so that the next scan
			 * reads the same rows, but for one that could not be read.
			 */
			cursor_valid = from_valid;
			cursor_time = from_time;
			cursor_id = from_id;
			scan_wanted = false;
			next_scan_at = TimestampTzPlusMilliseconds(now, ERROR_BACKOFF_MS);
		}
	}
	awaiting_commit = false;

	/* Each may find the extension gone: the next only runs if it is not */
	if (extension_ready)
		gate_keyed_messages();
	if (extension_ready)
		start_requests();
	if (extension_ready)
		send_probes();
	if (extension_ready && now >= next_prune_at)
	{
		if (!run_in_transaction(prune, NULL, "remove old delivered messages"))
			next_prune_at = TimestampTzPlusMilliseconds(now, PRUNE_INTERVAL_MS);
	}
}

/* How long to sleep: until a latch, a socket, curl's timer or due work */
static long
next_timeout(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next;
	TimestampTz probe = outbox_next_probe_at();
	TimestampTz lookup_at;
	bool		room;

	if (!extension_ready)
		return EXTENSION_CHECK_MS;
	if (awaiting_commit)
		return 1;
	if (gate_needed)
		return 0;				/* queued keyed messages wait for the gate */
	room = any_room();
	if (scan_wanted && room)
		return 0;

	/*
	 * A scan is only useful for a target with room in its queue; when none
	 * has, a request finishing makes room and wakes us anyway.
	 */
	next = room ? Min(next_scan_at, restart_scan_at) :
		TimestampTzPlusMilliseconds(now, SAFETY_SCAN_MS);
	if (outbox_keys_next_lookup(&lookup_at))
	{
		TimestampTz upto;

		lookup_at = Max(lookup_time(lookup_at, now, &upto), lookup_retry_at);
		next = Min(next, lookup_at);
	}
	if (probe != 0 && probe < next)
		next = probe;
	if (next_prune_at < next)
		next = next_prune_at;
	if (outbox_outcomes_held() > 0 && outbox_outcomes_flush_at() < next)
		next = outbox_outcomes_flush_at();
	return Max(0, TimestampDifferenceMilliseconds(now, next));
}

void
outbox_dispatcher_main(Datum main_arg)
{
	StringInfoData ringbuf;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	outbox_shmem_select(DatumGetInt32(main_arg));
	BackgroundWorkerInitializeConnection(outbox_shared->database, NULL, 0);
	outbox_worker_session_settings();

	/* Our queries run as superuser: no user's objects may shadow theirs */
	SetConfigOption("search_path", "", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * An outcome lost in a crash only means the message is sent again,
	 * which at-least-once delivery allows: do not make producers share the
	 * WAL flushes with our bookkeeping.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Our queries look up a few rows by id or walk an index range, whatever
	 * the size of the table.  Their plans are made once (see sql.c), often
	 * while the table is small; keep the planner from choosing a shape that
	 * reads the whole table and becomes slow as it grows.
	 */
	SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_hashjoin", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_mergejoin", "off", PGC_SUSET, PGC_S_OVERRIDE);

	before_shmem_exit(dispatcher_detach, (Datum) 0);
	SpinLockAcquire(&outbox_shared->mutex);
	outbox_shared->dispatcher_latch = MyLatch;
	SpinLockRelease(&outbox_shared->mutex);

	outbox_dispatcher_context = AllocSetContextCreate(TopMemoryContext,
													  "outbox dispatcher",
													  ALLOCSET_DEFAULT_SIZES);
	turn_context = AllocSetContextCreate(outbox_dispatcher_context,
										 "outbox loop turn",
										 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(outbox_dispatcher_context);
	outbox_tracking_init();
	initStringInfo(&ringbuf);
	outbox_count(OUTBOX_STAT_DISPATCHER_STARTS, 1);
	started_at_lsn = GetXLogInsertRecPtr();
	keyed_outcomes_end = started_at_lsn;
	outbox_targets_sync();
	outbox_queues_sync();
	outbox_http_init();

	for (;;)
	{
		bool		scan_requested;

		MemoryContextSwitchTo(turn_context);
		MemoryContextReset(turn_context);
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			shutdown_gracefully();
		if (ConfigReloadPending)
			reload_configuration();

		SpinLockAcquire(&outbox_shared->mutex);
		scan_requested = outbox_shared->scan_requested;
		outbox_shared->scan_requested = false;
		SpinLockRelease(&outbox_shared->mutex);

		if (!extension_ready)
			check_extension(scan_requested);
		if (extension_ready)
			dispatch(scan_requested, &ringbuf);
		outbox_targets_publish();

		outbox_http_wait(next_timeout(), PG_WAIT_EXTENSION);
		outbox_http_collect(request_done);
	}
}
