/*-------------------------------------------------------------------------
 *
 * message.h
 *	  A decoded message: wire format, webhook ids, headers (see message.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_MESSAGE_H
#define OUTBOX_MESSAGE_H

#include "access/xlogdefs.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

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
	uint32		size;			/* bytes of "data" */
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

#endif							/* OUTBOX_MESSAGE_H */
