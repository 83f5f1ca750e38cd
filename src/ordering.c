/*-------------------------------------------------------------------------
 *
 * ordering.c
 *	  Per-key order: messages with the same (target, key) are delivered one
 *	  at a time, in order; message n+1 is not sent before message n got a
 *	  2xx or is dead.
 *
 * Two checks together enforce it.  In memory, a key with a message in
 * flight admits no other.  In the table, a keyed message may go only if no
 * other pending message of its key comes before it, where messages that were
 * already attempted come first (they were sent first), then the others by
 * id (OUTBOX_KEY_HEAD).  Rows of transactions that have not committed are
 * invisible, so among transactions that commit at different times this is
 * commit order; within a transaction it is the order of the calls.
 *
 * A message refused by either check is dropped from memory and waits in the
 * table, and its key is marked.  When the message in front of it is
 * delivered or dead, a marked key is put on a list of keys to look up, by
 * the id of that message (a fixed size, however long the key): the
 * dispatcher fetches the first pending message of each listed key directly
 * (one index probe per key), rather than scanning the table again, which
 * would read every waiting message again for each message delivered.  It
 * looks up the keys that finish together in one transaction, which also
 * records their outcomes (see key_batch_at in dispatcher.c).  The key of a
 * message fetched so is marked again, as more may wait behind it.
 * When the message in front fails and will be retried, it is still first:
 * the mark stays, and its key is looked up when the retry is due, so that
 * the retry does not wait behind newer messages for a scan to reach it,
 * holding up its key meanwhile.
 *
 * This file keeps the state of keys only.  The table check is a query in
 * store.c (outbox_store_gate()); the walk of the queues that decides which
 * queued messages it checks, and the fetching of listed keys, are the
 * dispatcher's (gate_keyed_messages() and fetch_key_heads()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/pairingheap.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "dispatcher.h"
#include "message.h"
#include "ordering.h"
#include "store.h"

typedef struct KeyState
{
	uint64		hash;			/* hash key: of target and key */
	bool		inflight;
	bool		waiting;		/* a later message of the key was refused */
} KeyState;

static HTAB *keys = NULL;
static int	keys_inflight = 0;

/*
 * A key to look up at a given time, by the id of one of its messages: the
 * one whose outcome lets the next go, or a retry.  Ids, not key strings: a
 * backlog of failed keyed messages makes many of these, and a key may be
 * long.
 */
typedef struct KeyLookup
{
	pairingheap_node node;
	TimestampTz at;
	int64		id;
} KeyLookup;

/* Keys to look up, the earliest on top */
static pairingheap *lookups = NULL;

/* Keys handed to the dispatcher and not looked up yet */
static int64 taken[OUTBOX_KEY_LOOKUP_BATCH];
static int	n_taken = 0;

static KeyState *
key_state(const char *target, const char *key, bool create)
{
	uint64		hash = outbox_key_hash(target, key);
	bool		found;
	KeyState   *ks;

	if (keys == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(KeyState);
		ctl.hcxt = outbox_dispatcher_context;
		keys = hash_create("outbox keys", 1024, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	ks = hash_search(keys, &hash, create ? HASH_ENTER : HASH_FIND, &found);
	if (create && !found)
	{
		ks->inflight = false;
		ks->waiting = false;
	}
	return ks;
}

bool
outbox_key_busy(const char *target, const char *key)
{
	KeyState   *ks = key_state(target, key, false);

	return ks != NULL && ks->inflight;
}

void
outbox_key_started(const char *target, const char *key)
{
	KeyState   *ks = key_state(target, key, true);

	if (!ks->inflight)
		keys_inflight++;
	ks->inflight = true;
}

/* How many keys have a message in flight */
int
outbox_keys_inflight(void)
{
	return keys_inflight;
}

void
outbox_key_wait(const char *target, const char *key)
{
	key_state(target, key, true)->waiting = true;
}

/*
 * The message of this key in flight finished.  Returns true if a later
 * message of the key was refused meanwhile: it is time to look for it.
 */
bool
outbox_key_finished(const char *target, const char *key)
{
	KeyState   *ks = key_state(target, key, false);
	bool		waiting;

	if (ks == NULL)
		return false;
	waiting = ks->waiting;
	if (ks->inflight)
		keys_inflight--;
	hash_search(keys, &ks->hash, HASH_REMOVE, NULL);
	return waiting;
}

static int
lookup_cmp(const pairingheap_node *a, const pairingheap_node *b, void *arg)
{
	const KeyLookup *la = pairingheap_const_container(KeyLookup, node, a);
	const KeyLookup *lb = pairingheap_const_container(KeyLookup, node, b);

	/* The heap keeps the greatest on top: the earliest is the greatest */
	if (la->at < lb->at)
		return 1;
	if (la->at > lb->at)
		return -1;
	return 0;
}

/*
 * Ask for the first pending message of the key of message id to be fetched
 * at time "at" (0: at once).  A key may be listed twice; the dispatcher
 * ignores a message it already holds.
 */
void
outbox_key_lookup(int64 id, TimestampTz at)
{
	KeyLookup  *l = MemoryContextAlloc(outbox_dispatcher_context,
									   sizeof(KeyLookup));

	l->at = at;
	l->id = id;
	if (lookups == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(outbox_dispatcher_context);

		lookups = pairingheap_allocate(lookup_cmp, NULL);
		MemoryContextSwitchTo(oldcxt);
	}
	pairingheap_add(lookups, &l->node);
}

/*
 * The keys to look up now, as ids of their messages (see
 * outbox_key_lookup()): those taken before but not looked up first, then
 * those due, at most OUTBOX_KEY_LOOKUP_BATCH in all (more are due at once
 * after a backlog of keyed messages fails: they wait for the next turn, so
 * that one lookup fetches a bounded number of rows).  Call
 * outbox_keys_looked_up() once they are, else they come back next time.
 * Returns how many; *ids is valid until then.
 */
int
outbox_keys_due(TimestampTz now, const int64 **ids)
{
	while (lookups != NULL && !pairingheap_is_empty(lookups) &&
		   n_taken < lengthof(taken))
	{
		KeyLookup  *l = pairingheap_container(KeyLookup, node,
											  pairingheap_first(lookups));

		if (l->at > now)
			break;
		pairingheap_remove_first(lookups);
		taken[n_taken++] = l->id;
		pfree(l);
	}
	*ids = taken;
	return n_taken;
}

/* When the next key is to be looked up; false if none is */
bool
outbox_keys_next_lookup(TimestampTz *at)
{
	if (n_taken > 0)
		*at = 0;
	else if (lookups != NULL && !pairingheap_is_empty(lookups))
		*at = pairingheap_container(KeyLookup, node,
									pairingheap_first(lookups))->at;
	else
		return false;
	return true;
}

/* The keys returned by outbox_keys_due() were looked up */
void
outbox_keys_looked_up(void)
{
	n_taken = 0;
}

/* Forget every key (the extension was recreated) */
void
outbox_keys_forget(void)
{
	if (keys)
		hash_destroy(keys);
	keys = NULL;
	keys_inflight = 0;
	outbox_keys_looked_up();
	while (lookups != NULL && !pairingheap_is_empty(lookups))
		pfree(pairingheap_container(KeyLookup, node,
									pairingheap_remove_first(lookups)));
}
