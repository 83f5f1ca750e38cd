/*-------------------------------------------------------------------------
 *
 * outbox.h
 *	  Declarations shared by the parts of the outbox extension.
 *
 * The library has one file per responsibility:
 *
 *	outbox.c		_PG_init: GUCs, shared memory hooks, worker registration
 *	config.c		GUC definitions and the parsed target list
 *	shmem.c			shared state: worker latches, flags, decoded-message ring
 *	api.c			SQL-callable functions and the wake-up at commit
 *	message.c		wire format of a decoded message, webhook ids, headers
 *	signature.c		Standard Webhooks signatures
 *	sql.c			saved SPI plans
 *	views.c			functions behind the monitoring views
 *	plugin.c		the logical decoding output plugin
 *	decoder.c		decoder worker: owns the slot, decodes WAL, runs no SQL
 *	dispatcher.c	dispatcher worker: event loop, what to send when
 *	store.c			the dispatcher's queries on the tables (store.h)
 *	tracking.c		the messages the dispatcher holds, by id (tracking.h)
 *	outcomes.c		outcomes held until they are recorded (outcomes.h)
 *	request.c		building and starting a message's request (request.h)
 *	ordering.c		per-key order
 *	policy.c		failure policy: retries, dead letters, circuit breakers
 *	http.c			libcurl multi driver integrated with a WaitEventSet
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_H
#define OUTBOX_H

#include "access/xlogdefs.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "storage/lwlock.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#define OUTBOX_EXTENSION_NAME	"outbox"
#define OUTBOX_SCHEMA_NAME		"outbox"
#define OUTBOX_TABLE_NAME		"messages"
#define OUTBOX_PLUGIN_NAME		"outbox"

/* Size of the shared ring that carries decoded messages to the dispatcher */
#define OUTBOX_RING_SIZE		(8 * 1024 * 1024)

/* Longest target name, and how many targets outbox.targets may list */
#define OUTBOX_TARGET_NAME_MAXLEN	63
#define OUTBOX_MAX_TARGETS		64

/* ---- config.c ---- */

/* Shortest signing key accepted, in bytes (decoded) */
#define OUTBOX_MIN_KEY_BYTES	24

/*
 * Longest outbox.slot_name: the slot names made from it (with several
 * databases, or before they changed) add up to 10 bytes and must fit in
 * NAMEDATALEN.
 */
#define OUTBOX_SLOT_NAME_MAXLEN	(NAMEDATALEN - 1 - 10)

extern char *outbox_database;
extern char *outbox_databases;
extern char *outbox_targets;
extern char *outbox_slot_name;
extern char *outbox_secrets;
extern char *outbox_secrets_file;
extern char *outbox_proxy;
extern int	outbox_max_attempts;
extern int	outbox_retry_base_delay;	/* ms */
extern int	outbox_retry_max_delay;		/* ms */
extern int	outbox_request_timeout;		/* ms */
extern int	outbox_connect_timeout;		/* ms */
extern int	outbox_max_inflight;
extern int	outbox_max_payload_size;	/* kB */
extern int	outbox_circuit_failures;
extern int	outbox_retention;		/* s */

extern void outbox_define_gucs(void);
extern int	outbox_database_count(void);
extern const char *outbox_database_name(int i);
extern const char *outbox_database_slot(int i);
extern const char *outbox_database_previous_slot(int i);
extern const char *outbox_database_tag(int i);
extern const char *outbox_target_url(const char *name);
extern int	outbox_target_count(void);
extern const char *outbox_target_name(int i);
extern char *outbox_target_list(void);
extern bool outbox_target_secrets(const char *name, List **keys,
								  const char **problem);
extern void outbox_hide_secrets_in_log(void);
extern char *outbox_mask_url(const char *url);
extern const char *outbox_proxy_url(void);
extern void outbox_worker_session_settings(void);

/* ---- shmem.c ---- */

/* Live counters, shown by outbox_stats() */
typedef enum OutboxCounter
{
	STAT_REQUESTS,				/* HTTP requests sent */
	STAT_2XX,
	STAT_3XX,
	STAT_4XX,
	STAT_5XX,
	STAT_TRANSPORT_ERRORS,		/* no HTTP response, timeouts included */
	STAT_TIMEOUTS,
	STAT_BYTES_SENT,			/* request bodies */
	STAT_DECODED,				/* messages decoded from WAL */
	STAT_SCANNED,				/* messages found by table scans */
	STAT_DECODER_STARTS,
	STAT_DISPATCHER_STARTS,
	NUM_COUNTERS
} OutboxCounter;

#define OUTBOX_STATE_LEN	200

/* What a worker is doing, for the outbox.workers view */
typedef struct OutboxWorkerState
{
	pid_t		pid;			/* 0 if not running */
	char		state[OUTBOX_STATE_LEN];
} OutboxWorkerState;

/* What SQL can see of a target's delivery state (the outbox.targets view) */
typedef struct OutboxTargetStatus
{
	char		name[OUTBOX_TARGET_NAME_MAXLEN + 1];
	bool		circuit_open;
	TimestampTz circuit_opened_at;	/* 0 if closed */
	TimestampTz next_probe_at;	/* 0 if closed */
	int			consecutive_failures;
	int			concurrency;
	int			inflight;
	TimestampTz last_success_at;	/* 0 if none */
	TimestampTz last_failure_at;	/* 0 if none */
	char		last_error[256];
} OutboxTargetStatus;

/* What the dispatcher last found of the extension in its database */
typedef enum OutboxExtensionState
{
	OUTBOX_EXTENSION_UNKNOWN,	/* the dispatcher has not looked yet */
	OUTBOX_EXTENSION_MISSING,	/* no CREATE EXTENSION outbox */
	OUTBOX_EXTENSION_OUTDATED,	/* its SQL is older than the library */
	OUTBOX_EXTENSION_READY
} OutboxExtensionState;

/* The shared state of one database's workers */
typedef struct OutboxShared
{
	slock_t		mutex;

	/* Fixed at server start */
	char		database[NAMEDATALEN];
	char		slot_name[NAMEDATALEN];
	char		previous_slot_name[NAMEDATALEN];	/* see drop_previous_slot() */
	char		webhook_id_prefix[NAMEDATALEN + 8]; /* see outbox_webhook_id() */

	/* Latches of the running workers (NULL when not running) */
	Latch	   *decoder_latch;
	Latch	   *dispatcher_latch;

	/* Set by the dispatcher each time it looks */
	OutboxExtensionState extension;

	/* True while the decoder feeds the ring from a decoding context */
	bool		decoder_streaming;

	/* Ask the dispatcher to scan the table: the fast path missed something */
	bool		scan_requested;

	/* Every message committed before this LSN has been put in the ring */
	XLogRecPtr	decoded_upto;

	/* Counters, and when they were last reset */
	pg_atomic_uint64 counters[NUM_COUNTERS];
	TimestampTz stats_reset;

	/* Set under mutex */
	OutboxWorkerState decoder;
	OutboxWorkerState dispatcher;

	/* Published by the dispatcher under status_lock */
	LWLock	   *status_lock;
	int			n_targets;
	OutboxTargetStatus targets[OUTBOX_MAX_TARGETS];

	/*
	 * Single-producer, single-consumer byte ring of decoded messages.  Each
	 * side writes only its own counter; see outbox_ring_put() for the
	 * barriers that order the counters against the bytes.
	 */
	pg_atomic_uint64 ring_head; /* bytes ever written (by the decoder) */
	pg_atomic_uint64 ring_tail; /* bytes ever read (by the dispatcher) */
	char		ring[OUTBOX_RING_SIZE];
} OutboxShared;

extern OutboxShared *outbox_shared;

extern void outbox_shmem_request(void);
extern void outbox_shmem_startup(void);
extern void outbox_shmem_select(int index);
extern OutboxShared *outbox_shmem_lookup(void);
extern void outbox_wake_dispatcher(bool scan);
extern void outbox_wake_decoder(void);
extern bool outbox_ring_put(const char *data, uint32 len);
extern bool outbox_ring_get(StringInfo buf);
extern void outbox_count(OutboxCounter counter, uint64 n);
extern void outbox_set_state(OutboxWorkerState *worker, const char *fmt,...) pg_attribute_printf(2, 3);

/* ---- message.c ---- */

/*
 * A message as the dispatcher handles it.  The string fields point into
 * "data", one palloc'd block, so a message is freed with one pfree of each.
 */
typedef struct OutboxMessage
{
	int64		id;
	XLogRecPtr	commit_lsn;		/* from WAL; InvalidXLogRecPtr from a scan */
	Oid			relid;			/* the outbox.messages the row belongs to */
	TransactionId xid;			/* from WAL, until seen committed; else invalid */
	int32		attempts;		/* HTTP requests already made */
	int32		probe_failures; /* ... of which failed while the circuit was open */
	char	   *target;
	char	   *message_id;		/* may be NULL */
	char	   *message_type;	/* may be NULL */
	char	   *key;			/* may be NULL */
	Jsonb	   *headers;		/* may be NULL */
	Jsonb	   *payload;
	char	   *data;
} OutboxMessage;

extern void outbox_message_encode(StringInfo out, const OutboxMessage *msg);
extern XLogRecPtr outbox_message_commit_lsn(const char *buf, uint32 len);
extern OutboxMessage *outbox_message_decode(const char *buf, uint32 len);
extern void outbox_message_free(OutboxMessage *msg);
extern char *outbox_webhook_id(int64 id, const char *message_id);
extern uint64 outbox_key_hash(const char *target, const char *key);

typedef void (*OutboxHeaderFn) (const char *name, int name_len,
								const JsonbValue *value, void *arg);
extern void outbox_headers_walk(Jsonb *headers, OutboxHeaderFn fn, void *arg);
extern const char *outbox_header_problem(const char *name, int name_len,
										 const char *value, int value_len);
extern bool outbox_header_reserved(const char *name, int name_len);
extern char *outbox_reserved_headers(void);

/* ---- http.c ---- */

struct curl_slist;

typedef struct OutboxHttpResult
{
	void	   *owner;
	long		status;			/* HTTP status, 0 if no response */
	bool		transport_error;
	char		error[256];		/* curl error or HTTP status line */
	int64		retry_after_ms; /* Retry-After, -1 if none */
	bool		abort_message;	/* webhook-delivery: abort-message */
} OutboxHttpResult;

typedef void (*OutboxHttpDone) (OutboxHttpResult *result);

extern void outbox_http_init(void);
extern void outbox_http_start(void *owner, const char *url,
							  const char *body, size_t body_len,
							  struct curl_slist *headers);
extern int	outbox_http_inflight(void);
extern void outbox_http_wait(long timeout_ms, uint32 wait_event_info);
extern int	outbox_http_collect(OutboxHttpDone done);

/* ---- policy.c ---- */

/*
 * A target as the dispatcher sees it: its queue of messages ready to send,
 * its share of the in-flight requests, and its circuit breaker.
 */
typedef struct OutboxTarget
{
	char		name[OUTBOX_TARGET_NAME_MAXLEN + 1];
	dlist_head	queue;			/* messages ready to send */
	int			queued;
	bool		overflowed;		/* messages were left in the table */
	int			inflight;
	int			concurrency;	/* current limit, lowered when throttled */
	int			failures;		/* consecutive failed attempts */
	bool		open;			/* circuit open: only probes are sent */
	bool		probing;		/* a probe is in flight */
	int			probes;			/* failed probes since the circuit opened */
	TimestampTz opened_at;
	TimestampTz probe_at;
	TimestampTz last_success_at;
	TimestampTz last_failure_at;
	char		last_error[256];
} OutboxTarget;

/* The states of a message, as outbox.messages.state names them */
typedef enum OutboxState
{
	OUTBOX_PENDING,
	OUTBOX_DELIVERED,
	OUTBOX_DEAD
} OutboxState;

extern const char *outbox_state_name(OutboxState state);

/* What an attempt means for its message */
typedef struct OutboxVerdict
{
	OutboxState state;
	int32		attempts;		/* attempts to record */
	int32		probe_failures; /* ... of which failed probes */
	TimestampTz next_attempt_at;	/* 0: unchanged */
} OutboxVerdict;

extern void outbox_targets_sync(void (*forget_queue) (OutboxTarget *target));
extern OutboxTarget *outbox_target_get(const char *name);
extern List *outbox_target_all(void);
extern int	outbox_target_limit(OutboxTarget *target);
extern TimestampTz outbox_retry_time(TimestampTz now, int attempts);
extern void outbox_target_sent(OutboxTarget *target, bool probe);
extern void outbox_judge(OutboxTarget *target, int32 attempts,
						 int32 probe_failures, bool probe,
						 OutboxHttpResult *result, TimestampTz now,
						 OutboxVerdict *verdict);
extern void outbox_targets_publish(void);

/* ---- ordering.c ---- */

/*
 * A query for the first pending message of the key (target, key), the only
 * one of its key that may be sent: among the pending messages of a key,
 * those already attempted come first (they were sent first), then the
 * others by id.  target and key are SQL expressions, usually of an outer
 * query; unqualified names refer to the message looked up.
 */
#define OUTBOX_KEY_HEAD(columns, target, key) \
	"SELECT " columns " FROM outbox.messages" \
	" WHERE state = 'pending' AND target = " target " AND key = " key \
	" ORDER BY attempts = 0, id LIMIT 1"

/* A (target, key) whose next message is to be fetched */
typedef struct OutboxKey
{
	char	   *target;
	char	   *key;
} OutboxKey;

extern bool outbox_key_busy(const char *target, const char *key);
extern void outbox_key_started(const char *target, const char *key);
extern void outbox_key_wait(const char *target, const char *key);
extern bool outbox_key_finished(const char *target, const char *key);
extern void outbox_key_lookup(const char *target, const char *key,
							  TimestampTz at);
extern List *outbox_keys_due(TimestampTz now);
extern bool outbox_keys_next_lookup(TimestampTz *at);
extern void outbox_keys_looked_up(void);
extern void outbox_keys_forget(void);

/* ---- signature.c ---- */

extern char *outbox_signature(List *keys, const char *webhook_id,
							  const char *timestamp, const char *body,
							  size_t body_len);

/* ---- sql.c ---- */

typedef struct _SPI_plan *SPIPlanPtr;
extern void outbox_execute(SPIPlanPtr *plan, const char *sql, int nargs,
						   Oid *argtypes, Datum *values, const char *nulls,
						   bool read_only, long count, int expected);
extern void outbox_forget_plan(SPIPlanPtr *plan);

/* ---- decoder.c / dispatcher.c ---- */

/* What the dispatcher keeps for its lifetime; the parent of its contexts */
extern MemoryContext outbox_dispatcher_context;

extern PGDLLEXPORT void outbox_decoder_main(Datum main_arg);
extern PGDLLEXPORT void outbox_dispatcher_main(Datum main_arg);

#endif							/* OUTBOX_H */
