/*-------------------------------------------------------------------------
 *
 * policy.h
 *	  Failure policy: retries, dead letters, circuit breakers (see policy.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_POLICY_H
#define OUTBOX_POLICY_H

#include "nodes/pg_list.h"
#include "utils/timestamp.h"
#include "http.h"
#include "outbox.h"

/*
 * A target as the failure policy sees it: its share of the in-flight
 * requests, and its circuit breaker.
 */
typedef struct OutboxTarget
{
	char		name[OUTBOX_TARGET_NAME_MAXLEN + 1];
	int			inflight;
	int			concurrency;	/* current limit, lowered when throttled */
	int			failures;		/* consecutive failed attempts */
	bool		open;			/* circuit open: only probes are sent */
	bool		probing;		/* a probe is in flight */
	int			probes;			/* failed probes since the circuit opened */
	TimestampTz opened_at;
	TimestampTz probe_at;
	TimestampTz last_success_at;
	TimestampTz last_failure_at;
	char		last_error[256];
} OutboxTarget;

/* The states of a message, as outbox.messages.state names them */
typedef enum OutboxState
{
	OUTBOX_PENDING,
	OUTBOX_DELIVERED,
	OUTBOX_DEAD
} OutboxState;

extern const char *outbox_state_name(OutboxState state);

/* What an attempt means for its message */
typedef struct OutboxVerdict
{
	OutboxState state;
	int32		attempts;		/* attempts to record */
	int32		probe_failures; /* ... of which failed probes */
	TimestampTz next_attempt_at;	/* 0: unchanged */
} OutboxVerdict;

extern void outbox_targets_sync(void);
extern OutboxTarget *outbox_target_get(const char *name);
extern List *outbox_target_all(void);
extern int	outbox_target_limit(OutboxTarget *target);
extern void outbox_target_sent(OutboxTarget *target, bool probe);
extern void outbox_judge(OutboxTarget *target, int32 attempts,
						 int32 probe_failures, bool probe,
						 OutboxHttpResult *result, TimestampTz now,
						 OutboxVerdict *verdict);
extern List *outbox_targets_to_probe(TimestampTz now, int recheck_ms);
extern TimestampTz outbox_next_probe_at(void);
extern void outbox_targets_publish(void);

#endif							/* OUTBOX_POLICY_H */
