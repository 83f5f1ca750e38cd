/*-------------------------------------------------------------------------
 *
 * databases.c
 *	  The databases the workers serve, and the names of their slots.
 *
 * The databases (outbox.databases, or the one-database form
 * outbox.database) are fixed at server start: the postmaster parses them
 * once, with their slot names, and every process inherits the list.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "common/hashfn.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "config.h"
#include "databases.h"

char	   *outbox_database = NULL;
char	   *outbox_databases = NULL;

/* The databases served, and their slots; set in the postmaster */
static int	n_databases = 0;
static NameData *database_names = NULL;
static NameData *database_slots = NULL;
static NameData *database_previous_slots = NULL;

/*
 * The slot-name and database settings are checked by outbox_load_databases() when
 * the postmaster loads the library: a check hook refusing the value of a
 * preloaded library's PGC_POSTMASTER setting only makes a WARNING, and the
 * server would start with the default.  Later (a reload, ALTER SYSTEM) the
 * hooks check what they can, so that mistakes show at once.
 */
bool
outbox_check_slot_name(char **newval, void **extra, GucSource source)
{
	if (process_shared_preload_libraries_in_progress)
		return true;
	return ReplicationSlotValidateName(*newval, WARNING);
}

/*
 * Why a list of database names cannot be served, or NULL; *hint gets the
 * fix.
 */
static char *
database_list_problem(List *names, const char **hint)
{
	ListCell   *lc;

	foreach(lc, names)
	{
		const char *name = lfirst(lc);

		if (strlen(name) >= NAMEDATALEN)
		{
			*hint = psprintf("Database names are at most %d bytes long.",
							 NAMEDATALEN - 1);
			return psprintf("database name \"%s\" is too long", name);
		}
		for (ListCell *other = list_head(names); other != lc;
			 other = lnext(names, other))
		{
			if (strcmp(lfirst(other), name) == 0)
			{
				*hint = "List each database once.";
				return psprintf("database \"%s\" is listed twice", name);
			}
		}
	}
	return NULL;
}

/*
 * outbox.databases: a comma-separated list of database names (double quotes
 * keep commas, spaces and case), each listed once.
 */
bool
outbox_check_databases(char **newval, void **extra, GucSource source)
{
	char	   *raw;
	List	   *names;
	char	   *problem;
	const char *hint;

	if (process_shared_preload_libraries_in_progress)
		return true;
	raw = pstrdup(*newval);
	if (!SplitGUCList(raw, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		return false;
	}
	problem = database_list_problem(names, &hint);
	if (problem)
	{
		GUC_check_errdetail("%c%s.", pg_toupper((unsigned char) problem[0]),
							problem + 1);
		GUC_check_errhint("%s", hint);
	}
	list_free(names);
	pfree(raw);
	return problem == NULL;
}

/*
 * The slot of a database when several are served: outbox.slot_name, "_",
 * then the database name when it is a valid slot name on its own; other
 * names are folded to [a-z0-9_] and followed by a hash of the real name, so
 * two databases never share a slot.
 */
static void
database_slot_name(const char *database, char *slot)
{
	char		folded[NAMEDATALEN];
	bool		changed = false;
	int			len = 0;

	for (const char *p = database; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (islower(c) || isdigit(c) || c == '_')
			folded[len++] = c;
		else
		{
			folded[len++] = isupper(c) ? tolower(c) : '_';
			changed = true;
		}
	}
	folded[len] = '\0';

	if (!changed && strlen(outbox_slot_name) + 1 + len < NAMEDATALEN)
		snprintf(slot, NAMEDATALEN, "%s_%s", outbox_slot_name, folded);
	else
	{
		/* base, "_", as much of the folded name as fits, "_", 8 hex digits */
		int			room = NAMEDATALEN - 1 - strlen(outbox_slot_name) - 10;

		snprintf(slot, NAMEDATALEN, "%s_%.*s_%08x", outbox_slot_name,
				 Max(room, 0), folded,
				 hash_bytes((const unsigned char *) database,
							strlen(database)));
	}
}

/*
 * Fix the list of databases at server start.  outbox.databases wins over
 * outbox.database; one database keeps outbox.slot_name as its slot name.
 * A setting that cannot be served stops the server from starting.
 */
void
outbox_load_databases(void)
{
	char	   *raw;
	List	   *names = NIL;
	char	   *problem;
	const char *hint;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	ReplicationSlotValidateName(outbox_slot_name, ERROR);
	/*
	 * The slot names of the other naming scheme (see database_slot_name)
	 * must be longer than outbox.slot_name itself, or the decoder would drop
	 * its own slot as a leftover.
	 */
	if (strlen(outbox_slot_name) > OUTBOX_SLOT_NAME_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"outbox.slot_name\" is too long: \"%s\"",
						outbox_slot_name),
				 errhint("outbox.slot_name is at most %d bytes long, since the slot names made from it add up to 10 bytes.",
						 OUTBOX_SLOT_NAME_MAXLEN)));

	raw = pstrdup(outbox_databases);
	if (!SplitGUCList(raw, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in parameter \"outbox.databases\""),
				 errhint("Write the database names separated by commas, in double quotes if they contain commas, spaces or capital letters.")));
	if (names == NIL)
		names = list_make1(pstrdup(outbox_database));
	problem = database_list_problem(names, &hint);
	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s in \"%s\"", problem,
						outbox_databases[0] ? "outbox.databases" : "outbox.database"),
				 errhint("%s", hint)));

	n_databases = list_length(names);
	database_names = palloc0(sizeof(NameData) * n_databases);
	database_slots = palloc0(sizeof(NameData) * n_databases);
	database_previous_slots = palloc0(sizeof(NameData) * n_databases);
	for (int i = 0; i < n_databases; i++)
	{
		NameData	one,
					several;

		namestrcpy(&database_names[i], list_nth(names, i));
		namestrcpy(&one, outbox_slot_name);
		database_slot_name(list_nth(names, i), NameStr(several));
		database_slots[i] = (n_databases == 1) ? one : several;
		database_previous_slots[i] = (n_databases == 1) ? several : one;
		for (int j = 0; j < i; j++)
			if (strcmp(NameStr(database_slots[j]), NameStr(database_slots[i])) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("databases \"%s\" and \"%s\" in \"outbox.databases\" would share the replication slot \"%s\"",
								NameStr(database_names[j]),
								NameStr(database_names[i]),
								NameStr(database_slots[i])),
						 errhint("Rename one of the databases.")));
	}
	MemoryContextSwitchTo(old);
}

int
outbox_database_count(void)
{
	return n_databases;
}

const char *
outbox_database_name(int i)
{
	Assert(i >= 0 && i < n_databases);
	return NameStr(database_names[i]);
}

const char *
outbox_database_slot(int i)
{
	Assert(i >= 0 && i < n_databases);
	return NameStr(database_slots[i]);
}

/*
 * What tells this database's messages apart from other databases' in
 * webhook ids derived from row ids: nothing with one database, else the
 * part of its slot name after outbox.slot_name and "_".
 */
const char *
outbox_database_tag(int i)
{
	Assert(i >= 0 && i < n_databases);
	if (n_databases == 1)
		return "";
	return NameStr(database_slots[i]) + strlen(outbox_slot_name) + 1;
}

/*
 * The slot the database had under the other naming scheme: with several
 * databases, the one-database name, and the other way round.
 */
const char *
outbox_database_previous_slot(int i)
{
	Assert(i >= 0 && i < n_databases);
	return NameStr(database_previous_slots[i]);
}
