/*-------------------------------------------------------------------------
 *
 * ordering.h
 *	  Per-key order (see ordering.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_ORDERING_H
#define OUTBOX_ORDERING_H

#include "utils/timestamp.h"

/*
 * A query for the first pending message of the key (target, key), the only
 * one of its key that may be sent: among the pending messages of a key,
 * those already attempted come first (they were sent first), then the
 * others by id.  target and key are SQL expressions, usually of an outer
 * query; unqualified names refer to the message looked up.
 */
#define OUTBOX_KEY_HEAD(columns, target, key) \
	"SELECT " columns " FROM outbox.messages" \
	" WHERE state = 'pending' AND target = " target " AND key = " key \
	" ORDER BY attempts = 0, id LIMIT 1"

/*
 * Does message a come before message b of the same key, in that order?
 * attempted: it has been sent before (attempts > 0).
 */
static inline bool
outbox_key_precedes(bool a_attempted, int64 a_id, bool b_attempted, int64 b_id)
{
	if (a_attempted != b_attempted)
		return a_attempted;
	return a_id < b_id;
}

/* Keys looked up at once, at most */
#define OUTBOX_KEY_LOOKUP_BATCH		1000

extern bool outbox_key_busy(const char *target, const char *key);
extern void outbox_key_started(const char *target, const char *key);
extern int	outbox_keys_inflight(void);
extern void outbox_key_wait(const char *target, const char *key);
extern bool outbox_key_finished(const char *target, const char *key);
extern void outbox_key_lookup(int64 id, TimestampTz at);
extern int	outbox_keys_due(TimestampTz now, const int64 **ids);
extern bool outbox_keys_next_lookup(TimestampTz *at);
extern void outbox_keys_looked_up(void);
extern void outbox_keys_forget(void);

#endif							/* OUTBOX_ORDERING_H */
