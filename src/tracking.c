/*-------------------------------------------------------------------------
 *
 * tracking.c
 *	  The messages the dispatcher holds, tracked by id.
 *
 * Every message the dispatcher holds is tracked by id in one hash table:
 * QUEUED (waiting for a free request slot), INFLIGHT, or DONE.  A scan skips
 * messages that are queued or in flight.  The ring skips every tracked
 * message, including DONE ones: a message found by a scan may still arrive
 * through the ring afterwards, so a scanned message stays DONE until the
 * decoder has passed the WAL position of that scan; then no copy of it can
 * still be on its way and the entry is forgotten.
 *
 * Entries ready to send are also in their target's queue (TargetQueue), a
 * list in the order they were queued; a queue is found by target name.
 *
 * An entry, its message and its request body live in
 * outbox_message_context, and are freed together when the entry is
 * forgotten.  What to do with a message (queue it, send it, leave it in the
 * table) is the dispatcher's business; this file only keeps the entries.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "dispatcher.h"
#include "message.h"
#include "policy.h"
#include "tracking.h"

/* Hash entry: Tracked lives apart, since curl holds pointers to it */
typedef struct TrackedEntry
{
	int64		id;				/* hash key */
	Tracked    *t;
} TrackedEntry;

MemoryContext outbox_message_context = NULL;
static HTAB *tracked;
static HTAB *queues;			/* TargetQueue by target name */
static Size queued_bytes = 0;	/* of the messages in all queues */
static dlist_head done_list = DLIST_STATIC_INIT(done_list);

/* Make the hash table and the context of the messages, at worker start */
void
outbox_tracking_init(void)
{
	HASHCTL		ctl;

	outbox_message_context = AllocSetContextCreate(outbox_dispatcher_context,
												   "outbox messages",
												   ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(TrackedEntry);
	ctl.hcxt = outbox_dispatcher_context;
	tracked = hash_create("outbox tracked messages", 4096, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.keysize = OUTBOX_TARGET_NAME_MAXLEN + 1;
	ctl.entrysize = sizeof(TargetQueue);
	queues = hash_create("outbox target queues", OUTBOX_MAX_TARGETS, &ctl,
						 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

Tracked *
outbox_tracked_find(int64 id)
{
	TrackedEntry *entry = hash_search(tracked, &id, HASH_FIND, NULL);

	return entry ? entry->t : NULL;
}

/* Free an entry no longer in the hash table */
void
outbox_tracked_free(Tracked *t)
{
	if (t->msg)
		outbox_message_free(t->msg);
	if (t->body)
		pfree(t->body);
	pfree(t);
}

/* Forget an entry; the caller has taken it off its list */
void
outbox_untrack(Tracked *t)
{
	hash_search(tracked, &t->id, HASH_REMOVE, NULL);
	outbox_tracked_free(t);
}

/* The entry of a message about to be queued or sent; t: its DONE entry */
Tracked *
outbox_tracked_enter(OutboxMessage *msg, XLogRecPtr forget_after,
					 OutboxTarget *target, Tracked *t)
{
	if (t == NULL)
	{
		TrackedEntry *entry = hash_search(tracked, &msg->id, HASH_ENTER, NULL);

		t = MemoryContextAllocZero(outbox_message_context, sizeof(Tracked));
		t->id = msg->id;
		entry->t = t;
	}
	else
		dlist_delete(&t->node); /* from done_list */
	t->forget_after = forget_after;
	t->target = target;
	t->msg = msg;
	t->body = NULL;
	t->probe = false;
	t->gate_ok = false;
	t->durable_at = InvalidXLogRecPtr;
	t->queue = NULL;
	return t;
}

/*
 * The request of t finished and its outcome is held, or t was let go
 * unsent: free its message and body, and keep the entry as DONE for as
 * long as the ring may still bring a copy of the message.
 */
void
outbox_tracked_finished(Tracked *t, XLogRecPtr ring_covers)
{
	outbox_message_free(t->msg);
	if (t->body)
		pfree(t->body);
	t->msg = NULL;
	t->body = NULL;
	if (t->forget_after <= ring_covers)
		outbox_untrack(t);
	else
	{
		t->state = OUTBOX_TRACK_DONE;
		dlist_push_tail(&done_list, &t->node);
	}
}

/*
 * Forget DONE messages the ring can no longer deliver again.  The list is
 * in the order the messages finished, which follows the order of the scans
 * that found them, so the sweep stops at the first one still needed: it
 * costs nothing per turn of the loop while a backlog drains.
 */
void
outbox_tracked_sweep_done(XLogRecPtr ring_covers)
{
	while (!dlist_is_empty(&done_list))
	{
		Tracked    *t = dlist_head_element(Tracked, node, &done_list);

		if (t->forget_after > ring_covers)
			break;
		dlist_delete(&t->node);
		outbox_untrack(t);
	}
}

/*
 * Forget every entry: the extension was dropped or recreated, so ids no
 * longer mean what they meant.  Requests in flight finish, and are ignored.
 */
void
outbox_tracked_forget_all(void)
{
	HASH_SEQ_STATUS status;
	TrackedEntry *entry;

	hash_seq_init(&status, tracked);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		Tracked    *t = entry->t;

		hash_search(tracked, &entry->id, HASH_REMOVE, NULL);
		if (t->state == OUTBOX_TRACK_INFLIGHT)
			t->orphaned = true; /* freed when its request completes */
		else
		{
			if (t->state == OUTBOX_TRACK_QUEUED)
				outbox_queue_remove(t);
			outbox_tracked_free(t);
		}
	}
	dlist_init(&done_list);
}

/* The queue of the target of that name, made empty the first time */
TargetQueue *
outbox_queue_of(const char *target)
{
	bool		found;
	TargetQueue *queue = hash_search(queues, target, HASH_ENTER, &found);

	if (!found)
	{
		dlist_init(&queue->messages);
		queue->length = 0;
		queue->overflowed = false;
	}
	return queue;
}

void
outbox_queue_push(TargetQueue *queue, Tracked *t)
{
	Assert(t->state == OUTBOX_TRACK_QUEUED);
	t->queue = queue;
	dlist_push_tail(&queue->messages, &t->node);
	queue->length++;
	queued_bytes += t->msg->size;
}

/* The entry queued first, or NULL if the queue is empty */
Tracked *
outbox_queue_head(TargetQueue *queue)
{
	if (dlist_is_empty(&queue->messages))
		return NULL;
	return dlist_head_element(Tracked, node, &queue->messages);
}

/* Take a QUEUED entry off its queue, to send it or to forget it */
void
outbox_queue_remove(Tracked *t)
{
	Assert(t->state == OUTBOX_TRACK_QUEUED && t->queue != NULL);
	dlist_delete(&t->node);
	t->queue->length--;
	t->queue = NULL;
	queued_bytes -= t->msg->size;
}

/* The bytes of the messages waiting in all queues */
Size
outbox_queued_bytes(void)
{
	return queued_bytes;
}

/* Drop a queue and forget its entries: their messages wait in the table */
void
outbox_queue_forget(TargetQueue *queue)
{
	while (!dlist_is_empty(&queue->messages))
	{
		Tracked    *t = dlist_head_element(Tracked, node, &queue->messages);

		outbox_queue_remove(t);
		outbox_untrack(t);
	}
	queue->overflowed = false;
}

/*
 * After a reload: drop the queues of targets outbox.targets no longer
 * lists (their requests in flight finish; see outbox_targets_sync()).
 */
void
outbox_queues_sync(void)
{
	HASH_SEQ_STATUS status;
	TargetQueue *queue;

	hash_seq_init(&status, queues);
	while ((queue = hash_seq_search(&status)) != NULL)
		if (queue->length > 0 && outbox_target_get(queue->name) == NULL)
			outbox_queue_forget(queue);
}
