/*-------------------------------------------------------------------------
 *
 * decoder.h
 *	  The decoder worker (see decoder.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_DECODER_H
#define OUTBOX_DECODER_H

#include "fmgr.h"

extern PGDLLEXPORT void outbox_decoder_main(Datum main_arg);

#endif							/* OUTBOX_DECODER_H */
