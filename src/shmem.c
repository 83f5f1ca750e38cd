/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared state of the outbox workers and the decoded-message ring.
 *
 * The ring has exactly one producer (the decoder) and one consumer (the
 * dispatcher), as shm_mq has: the head and tail counters are atomics that
 * only their own side writes, and barriers order the counters against the
 * bytes, so neither side ever waits for the other.  Each side only touches
 * the part of the ring the other side has handed over.
 *
 * Losing the ring's contents (overflow, crash) loses no message: the table is
 * the truth, and whoever drops a message asks the dispatcher for a scan.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "databases.h"
#include "shmem.h"

/* One OutboxShared per database served, in outbox_database_name() order */
static OutboxShared *outbox_all = NULL;

/* The state of this process's database; NULL if the workers do not serve it */
OutboxShared *outbox_shared = NULL;
static bool outbox_shared_looked_up = false;

static Size
outbox_shmem_size(void)
{
	return mul_size(outbox_database_count(), MAXALIGN(sizeof(OutboxShared)));
}

void
outbox_shmem_request(void)
{
	RequestAddinShmemSpace(outbox_shmem_size());
	RequestNamedLWLockTranche("outbox", outbox_database_count());
}

void
outbox_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	outbox_all = ShmemInitStruct("outbox", outbox_shmem_size(), &found);
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche("outbox");

		for (int i = 0; i < outbox_database_count(); i++)
		{
			OutboxShared *sh = (OutboxShared *)
				((char *) outbox_all + i * MAXALIGN(sizeof(OutboxShared)));

			SpinLockInit(&sh->mutex);
			strlcpy(sh->database, outbox_database_name(i), NAMEDATALEN);
			strlcpy(sh->slot_name, outbox_database_slot(i), NAMEDATALEN);
			strlcpy(sh->previous_slot_name, outbox_database_previous_slot(i),
					NAMEDATALEN);
			if (outbox_database_count() == 1)
				strlcpy(sh->webhook_id_prefix, "msg_", sizeof(sh->webhook_id_prefix));
			else
				snprintf(sh->webhook_id_prefix, sizeof(sh->webhook_id_prefix),
						 "msg_%s_", outbox_database_tag(i));
			sh->decoder_latch = NULL;
			sh->dispatcher_latch = NULL;
			sh->extension = OUTBOX_EXTENSION_UNKNOWN;
			sh->decoder_streaming = false;
			sh->scan_requested = true;
			sh->decoded_upto = InvalidXLogRecPtr;
			for (int c = 0; c < OUTBOX_NUM_COUNTERS; c++)
				pg_atomic_init_u64(&sh->counters[c], 0);
			sh->stats_reset = GetCurrentTimestamp();
			memset(&sh->decoder, 0, sizeof(OutboxWorkerState));
			memset(&sh->dispatcher, 0, sizeof(OutboxWorkerState));
			sh->status_lock = &locks[i].lock;
			sh->n_targets = 0;
			pg_atomic_init_u64(&sh->ring_head, 0);
			pg_atomic_init_u64(&sh->ring_tail, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * A worker serves the database at "index" in the list.
 */
void
outbox_shmem_select(int index)
{
	Assert(outbox_all != NULL && index >= 0 && index < outbox_database_count());
	outbox_shared = (OutboxShared *)
		((char *) outbox_all + index * MAXALIGN(sizeof(OutboxShared)));
	outbox_shared_looked_up = true;
}

/*
 * The shared state of the current database, for backends; NULL when the
 * library is not preloaded or the workers do not serve this database.  The
 * first call must be made inside a transaction (it looks up the database's
 * name); the answer is kept, since a backend never changes database.
 */
OutboxShared *
outbox_shmem_lookup(void)
{
	if (!outbox_shared_looked_up && outbox_all != NULL &&
		OidIsValid(MyDatabaseId))
	{
		char	   *name = get_database_name(MyDatabaseId);

		for (int i = 0; name != NULL && i < outbox_database_count(); i++)
		{
			if (strcmp(outbox_database_name(i), name) == 0)
				outbox_shmem_select(i);
		}
		outbox_shared_looked_up = true;
	}
	return outbox_shared;
}

/*
 * Wake the dispatcher; with "scan", ask it to look for due rows in the table.
 */
void
outbox_wake_dispatcher(bool scan)
{
	Latch	   *latch;

	if (outbox_shared == NULL)
		return;
	SpinLockAcquire(&outbox_shared->mutex);
	if (scan)
		outbox_shared->scan_requested = true;
	latch = outbox_shared->dispatcher_latch;
	SpinLockRelease(&outbox_shared->mutex);
	if (latch)
		SetLatch(latch);
}

/*
 * Wake the decoder after a commit that queued messages through WAL.  When no
 * decoder is streaming (wal_level below logical, slot being created, worker
 * restarting), the dispatcher finds those messages by a table scan instead.
 */
void
outbox_wake_decoder(void)
{
	Latch	   *latch = NULL;

	if (outbox_shared == NULL)
		return;
	SpinLockAcquire(&outbox_shared->mutex);
	if (outbox_shared->decoder_streaming)
		latch = outbox_shared->decoder_latch;
	SpinLockRelease(&outbox_shared->mutex);
	if (latch)
		SetLatch(latch);
	else
		outbox_wake_dispatcher(true);
}

static void
ring_copy_in(uint64 pos, const char *src, uint32 len)
{
	uint32		off = pos % OUTBOX_RING_SIZE;
	uint32		first = Min(len, OUTBOX_RING_SIZE - off);

	memcpy(outbox_shared->ring + off, src, first);
	if (first < len)
		memcpy(outbox_shared->ring, src + first, len - first);
}

static void
ring_copy_out(uint64 pos, char *dst, uint32 len)
{
	uint32		off = pos % OUTBOX_RING_SIZE;
	uint32		first = Min(len, OUTBOX_RING_SIZE - off);

	memcpy(dst, outbox_shared->ring + off, first);
	if (first < len)
		memcpy(dst + first, outbox_shared->ring, len - first);
}

/*
 * Append one record; false if it does not fit (the caller then requests a
 * scan so that the table supplies what the ring could not carry).
 */
bool
outbox_ring_put(const char *data, uint32 len)
{
	uint64		head,
				tail;

	head = pg_atomic_read_u64(&outbox_shared->ring_head);
	tail = pg_atomic_read_u64(&outbox_shared->ring_tail);
	if (head - tail + sizeof(uint32) + len > OUTBOX_RING_SIZE)
		return false;

	/*
	 * Read the tail before overwriting the space it freed: pairs with the
	 * read barrier the dispatcher issues before it moves the tail.
	 */
	pg_memory_barrier();
	ring_copy_in(head, (const char *) &len, sizeof(uint32));
	ring_copy_in(head + sizeof(uint32), data, len);

	/* The record is in place before the head says so */
	pg_write_barrier();
	pg_atomic_write_u64(&outbox_shared->ring_head, head + sizeof(uint32) + len);
	return true;
}

/*
 * Take the oldest record into buf (reset first); false if the ring is empty.
 */
bool
outbox_ring_get(StringInfo buf)
{
	uint64		head,
				tail;
	uint32		len;

	tail = pg_atomic_read_u64(&outbox_shared->ring_tail);
	head = pg_atomic_read_u64(&outbox_shared->ring_head);
	if (head == tail)
		return false;

	/* Read the head before the record it announces */
	pg_read_barrier();
	ring_copy_out(tail, (char *) &len, sizeof(uint32));
	resetStringInfo(buf);
	enlargeStringInfo(buf, len);
	ring_copy_out(tail + sizeof(uint32), buf->data, len);
	buf->len = len;
	buf->data[len] = '\0';

	/* Done reading the record before its space is handed back */
	pg_read_barrier();
	pg_atomic_write_u64(&outbox_shared->ring_tail, tail + sizeof(uint32) + len);
	return true;
}

void
outbox_count(OutboxCounter counter, uint64 n)
{
	pg_atomic_fetch_add_u64(&outbox_shared->counters[counter], n);
}

/*
 * Say what a worker is doing (pid 0 when it stops: see the exit callbacks).
 */
void
outbox_set_state(OutboxWorkerState *worker, const char *fmt,...)
{
	char		buf[OUTBOX_STATE_LEN];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);

	SpinLockAcquire(&outbox_shared->mutex);
	worker->pid = MyProcPid;
	memcpy(worker->state, buf, sizeof(buf));
	SpinLockRelease(&outbox_shared->mutex);
}
