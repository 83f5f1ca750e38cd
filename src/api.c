/*-------------------------------------------------------------------------
 *
 * api.c
 *	  SQL-callable functions: outbox_queue and outbox_send to enqueue,
 *	  outbox_retry, outbox_redrive and outbox_purge_dead for dead letters.
 *
 * The enqueue functions validate their arguments, insert one row into
 * outbox.messages in the caller's transaction (for a keyed message, once
 * the earlier producers of its key have committed: see lock_key), and
 * arrange for the workers to be woken when that transaction commits.
 * outbox_queue marks its row for the WAL fast path (the decoder hands it
 * over within milliseconds); outbox_send rows are found by the dispatcher's
 * table scan, which the commit also triggers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "config.h"
#include "message.h"
#include "outbox.h"
#include "shmem.h"
#include "sql.h"

PG_FUNCTION_INFO_V1(outbox_queue);
PG_FUNCTION_INFO_V1(outbox_send);
PG_FUNCTION_INFO_V1(outbox_retry);
PG_FUNCTION_INFO_V1(outbox_redrive);
PG_FUNCTION_INFO_V1(outbox_purge_dead);

/*
 * The lock that serialises the producers of one (target, key) lives in the
 * advisory lock space, told apart from the pg_advisory_* functions' (which
 * use 1 and 2) and from other users' by this value of field4.  pg_locks
 * shows it as locktype 'advisory' with objsubid = this value.
 */
#define OUTBOX_KEY_LOCK_FIELD4	0x6F78	/* "ox" */

/* Longest message_type, key or message_id, in bytes */
#define OUTBOX_MAX_LABEL_LEN	1000
/* Most custom headers a message may carry, and their total size */
#define OUTBOX_MAX_HEADERS		100
#define OUTBOX_MAX_HEADERS_SIZE	(64 * 1024)

/* What the current transaction has queued, for the commit callback */
static bool xact_callback_registered = false;
static bool wake_decoder_at_commit = false;
static bool wake_dispatcher_at_commit = false;

static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr insert_idempotent_plan = NULL;
static SPIPlanPtr lookup_plan = NULL;
static SPIPlanPtr retry_plan = NULL;
static SPIPlanPtr redrive_plan = NULL;
static SPIPlanPtr purge_plan = NULL;

static void
outbox_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			/* The commit record is flushed: the messages are durable. */
			if (wake_decoder_at_commit)
				outbox_wake_decoder();
			if (wake_dispatcher_at_commit)
				outbox_wake_dispatcher(true);
			wake_decoder_at_commit = false;
			wake_dispatcher_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* COMMIT PREPARED is picked up by the workers' periodic checks */
			wake_decoder_at_commit = false;
			wake_dispatcher_at_commit = false;
			break;
		default:
			break;
	}
}

static void
wake_at_commit(bool via_wal)
{
	/* In a database the workers do not serve, there is nobody to wake */
	if (outbox_shmem_lookup() == NULL)
		return;
	if (!xact_callback_registered)
	{
		RegisterXactCallback(outbox_xact_callback, NULL);
		xact_callback_registered = true;
	}
	if (via_wal)
		wake_decoder_at_commit = true;
	else
		wake_dispatcher_at_commit = true;
}

/*
 * message_type, key and message_id travel as HTTP header values: refuse
 * what would break the request or that no receiver could use.
 */
static char *
label_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	text	   *t;
	char	   *s;
	int			len;

	if (PG_ARGISNULL(argno))
		return NULL;
	t = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(t);
	s = text_to_cstring(t);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname),
				 errhint("Pass NULL to leave it unset.")));
	if (len > OUTBOX_MAX_LABEL_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too long (%d bytes)", argname, len),
				 errdetail("The limit is %d bytes.", OUTBOX_MAX_LABEL_LEN)));
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not contain control characters", argname),
					 errdetail("It is sent as an HTTP header value.")));
	}
	return s;
}

static void
check_header(const char *name, int name_len, const JsonbValue *value,
			 void *arg)
{
	const char *problem;

	if (value->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value of header \"%.*s\" must be a string", name_len,
						name),
				 errhint("headers must be a JSON object of strings, such as '{\"x-tenant\": \"acme\"}'.")));
	problem = outbox_header_problem(name, name_len, value->val.string.val,
									value->val.string.len);
	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("header \"%.*s\" is not allowed: %s", name_len, name,
						problem),
				 outbox_header_reserved(name, name_len) ?
				 errhint("Reserved header names (in any case): %s.",
						 outbox_reserved_headers()) : 0));
}

static void
check_headers(Jsonb *headers)
{
	if (!JB_ROOT_IS_OBJECT(headers) || JB_ROOT_IS_SCALAR(headers))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("headers must be a JSON object"),
				 errhint("Pass an object of strings, such as '{\"x-tenant\": \"acme\"}', or NULL.")));
	if (JB_ROOT_COUNT(headers) > OUTBOX_MAX_HEADERS ||
		VARSIZE(headers) > OUTBOX_MAX_HEADERS_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("headers are too large (%u entries, %zu bytes)",
						JB_ROOT_COUNT(headers), (size_t) VARSIZE(headers)),
				 errdetail("The limit is %d entries and %d bytes.",
						   OUTBOX_MAX_HEADERS, OUTBOX_MAX_HEADERS_SIZE)));
	outbox_headers_walk(headers, check_header, NULL);
}

/*
 * Is this message_id one that outbox_webhook_id could derive from a row id:
 * "msg_<id>", or "msg_<tag>_<id>" with several databases, where the tag is
 * the tail of a slot name ([a-z0-9_]) and the id digits?  A caller's id of
 * that form would be the webhook-id of another message, and a receiver that
 * de-duplicates would drop one of them.  The rule covers every tag, so it
 * does not depend on the databases configured now.
 */
static bool
is_derived_webhook_id(const char *s)
{
	const char *digits;

	if (strncmp(s, "msg_", 4) != 0)
		return false;
	s += 4;
	/* the id: the digits at the end */
	digits = s + strlen(s);
	while (digits > s && digits[-1] >= '0' && digits[-1] <= '9')
		digits--;
	if (*digits == '\0')
		return false;
	if (digits == s)
		return true;			/* msg_<id> */
	/* msg_<tag>_<id> */
	if (digits[-1] != '_')
		return false;
	for (const char *p = s; p < digits; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	}
	return true;
}

static void
check_message_id(const char *message_id)
{
	if (is_derived_webhook_id(message_id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message_id \"%s\" has the form of a webhook-id derived from a row id",
						message_id),
				 errdetail("Messages queued without a message_id are sent with webhook-id msg_<id> or msg_<database>_<id>; receivers would take one message for the other."),
				 errhint("Choose a message_id of another form, such as \"order-42-created\".")));
}

static void
check_target(const char *target)
{
	if (outbox_target_url(target) != NULL)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("outbox target \"%s\" is not configured", target),
			 outbox_target_count() == 0 ?
			 errdetail("outbox.targets is empty.") :
			 errdetail("Configured targets: %s.", outbox_target_list()),
			 errhint("Add %s=<url> to outbox.targets in postgresql.conf and reload the configuration.",
					 target)));
}

/*
 * Per-key order is id order (the table scan, the key gate and retries all
 * go by id) and must also be commit order (the WAL fast path hands
 * messages over as their transactions commit).  Ids are taken at INSERT,
 * commits come later, so two producers of one key could commit in the
 * opposite order of their ids.  To make the two orders one, the producers
 * of a (target, key) serialise: each takes this transaction-level lock
 * before its INSERT, so the next one gets its id only once the first has
 * committed or aborted.  The lock is released after the committing
 * transaction left the proc array, so its row is visible to whoever takes
 * the lock next.  The tag holds a 64-bit hash of target and key; two keys
 * that share a hash merely serialise too.
 */
static void
lock_key(const char *target, const char *key)
{
	uint64		hash = outbox_key_hash(target, key);
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (hash >> 32),
						 (uint32) hash, OUTBOX_KEY_LOCK_FIELD4);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * Insert the row; on a duplicate (target, message_id) return the id of the
 * message already queued, queueing nothing.
 */
static int64
insert_message(Datum *values, char *nulls, bool *inserted)
{
	Oid			insert_types[] = {TEXTOID, JSONBOID, TEXTOID, TEXTOID, TEXTOID,
	JSONBOID, TIMESTAMPTZOID, BOOLOID};
	Oid			lookup_types[] = {TEXTOID, TEXTOID};
	bool		isnull;
	int64		id;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * Without a message_id nothing can conflict, and a plain INSERT spares
	 * the speculative insertion (a lock and a WAL record) of ON CONFLICT.
	 */
#define INSERT_MESSAGE \
	"INSERT INTO outbox.messages" \
	" (target, payload, message_type, key, message_id, headers," \
	"  next_attempt_at, via_wal)" \
	" VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, now()), $8)"

	if (nulls[4] == 'n')
		outbox_execute(&insert_plan,
					   INSERT_MESSAGE " RETURNING id",
					   lengthof(insert_types), insert_types, values, nulls, false,
					   1, SPI_OK_INSERT_RETURNING);
	else
		outbox_execute(&insert_idempotent_plan,
					   INSERT_MESSAGE
					   " ON CONFLICT (target, message_id) WHERE message_id IS NOT NULL"
					   " DO NOTHING RETURNING id",
					   lengthof(insert_types), insert_types, values, nulls, false,
					   1, SPI_OK_INSERT_RETURNING);
	*inserted = (SPI_processed == 1);

	if (!*inserted)
	{
		Datum		lookup_values[2] = {values[0], values[4]};

		outbox_execute(&lookup_plan,
					   "SELECT id FROM outbox.messages"
					   " WHERE target = $1 AND message_id = $2",
					   lengthof(lookup_types), lookup_types, lookup_values, NULL,
					   false, 1, SPI_OK_SELECT);
		if (SPI_processed != 1)
			elog(ERROR, "could not find the message that conflicts with message_id");
	}

	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return id;
}

static void
bind_arg(Datum *values, char *nulls, int i, Datum value, bool isnull)
{
	values[i] = isnull ? (Datum) 0 : value;
	nulls[i] = isnull ? 'n' : ' ';
}

static Datum
enqueue(FunctionCallInfo fcinfo, bool via_wal)
{
	Datum		values[8];
	char		nulls[8];
	char	   *target;
	Jsonb	   *payload;
	Size		payload_size;
	char	   *message_type;
	char	   *key;
	char	   *message_id;
	bool		inserted;
	int64		id;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("target must not be NULL"),
				 errhint("Pass the name of a target listed in outbox.targets.")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payload must not be NULL"),
				 errhint("Pass a JSON value, such as '{}'::jsonb.")));

	target = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_target(target);

	payload = PG_GETARG_JSONB_P(1);
	payload_size = VARSIZE(payload);
	if (payload_size > (Size) outbox_max_payload_size * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("payload is too large (%zu bytes)", payload_size),
				 errdetail("outbox.max_payload_size is %d kB.",
						   outbox_max_payload_size),
				 errhint("Send a reference to the data instead of the data.")));

	message_type = label_arg(fcinfo, 2, "message_type");
	key = label_arg(fcinfo, 3, "key");
	message_id = label_arg(fcinfo, 4, "message_id");
	if (message_id)
		check_message_id(message_id);
	if (!PG_ARGISNULL(5))
		check_headers(PG_GETARG_JSONB_P(5));
	if (!via_wal && !PG_ARGISNULL(6) &&
		TIMESTAMP_NOT_FINITE(PG_GETARG_TIMESTAMPTZ(6)))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("deliver_at must be a finite time"),
				 errhint("Pass NULL to deliver at once, or a time such as now() + interval '1 hour'.")));

	bind_arg(values, nulls, 0, CStringGetTextDatum(target), false);
	bind_arg(values, nulls, 1, JsonbPGetDatum(payload), false);
	bind_arg(values, nulls, 2, CStringGetTextDatum(message_type ? message_type : ""),
			 message_type == NULL);
	bind_arg(values, nulls, 3, CStringGetTextDatum(key ? key : ""), key == NULL);
	bind_arg(values, nulls, 4, CStringGetTextDatum(message_id ? message_id : ""),
			 message_id == NULL);
	bind_arg(values, nulls, 5, PG_GETARG_DATUM(5), PG_ARGISNULL(5));
	if (via_wal)
		bind_arg(values, nulls, 6, (Datum) 0, true);
	else
		bind_arg(values, nulls, 6, PG_GETARG_DATUM(6), PG_ARGISNULL(6));
	bind_arg(values, nulls, 7, BoolGetDatum(via_wal), false);

	if (key)
		lock_key(target, key);
	id = insert_message(values, nulls, &inserted);
	if (inserted)
		wake_at_commit(via_wal);

	PG_RETURN_INT64(id);
}

/*
 * outbox_queue(target, payload, message_type, key, message_id, headers)
 *		Queue a message for delivery as soon as the transaction commits.
 */
Datum
outbox_queue(PG_FUNCTION_ARGS)
{
	return enqueue(fcinfo, true);
}

/*
 * outbox_send(target, payload, message_type, key, message_id, headers,
 *			   deliver_at)
 *		Queue a message for the table-polled path, optionally for later.
 */
Datum
outbox_send(PG_FUNCTION_ARGS)
{
	return enqueue(fcinfo, false);
}

/*
 * Return dead messages to pending, with their attempts reset, and wake the
 * dispatcher when the transaction commits.  Returns how many.
 */
static uint64
revive(SPIPlanPtr *plan, const char *sql, Oid argtype, Datum arg, bool isnull)
{
	char		nulls[1] = {isnull ? 'n' : ' '};
	uint64		count;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	outbox_execute(plan, sql, 1, &argtype, &arg, nulls, false, 0,
				   SPI_OK_UPDATE);
	count = SPI_processed;
	SPI_finish();
	if (count > 0)
		wake_at_commit(false);
	return count;
}

#define REVIVE_SQL \
	"UPDATE outbox.messages" \
	"   SET state = 'pending', attempts = 0, probe_failures = 0," \
	"       next_attempt_at = now()" \
	" WHERE state = 'dead'"

/*
 * outbox_retry(id bigint) RETURNS boolean
 *		Return one dead message to pending; false if it is not dead.
 */
Datum
outbox_retry(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(revive(&retry_plan, REVIVE_SQL " AND id = $1",
						  INT8OID, PG_GETARG_DATUM(0), false) > 0);
}

/*
 * outbox_redrive(target text DEFAULT NULL) RETURNS bigint
 *		Return every dead message of target (of all targets if NULL) to
 *		pending; returns how many.
 */
Datum
outbox_redrive(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) revive(&redrive_plan,
								   REVIVE_SQL " AND ($1 IS NULL OR target = $1)",
								   TEXTOID, PG_GETARG_DATUM(0),
								   PG_ARGISNULL(0)));
}

/*
 * outbox_purge_dead(older_than interval) RETURNS bigint
 *		Delete dead messages queued longer ago than older_than; returns how
 *		many.
 */
Datum
outbox_purge_dead(PG_FUNCTION_ARGS)
{
	Oid			argtype = INTERVALOID;
	Datum		arg = PG_GETARG_DATUM(0);
	uint64		count;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	outbox_execute(&purge_plan,
				   "DELETE FROM outbox.messages"
				   " WHERE state = 'dead' AND created_at < now() - $1",
				   1, &argtype, &arg, NULL, false, 0, SPI_OK_DELETE);
	count = SPI_processed;
	SPI_finish();
	PG_RETURN_INT64((int64) count);
}
