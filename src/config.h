/*-------------------------------------------------------------------------
 *
 * config.h
 *	  The outbox.* settings and the parsed target list (see config.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_CONFIG_H
#define OUTBOX_CONFIG_H

#include "nodes/pg_list.h"

/* Shortest signing key accepted, in bytes (decoded) */
#define OUTBOX_MIN_KEY_BYTES	24

extern char *outbox_targets;
extern char *outbox_slot_name;
extern char *outbox_secrets;
extern char *outbox_secrets_file;
extern char *outbox_proxy;
extern int	outbox_max_attempts;
extern int	outbox_retry_base_delay;	/* ms */
extern int	outbox_retry_max_delay;		/* ms */
extern int	outbox_request_timeout;		/* ms */
extern int	outbox_connect_timeout;		/* ms */
extern int	outbox_max_inflight;
extern int	outbox_max_payload_size;	/* kB */
extern int	outbox_circuit_failures;
extern int	outbox_retention;		/* s */

extern void outbox_define_gucs(void);
extern const char *outbox_target_url(const char *name);
extern int	outbox_target_count(void);
extern const char *outbox_target_name(int i);
extern char *outbox_target_list(void);
extern bool outbox_target_secrets(const char *name, List **keys,
								  const char **problem);
extern void outbox_hide_secrets_in_log(void);
extern char *outbox_mask_url(const char *url);
extern const char *outbox_proxy_url(void);
extern void outbox_worker_session_settings(void);

#endif							/* OUTBOX_CONFIG_H */
