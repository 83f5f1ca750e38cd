/*-------------------------------------------------------------------------
 *
 * outcomes.h
 *	  The outcomes of attempts waiting to be recorded (see outcomes.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_OUTCOMES_H
#define OUTBOX_OUTCOMES_H

#include "utils/timestamp.h"

#include "http.h"
#include "message.h"
#include "policy.h"

extern void outbox_outcome_add(int64 id, const OutboxMessage *msg,
							   TimestampTz started_at,
							   const OutboxVerdict *v,
							   const OutboxHttpResult *r, TimestampTz now);
extern int	outbox_outcomes_held(void);
extern TimestampTz outbox_outcomes_flush_at(void);
extern void outbox_outcomes_postpone(TimestampTz at);
extern bool outbox_outcomes_record(void);
extern void outbox_outcomes_forget(void);

#endif							/* OUTBOX_OUTCOMES_H */
