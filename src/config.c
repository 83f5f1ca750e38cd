/*-------------------------------------------------------------------------
 *
 * config.c
 *	  The outbox.* configuration parameters and the parsed target list.
 *
 * outbox.targets is parsed once by its check hook into a single malloc'd
 * block (the GUC machinery owns and frees "extra" data), so every process
 * looks targets up without re-parsing the string.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "miscadmin.h"
#include "replication/slot.h"
#include "utils/guc.h"

#include "outbox.h"

char	   *outbox_database = NULL;
char	   *outbox_targets = NULL;
char	   *outbox_slot_name = NULL;
int			outbox_max_attempts = 12;
int			outbox_retry_base_delay = 1000;
int			outbox_retry_max_delay = 3600 * 1000;
int			outbox_request_timeout = 30 * 1000;
int			outbox_connect_timeout = 10 * 1000;
int			outbox_max_inflight = 64;
int			outbox_max_payload_size = 1024;
int			outbox_circuit_failures = 5;


typedef struct TargetItem
{
	int			name_off;
	int			url_off;
} TargetItem;

/* The "extra" of outbox.targets: entries, then their NUL-terminated strings */
typedef struct TargetItems
{
	int			count;
	TargetItem entries[FLEXIBLE_ARRAY_MEMBER];
} TargetItems;

static TargetItems *target_list = NULL;

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
valid_target_url(const char *url, int len)
{
	if (!((len > 7 && strncmp(url, "http://", 7) == 0) ||
		  (len > 8 && strncmp(url, "https://", 8) == 0)))
		return false;
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) url[i];

		if (c <= ' ' || c == 0x7f)
			return false;
	}
	return true;
}

/*
 * Parse "name=url, name=url" into a TargetItems.  Returns NULL and sets the
 * GUC error detail on bad syntax.
 */
static TargetItems *
parse_targets(const char *value)
{
	TargetItems *list;
	char	   *strings;
	int			count = 0;
	int			used = 0;
	size_t		len = strlen(value);
	const char *p;

	for (p = value; *p; p++)
		if (*p == '=')
			count++;

	list = malloc(offsetof(TargetItems, entries) +
				  sizeof(TargetItem) * count + len + count * 2 + 1);
	if (list == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return NULL;
	}
	list->count = 0;
	strings = (char *) &list->entries[count];

	p = value;
	for (;;)
	{
		const char *item,
				   *eq,
				   *end,
				   *name_end,
				   *url;
		int			name_len,
					url_len;

		while (isspace((unsigned char) *p))
			p++;
		if (*p == '\0')
			break;
		item = p;
		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		eq = memchr(item, '=', end - item);
		if (eq == NULL)
		{
			GUC_check_errdetail("Entry \"%.*s\" is not of the form name=url.",
								(int) (end - item), item);
			goto fail;
		}
		name_end = eq;
		while (name_end > item && isspace((unsigned char) name_end[-1]))
			name_end--;
		name_len = name_end - item;
		url = eq + 1;
		while (url < end && isspace((unsigned char) *url))
			url++;
		url_len = end - url;
		while (url_len > 0 && isspace((unsigned char) url[url_len - 1]))
			url_len--;

		if (!valid_target_name(item, name_len))
		{
			GUC_check_errdetail("Target name \"%.*s\" must be 1 to %d letters, digits, \"_\", \"-\" or \".\".",
								name_len, item, OUTBOX_TARGET_NAME_MAXLEN);
			goto fail;
		}
		if (!valid_target_url(url, url_len))
		{
			GUC_check_errdetail("URL \"%.*s\" of target \"%.*s\" must start with http:// or https:// and contain no spaces.",
								url_len, url, name_len, item);
			goto fail;
		}
		for (int i = 0; i < list->count; i++)
		{
			const char *other = strings + list->entries[i].name_off;

			if ((int) strlen(other) == name_len &&
				strncmp(other, item, name_len) == 0)
			{
				GUC_check_errdetail("Target \"%.*s\" is listed twice.",
									name_len, item);
				goto fail;
			}
		}

		if (list->count == OUTBOX_MAX_TARGETS)
		{
			GUC_check_errdetail("At most %d targets can be configured.",
								OUTBOX_MAX_TARGETS);
			goto fail;
		}
		list->entries[list->count].name_off = used;
		memcpy(strings + used, item, name_len);
		used += name_len;
		strings[used++] = '\0';
		list->entries[list->count].url_off = used;
		memcpy(strings + used, url, url_len);
		used += url_len;
		strings[used++] = '\0';
		list->count++;

		p = (*end == ',') ? end + 1 : end;
	}

	/* Make the offsets relative to the start of the block */
	for (int i = 0; i < list->count; i++)
	{
		list->entries[i].name_off += (strings - (char *) list);
		list->entries[i].url_off += (strings - (char *) list);
	}
	return list;

fail:
	free(list);
	return NULL;
}

static bool
check_targets(char **newval, void **extra, GucSource source)
{
	TargetItems *list = parse_targets(*newval ? *newval : "");

	if (list == NULL)
		return false;
	*extra = list;
	return true;
}

static void
assign_targets(const char *newval, void *extra)
{
	target_list = (TargetItems *) extra;
}

static bool
check_slot_name(char **newval, void **extra, GucSource source)
{
	return ReplicationSlotValidateName(*newval, WARNING);
}

const char *
outbox_target_url(const char *name)
{
	for (int i = 0; i < outbox_target_count(); i++)
		if (strcmp(outbox_target_name(i), name) == 0)
			return (char *) target_list + target_list->entries[i].url_off;
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
	return (char *) target_list + target_list->entries[i].name_off;
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

		DefineCustomStringVariable("outbox.slot_name",
								   "Logical replication slot used by the outbox decoder.",
								   NULL,
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
		MarkGUCPrefixReserved("outbox");
}
