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
 * id.  Rows of transactions that have not committed are invisible, so among
 * transactions that commit at different times this is commit order; within
 * a transaction it is the order of the calls.
 *
 * A message refused by either check is dropped from memory and waits in the
 * table.  Its key is marked, and when the message in front of it finishes
 * the dispatcher scans again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "outbox.h"

typedef struct KeyState
{
	uint64		hash;			/* hash key: of target and key */
	bool		inflight;
	bool		waiting;		/* a later message of the key was refused */
} KeyState;

static HTAB *keys = NULL;
static SPIPlanPtr gate_plan = NULL;

/*
 * Two keys may share a hash: then they are ordered together, which delays
 * but never reorders.
 */
static uint64
key_hash(const char *target, const char *key)
{
	uint64		h = hash_bytes_extended((const unsigned char *) target,
										strlen(target), 0);

	return hash_bytes_extended((const unsigned char *) key, strlen(key), h);
}

static KeyState *
key_state(const char *target, const char *key, bool create)
{
	uint64		hash = key_hash(target, key);
	bool		found;
	KeyState   *ks;

	if (keys == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(KeyState);
		ctl.hcxt = TopMemoryContext;
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
	key_state(target, key, true)->inflight = true;
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
	hash_search(keys, &ks->hash, HASH_REMOVE, NULL);
	return waiting;
}

/* Forget every key and the saved plan (the extension was recreated) */
void
outbox_keys_forget(void)
{
	if (keys)
		hash_destroy(keys);
	keys = NULL;
	outbox_forget_plan(&gate_plan);
}

/*
 * Which of these keyed messages may be sent now, as far as the table says?
 * Runs inside the caller's transaction with SPI connected; fills ok[].
 */
void
outbox_keys_gate(int64 *ids, int n, bool *ok)
{
	Oid			types[] = {INT8ARRAYOID};
	Datum		values[1];
	Datum	   *elems = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
	{
		elems[i] = Int64GetDatum(ids[i]);
		ok[i] = false;
	}
	values[0] = PointerGetDatum(construct_array(elems, n, INT8OID, 8, true,
												TYPALIGN_DOUBLE));
	outbox_execute(&gate_plan,
				   "SELECT m.id FROM outbox.messages m"
				   " WHERE m.id = ANY ($1) AND m.state NOT IN ('delivered', 'dead')"
				   "   AND NOT EXISTS ("
				   "     SELECT FROM outbox.messages p"
				   "      WHERE p.target = m.target AND p.key = m.key"
				   "        AND p.state = 'pending' AND p.id <> m.id"
				   "        AND (p.attempts = 0, p.id) < (m.attempts = 0, m.id))",
				   lengthof(types), types, values, NULL, true, 0, SPI_OK_SELECT);

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
													 SPI_tuptable->tupdesc,
													 1, &isnull));

		for (int i = 0; i < n; i++)
			if (ids[i] == id)
				ok[i] = true;
	}
}
