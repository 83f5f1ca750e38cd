/*-------------------------------------------------------------------------
 *
 * config.c
 *	  The outbox.* configuration parameters and the parsed target list.
 *
 * outbox.targets is parsed once by its check hook into a single malloc'd
 * block (the GUC machinery owns and frees "extra" data), so every process
 * looks targets up without re-parsing the string.
 *
 * The databases the workers serve (outbox.databases, or the one-database
 * form outbox.database) are fixed at server start: the postmaster parses
 * them once, with their slot names, and every process inherits the list.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "common/base64.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "outbox.h"

char	   *outbox_database = NULL;
char	   *outbox_databases = NULL;
char	   *outbox_targets = NULL;
char	   *outbox_slot_name = NULL;
char	   *outbox_secrets = NULL;
int			outbox_max_attempts = 12;
int			outbox_retry_base_delay = 1000;
int			outbox_retry_max_delay = 3600 * 1000;
int			outbox_request_timeout = 30 * 1000;
int			outbox_connect_timeout = 10 * 1000;
int			outbox_max_inflight = 64;
int			outbox_max_payload_size = 1024;
int			outbox_circuit_failures = 5;
int			outbox_retention = 7 * 24 * 3600;


/*
 * A parsed "name=value, name=value" list, the "extra" of outbox.targets and
 * outbox.secrets: one malloc'd block (the GUC machinery frees it), items
 * first, then their strings.  Offsets are from the start of the block.
 */
typedef struct PairItem
{
	int			name_off;
	int			value_off;
	int			value_len;		/* bytes, for decoded binary values */
} PairItem;

typedef struct PairList
{
	int			count;
	char		problem[200];	/* why the list is unusable; "" if it is not */
	PairItem	items[FLEXIBLE_ARRAY_MEMBER];
} PairList;

#define PAIR_NAME(list, i)	((char *) (list) + (list)->items[i].name_off)
#define PAIR_VALUE(list, i) ((char *) (list) + (list)->items[i].value_off)

static PairList *target_list = NULL;
static PairList *secret_list = NULL;

/* The databases served, and their slots; set in the postmaster */
static int	n_databases = 0;
static NameData *database_names = NULL;
static NameData *database_slots = NULL;
static NameData *database_previous_slots = NULL;

static bool
valid_target_name(const char *name, int len)
{
	if (len < 1 || len > OUTBOX_TARGET_NAME_MAXLEN)
		return false;
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) name[i];

		if (!isalnum(c) && c != '_' && c != '-' && c != '.')
			return false;
	}
	return true;
}

static bool
valid_target_url(const char *url)
{
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
		return false;
	for (const char *p = url; *p; p++)
	{
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
			return false;
	}
	return true;
}

static const char *
trim(const char *start, const char **end)
{
	while (start < *end && isspace((unsigned char) *start))
		start++;
	while (*end > start && isspace((unsigned char) (*end)[-1]))
		(*end)--;
	return start;
}

/*
 * Split a "name=value, name=value" list.  Returns NULL on out of memory
 * (with the GUC error set); on bad syntax, a list whose "problem" says what
 * is wrong.  Problems name the entry by position and name only: values may
 * be secrets.
 */
static PairList *
parse_pairs(const char *value)
{
	PairList   *list;
	char	   *strings;
	int			count = 1;
	int			used = 0;
	const char *p;

	for (p = value; *p; p++)
		if (*p == ',')
			count++;

	list = malloc(offsetof(PairList, items) + sizeof(PairItem) * count +
				  strlen(value) + count * 2 + 1);
	if (list == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return NULL;
	}
	list->count = 0;
	list->problem[0] = '\0';
	strings = (char *) &list->items[count];

	for (p = value; *p;)
	{
		const char *end = strchr(p, ',');
		const char *eq;
		const char *name_end;
		const char *value_end;
		const char *name;
		const char *val;
		PairItem   *item;

		if (end == NULL)
			end = p + strlen(p);
		value_end = end;
		eq = memchr(p, '=', end - p);
		name_end = eq ? eq : end;
		name = trim(p, &name_end);
		p = (*end == ',') ? end + 1 : end;
		if (eq == NULL && name == name_end)
			continue;			/* empty entry */
		if (eq == NULL)
		{
			snprintf(list->problem, sizeof(list->problem),
					 "Entry %d is not of the form name=value.",
					 list->count + 1);
			return list;
		}
		if (!valid_target_name(name, name_end - name))
		{
			snprintf(list->problem, sizeof(list->problem),
					 "Entry %d: the name must be 1 to %d letters, digits, \"_\", \"-\" or \".\".",
					 list->count + 1, OUTBOX_TARGET_NAME_MAXLEN);
			return list;
		}
		val = trim(eq + 1, &value_end);

		item = &list->items[list->count++];
		item->name_off = (strings - (char *) list) + used;
		memcpy(strings + used, name, name_end - name);
		used += name_end - name;
		strings[used++] = '\0';
		item->value_off = (strings - (char *) list) + used;
		item->value_len = value_end - val;
		memcpy(strings + used, val, value_end - val);
		used += value_end - val;
		strings[used++] = '\0';
	}
	return list;
}

static bool
check_targets(char **newval, void **extra, GucSource source)
{
	PairList   *list = parse_pairs(*newval ? *newval : "");

	if (list == NULL)
		return false;
	if (list->problem[0] == '\0' && list->count > OUTBOX_MAX_TARGETS)
		snprintf(list->problem, sizeof(list->problem),
				 "At most %d targets can be configured.", OUTBOX_MAX_TARGETS);
	for (int i = 0; i < list->count && list->problem[0] == '\0'; i++)
	{
		if (!valid_target_url(PAIR_VALUE(list, i)))
			snprintf(list->problem, sizeof(list->problem),
					 "URL \"%s\" of target \"%s\" must start with http:// or https:// and contain no spaces.",
					 PAIR_VALUE(list, i), PAIR_NAME(list, i));
		for (int j = 0; j < i && list->problem[0] == '\0'; j++)
			if (strcmp(PAIR_NAME(list, i), PAIR_NAME(list, j)) == 0)
				snprintf(list->problem, sizeof(list->problem),
						 "Target \"%s\" is listed twice.", PAIR_NAME(list, i));
	}
	if (list->problem[0] != '\0')
	{
		GUC_check_errdetail("%s", list->problem);
		free(list);
		return false;
	}
	*extra = list;
	return true;
}

static void
assign_targets(const char *newval, void *extra)
{
	target_list = (PairList *) extra;
}

/*
 * outbox.secrets is never refused: the GUC machinery would print the value
 * in its error.  A list with a problem is kept, and the dispatcher reports
 * the problem (which names no secret) and holds back signed deliveries.
 * Keys are stored base64-decoded.
 */
static bool
check_secrets(char **newval, void **extra, GucSource source)
{
	PairList   *list = parse_pairs(*newval ? *newval : "");

	if (list == NULL)
		return false;
	for (int i = 0; i < list->count && list->problem[0] == '\0'; i++)
	{
		char	   *key = PAIR_VALUE(list, i);
		int			len = list->items[i].value_len;
		int			decoded = -1;

		if (len > 6 && strncmp(key, "whsec_", 6) == 0 &&
			pg_b64_dec_len(len - 6) <= len)
		{
			char	   *buf = malloc(pg_b64_dec_len(len - 6));

			if (buf)
			{
				decoded = pg_b64_decode(key + 6, len - 6, buf,
										pg_b64_dec_len(len - 6));
				if (decoded > 0)
					memcpy(key, buf, decoded);
				free(buf);
			}
		}
		if (decoded <= 0)
			snprintf(list->problem, sizeof(list->problem),
					 "The secret of entry %d (target \"%s\") is not whsec_ followed by base64.",
					 i + 1, PAIR_NAME(list, i));
		else
			list->items[i].value_len = decoded;
	}
	*extra = list;
	return true;
}

static void
assign_secrets(const char *newval, void *extra)
{
	secret_list = (PairList *) extra;
}

/*
 * The signing keys of a target (none if it has no secret).  Returns false,
 * with the reason in *problem, if outbox.secrets cannot be used.
 */
bool
outbox_target_secrets(const char *name, List **keys, const char **problem)
{
	*keys = NIL;
	*problem = NULL;
	if (secret_list == NULL)
		return true;
	if (secret_list->problem[0] != '\0')
	{
		*problem = secret_list->problem;
		return false;
	}
	for (int i = 0; i < secret_list->count; i++)
	{
		if (strcmp(PAIR_NAME(secret_list, i), name) == 0)
		{
			StringInfo	key = makeStringInfo();

			appendBinaryStringInfo(key, PAIR_VALUE(secret_list, i),
								   secret_list->items[i].value_len);
			*keys = lappend(*keys, key);
		}
	}
	return true;
}

/*
 * On a reload the postmaster logs each changed setting with its new value,
 * superuser-only or not.  Keep the secrets out of the log.
 */
static emit_log_hook_type prev_emit_log_hook = NULL;

static void
hide_secrets(ErrorData *edata)
{
	if (edata->message_id &&
		strcmp(edata->message_id, "parameter \"%s\" changed to \"%s\"") == 0 &&
		edata->message && strstr(edata->message, "\"outbox.secrets\"") != NULL)
		edata->message = pstrdup("parameter \"outbox.secrets\" changed (value not shown)");
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
outbox_hide_secrets_in_log(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = hide_secrets;
}

static bool
check_slot_name(char **newval, void **extra, GucSource source)
{
	return ReplicationSlotValidateName(*newval, WARNING);
}

/*
 * outbox.databases: a comma-separated list of database names (double quotes
 * keep commas, spaces and case), each listed once.
 */
static bool
check_databases(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *names;
	ListCell   *lc;
	bool		ok = true;

	if (!SplitGUCList(raw, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		return false;
	}
	foreach(lc, names)
	{
		const char *name = lfirst(lc);

		if (strlen(name) >= NAMEDATALEN)
		{
			GUC_check_errdetail("Database name \"%s\" is too long.", name);
			ok = false;
			break;
		}
		for (ListCell *other = list_head(names); other != lc;
			 other = lnext(names, other))
		{
			if (strcmp(lfirst(other), name) == 0)
			{
				GUC_check_errdetail("Database \"%s\" is listed twice.", name);
				ok = false;
				break;
			}
		}
		if (!ok)
			break;
	}
	list_free(names);
	pfree(raw);
	return ok;
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
 */
static void
load_databases(void)
{
	char	   *raw;
	List	   *names = NIL;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	raw = pstrdup(outbox_databases);
	if (!SplitGUCList(raw, ',', &names) || names == NIL)
		names = list_make1(pstrdup(outbox_database));

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
 * The slot the database had under the other naming scheme: with several
 * databases, the one-database name, and the other way round.
 */
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

const char *
outbox_database_previous_slot(int i)
{
	Assert(i >= 0 && i < n_databases);
	return NameStr(database_previous_slots[i]);
}

const char *
outbox_target_url(const char *name)
{
	for (int i = 0; i < outbox_target_count(); i++)
		if (strcmp(outbox_target_name(i), name) == 0)
			return PAIR_VALUE(target_list, i);
	return NULL;
}

int
outbox_target_count(void)
{
	return target_list ? target_list->count : 0;
}

const char *
outbox_target_name(int i)
{
	Assert(i >= 0 && i < outbox_target_count());
	return PAIR_NAME(target_list, i);
}

/* The configured target names, for error messages: "orders, billing" */
char *
outbox_target_list(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < outbox_target_count(); i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "",
						 outbox_target_name(i));
	return buf.data;
}

void
outbox_define_gucs(void)
{
	/*
	 * Settings that need a restart can only be defined while the postmaster
	 * loads the library; a backend that loads it on demand does not need
	 * them, since only the workers read them.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomStringVariable("outbox.database",
								   "Database in which the outbox workers run.",
								   NULL,
								   &outbox_database,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);

		DefineCustomStringVariable("outbox.databases",
								   "Databases in which outbox workers run, one decoder and one dispatcher each.",
								   "A comma-separated list; when set, it replaces outbox.database.",
								   &outbox_databases,
								   "",
								   PGC_POSTMASTER,
								   GUC_LIST_INPUT,
								   check_databases, NULL, NULL);

		DefineCustomStringVariable("outbox.slot_name",
								   "Logical replication slot used by the outbox decoder.",
								   "With several databases, each slot is this name, \"_\" and the database name.",
								   &outbox_slot_name,
								   "outbox",
								   PGC_POSTMASTER,
								   0,
								   check_slot_name, NULL, NULL);
	}

	DefineCustomStringVariable("outbox.targets",
							   "Webhook targets, as comma-separated name=url pairs.",
							   "Messages name a target; its URL receives them.",
							   &outbox_targets,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_targets, assign_targets, NULL);

	DefineCustomStringVariable("outbox.secrets",
							   "Signing secrets of targets, as comma-separated name=whsec_<base64> pairs.",
							   "A target listed twice is signed with both secrets, for key rotation.",
							   &outbox_secrets,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   check_secrets, assign_secrets, NULL);

	DefineCustomIntVariable("outbox.max_attempts",
							"Failed attempts after which a message is dead.",
							NULL,
							&outbox_max_attempts,
							12, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.retry_base_delay",
							"Delay before the first retry; it doubles with each failed attempt.",
							NULL,
							&outbox_retry_base_delay,
							1000, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.retry_max_delay",
							"Longest delay between two attempts of a message.",
							NULL,
							&outbox_retry_max_delay,
							3600 * 1000, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.request_timeout",
							"Time limit of one HTTP request, connection included.",
							NULL,
							&outbox_request_timeout,
							30 * 1000, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.connect_timeout",
							"Time limit for opening a connection to a target.",
							NULL,
							&outbox_connect_timeout,
							10 * 1000, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.max_inflight",
							"Maximum number of HTTP requests in flight at once.",
							NULL,
							&outbox_max_inflight,
							64, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.circuit_failures",
							"Consecutive failed attempts that open a target's circuit.",
							"While the circuit is open, only probes are sent and messages keep their attempts.",
							&outbox_circuit_failures,
							5, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.retention",
							"How long delivered messages and attempt history are kept.",
							"Dead messages are kept until redriven or purged with outbox_purge_dead().",
							&outbox_retention,
							7 * 24 * 3600, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.max_payload_size",
							"Largest payload outbox_queue and outbox_send accept.",
							NULL,
							&outbox_max_payload_size,
							1024, 1, 256 * 1024,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	/* Only then are all outbox.* settings defined, so typos can be caught */
	if (process_shared_preload_libraries_in_progress)
	{
		MarkGUCPrefixReserved("outbox");
		load_databases();
	}
}
