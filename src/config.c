/*-------------------------------------------------------------------------
 *
 * config.c
 *	  The outbox.* configuration parameters and the parsed target list.
 *
 * outbox.targets is parsed once by its check hook into a single block from
 * outbox_guc_malloc (the GUC machinery owns and frees "extra" data), so
 * every process looks targets up without re-parsing the string.  The
 * database and slot settings are checked and turned into the list of
 * databases served by databases.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "compat.h"
#include "config.h"
#include "databases.h"
#include "outbox.h"

char	   *outbox_targets = NULL;
char	   *outbox_slot_name = NULL;
char	   *outbox_secrets = NULL;
char	   *outbox_secrets_file = NULL;
char	   *outbox_proxy = NULL;
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
 * outbox.secrets: one block from outbox_guc_malloc (the GUC machinery frees
 * it), items first, then their strings.  Offsets are from the start of the
 * block.
 */
typedef struct PairItem
{
	int			name_off;
	int			value_off;
	int			value_len;		/* bytes, for decoded binary values */
	int			position;		/* entry or line number, for problems */
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

/*
 * The keys of outbox.secrets_file, read by the first process that needs
 * them after each reload (only the dispatcher does); file_problem says why
 * the file cannot be used, "" if it can.
 */
static PairList *file_secrets = NULL;
static char file_problem[MAXPGPATH + 300];
static bool file_secrets_stale = true;

/* The proxy URL of outbox.proxy (its "extra"), "" for none */
static char *proxy_url = NULL;

/* Placeholder for a secret or credentials in what others can see */
#define MASK "***"

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

/*
 * Why url cannot be used as a target URL (http or https) or, with proxy,
 * as a proxy URL; NULL if it can.  libcurl parses it, as it will when
 * sending.
 */
static const char *
url_problem(const char *url, bool proxy)
{
	CURLU	   *u;
	CURLUcode	rc;
	char	   *scheme = NULL;
	const char *problem = NULL;

	for (const char *p = url; *p; p++)
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
			return "it contains a space or a control character";

	u = curl_url();
	if (u == NULL)
		return "out of memory";
	/* libcurl's URL parser knows no socks:// scheme, its proxy code does */
	rc = curl_url_set(u, CURLUPART_URL, url,
					  proxy ? CURLU_NON_SUPPORT_SCHEME : 0);
	if (rc == CURLUE_OK)
		rc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	if (rc != CURLUE_OK)
		problem = curl_url_strerror(rc);
	else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0 &&
			 (!proxy || (strcmp(scheme, "socks4") != 0 &&
						 strcmp(scheme, "socks4a") != 0 &&
						 strcmp(scheme, "socks5") != 0 &&
						 strcmp(scheme, "socks5h") != 0)))
		problem = proxy ?
			"the scheme must be http, https, socks4, socks4a, socks5 or socks5h" :
			"the scheme must be http or https";
	curl_free(scheme);
	curl_url_cleanup(u);
	return problem;
}

/*
 * url as roles other than superusers, and the server log, may see it: the
 * user name, password, query and fragment, which may hold credentials,
 * become "***".  Returns a palloc'd string.
 */
char *
outbox_mask_url(const char *url)
{
	CURLU	   *u = curl_url();
	char	   *part;
	char	   *masked = NULL;
	bool		changed = false;
	char	   *result;

	if (u == NULL ||
		curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
	{
		curl_url_cleanup(u);
		return pstrdup(MASK);
	}
	if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK ||
		curl_url_get(u, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK ||
		curl_url_get(u, CURLUPART_OPTIONS, &part, 0) == CURLUE_OK)
	{
		curl_free(part);
		curl_url_set(u, CURLUPART_USER, MASK, 0);
		curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
		curl_url_set(u, CURLUPART_OPTIONS, NULL, 0);
		changed = true;
	}
	if (curl_url_get(u, CURLUPART_QUERY, &part, 0) == CURLUE_OK)
	{
		curl_free(part);
		curl_url_set(u, CURLUPART_QUERY, MASK, 0);
		changed = true;
	}
	if (curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK)
	{
		curl_free(part);
		curl_url_set(u, CURLUPART_FRAGMENT, MASK, 0);
		changed = true;
	}
	/* Unchanged URLs are shown as written, not as libcurl normalizes them */
	if (!changed)
		result = pstrdup(url);
	else if (curl_url_get(u, CURLUPART_URL, &masked, 0) == CURLUE_OK)
		result = pstrdup(masked);
	else
		result = pstrdup(MASK);
	curl_free(masked);
	curl_url_cleanup(u);
	return result;
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
 * Split a "name=value, name=value" list, or with sep '\n' a file of
 * name=value lines, where blank lines and lines starting with "#" are left
 * out.  "what" names a piece in problems: "entry" or "line".  Returns NULL
 * on out of memory; on bad syntax, a list whose "problem" says what is
 * wrong.  Problems name the entry by position and name only: values may be
 * secrets.
 *
 * Not SplitGUCList(): it ends an unquoted element at white space and
 * refuses empty elements, so "orders = http://..." and a trailing comma,
 * accepted since the first release, would stop working; and its double
 * quotes would change what a value may hold.
 */
static PairList *
parse_pairs(const char *value, char sep, const char *what)
{
	PairList   *list;
	char	   *strings;
	int			count = 1;
	int			used = 0;
	int			position = 0;
	const char *p;

	for (p = value; *p; p++)
		if (*p == sep)
			count++;

	list = outbox_guc_malloc(offsetof(PairList, items) +
							 sizeof(PairItem) * count +
							 strlen(value) + count * 2 + 1);
	if (list == NULL)
		return NULL;
	list->count = 0;
	list->problem[0] = '\0';
	strings = (char *) &list->items[count];

	for (p = value; *p;)
	{
		const char *end = strchr(p, sep);
		const char *eq;
		const char *name_end;
		const char *value_end;
		const char *name;
		const char *val;
		PairItem   *item;

		if (end == NULL)
			end = p + strlen(p);
		position++;
		value_end = end;
		eq = memchr(p, '=', end - p);
		name_end = eq ? eq : end;
		name = trim(p, &name_end);
		p = (*end == sep) ? end + 1 : end;
		if (eq == NULL && name == name_end)
			continue;			/* empty entry */
		if (sep == '\n' && *name == '#')
			continue;			/* comment line */
		if (eq == NULL)
		{
			snprintf(list->problem, sizeof(list->problem),
					 "%c%s %d is not of the form name=value.",
					 pg_toupper((unsigned char) what[0]), what + 1, position);
			return list;
		}
		if (!valid_target_name(name, name_end - name))
		{
			snprintf(list->problem, sizeof(list->problem),
					 "%c%s %d: the name must be 1 to %d letters, digits, \"_\", \"-\" or \".\".",
					 pg_toupper((unsigned char) what[0]), what + 1, position,
					 OUTBOX_TARGET_NAME_MAXLEN);
			return list;
		}
		val = trim(eq + 1, &value_end);

		item = &list->items[list->count++];
		item->position = position;
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

/*
 * Replace a setting's value by what others may see of it.  The GUC
 * machinery keeps the value given to it (SHOW, current_setting(),
 * pg_settings.setting and reset_val, the "changed to" line of a reload):
 * only what the check hook leaves in *newval is safe from all of them.
 * The real value lives in the parsed "extra".
 */
static bool
replace_guc_value(char **newval, const char *shown)
{
	char	   *copy = outbox_guc_strdup(shown);

	if (copy == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	outbox_guc_free(*newval);
	*newval = copy;
	return true;
}

static PairList *
parse_guc_pairs(const char *value)
{
	PairList   *list = parse_pairs(value ? value : "", ',', "entry");

	if (list == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
	}
	return list;
}

/*
 * outbox.targets: each URL is checked by libcurl's parser.  The value kept
 * by the GUC machinery has its URLs masked (see replace_guc_value); the
 * show hook gives superusers the real one.  A refused value is not quoted
 * in the error, since it may hold credentials.
 */
static bool
check_targets(char **newval, void **extra, GucSource source)
{
	PairList   *list = parse_guc_pairs(*newval);
	StringInfoData shown;

	if (list == NULL)
		return false;
	if (list->problem[0] == '\0' && list->count > OUTBOX_MAX_TARGETS)
		snprintf(list->problem, sizeof(list->problem),
				 "At most %d targets can be configured.", OUTBOX_MAX_TARGETS);
	for (int i = 0; i < list->count && list->problem[0] == '\0'; i++)
	{
		const char *problem = url_problem(PAIR_VALUE(list, i), false);

		if (problem)
			snprintf(list->problem, sizeof(list->problem),
					 "The URL of target \"%s\" is not a valid http:// or https:// URL: %s.",
					 PAIR_NAME(list, i), problem);
		for (int j = 0; j < i && list->problem[0] == '\0'; j++)
			if (strcmp(PAIR_NAME(list, i), PAIR_NAME(list, j)) == 0)
				snprintf(list->problem, sizeof(list->problem),
						 "Target \"%s\" is listed twice.", PAIR_NAME(list, i));
	}
	if (list->problem[0] != '\0')
	{
		GUC_check_errmsg("invalid value for parameter \"%s\"", "outbox.targets");
		GUC_check_errdetail("%s", list->problem);
		outbox_guc_free(list);
		return false;
	}

	initStringInfo(&shown);
	for (int i = 0; i < list->count; i++)
		appendStringInfo(&shown, "%s%s=%s", i > 0 ? ", " : "",
						 PAIR_NAME(list, i),
						 outbox_mask_url(PAIR_VALUE(list, i)));
	if (!replace_guc_value(newval, shown.data))
	{
		outbox_guc_free(list);
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

/* SHOW outbox.targets: the real URLs for superusers, masked for others */
static const char *
show_targets(void)
{
	StringInfoData buf;

	if (!superuser() || target_list == NULL)
		return outbox_targets;
	initStringInfo(&buf);
	for (int i = 0; i < target_list->count; i++)
		appendStringInfo(&buf, "%s%s=%s", i > 0 ? ", " : "",
						 PAIR_NAME(target_list, i), PAIR_VALUE(target_list, i));
	return buf.data;
}

/*
 * outbox.proxy: the proxy of every request, "" for none.  Masked like the
 * target URLs.
 */
static bool
check_proxy(char **newval, void **extra, GucSource source)
{
	const char *value = *newval ? *newval : "";
	const char *problem = value[0] ? url_problem(value, true) : NULL;
	char	   *copy;

	if (problem)
	{
		GUC_check_errmsg("invalid value for parameter \"%s\"", "outbox.proxy");
		GUC_check_errdetail("The proxy URL is not valid: %s.", problem);
		return false;
	}
	copy = outbox_guc_strdup(value);
	if (copy == NULL ||
		!replace_guc_value(newval, value[0] ? outbox_mask_url(value) : ""))
	{
		outbox_guc_free(copy);
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	*extra = copy;
	return true;
}

static void
assign_proxy(const char *newval, void *extra)
{
	proxy_url = (char *) extra;
}

static const char *
show_proxy(void)
{
	return (superuser() && proxy_url) ? proxy_url : outbox_proxy;
}

/* The proxy requests go through, "" for none */
const char *
outbox_proxy_url(void)
{
	return proxy_url ? proxy_url : "";
}

/*
 * Decode the keys of a parsed secrets list in place, or set its problem.
 * Problems name the entry (or line) and target, never the key.
 */
static void
decode_secrets(PairList *list, const char *what)
{
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
				decoded = outbox_b64_decode(key + 6, len - 6, buf,
											pg_b64_dec_len(len - 6));
				if (decoded > 0)
					memcpy(key, buf, decoded);
				explicit_bzero(buf, pg_b64_dec_len(len - 6));
				free(buf);
			}
		}
		if (decoded <= 0)
			snprintf(list->problem, sizeof(list->problem),
					 "The secret of %s %d (target \"%s\") is not whsec_ followed by base64.",
					 what, list->items[i].position, PAIR_NAME(list, i));
		else if (decoded < OUTBOX_MIN_KEY_BYTES)
			snprintf(list->problem, sizeof(list->problem),
					 "The secret of %s %d (target \"%s\") is %d bytes long, too short to sign with: use at least %d random bytes, e.g. whsec_ followed by the output of \"openssl rand -base64 32\".",
					 what, list->items[i].position, PAIR_NAME(list, i),
					 decoded, OUTBOX_MIN_KEY_BYTES);
		else
			list->items[i].value_len = decoded;
	}
}

/*
 * outbox.secrets is never refused: a list with a problem is kept, and the
 * dispatcher reports the problem (which names no secret) and holds back
 * signed deliveries.  Keys are stored base64-decoded in the "extra"; the
 * value the GUC machinery keeps, which roles allowed to read settings
 * (pg_read_all_settings, pg_monitor) see, names the targets only.
 */
static bool
check_secrets(char **newval, void **extra, GucSource source)
{
	PairList   *list = parse_guc_pairs(*newval);
	StringInfoData shown;

	if (list == NULL)
		return false;
	decode_secrets(list, "entry");

	initStringInfo(&shown);
	if (list->problem[0] != '\0')
		appendStringInfoString(&shown, MASK);
	else
		for (int i = 0; i < list->count; i++)
			appendStringInfo(&shown, "%s%s=" MASK, i > 0 ? ", " : "",
							 PAIR_NAME(list, i));
	if (!replace_guc_value(newval, shown.data))
	{
		outbox_guc_free(list);
		return false;
	}
	*extra = list;
	return true;
}

static void
assign_secrets(const char *newval, void *extra)
{
	secret_list = (PairList *) extra;
}

/* SHOW outbox.secrets: the secrets for superusers, masked for others */
static const char *
show_secrets(void)
{
	StringInfoData buf;

	if (!superuser() || secret_list == NULL || secret_list->problem[0] != '\0')
		return outbox_secrets;
	initStringInfo(&buf);
	for (int i = 0; i < secret_list->count; i++)
	{
		int			len = secret_list->items[i].value_len;
		char	   *b64 = palloc(pg_b64_enc_len(len) + 1);
		int			n = outbox_b64_encode(PAIR_VALUE(secret_list, i), len, b64,
										  pg_b64_enc_len(len));

		b64[Max(n, 0)] = '\0';
		appendStringInfo(&buf, "%s%s=whsec_%s", i > 0 ? ", " : "",
						 PAIR_NAME(secret_list, i), b64);
	}
	return buf.data;
}

/*
 * A new value of outbox.secrets_file, or a reload (which assigns every
 * setting of the configuration files again): read the file when next
 * needed, since its contents may have changed.
 */
static void
assign_secrets_file(const char *newval, void *extra)
{
	file_secrets_stale = true;
}

#define MAX_SECRETS_FILE_SIZE	(1024 * 1024)

/*
 * Read outbox.secrets_file into file_secrets, or say why it cannot be used
 * in file_problem.  Like ssl_key_file, the file must belong to the
 * server's operating system user and be readable by nobody else: its keys
 * are as secret as a private key.
 */
static void
load_secrets_file(void)
{
	const char *path = outbox_secrets_file;
	struct stat st;
	char	   *buf = NULL;
	ssize_t		got = 0;
	int			fd;

	file_secrets_stale = false;
	outbox_guc_free(file_secrets);
	file_secrets = NULL;
	file_problem[0] = '\0';
	if (path == NULL || path[0] == '\0')
		return;

	fd = open(path, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
	{
		snprintf(file_problem, sizeof(file_problem),
				 "Could not open outbox.secrets_file \"%s\": %s.",
				 path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) < 0)
		snprintf(file_problem, sizeof(file_problem),
				 "Could not stat outbox.secrets_file \"%s\": %s.",
				 path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		snprintf(file_problem, sizeof(file_problem),
				 "outbox.secrets_file \"%s\" is not a regular file.", path);
	else if (st.st_uid != geteuid())
		snprintf(file_problem, sizeof(file_problem),
				 "outbox.secrets_file \"%s\" must be owned by the operating system user running the server: run chown on it, then reload the configuration.",
				 path);
	else if (st.st_mode & (S_IRWXG | S_IRWXO))
		snprintf(file_problem, sizeof(file_problem),
				 "outbox.secrets_file \"%s\" has group or world access: run chmod 600 on it, then reload the configuration.",
				 path);
	else if (st.st_size > MAX_SECRETS_FILE_SIZE)
		snprintf(file_problem, sizeof(file_problem),
				 "outbox.secrets_file \"%s\" is larger than %d bytes.",
				 path, MAX_SECRETS_FILE_SIZE);
	else if ((buf = malloc(st.st_size + 1)) == NULL)
		snprintf(file_problem, sizeof(file_problem), "out of memory");
	else
	{
		while (got < st.st_size)
		{
			ssize_t		n = read(fd, buf + got, st.st_size - got);

			if (n <= 0)
				break;
			got += n;
		}
		if (got < st.st_size)
			snprintf(file_problem, sizeof(file_problem),
					 "Could not read outbox.secrets_file \"%s\".", path);
		buf[got] = '\0';
		if (file_problem[0] == '\0' && strlen(buf) != got)
			snprintf(file_problem, sizeof(file_problem),
					 "outbox.secrets_file \"%s\" contains a zero byte.", path);
	}
	close(fd);

	if (file_problem[0] == '\0')
	{
		file_secrets = parse_pairs(buf, '\n', "line");
		if (file_secrets == NULL)
			snprintf(file_problem, sizeof(file_problem), "out of memory");
		else
		{
			decode_secrets(file_secrets, "line");
			if (file_secrets->problem[0] != '\0')
				snprintf(file_problem, sizeof(file_problem),
						 "outbox.secrets_file \"%s\": %s", path,
						 file_secrets->problem);
		}
	}
	if (buf)
	{
		explicit_bzero(buf, got);
		free(buf);
	}
}

/* Append to *keys the keys of that target in list */
static void
append_keys(PairList *list, const char *name, List **keys)
{
	for (int i = 0; list != NULL && i < list->count; i++)
	{
		if (strcmp(PAIR_NAME(list, i), name) == 0)
		{
			StringInfo	key = makeStringInfo();

			appendBinaryStringInfo(key, PAIR_VALUE(list, i),
								   list->items[i].value_len);
			*keys = lappend(*keys, key);
		}
	}
}

/*
 * The signing keys of a target (none if it has no secret): those of
 * outbox.secrets, then those of outbox.secrets_file.  Returns false, with
 * the reason in *problem, if either cannot be used.
 */
bool
outbox_target_secrets(const char *name, List **keys, const char **problem)
{
	*keys = NIL;
	*problem = NULL;
	if (file_secrets_stale)
		load_secrets_file();
	if (secret_list != NULL && secret_list->problem[0] != '\0')
	{
		*problem = secret_list->problem;
		return false;
	}
	if (file_problem[0] != '\0')
	{
		*problem = file_problem;
		return false;
	}
	append_keys(secret_list, name, keys);
	append_keys(file_secrets, name, keys);
	return true;
}

/*
 * On a reload the postmaster logs each changed setting with the value
 * written in the file, superuser-only or not.  Keep secrets and URL
 * credentials out of the log: show the masked value instead.
 */
static emit_log_hook_type prev_emit_log_hook = NULL;

static void
hide_secrets(ErrorData *edata)
{
	static const char *const hidden[] = {
		"outbox.secrets", "outbox.targets", "outbox.proxy"
	};

	if (edata->message_id && edata->message &&
		strcmp(edata->message_id, "parameter \"%s\" changed to \"%s\"") == 0)
	{
		for (int i = 0; i < lengthof(hidden); i++)
		{
			char		quoted[64];

			snprintf(quoted, sizeof(quoted), "\"%s\"", hidden[i]);
			if (strstr(edata->message, quoted) != NULL)
			{
				const char *shown = GetConfigOption(hidden[i], true, false);

				edata->message = psprintf("parameter \"%s\" changed to \"%s\"",
										  hidden[i], shown ? shown : "");
				break;
			}
		}
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
outbox_hide_secrets_in_log(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = hide_secrets;
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
	int			count = outbox_target_count();

	/*
	 * The count is read once: read again after each append (which, for all
	 * GCC 14 knows, may change target_list), -Warray-bounds reports a read
	 * of item -1, a false positive.
	 */
	initStringInfo(&buf);
	for (int i = 0; i < count; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "",
						 outbox_target_name(i));
	return buf.data;
}

/*
 * The workers' sessions ignore what ALTER DATABASE or ALTER ROLE ... SET
 * give applications: settings that would make their transactions read-only,
 * cancel their statements, end their sessions, make them fail on
 * serialization conflicts or temporary files, skip triggers (foreign keys
 * included), turn every error into a crash, or run them as another role.
 * Called right after the database connection is made.
 */
void
outbox_worker_session_settings(void)
{
	static const char *const settings[][2] = {
		{"default_transaction_read_only", "off"},
		{"default_transaction_isolation", "read committed"},
		{"default_transaction_deferrable", "off"},
		{"statement_timeout", "0"},
		{"lock_timeout", "0"},
		{"idle_in_transaction_session_timeout", "0"},
		{"idle_session_timeout", "0"},
		{"session_replication_role", "origin"},
		{"temp_file_limit", "-1"},
		{"exit_on_error", "off"},
		/* a role set for the database would make them a non-superuser */
		{"role", "none"},
	};

	for (int i = 0; i < lengthof(settings); i++)
		SetConfigOption(settings[i][0], settings[i][1], PGC_SUSET,
						PGC_S_OVERRIDE);
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
								   outbox_check_databases, NULL, NULL);

		DefineCustomStringVariable("outbox.slot_name",
								   "Logical replication slot used by the outbox decoder.",
								   "With several databases, each slot is this name, \"_\" and the database name.",
								   &outbox_slot_name,
								   "outbox",
								   PGC_POSTMASTER,
								   0,
								   outbox_check_slot_name, NULL, NULL);
	}

	DefineCustomStringVariable("outbox.targets",
							   "Webhook targets, as comma-separated name=url pairs.",
							   "Messages name a target; its URL receives them.",
							   &outbox_targets,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_targets, assign_targets, show_targets);

	DefineCustomStringVariable("outbox.secrets",
							   "Signing secrets of targets, as comma-separated name=whsec_<base64> pairs.",
							   "A target listed twice is signed with both secrets, for key rotation.",
							   &outbox_secrets,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   check_secrets, assign_secrets, show_secrets);

	DefineCustomStringVariable("outbox.secrets_file",
							   "File of signing secrets, one name=whsec_<base64> line each.",
							   "Only the server's operating system user may be able to read it.",
							   &outbox_secrets_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, assign_secrets_file, NULL);

	DefineCustomStringVariable("outbox.proxy",
							   "Proxy through which every request is sent; empty for none.",
							   "Proxy variables of the server's environment are ignored.",
							   &outbox_proxy,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_proxy, assign_proxy, show_proxy);

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
		outbox_load_databases();
	}
}
