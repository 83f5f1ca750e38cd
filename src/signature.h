/*-------------------------------------------------------------------------
 *
 * signature.h
 *	  Standard Webhooks signatures (see signature.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SIGNATURE_H
#define OUTBOX_SIGNATURE_H

#include "nodes/pg_list.h"

extern char *outbox_signature(List *keys, const char *webhook_id,
							  const char *timestamp, const char *body,
							  size_t body_len);

#endif							/* OUTBOX_SIGNATURE_H */
