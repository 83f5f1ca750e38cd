/*-------------------------------------------------------------------------
 *
 * outbox.h
 *	  Names and limits shared by every part of the outbox extension.
 *
 * The library has one file per responsibility:
 *
 *	outbox.c		_PG_init: GUCs, shared memory hooks, worker registration
 *	config.c		GUC definitions and the parsed target list
 *	databases.c	the databases served and their slot names
 *	shmem.c			shared state: worker latches, flags, decoded-message ring
 *	api.c			SQL-callable functions and the wake-up at commit
 *	message.c		wire format of a decoded message, webhook ids, headers
 *	signature.c		Standard Webhooks signatures
 *	sql.c			saved SPI plans
 *	views.c			functions behind the monitoring views
 *	plugin.c		the logical decoding output plugin
 *	decoder.c		decoder worker: owns the slot, decodes WAL, runs no SQL
 *	dispatcher.c	dispatcher worker: event loop, what to send when
 *	store.c			the dispatcher's queries on the tables
 *	tracking.c		the messages the dispatcher holds, and the targets' queues
 *	outcomes.c		outcomes held until they are recorded
 *	request.c		building and starting a message's request
 *	ordering.c		per-key order
 *	policy.c		failure policy: retries, dead letters, circuit breakers
 *	policy_test.c	a test-only SQL function running the policy on its own clock
 *	http.c			libcurl multi driver integrated with a WaitEventSet
 *
 * Each file has a header of its own, named for it, with what it exports.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_H
#define OUTBOX_H

#define OUTBOX_EXTENSION_NAME	"outbox"
#define OUTBOX_SCHEMA_NAME		"outbox"
#define OUTBOX_TABLE_NAME		"messages"
#define OUTBOX_PLUGIN_NAME		"outbox"

/* Longest target name, and how many targets outbox.targets may list */
#define OUTBOX_TARGET_NAME_MAXLEN	63
#define OUTBOX_MAX_TARGETS		64

#endif							/* OUTBOX_H */
