/*-------------------------------------------------------------------------
 *
 * decoder.c
 *	  The decoder worker: owns the logical slot and decodes WAL in-process.
 *
 * The decoder reads the WAL flushed so far with the library's own output
 * plugin, puts each queued message into the shared ring, confirms the slot
 * and sleeps until a committing backend sets its latch.  It runs no SQL:
 * once a process has a decoding context, VACUUM ignores its snapshots, so
 * all table work happens in the dispatcher.  It learns whether the extension
 * exists from the dispatcher, through shared memory.
 *
 * The slot only ever speeds delivery up.  Whenever the decoder cannot vouch
 * for a stretch of WAL (a new or recreated slot, a full ring) it asks the
 * dispatcher for a table scan, which finds every pending message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlogreader.h"
#include "access/xlogutils.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "compat.h"
#include "config.h"
#include "databases.h"
#include "decoder.h"
#include "message.h"
#include "outbox.h"
#include "shmem.h"

/* How long the decoder sleeps when nobody wakes it (async commits, 2PC) */
#define DECODER_NAPTIME_MS		1000
/* Wake the dispatcher at least this often while decoding a long backlog */
#define DECODER_WAKE_EVERY		256
/* Make the slot's position crash-safe at most this often */
#define DECODER_SAVE_INTERVAL_MS	1000
/* Pause after a pass that found WAL, so that passes decode several commits */
#define DECODER_GATHER_MS		1
/* Recheck a condition that only an administrator can fix */
#define DECODER_RECHECK_MS		10000

static bool ring_overflowed = false;
static int	messages_since_wake = 0;

/*
 * A decoder that restarts (after an ERROR) decodes again from the slot's
 * last saved position; what its predecessor already put in the ring up to
 * this position is not put there twice.
 */
static XLogRecPtr already_decoded = InvalidXLogRecPtr;

static void
decoder_detach(int code, Datum arg)
{
	SpinLockAcquire(&outbox_shared->mutex);
	outbox_shared->decoder_latch = NULL;
	outbox_shared->decoder_streaming = false;
	outbox_shared->decoder.pid = 0;
	SpinLockRelease(&outbox_shared->mutex);
}

static void
decoder_set_streaming(bool streaming)
{
	SpinLockAcquire(&outbox_shared->mutex);
	outbox_shared->decoder_streaming = streaming;
	SpinLockRelease(&outbox_shared->mutex);
}

/* The extension's state in our database, as the dispatcher last found it */
static OutboxExtensionState
extension_state(void)
{
	OutboxExtensionState state;

	SpinLockAcquire(&outbox_shared->mutex);
	state = outbox_shared->extension;
	SpinLockRelease(&outbox_shared->mutex);
	return state;
}

static void
decoder_sleep(long timeout_ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * PostgreSQL 15.19 and later refuse output plugins that are not named in
 * output_plugin_libraries, also for decoding inside a worker.  Check before
 * trying, so that a missing entry is reported once instead of as a restart
 * loop.  Older servers have no such setting and allow every plugin.
 */
static bool
plugin_library_allowed(void)
{
	const char *value = GetConfigOption("output_plugin_libraries", true, false);
	char	   *copy;
	List	   *names;
	ListCell   *lc;
	bool		allowed = false;

	if (value == NULL)
		return true;
	copy = pstrdup(value);
	if (SplitGUCList(copy, ',', &names))
	{
		foreach(lc, names)
		{
			if (strcmp((char *) lfirst(lc), OUTBOX_PLUGIN_NAME) == 0)
				allowed = true;
		}
	}
	list_free(names);
	pfree(copy);
	return allowed;
}

static bool drop_idle_slot(const char *name, const char *why);

/*
 * Wait until there is something to decode for: the extension is installed
 * at the library's version and the output plugin is allowed.  Meanwhile
 * nothing would ever advance our slot, which would keep WAL and
 * catalog_xmin forever: drop it.  The table scan asked for when the slot is
 * created again covers whatever it would have decoded.
 */
static void
wait_until_ready(void)
{
	bool		logged_extension = false;
	bool		logged_plugin = false;

	for (;;)
	{
		OutboxExtensionState state = extension_state();

		if (state == OUTBOX_EXTENSION_UNKNOWN)
		{
			/* The dispatcher looks within a second of its start */
			decoder_sleep(DECODER_RECHECK_MS);
			continue;
		}
		if (state != OUTBOX_EXTENSION_READY)
		{
			bool		missing = (state == OUTBOX_EXTENSION_MISSING);

			outbox_set_state(&outbox_shared->decoder, missing ?
							 "waiting for CREATE EXTENSION outbox" :
							 "waiting for ALTER EXTENSION outbox UPDATE");
			drop_idle_slot(outbox_shared->slot_name, missing ?
						   "the extension is not installed" :
						   "the extension must be updated");
			if (!logged_extension && missing)
				ereport(LOG,
						(errmsg("outbox decoder is waiting for CREATE EXTENSION outbox in database \"%s\"",
								outbox_shared->database)));
			logged_extension = true;
			decoder_sleep(DECODER_RECHECK_MS);
			continue;
		}
		if (!plugin_library_allowed())
		{
			outbox_set_state(&outbox_shared->decoder,
							 "misconfigured: output_plugin_libraries does not list outbox");
			drop_idle_slot(outbox_shared->slot_name,
						   "output_plugin_libraries does not list outbox");
			if (!logged_plugin)
				ereport(LOG,
						(errmsg("outbox decoder cannot decode WAL: library \"%s\" is not listed in output_plugin_libraries",
								OUTBOX_PLUGIN_NAME),
						 errdetail("Messages are still delivered, found by table scans, but with more latency."),
						 errhint("Run ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'test_decoding', 'outbox'; then SELECT pg_reload_conf();")));
			logged_plugin = true;
			decoder_sleep(DECODER_RECHECK_MS);
			continue;
		}
		return;
	}
}

static XLogReaderRoutine *
page_reader(void)
{
	static XLogReaderRoutine routine = {
		.page_read = read_local_xlog_page,
		.segment_open = wal_segment_open,
		.segment_close = wal_segment_close
	};

	return &routine;
}

static void
create_slot(void)
{
	LogicalDecodingContext *ctx;

	outbox_slot_create(outbox_shared->slot_name);
	ctx = CreateInitDecodingContext(OUTBOX_PLUGIN_NAME, NIL, false,
									InvalidXLogRecPtr, page_reader(),
									NULL, NULL, NULL);
	DecodingContextFindStartpoint(ctx);
	FreeDecodingContext(ctx);
	ReplicationSlotPersist();
	ReplicationSlotRelease();
	ereport(LOG,
			(errmsg("outbox decoder created replication slot \"%s\"",
					outbox_shared->slot_name)));
}

/*
 * Acquire our slot, creating or recreating it as needed.  Returns false if
 * the name is taken by a slot that is not ours (logged once by the caller).
 * A new slot starts at the current WAL position, so everything committed
 * before it must come from the table: ask the dispatcher for a scan.
 */
static bool
acquire_slot(void)
{
	ReplicationSlot *slot;

	slot = SearchNamedReplicationSlot(outbox_shared->slot_name, true);
	if (slot == NULL)
	{
		create_slot();
		outbox_wake_dispatcher(true);
	}

	outbox_slot_acquire(outbox_shared->slot_name);
	slot = MyReplicationSlot;
	if (!SlotIsLogical(slot) ||
		slot->data.database != MyDatabaseId ||
		strcmp(NameStr(slot->data.plugin), OUTBOX_PLUGIN_NAME) != 0)
	{
		ReplicationSlotRelease();
		return false;
	}

	if (outbox_slot_invalidated(slot))
	{
		const char *reason = outbox_slot_invalidation_reason(slot);
		bool		idle = strcmp(reason, "idle_timeout") == 0;

		ereport(LOG,
				(errmsg("outbox replication slot \"%s\" was invalidated (%s); recreating it",
						outbox_shared->slot_name, reason),
				 errdetail("Pending messages are found in outbox.messages; nothing is lost."),
				 idle ?
				 errhint("Raise idle_replication_slot_timeout, or set it to 0, if this happens often.") :
				 errhint("Raise max_slot_wal_keep_size if this happens often.")));
		ReplicationSlotRelease();
		ReplicationSlotDrop(outbox_shared->slot_name, true);
		create_slot();
		outbox_wake_dispatcher(true);
		outbox_slot_acquire(outbox_shared->slot_name);
	}
	else if (outbox_slot_synced(slot))
		ereport(LOG,
				(errmsg("outbox decoder resumes from replication slot \"%s\", synchronized from the former primary",
						outbox_shared->slot_name),
				 errdetail("What was committed before the slot's position is found in outbox.messages.")));
	return true;
}

/*
 * Drop the slot of that name if it is ours (our plugin, this database) and
 * nobody uses it, saying why in the log.  Returns whether it was dropped.
 */
static bool
drop_idle_slot(const char *name, const char *why)
{
	ReplicationSlot *slot;
	bool		ours;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(name, false);
	ours = slot != NULL && SlotIsLogical(slot) &&
		slot->data.database == MyDatabaseId &&
		strcmp(NameStr(slot->data.plugin), OUTBOX_PLUGIN_NAME) == 0;
	if (ours)
	{
		SpinLockAcquire(&slot->mutex);
		ours = (slot->active_pid == 0);
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	if (!ours)
		return false;

	/* Another process may take it meanwhile: then dropping fails, and we retry */
	ReplicationSlotDrop(name, true);
	ereport(LOG,
			(errmsg("outbox decoder dropped replication slot \"%s\": %s",
					name, why),
			 errdetail("Nothing is lost: pending messages are found in outbox.messages when decoding resumes with a new slot.")));
	return true;
}

/*
 * Going from one database to several (outbox.databases) or back renames this
 * database's slot: the slot of the other naming scheme would never be
 * advanced again.
 */
static void
drop_previous_slot(void)
{
	char		why[NAMEDATALEN + 100];

	snprintf(why, sizeof(why),
			 "it was used before the list of databases changed; the slot is now \"%s\"",
			 outbox_shared->slot_name);
	drop_idle_slot(outbox_shared->previous_slot_name, why);
}

static void
decoder_prepare_write(LogicalDecodingContext *ctx, XLogRecPtr lsn,
					  TransactionId xid, bool last_write)
{
	resetStringInfo(ctx->out);
}

static void
decoder_write(LogicalDecodingContext *ctx, XLogRecPtr lsn,
			  TransactionId xid, bool last_write)
{
	XLogRecPtr	commit_lsn = outbox_message_commit_lsn(ctx->out->data,
													   ctx->out->len);

	if (commit_lsn <= already_decoded)
		return;
	if (!outbox_ring_put(ctx->out->data, ctx->out->len))
		ring_overflowed = true;
	outbox_count(OUTBOX_STAT_DECODED, 1);
	if (++messages_since_wake >= DECODER_WAKE_EVERY)
	{
		messages_since_wake = 0;
		outbox_wake_dispatcher(false);
	}
}

/*
 * Tell the dispatcher how far the ring is complete, and wake it if there is
 * something for it: WAL without messages is no reason to disturb it.
 */
static void
publish_progress(XLogRecPtr upto)
{
	SpinLockAcquire(&outbox_shared->mutex);
	outbox_shared->decoded_upto = upto;
	if (ring_overflowed)
		outbox_shared->scan_requested = true;
	SpinLockRelease(&outbox_shared->mutex);
	if (messages_since_wake > 0 || ring_overflowed)
		outbox_wake_dispatcher(false);
	ring_overflowed = false;
	messages_since_wake = 0;
}

/*
 * Decode until the extension goes away or must be updated (then return), or
 * until an ERROR or SIGTERM ends the process.
 */
static void
decode_stream(MemoryContext context)
{
	LogicalDecodingContext *ctx;
	MemoryContext oldcxt;
	TimestampTz last_save = GetCurrentTimestamp();

	SpinLockAcquire(&outbox_shared->mutex);
	already_decoded = outbox_shared->decoded_upto;
	SpinLockRelease(&outbox_shared->mutex);

	oldcxt = MemoryContextSwitchTo(context);
	ctx = CreateDecodingContext(InvalidXLogRecPtr, NIL, false, page_reader(),
								decoder_prepare_write, decoder_write, NULL);
	XLogBeginRead(ctx->reader, MyReplicationSlot->data.restart_lsn);
	MemoryContextSwitchTo(oldcxt);

	decoder_set_streaming(true);
	pgstat_report_activity(STATE_RUNNING, "decoding");
	outbox_set_state(&outbox_shared->decoder, "decoding slot \"%s\"",
					 outbox_shared->slot_name);

	while (extension_state() == OUTBOX_EXTENSION_READY)
	{
		XLogRecPtr	start = ctx->reader->EndRecPtr;
		XLogRecPtr	flush = GetFlushRecPtr(NULL);

		if (flush > start)
			outbox_wait_for_standbys(flush);
		oldcxt = MemoryContextSwitchTo(context);
		while (ctx->reader->EndRecPtr < flush)
		{
			XLogRecord *record;
			char	   *errm = NULL;

			record = XLogReadRecord(ctx->reader, &errm);
			if (errm)
				elog(ERROR, "outbox decoder could not read WAL at %X/%X: %s",
					 LSN_FORMAT_ARGS(ctx->reader->EndRecPtr), errm);
			if (record != NULL)
				LogicalDecodingProcessRecord(ctx, ctx->reader);
			CHECK_FOR_INTERRUPTS();
		}
		MemoryContextSwitchTo(oldcxt);

		if (ctx->reader->EndRecPtr > start)
		{
			TimestampTz now = GetCurrentTimestamp();

			/*
			 * Messages are durable in the table once committed, so the slot
			 * may move past them now, delivered or not: WAL retention stays
			 * bounded however long a target is down.
			 */
			LogicalConfirmReceivedLocation(ctx->reader->EndRecPtr);
			ReplicationSlotMarkDirty();
			if (TimestampDifferenceExceeds(last_save, now,
										   DECODER_SAVE_INTERVAL_MS))
			{
				ReplicationSlotSave();
				last_save = now;
			}
			UpdateDecodingStats(ctx);
			publish_progress(ctx->reader->EndRecPtr);

			/*
			 * Under load, commits come faster than one pass per commit
			 * pays off: let a few gather before the next pass.
			 */
			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 DECODER_GATHER_MS, PG_WAIT_EXTENSION);
		}

		decoder_sleep(DECODER_NAPTIME_MS);
	}

	decoder_set_streaming(false);
	FreeDecodingContext(ctx);
	MemoryContextReset(context);
}

void
outbox_decoder_main(Datum main_arg)
{
	MemoryContext context;
	bool		logged_foreign_slot = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	outbox_shmem_select(DatumGetInt32(main_arg));
	BackgroundWorkerInitializeConnection(outbox_shared->database, NULL, 0);
	outbox_worker_session_settings();

	before_shmem_exit(decoder_detach, (Datum) 0);
	SpinLockAcquire(&outbox_shared->mutex);
	outbox_shared->decoder_latch = MyLatch;
	SpinLockRelease(&outbox_shared->mutex);

	/* Neither can change without a restart: say so once and stay out. */
	outbox_count(OUTBOX_STAT_DECODER_STARTS, 1);
	if (wal_level < WAL_LEVEL_LOGICAL || max_replication_slots < 1)
	{
		outbox_set_state(&outbox_shared->decoder,
						 "stopped: needs wal_level = logical and max_replication_slots > 0");
		ereport(LOG,
				(errmsg("outbox decoder is not running: it needs wal_level = logical and max_replication_slots > 0"),
				 errdetail("Messages are still delivered, found by table scans, but with more latency."),
				 errhint("Set wal_level = logical in postgresql.conf and restart the server.")));
		proc_exit(0);
	}

	context = AllocSetContextCreate(TopMemoryContext, "outbox decoder",
									ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		wait_until_ready();
		drop_previous_slot();

		if (!acquire_slot())
		{
			outbox_set_state(&outbox_shared->decoder,
							 "misconfigured: slot \"%s\" was not created by outbox",
							 outbox_shared->slot_name);
			if (!logged_foreign_slot)
				ereport(LOG,
						(errmsg("outbox decoder cannot use replication slot \"%s\": it was not created by outbox in this database",
								outbox_shared->slot_name),
						 errhint("Drop that slot, or set outbox.slot_name to another name and restart.")));
			logged_foreign_slot = true;
			decoder_sleep(DECODER_RECHECK_MS);
			continue;
		}
		logged_foreign_slot = false;

		decode_stream(context);

		/* The extension is gone: wait_until_ready() drops the slot */
		ReplicationSlotRelease();
	}
}
