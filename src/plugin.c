/*-------------------------------------------------------------------------
 *
 * plugin.c
 *	  Logical decoding output plugin: emits messages queued by outbox_queue.
 *
 * Only INSERTs into outbox.messages of messages queued by outbox_queue and
 * never attempted (via_wal, pending, no attempts) produce output, one record
 * per message in the format of message.c.  Other inserted rows, such as the
 * delivered, dead and retried messages a restore of a dump loads, are left
 * to the dispatcher's table scans, which honour their state and schedule.  Everything
 * else the reorder buffer hands us is skipped after a cheap test on the
 * relation, because PostgreSQL 15 decodes every change in the database.
 *
 * Nothing here may throw for a row it does not like: an ERROR in decoding
 * restarts the decoder with the same transaction first.  Rows are produced
 * by our own functions, so this is about not being clever, not about
 * validating.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "compat.h"
#include "message.h"
#include "outbox.h"

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

/* Columns of outbox.messages the plugin reads */
typedef enum PluginColumn
{
	COL_ID,
	COL_TARGET,
	COL_MESSAGE_ID,
	COL_MESSAGE_TYPE,
	COL_KEY,
	COL_HEADERS,
	COL_PAYLOAD,
	COL_VIA_WAL,
	COL_STATE,
	COL_ATTEMPTS,
	NUM_COLUMNS
} PluginColumn;

static const char *const column_names[NUM_COLUMNS] = {
	"id", "target", "message_id", "message_type", "key", "headers",
	"payload", "via_wal", "state", "attempts"
};

typedef struct PluginState
{
	MemoryContext context;		/* reset after each change */
	Oid			relid;			/* outbox.messages, once seen */
	AttrNumber	attnums[NUM_COLUMNS];
	StringInfoData buf;
} PluginState;

static void
plugin_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
			   bool is_init)
{
	PluginState *state = palloc0(sizeof(PluginState));

	state->context = AllocSetContextCreate(ctx->context,
										   "outbox plugin change",
										   ALLOCSET_DEFAULT_SIZES);
	state->relid = InvalidOid;
	initStringInfo(&state->buf);
	ctx->output_plugin_private = state;
	opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
	opt->receive_rewrites = false;
}

static void
plugin_shutdown(LogicalDecodingContext *ctx)
{
	PluginState *state = ctx->output_plugin_private;

	MemoryContextDelete(state->context);
}

static void
plugin_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
}

static void
plugin_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			  XLogRecPtr commit_lsn)
{
}

/*
 * Is this outbox.messages?  Remembers the answer for the relation that is,
 * and looks up its columns by name; a table of that name that lacks one of
 * them is not ours.
 */
static bool
is_outbox_table(PluginState *state, Relation relation)
{
	TupleDesc	desc = RelationGetDescr(relation);
	char	   *nspname;
	bool		ours;

	if (RelationGetRelid(relation) == state->relid)
		return true;
	if (strcmp(RelationGetRelationName(relation), OUTBOX_TABLE_NAME) != 0)
		return false;
	nspname = get_namespace_name(RelationGetNamespace(relation));
	ours = nspname && strcmp(nspname, OUTBOX_SCHEMA_NAME) == 0;
	if (nspname)
		pfree(nspname);
	if (!ours)
		return false;

	for (int c = 0; c < NUM_COLUMNS; c++)
	{
		state->attnums[c] = InvalidAttrNumber;
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped &&
				strcmp(NameStr(att->attname), column_names[c]) == 0)
				state->attnums[c] = att->attnum;
		}
		if (state->attnums[c] == InvalidAttrNumber)
			return false;
	}
	state->relid = RelationGetRelid(relation);
	return true;
}

static Datum
column(PluginState *state, HeapTuple tuple, TupleDesc desc, PluginColumn c,
	   bool *isnull)
{
	return heap_getattr(tuple, state->attnums[c], desc, isnull);
}

static char *
column_text(PluginState *state, HeapTuple tuple, TupleDesc desc,
			PluginColumn c)
{
	bool		isnull;
	Datum		d = column(state, tuple, desc, c, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static Jsonb *
column_jsonb(PluginState *state, HeapTuple tuple, TupleDesc desc,
			 PluginColumn c)
{
	bool		isnull;
	Datum		d = column(state, tuple, desc, c, &isnull);

	return isnull ? NULL : DatumGetJsonbP(d);
}

/* Was this row queued by outbox_queue, and never attempted? */
static bool
is_new_wal_message(PluginState *state, HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Datum		d;
	char	   *row_state;

	d = column(state, tuple, desc, COL_VIA_WAL, &isnull);
	if (isnull || !DatumGetBool(d))
		return false;
	d = column(state, tuple, desc, COL_ATTEMPTS, &isnull);
	if (isnull || DatumGetInt32(d) != 0)
		return false;
	row_state = column_text(state, tuple, desc, COL_STATE);
	return row_state != NULL && strcmp(row_state, "pending") == 0;
}

static void
plugin_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			  Relation relation, ReorderBufferChange *change)
{
	PluginState *state = ctx->output_plugin_private;
	TupleDesc	desc = RelationGetDescr(relation);
	HeapTuple	tuple;
	MemoryContext oldcxt;
	bool		isnull;
	Datum		id;
	OutboxMessage msg;

	if (change->action != REORDER_BUFFER_CHANGE_INSERT ||
		(tuple = outbox_change_new_tuple(change)) == NULL ||
		!is_outbox_table(state, relation))
		return;

	oldcxt = MemoryContextSwitchTo(state->context);

	if (!is_new_wal_message(state, tuple, desc))
		goto done;
	id = column(state, tuple, desc, COL_ID, &isnull);
	if (isnull)
		goto done;

	memset(&msg, 0, sizeof(msg));
	msg.id = DatumGetInt64(id);
	msg.commit_lsn = txn->end_lsn;
	msg.relid = RelationGetRelid(relation);
	msg.xid = txn->xid;
	msg.target = column_text(state, tuple, desc, COL_TARGET);
	msg.message_id = column_text(state, tuple, desc, COL_MESSAGE_ID);
	msg.message_type = column_text(state, tuple, desc, COL_MESSAGE_TYPE);
	msg.key = column_text(state, tuple, desc, COL_KEY);
	msg.headers = column_jsonb(state, tuple, desc, COL_HEADERS);
	msg.payload = column_jsonb(state, tuple, desc, COL_PAYLOAD);
	if (msg.target == NULL || msg.payload == NULL)
		goto done;

	resetStringInfo(&state->buf);
	outbox_message_encode(&state->buf, &msg);

	OutputPluginPrepareWrite(ctx, true);
	appendBinaryStringInfo(ctx->out, state->buf.data, state->buf.len);
	OutputPluginWrite(ctx, true);

done:
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(state->context);
}

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = plugin_startup;
	cb->begin_cb = plugin_begin;
	cb->change_cb = plugin_change;
	cb->commit_cb = plugin_commit;
	cb->shutdown_cb = plugin_shutdown;
}
