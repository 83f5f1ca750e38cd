/*-------------------------------------------------------------------------
 *
 * tracking.h
 *	  The messages the dispatcher holds, by id (see tracking.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_TRACKING_H
#define OUTBOX_TRACKING_H

#include "outbox.h"

typedef enum TrackState
{
	TRACK_QUEUED,
	TRACK_INFLIGHT,
	TRACK_DONE
} TrackState;

typedef struct Tracked
{
	int64		id;
	TrackState	state;
	bool		orphaned;		/* INFLIGHT, but forgotten by forget_all() */
	bool		probe;			/* INFLIGHT as the probe of an open circuit */
	bool		gate_ok;		/* QUEUED with a key: first in its key */
	TimestampTz started_at;		/* INFLIGHT */
	XLogRecPtr	forget_after;	/* DONE: keep until the decoder passed this */
	OutboxTarget *target;		/* QUEUED and INFLIGHT */
	OutboxMessage *msg;			/* QUEUED and INFLIGHT */
	char	   *body;			/* INFLIGHT */
	dlist_node	node;			/* in its target's queue, or in done_list */
} Tracked;

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
extern void outbox_tracked_forget_queue(OutboxTarget *target);
extern void outbox_tracked_forget_all(void);

#endif							/* OUTBOX_TRACKING_H */
