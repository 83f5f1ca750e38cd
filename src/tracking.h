/*-------------------------------------------------------------------------
 *
 * tracking.h
 *	  The messages the dispatcher holds, by id (see tracking.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_TRACKING_H
#define OUTBOX_TRACKING_H

#include "access/xlogdefs.h"
#include "lib/ilist.h"
#include "utils/timestamp.h"

#include "message.h"
#include "outbox.h"
#include "policy.h"

typedef enum TrackState
{
	OUTBOX_TRACK_QUEUED,
	OUTBOX_TRACK_INFLIGHT,
	OUTBOX_TRACK_DONE
} TrackState;

typedef struct Tracked
{
	int64		id;
	TrackState	state;
	bool		orphaned;		/* INFLIGHT, but forgotten by forget_all() */
	bool		probe;			/* INFLIGHT as the probe of an open circuit */
	bool		gate_ok;		/* QUEUED with a key: first in its key */
	XLogRecPtr	durable_at;		/* found first in its key: send once WAL is
								 * flushed to here (see await_durable()) */
	TimestampTz started_at;		/* INFLIGHT */
	XLogRecPtr	forget_after;	/* DONE: keep until the decoder passed this */
	OutboxTarget *target;		/* QUEUED and INFLIGHT */
	struct TargetQueue *queue;	/* QUEUED: the queue it is in */
	OutboxMessage *msg;			/* QUEUED and INFLIGHT */
	char	   *body;			/* INFLIGHT */
	dlist_node	node;			/* in its target's queue, or in done_list */
} Tracked;

/*
 * A target's messages ready to send (QUEUED entries), in the order they
 * were queued.  The dispatcher's, not the failure policy's: a target's
 * policy state (OutboxTarget) lives on when its queue is dropped.
 */
typedef struct TargetQueue
{
	char		name[OUTBOX_TARGET_NAME_MAXLEN + 1];	/* hash key */
	dlist_head	messages;
	int			length;
	bool		overflowed;		/* messages were left in the table */
} TargetQueue;

/* Where the entries, their messages and their request bodies live */
extern MemoryContext outbox_message_context;

extern void outbox_tracking_init(void);
extern Tracked *outbox_tracked_find(int64 id);
extern Tracked *outbox_tracked_enter(OutboxMessage *msg,
									 XLogRecPtr forget_after,
									 OutboxTarget *target, Tracked *t);
extern void outbox_tracked_free(Tracked *t);
extern void outbox_untrack(Tracked *t);
extern void outbox_tracked_finished(Tracked *t, XLogRecPtr ring_covers);
extern void outbox_tracked_sweep_done(XLogRecPtr ring_covers);
extern void outbox_tracked_forget_all(void);

extern TargetQueue *outbox_queue_of(const char *target);
extern void outbox_queue_push(TargetQueue *queue, Tracked *t);
extern Tracked *outbox_queue_head(TargetQueue *queue);
extern void outbox_queue_remove(Tracked *t);
extern void outbox_queue_forget(TargetQueue *queue);
extern void outbox_queues_sync(void);
extern Size outbox_queued_bytes(void);

#endif							/* OUTBOX_TRACKING_H */
