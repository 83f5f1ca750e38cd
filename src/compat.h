/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  The differences between the supported PostgreSQL majors (15, 17, 18),
 *	  in one place: each wrapper has the meaning the callers need and hides
 *	  how the major at hand spells it.  No other file tests PG_VERSION_NUM.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_COMPAT_H
#define OUTBOX_COMPAT_H

#include "access/htup.h"
#include "access/xlogdefs.h"
#include "common/base64.h"
#include "replication/reorderbuffer.h"
#include "replication/slot.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/palloc.h"

/*
 * Memory that the GUC machinery frees: a check hook's *newval and *extra.
 * 15 frees them with free(), 16 and later with guc_free(), which wants
 * them from guc_malloc().  NULL when out of memory.
 */
static inline void *
outbox_guc_malloc(size_t size)
{
#if PG_VERSION_NUM >= 160000
	return guc_malloc(LOG, size);
#else
	return malloc(size);
#endif
}

static inline char *
outbox_guc_strdup(const char *s)
{
#if PG_VERSION_NUM >= 160000
	return guc_strdup(LOG, s);
#else
	return strdup(s);
#endif
}

static inline void
outbox_guc_free(void *p)
{
#if PG_VERSION_NUM >= 160000
	guc_free(p);
#else
	free(p);
#endif
}

/*
 * Create an ephemeral logical slot for this database, without two-phase
 * decoding.  On 17 and later it is a failover slot: a standby with
 * sync_replication_slots = on keeps a copy of it, which the decoder finds
 * and uses after a promotion.
 */
static inline void
outbox_slot_create(const char *name)
{
#if PG_VERSION_NUM >= 170000
	ReplicationSlotCreate(name, true, RS_EPHEMERAL, false, true, false);
#else
	ReplicationSlotCreate(name, true, RS_EPHEMERAL, false);
#endif
}

/*
 * Acquire a slot, failing if another process holds it.  An invalidated slot
 * is acquired too (18 could refuse it): the caller checks
 * outbox_slot_invalidated() and recreates it.
 */
static inline void
outbox_slot_acquire(const char *name)
{
#if PG_VERSION_NUM >= 180000
	ReplicationSlotAcquire(name, true, false);
#else
	ReplicationSlotAcquire(name, true);
#endif
}

/*
 * Whether a slot can no longer be decoded.  15 marks only one cause (WAL
 * removed past max_slot_wal_keep_size) by clearing restart_lsn; 16 and
 * later record each cause (also rows removed on a standby, wal_level
 * lowered, and on 18 idle_replication_slot_timeout), some of which keep
 * restart_lsn.  Acquired with outbox_slot_acquire(), 18 even lets a slot
 * invalidated for idleness be decoded, though neither its WAL nor its
 * catalog rows are retained any more: this check keeps the decoder off it.
 */
static inline bool
outbox_slot_invalidated(ReplicationSlot *slot)
{
#if PG_VERSION_NUM >= 160000
	return slot->data.invalidated != RS_INVAL_NONE ||
		XLogRecPtrIsInvalid(slot->data.restart_lsn);
#else
	return XLogRecPtrIsInvalid(slot->data.restart_lsn);
#endif
}

/*
 * Whether a slot was synchronized from a primary (17 and later, with
 * sync_replication_slots = on): on a promoted standby, the failover copy of
 * the primary's slot.
 */
static inline bool
outbox_slot_synced(ReplicationSlot *slot)
{
#if PG_VERSION_NUM >= 170000
	return slot->data.synced;
#else
	return false;
#endif
}

/*
 * Why an invalidated slot was invalidated, in the words of
 * pg_replication_slots.invalidation_reason (15 knows one cause).
 */
static inline const char *
outbox_slot_invalidation_reason(ReplicationSlot *slot)
{
#if PG_VERSION_NUM >= 180000
	return GetSlotInvalidationCauseName(slot->data.invalidated);
#elif PG_VERSION_NUM >= 170000
	return SlotInvalidationCauses[slot->data.invalidated];
#else
	return "wal_removed";
#endif
}

/*
 * Before decoding WAL up to lsn, wait until the standbys named in
 * synchronized_standby_slots (17 and later) have confirmed it, as
 * PostgreSQL's own decoding functions do for a failover slot: the decoder
 * then never hands the dispatcher a message that the failover standby does
 * not have, and the primary's slot never gets ahead of what the standby can
 * sync.  Returns at once when the setting is empty, and always on 15.
 */
static inline void
outbox_wait_for_standbys(XLogRecPtr lsn)
{
#if PG_VERSION_NUM >= 170000
	WaitForStandbyConfirmation(lsn);
#endif
}

/* The new row of a decoded INSERT or UPDATE, NULL if there is none. */
static inline HeapTuple
outbox_change_new_tuple(ReorderBufferChange *change)
{
#if PG_VERSION_NUM >= 170000
	return change->data.tp.newtuple;
#else
	return change->data.tp.newtuple ? &change->data.tp.newtuple->tuple : NULL;
#endif
}

/*
 * A wait event set freed only by FreeWaitEventSet.  15 allocates it in the
 * given context; 17 and later in TopMemoryContext, owned by no resource
 * owner.
 */
static inline WaitEventSet *
outbox_create_wait_event_set(MemoryContext context, int nevents)
{
#if PG_VERSION_NUM >= 170000
	return CreateWaitEventSet(NULL, nevents);
#else
	return CreateWaitEventSet(context, nevents);
#endif
}

/*
 * Base64 of binary data, and back (18 types the binary side as uint8).
 * Both return the length written, or -1.
 */
static inline int
outbox_b64_encode(const void *src, int len, char *dst, int dstlen)
{
#if PG_VERSION_NUM >= 180000
	return pg_b64_encode((const uint8 *) src, len, dst, dstlen);
#else
	return pg_b64_encode((const char *) src, len, dst, dstlen);
#endif
}

static inline int
outbox_b64_decode(const char *src, int len, void *dst, int dstlen)
{
#if PG_VERSION_NUM >= 180000
	return pg_b64_decode(src, len, (uint8 *) dst, dstlen);
#else
	return pg_b64_decode(src, len, (char *) dst, dstlen);
#endif
}

#endif							/* OUTBOX_COMPAT_H */
