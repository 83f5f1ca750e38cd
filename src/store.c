/*-------------------------------------------------------------------------
 *
 * store.c
 *	  Every query the dispatcher runs on outbox.messages and
 *	  outbox.attempts: the scan of due messages and the time the next one
 *	  is due, the first message of keys, the probe message of a target, the
 *	  per-key gate, the recording of outcomes, and retention.
 *
 * Keeping them in one place, the way pg_cron keeps its metadata SQL behind
 * job_metadata.c, lets the queries be read and checked together: they must
 * agree on the columns a message is read by (MESSAGE_COLUMNS), on the
 * per-key order (OUTBOX_KEY_HEAD), and on the indexes they are planned for.
 * Callers get typed results, never SPI tuples; every function runs inside
 * the caller's transaction with SPI connected (see run_in_transaction() in
 * dispatcher.c), and what it returns lives until the transaction ends,
 * except the messages outbox_store_message() builds.
 *
 * The plans are made once and saved (see sql.c); outbox_store_reset()
 * forgets them when the extension is dropped or made again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "message.h"
#include "ordering.h"
#include "policy.h"
#include "sql.h"
#include "store.h"

/* Rows removed by one retention pass */
#define PRUNE_BATCH				1000
/* Rows a probe search reads at a time (see outbox_store_probe()) */
#define PROBE_BATCH				32

/* The columns queries read a message by, and their numbers in a result */
#define MESSAGE_COLUMNS \
	"id, target, message_id, message_type, key, headers, payload, attempts," \
	" next_attempt_at, probe_failures"
typedef enum MessageColumn
{
	MC_ID = 1,
	MC_TARGET,
	MC_MESSAGE_ID,
	MC_MESSAGE_TYPE,
	MC_KEY,
	MC_HEADERS,
	MC_PAYLOAD,
	MC_ATTEMPTS,
	MC_NEXT_ATTEMPT_AT,
	MC_PROBE_FAILURES,
	MC_DUE						/* after them, every query says if it is due */
} MessageColumn;

/* The outbox.messages the queries read (see check_extension_objects()) */
static Oid	messages_relid = InvalidOid;

static SPIPlanPtr scan_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;
static SPIPlanPtr key_head_plan = NULL;
static SPIPlanPtr outcome_plan = NULL;
static SPIPlanPtr probe_plan = NULL;
static SPIPlanPtr gate_plan = NULL;
static SPIPlanPtr prune_messages_plan = NULL;
static SPIPlanPtr prune_attempts_plan = NULL;

/*
 * The queries run on this outbox.messages from now on: forget the plans
 * made for the one before (the extension was dropped or made again).
 */
void
outbox_store_reset(Oid relid)
{
	outbox_forget_plan(&scan_plan);
	outbox_forget_plan(&next_due_plan);
	outbox_forget_plan(&key_head_plan);
	outbox_forget_plan(&outcome_plan);
	outbox_forget_plan(&probe_plan);
	outbox_forget_plan(&gate_plan);
	outbox_forget_plan(&prune_messages_plan);
	outbox_forget_plan(&prune_attempts_plan);
	messages_relid = relid;
}

static Datum
make_array(Datum *elems, bool *nulls, int n, Oid type)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, type,
											  typlen, typbyval, typalign));
}

/* A text[] of n text Datums */
static Datum
text_datums_array(Datum *elems, int n)
{
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/* A text[] of the strings (char *) */
static Datum
text_array(List *strings)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(strings), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, strings)
		elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
	return text_datums_array(elems, n);
}

/* A bigint[] of the ids */
static Datum
int8_array(const int64 *ids, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(ids[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, 8,
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static char *
text_or_null(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static Jsonb *
jsonb_or_null(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : DatumGetJsonbP(d);
}

/* Free what jsonb_or_null() returned, if detoasting made it a copy */
static void
free_detoasted(HeapTuple tup, TupleDesc desc, int col, Jsonb *value)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	if (value != NULL && (Pointer) value != DatumGetPointer(d))
		pfree(value);
}

static int32
int32_column(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;

	return DatumGetInt32(SPI_getbinval(tup, desc, col, &isnull));
}

/* Row i of the last query's result: MESSAGE_COLUMNS, then whether due */
static void
read_row(uint64 i, MessageRow *row)
{
	HeapTuple	tup = SPI_tuptable->vals[i];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;

	row->id = DatumGetInt64(SPI_getbinval(tup, desc, MC_ID, &isnull));
	row->target = text_or_null(tup, desc, MC_TARGET);
	row->key = text_or_null(tup, desc, MC_KEY);
	row->attempts = int32_column(tup, desc, MC_ATTEMPTS);
	row->next_attempt_at = DatumGetTimestampTz(SPI_getbinval(tup, desc,
															 MC_NEXT_ATTEMPT_AT,
															 &isnull));
	row->due = DatumGetBool(SPI_getbinval(tup, desc, MC_DUE, &isnull));
	row->tuple = tup;
	row->desc = desc;
}

/* Every row of the last query's result */
static int
read_rows(MessageRow **rows)
{
	*rows = palloc(sizeof(MessageRow) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
		read_row(i, &(*rows)[i]);
	return (int) SPI_processed;
}

/* The row as an OutboxMessage, in cxt */
OutboxMessage *
outbox_store_message(const MessageRow *r, MemoryContext cxt)
{
	HeapTuple	tup = r->tuple;
	TupleDesc	desc = r->desc;
	MemoryContext oldcxt;
	OutboxMessage row;
	OutboxMessage *msg;
	StringInfoData buf;

	memset(&row, 0, sizeof(row));
	row.id = r->id;
	row.commit_lsn = InvalidXLogRecPtr;
	row.relid = messages_relid;
	row.xid = InvalidTransactionId;
	row.attempts = r->attempts;
	row.probe_failures = int32_column(tup, desc, MC_PROBE_FAILURES);
	row.target = text_or_null(tup, desc, MC_TARGET);
	row.message_id = text_or_null(tup, desc, MC_MESSAGE_ID);
	row.message_type = text_or_null(tup, desc, MC_MESSAGE_TYPE);
	row.key = text_or_null(tup, desc, MC_KEY);
	row.headers = jsonb_or_null(tup, desc, MC_HEADERS);
	row.payload = jsonb_or_null(tup, desc, MC_PAYLOAD);

	initStringInfo(&buf);
	outbox_message_encode(&buf, &row);
	oldcxt = MemoryContextSwitchTo(cxt);
	msg = outbox_message_decode(buf.data, buf.len);
	MemoryContextSwitchTo(oldcxt);

	/*
	 * A scan builds many messages in one transaction: free the detoasted
	 * copies at once, so that it holds one large payload at a time, not
	 * every payload it read until the transaction ends.
	 */
	pfree(buf.data);
	free_detoasted(tup, desc, MC_HEADERS, row.headers);
	free_detoasted(tup, desc, MC_PAYLOAD, row.payload);
	return msg;
}

/*
 * The next rows (at most limit) of the sweep over the due pending messages
 * of these targets (char *), in (next_attempt_at, id) order after the
 * position (after_time, after_id).  Returns how many.
 *
 * A keyed row may not be the first pending message of its key: the caller
 * asks outbox_store_gate() about those it would send.
 */
int
outbox_store_scan(List *targets, TimestampTz after_time, int64 after_id,
				  int limit, MessageRow **rows)
{
	Oid			types[] = {TEXTARRAYOID, TIMESTAMPTZOID, INT8OID, INT4OID};
	Datum		values[4];

	values[0] = text_array(targets);
	values[1] = TimestampTzGetDatum(after_time);
	values[2] = Int64GetDatum(after_id);
	values[3] = Int32GetDatum(limit);
	outbox_execute(&scan_plan,
				   "SELECT " MESSAGE_COLUMNS ", true"
				   "  FROM outbox.messages"
				   " WHERE state = 'pending' AND next_attempt_at <= now()"
				   "   AND target = ANY ($1)"
				   "   AND (next_attempt_at, id) > ($2, $3)"
				   " ORDER BY next_attempt_at, id"
				   " LIMIT $4",
				   lengthof(types), types, values, NULL, true, 0, SPI_OK_SELECT);
	return read_rows(rows);
}

/*
 * When the first pending message of these targets (char *) that is not due
 * yet becomes due; false if there is none.
 */
bool
outbox_store_next_due(List *targets, TimestampTz *at)
{
	Oid			due_types[] = {TEXTARRAYOID};
	Datum		values[1];
	bool		isnull;
	Datum		d;

	values[0] = text_array(targets);
	outbox_execute(&next_due_plan,
				   "SELECT min(next_attempt_at) FROM outbox.messages"
				   " WHERE state = 'pending' AND next_attempt_at > now()"
				   "   AND target = ANY ($1)",
				   lengthof(due_types), due_types, values, NULL, true, 1,
				   SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return false;
	*at = DatumGetTimestampTz(d);
	return true;
}

/*
 * The first pending message of the key of each of these messages, the only
 * one of its key that may be sent (OUTBOX_KEY_HEAD), with whether it is
 * due.  One index probe per key, however many messages wait.  Returns how
 * many rows: none for a message without a key, or gone from the table.
 */
int
outbox_store_key_heads(const int64 *ids, int n, MessageRow **rows)
{
	Oid			types[] = {INT8ARRAYOID};
	Datum		values[1];

	values[0] = int8_array(ids, n);
	outbox_execute(&key_head_plan,
				   "SELECT m.*, m.next_attempt_at <= now()"
				   "  FROM unnest($1) AS k(id)"
				   "  JOIN outbox.messages AS ref ON ref.id = k.id"
				   " CROSS JOIN LATERAL ("
				   OUTBOX_KEY_HEAD(MESSAGE_COLUMNS, "ref.target", "ref.key") ") AS m",
				   lengthof(types), types, values, NULL, true, 0, SPI_OK_SELECT);
	return read_rows(rows);
}

/*
 * The message to probe the target's open circuit with: its oldest pending
 * one but those in skip[] (rows that could not be read), with whether it
 * is due.  False if it has none.
 *
 * A message with a key may probe only if it is the first pending message
 * of its key: a probe that succeeds is a delivery, and after a failed
 * probe the next one takes another message.  The target's pending messages
 * are walked in (next_attempt_at, id) order, PROBE_BATCH at a time, and
 * the first that may probe is taken; it is nearly always the first row.
 * Asking for "the first that may probe" in one query instead let the
 * planner, which cannot tell how many rows pass the key check, sort every
 * pending message of the target for each probe: 45 ms with 80,000 of them,
 * growing with the backlog of a target that is down.  Even a batch at a
 * time, a bitmap scan and a sort of them all looked as cheap to it, while
 * the table statistics were behind the backlog; the probe is planned
 * without bitmap scans, so that it walks the index of due messages in its
 * order and stops.
 */
bool
outbox_store_probe(const char *target, const int64 *skip, int nskip,
				   MessageRow *row)
{
	Oid			types[] = {TEXTOID, TIMESTAMPTZOID, INT8OID, INT8ARRAYOID};
	Datum		values[lengthof(types)];
	int			nestlevel = NewGUCNestLevel();
	bool		found = false;

	(void) set_config_option("enable_bitmapscan", "off", PGC_SUSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	values[0] = CStringGetTextDatum(target);
	values[1] = TimestampTzGetDatum(DT_NOBEGIN);
	values[2] = Int64GetDatum(0);
	values[3] = int8_array(skip, nskip);
	while (!found)
	{
		uint64		n;

		outbox_execute(&probe_plan,
					   "SELECT " MESSAGE_COLUMNS ", next_attempt_at <= now(),"
					   "       key IS NULL OR id = ("
					   OUTBOX_KEY_HEAD("id", "m.target", "m.key") ")"
					   "  FROM outbox.messages m"
					   " WHERE state = 'pending' AND target = $1"
					   "   AND (next_attempt_at, id) > ($2, $3)"
					   "   AND NOT (id = ANY ($4))"
					   " ORDER BY next_attempt_at, id"
					   " LIMIT " CppAsString2(PROBE_BATCH),
					   lengthof(types), types, values, NULL, true, 0,
					   SPI_OK_SELECT);
		n = SPI_processed;
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;

			if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
										   SPI_tuptable->tupdesc,
										   MC_DUE + 1, &isnull)))
			{
				read_row(i, row);
				found = true;
				break;
			}
		}
		if (found || n < PROBE_BATCH)
			break;
		/* Go on after the last row of this batch */
		read_row(n - 1, row);
		values[1] = TimestampTzGetDatum(row->next_attempt_at);
		values[2] = Int64GetDatum(row->id);
		SPI_freetuptable(SPI_tuptable);
	}
	AtEOXact_GUC(true, nestlevel);
	return found;
}

/*
 * Which of these keyed messages may be sent now, as far as the table says?
 * Those that are the first pending message of their key (see ordering.c).
 * Fills ok[].  The caller has each message's target and key, so the
 * messages themselves are not read again: one index probe per message.
 *
 * The first of a key is found by a LIMIT subquery, which the planner can
 * only run as an index probe per message.  Written as NOT EXISTS, the query
 * was planned once while the table was small as an anti join that reads
 * every pending keyed message for each message checked.
 */
void
outbox_store_gate(const GateItem *items, int n, bool *ok)
{
	Oid			types[] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[lengthof(types)];
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));
	Datum	   *targets = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *keys = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		ok[i] = false;
		ids[i] = items[i].id;
		targets[i] = CStringGetTextDatum(items[i].target);
		keys[i] = CStringGetTextDatum(items[i].key);
	}
	values[0] = int8_array(ids, n);
	values[1] = text_datums_array(targets, n);
	values[2] = text_datums_array(keys, n);
	outbox_execute(&gate_plan,
				   "SELECT c.i FROM unnest($1, $2, $3) WITH ORDINALITY"
				   "  AS c(id, target, key, i)"
				   " CROSS JOIN LATERAL ("
				   OUTBOX_KEY_HEAD("id", "c.target", "c.key") ") AS first"
				   " WHERE first.id = c.id",
				   lengthof(types), types, values, NULL, true, 0, SPI_OK_SELECT);

	/* Each row is the position in items[] (from 1) of a message that may go */
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		i = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
													SPI_tuptable->tupdesc,
													1, &isnull));

		ok[i - 1] = true;
	}
}

/* Record these outcomes: the messages' new state, and their attempts */
void
outbox_store_outcomes(const Outcome *outcomes, int n)
{
	Oid			types[] = {INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
		INT4ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID,
		INT4ARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID,
	INT4ARRAYOID};
	Oid			elemtypes[] = {INT8OID, TEXTOID, INT4OID, INT4OID, TEXTOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID,
	TIMESTAMPTZOID, INT4OID};
	Datum		values[lengthof(types)];
	Datum	   *cols[lengthof(types)];
	bool	   *nulls[lengthof(types)];

	for (int c = 0; c < lengthof(types); c++)
	{
		cols[c] = palloc(sizeof(Datum) * n);
		nulls[c] = palloc0(sizeof(bool) * n);
	}
	for (int i = 0; i < n; i++)
	{
		const Outcome *o = &outcomes[i];

		cols[0][i] = Int64GetDatum(o->id);
		cols[1][i] = CStringGetTextDatum(outbox_state_name(o->state));
		cols[2][i] = Int32GetDatum(o->attempts);
		cols[3][i] = Int32GetDatum(o->status);
		nulls[3][i] = (o->status == 0);
		cols[4][i] = o->error ? CStringGetTextDatum(o->error) : (Datum) 0;
		nulls[4][i] = (o->error == NULL);
		cols[5][i] = TimestampTzGetDatum(o->delivered_at);
		nulls[5][i] = (o->delivered_at == 0);
		cols[6][i] = TimestampTzGetDatum(o->next_attempt_at);
		nulls[6][i] = (o->next_attempt_at == 0);
		cols[7][i] = Int32GetDatum(o->attempt);
		cols[8][i] = TimestampTzGetDatum(o->started_at);
		cols[9][i] = TimestampTzGetDatum(o->finished_at);
		cols[10][i] = Int32GetDatum(o->probe_failures);
	}
	for (int c = 0; c < lengthof(types); c++)
		values[c] = make_array(cols[c], nulls[c], n, elemtypes[c]);

	/*
	 * The messages' new state, and one outbox.attempts row per attempt.
	 * "Not finished" rather than "pending": the plan is made once, and the
	 * partial index of pending rows must not tempt it into reading them all
	 * when a backlog makes them many.  The counts never go down, whatever
	 * copy of a message an outcome comes from.
	 */
	outbox_execute(&outcome_plan,
				   "WITH o AS ("
				   "  SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
				   "                       $11)"
				   "    AS o(id, state, attempts, status, error, delivered_at,"
				   "         next_at, attempt, started_at, finished_at,"
				   "         probe_failures)),"
				   " a AS ("
				   "  INSERT INTO outbox.attempts"
				   "    (message, attempt, started_at, duration, status, error)"
				   "  SELECT id, attempt, started_at, finished_at - started_at,"
				   "         status, error FROM o)"
				   "UPDATE outbox.messages AS m"
				   "   SET state = o.state,"
				   "       attempts = greatest(m.attempts, o.attempts),"
				   "       probe_failures = greatest(m.probe_failures, o.probe_failures),"
				   "       last_status = o.status, last_error = o.error,"
				   "       delivered_at = o.delivered_at,"
				   "       next_attempt_at = coalesce(o.next_at, m.next_attempt_at)"
				   "  FROM o"
				   " WHERE m.id = o.id AND m.state NOT IN ('delivered', 'dead')",
				   lengthof(types), types, values, NULL, false, 0, SPI_OK_UPDATE);
}

/*
 * Remove one batch of delivered messages and of attempt rows older than
 * retention (seconds).  Small batches in short transactions hold no long
 * locks and let VACUUM reuse the space, so the tables level off.  Returns
 * true if a batch was full: there is more to remove.
 */
bool
outbox_store_prune(int retention)
{
	Oid			types[] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(retention)};
	uint64		removed;

	outbox_execute(&prune_messages_plan,
				   "DELETE FROM outbox.messages WHERE id IN ("
				   "  SELECT id FROM outbox.messages"
				   "   WHERE state = 'delivered'"
				   "     AND delivered_at < now() - make_interval(secs => $1)"
				   "   ORDER BY delivered_at LIMIT " CppAsString2(PRUNE_BATCH) ")",
				   lengthof(types), types, values, NULL, false, 0,
				   SPI_OK_DELETE);
	removed = SPI_processed;
	outbox_execute(&prune_attempts_plan,
				   "DELETE FROM outbox.attempts WHERE ctid = ANY (ARRAY("
				   "  SELECT ctid FROM outbox.attempts"
				   "   WHERE started_at < now() - make_interval(secs => $1)"
				   "   LIMIT " CppAsString2(PRUNE_BATCH) "))",
				   lengthof(types), types, values, NULL, false, 0,
				   SPI_OK_DELETE);
	removed = Max(removed, SPI_processed);
	return removed == PRUNE_BATCH;
}
