/*-------------------------------------------------------------------------
 *
 * store.h
 *	  The dispatcher's queries on outbox.messages and outbox.attempts (see
 *	  store.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_STORE_H
#define OUTBOX_STORE_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "message.h"
#include "policy.h"

/*
 * A row of outbox.messages as a query returned it: what the dispatcher
 * decides by, and what outbox_store_message() builds the message from.
 * Valid until the caller's transaction ends.
 */
typedef struct MessageRow
{
	int64		id;
	char	   *target;
	char	   *key;			/* NULL: none */
	int32		attempts;
	TimestampTz next_attempt_at;
	bool		due;			/* next_attempt_at <= now() */
	HeapTuple	tuple;			/* for outbox_store_message() */
	TupleDesc	desc;
} MessageRow;

/* The outcome of one attempt, as recorded */
typedef struct Outcome
{
	int64		id;
	OutboxState state;
	int32		attempts;
	int32		probe_failures;
	int32		status;			/* 0: none */
	char	   *error;			/* NULL: none */
	TimestampTz delivered_at;	/* 0: not delivered */
	TimestampTz next_attempt_at;	/* 0: unchanged */
	int32		attempt;		/* which attempt this was, 1-based */
	bool		keyed;			/* the message has a key */
	TimestampTz started_at;
	TimestampTz finished_at;
} Outcome;

/* A keyed message for outbox_store_gate() to check */
typedef struct GateItem
{
	int64		id;
	const char *target;
	const char *key;
} GateItem;

extern void outbox_store_reset(Oid messages_relid);
extern OutboxMessage *outbox_store_message(const MessageRow *row,
										   MemoryContext cxt);
extern int	outbox_store_scan(List *targets, TimestampTz after_time,
							  int64 after_id, int limit, MessageRow **rows);
extern bool outbox_store_next_due(List *targets, TimestampTz *at);
extern int	outbox_store_key_heads(const int64 *ids, int n, MessageRow **rows);
extern bool outbox_store_probe(const char *target, const int64 *skip,
							   int nskip, MessageRow *row);
extern void outbox_store_gate(const GateItem *items, int n, bool *ok);
extern void outbox_store_outcomes(const Outcome *outcomes, int n);
extern bool outbox_store_prune(int retention);

#endif							/* OUTBOX_STORE_H */
