/*-------------------------------------------------------------------------
 *
 * message.c
 *	  The wire format of a decoded message, and webhook ids.
 *
 * The output plugin encodes each queued row into this format; the decoder
 * passes it through the shared ring unchanged; the dispatcher decodes it into
 * an OutboxMessage.  Messages found by a table scan are encoded the same way,
 * so the dispatcher has a single representation.
 *
 * Layout: id (int64), commit LSN (uint64), then as int32: the OID of the
 * table the row belongs to, xid, attempts, probe_failures; then target,
 * message_id, message_type, key as (int32 length incl. NUL, or -1 for NULL)
 * followed by the bytes, then headers and payload as (int32 length or -1)
 * followed by the jsonb varlena, each starting at a MAXALIGN'd offset so
 * that it can be used in place.
 *
 * The table's OID tells rows of a dropped outbox.messages from rows of the
 * one CREATE EXTENSION made again: ids start from 1 in each, so an id alone
 * would let an outcome land on another message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "common/hashfn.h"

#include "message.h"
#include "shmem.h"

static void
put_int32(StringInfo out, int32 v)
{
	appendBinaryStringInfo(out, (char *) &v, sizeof(v));
}

static void
put_string(StringInfo out, const char *s)
{
	if (s == NULL)
		put_int32(out, -1);
	else
	{
		int32		len = strlen(s) + 1;

		put_int32(out, len);
		appendBinaryStringInfo(out, s, len);
	}
}

static void
put_jsonb(StringInfo out, Jsonb *j)
{
	if (j == NULL)
		put_int32(out, -1);
	else
	{
		int32		len = VARSIZE(j);

		put_int32(out, len);
		while (out->len != MAXALIGN(out->len))
			appendStringInfoCharMacro(out, '\0');
		appendBinaryStringInfo(out, (char *) j, len);
	}
}

void
outbox_message_encode(StringInfo out, const OutboxMessage *msg)
{
	Assert(out->len == 0);
	appendBinaryStringInfo(out, (char *) &msg->id, sizeof(msg->id));
	appendBinaryStringInfo(out, (char *) &msg->commit_lsn,
						   sizeof(msg->commit_lsn));
	put_int32(out, (int32) msg->relid);
	put_int32(out, (int32) msg->xid);
	put_int32(out, msg->attempts);
	put_int32(out, msg->probe_failures);
	put_string(out, msg->target);
	put_string(out, msg->message_id);
	put_string(out, msg->message_type);
	put_string(out, msg->key);
	put_jsonb(out, msg->headers);
	put_jsonb(out, msg->payload);
}

/* The commit LSN of an encoded message, without decoding the rest */
XLogRecPtr
outbox_message_commit_lsn(const char *buf, uint32 len)
{
	XLogRecPtr	lsn;

	if (len < sizeof(int64) + sizeof(XLogRecPtr))
		elog(ERROR, "outbox message truncated");
	memcpy(&lsn, buf + sizeof(int64), sizeof(XLogRecPtr));
	return lsn;
}

static int32
get_int32(const char *data, uint32 *pos, uint32 len)
{
	int32		v;

	if (*pos + sizeof(v) > len)
		elog(ERROR, "outbox message truncated");
	memcpy(&v, data + *pos, sizeof(v));
	*pos += sizeof(v);
	return v;
}

static char *
get_bytes(char *data, uint32 *pos, uint32 len, bool align)
{
	int32		n = get_int32(data, pos, len);
	char	   *p;

	if (n < 0)
		return NULL;
	if (align)
		*pos = MAXALIGN(*pos);
	if (*pos + n > len)
		elog(ERROR, "outbox message truncated");
	p = data + *pos;
	*pos += n;
	return p;
}

/*
 * Decode a record made by outbox_message_encode.  buf must be MAXALIGN'd
 * (palloc'd): the result is a copy, with its jsonb values aligned in place.
 */
OutboxMessage *
outbox_message_decode(const char *buf, uint32 len)
{
	OutboxMessage *msg = palloc(sizeof(OutboxMessage));
	uint32		pos = 0;

	msg->data = palloc(len);
	msg->size = len;
	memcpy(msg->data, buf, len);
	if (len < sizeof(int64) + sizeof(XLogRecPtr))
		elog(ERROR, "outbox message truncated");
	memcpy(&msg->id, msg->data + pos, sizeof(int64));
	pos += sizeof(int64);
	memcpy(&msg->commit_lsn, msg->data + pos, sizeof(XLogRecPtr));
	pos += sizeof(XLogRecPtr);
	msg->relid = (Oid) get_int32(msg->data, &pos, len);
	msg->xid = (TransactionId) get_int32(msg->data, &pos, len);
	msg->attempts = get_int32(msg->data, &pos, len);
	msg->probe_failures = get_int32(msg->data, &pos, len);
	msg->target = get_bytes(msg->data, &pos, len, false);
	msg->message_id = get_bytes(msg->data, &pos, len, false);
	msg->message_type = get_bytes(msg->data, &pos, len, false);
	msg->key = get_bytes(msg->data, &pos, len, false);
	msg->headers = (Jsonb *) get_bytes(msg->data, &pos, len, true);
	msg->payload = (Jsonb *) get_bytes(msg->data, &pos, len, true);
	if (msg->target == NULL || msg->payload == NULL)
		elog(ERROR, "outbox message %lld has no target or payload",
			 (long long) msg->id);
	return msg;
}

void
outbox_message_free(OutboxMessage *msg)
{
	pfree(msg->data);
	pfree(msg);
}

/*
 * The hash of a (target, key), by which the producers of a key serialise
 * (api.c) and the dispatcher keeps the state of a key (ordering.c).  Two
 * keys may share a hash: then they are ordered together, which delays but
 * never reorders.
 */
uint64
outbox_key_hash(const char *target, const char *key)
{
	uint64		h = hash_bytes_extended((const unsigned char *) target,
										strlen(target), 0);

	return hash_bytes_extended((const unsigned char *) key, strlen(key), h);
}

/*
 * The webhook-id of a message: the caller's message_id, or one derived from
 * the row id, which never changes across retries, restarts and redrives:
 * "msg_<id>", or "msg_<database>_<id>" when several databases are served,
 * since each database numbers its messages from 1.
 */
char *
outbox_webhook_id(int64 id, const char *message_id)
{
	if (message_id != NULL)
		return pstrdup(message_id);
	return psprintf("%s%lld", outbox_shared->webhook_id_prefix, (long long) id);
}

/*
 * Call fn for each member of a headers object.  Iteration stops at nested
 * values (whose tokens are skipped) so fn only sees top-level members.
 */
void
outbox_headers_walk(Jsonb *headers, OutboxHeaderFn fn, void *arg)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *name = NULL;
	int			name_len = 0;

	if (headers == NULL || !JB_ROOT_IS_OBJECT(headers))
		return;
	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			name = v.val.string.val;
			name_len = v.val.string.len;
		}
		else if (tok == WJB_VALUE)
			fn(name, name_len, &v, arg);
	}
}

/*
 * Header names a message may not set: those that frame the request, those
 * that carry credentials (Authorization would replace the URL's, and the
 * receiver would take the producer for whoever owns them), and those that
 * proxies and frameworks trust to say who is calling or which method is
 * meant.  Then the prefixes of names that are reserved as well: the
 * outbox's own protocol, and X-Forwarded-*.
 */
static const char *const reserved_headers[] = {
	"content-length", "content-type", "transfer-encoding", "host",
	"connection", "keep-alive", "proxy-connection", "expect", "te",
	"trailer", "upgrade",
	"authorization", "proxy-authorization", "cookie",
	"forwarded", "x-forwarded",
	"x-http-method-override", "x-http-method", "x-method-override"
};
static const char *const reserved_header_prefixes[] = {
	"webhook-", "outbox-", "x-forwarded-"
};

/*
 * Is this a reserved header name (in any case)?
 */
bool
outbox_header_reserved(const char *name, int name_len)
{
	for (int i = 0; i < lengthof(reserved_headers); i++)
	{
		if (strlen(reserved_headers[i]) == name_len &&
			pg_strncasecmp(name, reserved_headers[i], name_len) == 0)
			return true;
	}
	for (int i = 0; i < lengthof(reserved_header_prefixes); i++)
	{
		int			len = strlen(reserved_header_prefixes[i]);

		if (name_len >= len &&
			pg_strncasecmp(name, reserved_header_prefixes[i], len) == 0)
			return true;
	}
	return false;
}

/*
 * The reserved header names, for a hint: "content-length, ..., webhook-*".
 */
char *
outbox_reserved_headers(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(reserved_headers); i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", reserved_headers[i]);
	for (int i = 0; i < lengthof(reserved_header_prefixes); i++)
		appendStringInfo(&buf, ", %s*", reserved_header_prefixes[i]);
	return buf.data;
}

/*
 * Is this header one a message may set?  Returns NULL if so, or the reason.
 * Names must be HTTP tokens and not reserved (see reserved_headers); values
 * must not break the line.
 */
const char *
outbox_header_problem(const char *name, int name_len,
					  const char *value, int value_len)
{
	if (name_len == 0)
		return "header name is empty";
	for (int i = 0; i < name_len; i++)
	{
		unsigned char c = (unsigned char) name[i];

		if (!(isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL) || c == '\0')
			return "header name contains a character that is not allowed in HTTP header names";
	}
	if (outbox_header_reserved(name, name_len))
		return "header name is reserved";
	for (int i = 0; i < value_len; i++)
	{
		unsigned char c = (unsigned char) value[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return "header value contains a control character";
	}
	return NULL;
}
