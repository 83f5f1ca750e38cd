/*-------------------------------------------------------------------------
 *
 * request.c
 *	  Building and starting the HTTP request of a message: its body, its
 *	  headers (the Standard Webhooks ones, the signature, ours and the
 *	  message's own), and the bookkeeping of a request going out.
 *
 * The dispatcher decides which message goes and when; this file turns the
 * message into what libcurl sends, and marks it in flight for its target
 * and its key.  A request's body lives as long as the request, with its
 * tracked entry in outbox_message_context; everything else made on the way
 * is thrown away at once, in a scratch context of its own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "utils/memutils.h"

#include "config.h"
#include "dispatcher.h"
#include "http.h"
#include "message.h"
#include "ordering.h"
#include "policy.h"
#include "request.h"
#include "signature.h"
#include "tracking.h"

/* Scratch space for building a request, reset after each use */
static MemoryContext scratch_context = NULL;

typedef struct HeaderBuild
{
	struct curl_slist *list;
	StringInfo	line;
} HeaderBuild;

static void
add_header_line(HeaderBuild *hb, const char *name, const char *value)
{
	resetStringInfo(hb->line);
	appendStringInfo(hb->line, "%s: %s", name, value);
	hb->list = curl_slist_append(hb->list, hb->line->data);
}

static void
add_custom_header(const char *name, int name_len, const JsonbValue *value,
				  void *arg)
{
	HeaderBuild *hb = arg;

	/* Enqueue refused bad headers; rows written by hand are filtered here */
	if (value->type != jbvString ||
		outbox_header_problem(name, name_len, value->val.string.val,
							  value->val.string.len) != NULL)
		return;
	resetStringInfo(hb->line);
	if (value->val.string.len == 0)
	{
		/* For libcurl "Name:" removes a header; "Name;" sends it empty */
		appendStringInfo(hb->line, "%.*s;", name_len, name);
	}
	else
		appendStringInfo(hb->line, "%.*s: %.*s", name_len, name,
						 value->val.string.len, value->val.string.val);
	hb->list = curl_slist_append(hb->list, hb->line->data);
}

static struct curl_slist *
build_headers(OutboxMessage *msg, const char *body)
{
	StringInfoData line;
	HeaderBuild hb = {NULL, &line};
	char		number[32];
	char		timestamp[32];
	char	   *webhook_id = outbox_webhook_id(msg->id, msg->message_id);
	List	   *keys;
	const char *problem;
	char	   *signature;

	initStringInfo(&line);
	add_header_line(&hb, "Content-Type", "application/json");
	/* Never wait for "100 Continue" before sending the body */
	hb.list = curl_slist_append(hb.list, "Expect:");
	add_header_line(&hb, "webhook-id", webhook_id);
	snprintf(timestamp, sizeof(timestamp), "%lld", (long long) time(NULL));
	add_header_line(&hb, "webhook-timestamp", timestamp);
	if (outbox_target_secrets(msg->target, &keys, &problem) && keys != NIL)
	{
		signature = outbox_signature(keys, webhook_id, timestamp, body,
									 strlen(body));
		add_header_line(&hb, "webhook-signature", signature);
	}
	snprintf(number, sizeof(number), "%d", msg->attempts + 1);
	add_header_line(&hb, "outbox-attempt", number);
	if (msg->message_type)
		add_header_line(&hb, "outbox-type", msg->message_type);
	if (msg->key)
		add_header_line(&hb, "outbox-key", msg->key);
	outbox_headers_walk(msg->headers, add_custom_header, &hb);
	return hb.list;
}

/*
 * Start the request of t, a tracked message taken off its queue (or, for
 * the probe of an open circuit, just entered), now in flight.
 */
void
outbox_request_start(Tracked *t, bool probe)
{
	MemoryContext oldcxt;
	struct curl_slist *headers;
	StringInfoData body;

	if (scratch_context == NULL)
		scratch_context = AllocSetContextCreate(outbox_dispatcher_context,
												"outbox scratch",
												ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(outbox_message_context);

	/*
	 * The body lives as long as the request, in outbox_message_context; what
	 * JsonbToCString allocates on the side (a copy of every key and string,
	 * numbers as text) goes to scratch_context, or it would pile up.
	 */
	initStringInfo(&body);
	MemoryContextSwitchTo(scratch_context);
	t->body = JsonbToCString(&body, &t->msg->payload->root,
							 VARSIZE(t->msg->payload));
	t->state = OUTBOX_TRACK_INFLIGHT;
	t->probe = probe;
	t->started_at = GetCurrentTimestamp();
	headers = build_headers(t->msg, t->body);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(scratch_context);
	outbox_http_start(t, outbox_target_url(t->target->name), t->body,
					  strlen(t->body), headers);
	outbox_target_sent(t->target, probe);
	if (t->msg->key)
		outbox_key_started(t->target->name, t->msg->key);
}

