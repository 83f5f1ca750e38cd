/*-------------------------------------------------------------------------
 *
 * sql.c
 *	  Running SQL from C: saved plans shared by the functions and the
 *	  dispatcher.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "nodes/parsenodes.h"

#include "sql.h"

/*
 * Prepare sql and keep the plan for the life of the process.  The plan
 * cache replans it after DROP/CREATE EXTENSION, since it holds the query's
 * text, not the old table's identity.
 */
/*
 * The plans are used many times with different arguments that do not
 * change the best plan (arrays of ids, a target name), so they are planned
 * once: a custom plan per execution would cost more than the execution.
 */
static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes,
										  CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s",
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * Execute the saved plan *plan, preparing it from sql on first use.  Any
 * result other than "expected" is an ERROR.
 */
void
outbox_execute(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
			   Datum *values, const char *nulls, bool read_only, long count,
			   int expected)
{
	int			ret;

	if (*plan == NULL)
		*plan = prepare_kept(sql, nargs, argtypes);
	ret = SPI_execute_plan(*plan, values, nulls, read_only, count);
	if (ret != expected)
		elog(ERROR, "outbox query failed: %s (%s)",
			 SPI_result_code_string(ret), sql);
}

/* Free a saved plan, so that it is prepared afresh on next use */
void
outbox_forget_plan(SPIPlanPtr *plan)
{
	if (*plan)
		SPI_freeplan(*plan);
	*plan = NULL;
}
