/*-------------------------------------------------------------------------
 *
 * http.h
 *	  The libcurl multi driver (see http.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_HTTP_H
#define OUTBOX_HTTP_H

struct curl_slist;

typedef struct OutboxHttpResult
{
	void	   *owner;
	long		status;			/* HTTP status, 0 if no response */
	bool		transport_error;
	char		error[256];		/* curl error or HTTP status line */
	int64		retry_after_ms; /* Retry-After, -1 if none */
	bool		abort_message;	/* webhook-delivery: abort-message */
} OutboxHttpResult;

typedef void (*OutboxHttpDone) (OutboxHttpResult *result);

extern void outbox_http_init(void);
extern void outbox_http_start(void *owner, const char *url,
							  const char *body, size_t body_len,
							  struct curl_slist *headers);
extern int	outbox_http_inflight(void);
extern void outbox_http_wait(long timeout_ms, uint32 wait_event_info);
extern int	outbox_http_collect(OutboxHttpDone done);

#endif							/* OUTBOX_HTTP_H */
