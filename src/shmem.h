/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Shared state of each database's workers (see shmem.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SHMEM_H
#define OUTBOX_SHMEM_H

#include "access/xlogdefs.h"
#include "lib/stringinfo.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/timestamp.h"
#include "outbox.h"

/* Size of the shared ring that carries decoded messages to the dispatcher */
#define OUTBOX_RING_SIZE		(8 * 1024 * 1024)

/* Live counters, shown by outbox_stats() */
typedef enum OutboxCounter
{
	OUTBOX_STAT_REQUESTS,				/* HTTP requests sent */
	OUTBOX_STAT_2XX,
	OUTBOX_STAT_3XX,
	OUTBOX_STAT_4XX,
	OUTBOX_STAT_5XX,
	OUTBOX_STAT_TRANSPORT_ERRORS,		/* no HTTP response, timeouts included */
	OUTBOX_STAT_TIMEOUTS,
	OUTBOX_STAT_BYTES_SENT,			/* request bodies */
	OUTBOX_STAT_DECODED,				/* messages decoded from WAL */
	OUTBOX_STAT_SCANNED,				/* messages found by table scans */
	OUTBOX_STAT_DECODER_STARTS,
	OUTBOX_STAT_DISPATCHER_STARTS,
	OUTBOX_NUM_COUNTERS
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
	pg_atomic_uint64 counters[OUTBOX_NUM_COUNTERS];
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

#endif							/* OUTBOX_SHMEM_H */
