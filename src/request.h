/*-------------------------------------------------------------------------
 *
 * request.h
 *	  Building and starting the HTTP request of a message (see request.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_REQUEST_H
#define OUTBOX_REQUEST_H

#include "tracking.h"

extern void outbox_request_start(Tracked *t, bool probe);

#endif							/* OUTBOX_REQUEST_H */
