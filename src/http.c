/*-------------------------------------------------------------------------
 *
 * http.c
 *	  The HTTP dispatcher: libcurl's multi interface in a WaitEventSet.
 *
 * All requests share one curl multi handle, so connections to a target are
 * kept alive and reused.  curl tells us which sockets to watch (socket
 * callback) and when it next needs to run (timer callback); we wait on those
 * sockets, the process latch and postmaster death in a single WaitEventSet,
 * so a commit wakes the dispatcher as promptly as a socket does.  PostgreSQL
 * 15 cannot remove an event from a set, so the set is rebuilt whenever curl
 * adds or removes a socket; with keep-alive that is rare.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "compat.h"
#include "config.h"
#include "http.h"
#include "shmem.h"

/* A response body larger than this is cut off and counts as a failure */
#define MAX_RESPONSE_BYTES		(1024 * 1024)

typedef struct HttpRequest
{
	CURL	   *easy;
	void	   *owner;
	struct curl_slist *headers;
	size_t		received;
	char		status_line[256];	/* raw bytes, as received */
	size_t		status_len;
	char		errbuf[CURL_ERROR_SIZE];
} HttpRequest;

typedef struct SocketEntry
{
	curl_socket_t fd;			/* hash key */
	int			what;			/* CURL_POLL_* */
	int			pos;			/* position in the wait set, -1 if none */
} SocketEntry;

static CURLM *multi = NULL;
static HTAB *sockets = NULL;
static MemoryContext http_context = NULL;
static WaitEventSet *wait_set = NULL;
static bool wait_set_stale = true;
static TimestampTz curl_deadline = 0;	/* 0: curl needs no timer */
static bool curl_timer_set = false;
static int	inflight = 0;

/*
 * Set an option, or fail.  A failed setopt means this libcurl lacks
 * something a request depends on (a proxy setting, a protocol limit): no
 * request may go out without it.
 */
#define easy_setopt(easy, option, value) \
	do { \
		CURLcode	rc_ = curl_easy_setopt((easy), (option), (value)); \
		if (rc_ != CURLE_OK) \
			elog(ERROR, "could not set libcurl option %s: %s", #option, \
				 curl_easy_strerror(rc_)); \
	} while (0)

#define multi_setopt(multi, option, value) \
	do { \
		CURLMcode	rc_ = curl_multi_setopt((multi), (option), (value)); \
		if (rc_ != CURLM_OK) \
			elog(ERROR, "could not set libcurl option %s: %s", #option, \
				 curl_multi_strerror(rc_)); \
	} while (0)

/*
 * Copy the len bytes at src, as received from a receiver or from libcurl,
 * into dst as text that is valid in every server encoding and holds no
 * control characters: printable ASCII is kept, every other byte (and "\")
 * becomes \xNN.  The text is cut, if it must be, between two such units.
 */
static void
copy_as_text(char *dst, size_t dstsize, const char *src, size_t len)
{
	size_t		out = 0;

	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) src[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
		{
			if (out + 1 >= dstsize)
				break;
			dst[out++] = c;
		}
		else
		{
			if (out + 4 >= dstsize)
				break;
			snprintf(dst + out, 5, "\\x%02x", c);
			out += 4;
		}
	}
	dst[out] = '\0';
}

static uint32
socket_events(int what)
{
	uint32		events = 0;

	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		events |= WL_SOCKET_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		events |= WL_SOCKET_WRITEABLE;
	return events;
}

static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp,
				void *socketp)
{
	SocketEntry *entry;
	bool		found;

	if (what == CURL_POLL_REMOVE)
	{
		hash_search(sockets, &fd, HASH_REMOVE, NULL);
		wait_set_stale = true;
		return 0;
	}

	entry = hash_search(sockets, &fd, HASH_ENTER, &found);
	if (!found)
	{
		entry->pos = -1;
		entry->what = what;
		wait_set_stale = true;
	}
	else if (entry->what != what)
	{
		entry->what = what;
		if (wait_set_stale || entry->pos < 0 || socket_events(what) == 0)
			wait_set_stale = true;
		else
			ModifyWaitEvent(wait_set, entry->pos, socket_events(what), NULL);
	}
	return 0;
}

static int
timer_callback(CURLM *m, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		curl_timer_set = false;
	else
	{
		curl_timer_set = true;
		curl_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													timeout_ms);
	}
	return 0;
}

void
outbox_http_init(void)
{
	HASHCTL		ctl;

	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		elog(ERROR, "could not initialize libcurl");
	multi = curl_multi_init();
	if (multi == NULL)
		elog(ERROR, "could not create a libcurl multi handle");
	multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
	multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_callback);

	http_context = AllocSetContextCreate(TopMemoryContext, "outbox http",
										 ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = sizeof(curl_socket_t);
	ctl.entrysize = sizeof(SocketEntry);
	ctl.hcxt = http_context;
	sockets = hash_create("outbox curl sockets", 64, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	HttpRequest *req = userp;

	req->received += size * nmemb;
	if (req->received > MAX_RESPONSE_BYTES)
		return 0;				/* abort the transfer */
	return size * nmemb;
}

/*
 * Keep the status line of the response, for last_error: libcurl parses the
 * status code, but keeps no reason phrase.  A new response (after 1xx
 * interim ones) replaces the line of the one before.
 */
static size_t
header_callback(char *data, size_t size, size_t nitems, void *userp)
{
	HttpRequest *req = userp;
	size_t		len = size * nitems;

	if (len > 5 && strncmp(data, "HTTP/", 5) == 0)
	{
		size_t		line_len = len;

		while (line_len > 0 &&
			   (data[line_len - 1] == '\r' || data[line_len - 1] == '\n'))
			line_len--;
		req->status_len = Min(line_len, sizeof(req->status_line));
		memcpy(req->status_line, data, req->status_len);
	}
	return len;
}

/*
 * What the final response asks of its message.  Retry-After, as delay
 * seconds or an HTTP date, is what libcurl reads it as: seconds from now,
 * and 0 when it is absent, unreadable or in the past; then the backoff
 * decides.  "webhook-delivery: abort-message" makes the message dead.
 */
static void
read_directives(CURL *easy, OutboxHttpResult *result)
{
	struct curl_header *h;
	curl_off_t	seconds = 0;

	result->retry_after_ms = -1;
	if (curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &seconds) == CURLE_OK &&
		seconds > 0)
		result->retry_after_ms = (int64) Min(seconds, (curl_off_t) INT_MAX) * 1000;
	result->abort_message =
		curl_easy_header(easy, "webhook-delivery", 0, CURLH_HEADER, -1,
						 &h) == CURLHE_OK &&
		pg_strcasecmp(h->value, "abort-message") == 0;
}

/*
 * Start a POST of body to url.  body and headers must stay valid until the
 * request completes; headers is freed with curl_slist_free_all then.
 */
void
outbox_http_start(void *owner, const char *url, const char *body,
				  size_t body_len, struct curl_slist *headers)
{
	HttpRequest *req = MemoryContextAllocZero(http_context,
											  sizeof(HttpRequest));
	CURL	   *easy = curl_easy_init();
	CURLMcode	mrc;

	static long maxconnects = 0;

	if (easy == NULL)
		elog(ERROR, "could not create a libcurl easy handle");

	/*
	 * Keep as many idle connections as requests can be in flight: curl's
	 * default follows the number of transfers, so connections would be
	 * closed between bursts and opened again.
	 */
	if (maxconnects != outbox_max_inflight)
	{
		maxconnects = outbox_max_inflight;
		multi_setopt(multi, CURLMOPT_MAXCONNECTS, maxconnects);
	}
	req->easy = easy;
	req->owner = owner;
	req->headers = headers;

	easy_setopt(easy, CURLOPT_PRIVATE, req);
	easy_setopt(easy, CURLOPT_URL, url);
	easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");

	/*
	 * Only outbox.proxy names a proxy: "" turns off libcurl's use of the
	 * proxy variables of the environment (http_proxy, all_proxy, ...),
	 * which would hand bodies, signatures and URL credentials to whoever
	 * set them, and an empty NOPROXY list turns off no_proxy.
	 */
	easy_setopt(easy, CURLOPT_PROXY, outbox_proxy_url());
	easy_setopt(easy, CURLOPT_NOPROXY, "");
	easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) outbox_request_timeout);
	easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
				(long) outbox_connect_timeout);
	easy_setopt(easy, CURLOPT_POST, 1L);
	easy_setopt(easy, CURLOPT_POSTFIELDS, body);
	easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
	easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	easy_setopt(easy, CURLOPT_USERAGENT, "outbox/" OUTBOX_VERSION);
	easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_callback);
	easy_setopt(easy, CURLOPT_WRITEDATA, req);
	easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_callback);
	easy_setopt(easy, CURLOPT_HEADERDATA, req);
	easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);

	mrc = curl_multi_add_handle(multi, easy);
	if (mrc != CURLM_OK)
		elog(ERROR, "could not start an HTTP request: %s",
			 curl_multi_strerror(mrc));
	inflight++;
	outbox_count(OUTBOX_STAT_REQUESTS, 1);
	outbox_count(OUTBOX_STAT_BYTES_SENT, body_len);
}

int
outbox_http_inflight(void)
{
	return inflight;
}

static void
rebuild_wait_set(void)
{
	HASH_SEQ_STATUS status;
	SocketEntry *entry;

	if (wait_set)
		FreeWaitEventSet(wait_set);
	wait_set = outbox_create_wait_event_set(http_context,
											2 + hash_get_num_entries(sockets));
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL,
					  NULL);
	hash_seq_init(&status, sockets);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		uint32		events = socket_events(entry->what);

		entry->pos = -1;
		if (events != 0)
			entry->pos = AddWaitEventToSet(wait_set, events, entry->fd, NULL,
										   NULL);
	}
	wait_set_stale = false;
}

static void
socket_action(curl_socket_t fd, int flags)
{
	int			running;
	CURLMcode	mrc;

	mrc = curl_multi_socket_action(multi, fd, flags, &running);
	if (mrc != CURLM_OK)
		elog(ERROR, "libcurl failed: %s", curl_multi_strerror(mrc));
}

/*
 * Wait up to timeout_ms (-1: no limit) for the latch, a socket or curl's
 * timer, and let curl make progress.  The latch is reset here; the caller
 * must then look at everything a latch may announce.
 */
void
outbox_http_wait(long timeout_ms, uint32 wait_event_info)
{
	WaitEvent	events[64];
	int			n;

	if (wait_set_stale)
		rebuild_wait_set();

	if (curl_timer_set)
	{
		long		curl_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
															  curl_deadline);

		if (timeout_ms < 0 || curl_ms < timeout_ms)
			timeout_ms = curl_ms;
	}

	n = WaitEventSetWait(wait_set, timeout_ms, events, lengthof(events),
						 wait_event_info);
	for (int i = 0; i < n; i++)
	{
		WaitEvent  *ev = &events[i];

		if (ev->events & WL_LATCH_SET)
			ResetLatch(MyLatch);
		else if (ev->events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
		{
			int			flags = 0;

			if (ev->events & WL_SOCKET_READABLE)
				flags |= CURL_CSELECT_IN;
			if (ev->events & WL_SOCKET_WRITEABLE)
				flags |= CURL_CSELECT_OUT;
			socket_action(ev->fd, flags);
		}
	}

	if (curl_timer_set && GetCurrentTimestamp() >= curl_deadline)
	{
		curl_timer_set = false;
		socket_action(CURL_SOCKET_TIMEOUT, 0);
	}
}

/*
 * Report each finished request to done(), then free it.  Returns how many
 * finished.
 */
int
outbox_http_collect(OutboxHttpDone done)
{
	CURLMsg    *msg;
	int			left;
	int			count = 0;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		HttpRequest *req;
		OutboxHttpResult result;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);

		memset(&result, 0, sizeof(result));
		result.owner = req->owner;
		result.retry_after_ms = -1;
		if (msg->data.result == CURLE_OK)
		{
			curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &result.status);
			copy_as_text(result.error, sizeof(result.error),
						 req->status_line, req->status_len);
			read_directives(req->easy, &result);
			if (result.status >= 200 && result.status < 600)
				outbox_count(OUTBOX_STAT_2XX + (result.status / 100 - 2), 1);
		}
		else
		{
			result.transport_error = true;
			outbox_count(OUTBOX_STAT_TRANSPORT_ERRORS, 1);
			if (msg->data.result == CURLE_OPERATION_TIMEDOUT)
				outbox_count(OUTBOX_STAT_TIMEOUTS, 1);
			if (msg->data.result == CURLE_WRITE_ERROR &&
				req->received > MAX_RESPONSE_BYTES)
				snprintf(result.error, sizeof(result.error),
						 "response body larger than %d bytes",
						 MAX_RESPONSE_BYTES);
			else
			{
				const char *error = req->errbuf[0] ? req->errbuf :
					curl_easy_strerror(msg->data.result);

				copy_as_text(result.error, sizeof(result.error), error,
							 strlen(error));
			}
		}

		curl_multi_remove_handle(multi, req->easy);
		curl_easy_cleanup(req->easy);
		curl_slist_free_all(req->headers);
		pfree(req);
		inflight--;
		count++;

		done(&result);
	}
	return count;
}
