/*-------------------------------------------------------------------------
 *
 * dispatcher.h
 *	  The dispatcher worker (see dispatcher.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_DISPATCHER_H
#define OUTBOX_DISPATCHER_H

#include "fmgr.h"

/* What the dispatcher keeps for its lifetime; the parent of its contexts */
extern MemoryContext outbox_dispatcher_context;

extern PGDLLEXPORT void outbox_dispatcher_main(Datum main_arg);

#endif							/* OUTBOX_DISPATCHER_H */
