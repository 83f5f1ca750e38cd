/*-------------------------------------------------------------------------
 *
 * sql.h
 *	  Saved SPI plans (see sql.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SQL_H
#define OUTBOX_SQL_H

#include "executor/spi.h"

extern void outbox_execute(SPIPlanPtr *plan, const char *sql, int nargs,
						   Oid *argtypes, Datum *values, const char *nulls,
						   bool read_only, long count, int expected);
extern void outbox_forget_plan(SPIPlanPtr *plan);

#endif							/* OUTBOX_SQL_H */
