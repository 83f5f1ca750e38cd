/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  Library entry point: configuration, shared memory and the workers.
 *
 * Loaded through shared_preload_libraries, the library reserves its shared
 * memory and registers two background workers for each database it serves,
 * the decoder and the dispatcher.  Loaded on demand by a backend calling outbox_queue without
 * preloading, it only defines its configuration parameters: the functions
 * still queue, and the workers deliver once the server is set up properly.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "config.h"
#include "databases.h"
#include "decoder.h"
#include "dispatcher.h"
#include "outbox.h"
#include "shmem.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Seconds before the postmaster restarts a worker that exited with an error */
#define WORKER_RESTART_SECONDS	5

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	outbox_shmem_request();
}

static void
shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	outbox_shmem_startup();
}

/*
 * Register one worker for the database at "index"; bgw_type names the kind
 * of worker (pg_stat_activity.backend_type), bgw_name adds the database when
 * there are several.
 */
static void
register_worker(const char *type, const char *function, int index)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* PostgreSQL 15 cannot decode on a standby; both wait for promotion */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = WORKER_RESTART_SECONDS;
	strlcpy(worker.bgw_library_name, "outbox", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
	if (outbox_database_count() == 1)
		snprintf(worker.bgw_name, BGW_MAXLEN, "%s", type);
	else
		snprintf(worker.bgw_name, BGW_MAXLEN, "%s for database %s", type,
				 outbox_database_name(index));
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", type);
	worker.bgw_main_arg = Int32GetDatum(index);
	RegisterBackgroundWorker(&worker);
}

void
_PG_init(void)
{
	outbox_define_gucs();
	outbox_hide_secrets_in_log();

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shmem_startup;

	for (int i = 0; i < outbox_database_count(); i++)
	{
		register_worker("outbox decoder", "outbox_decoder_main", i);
		register_worker("outbox dispatcher", "outbox_dispatcher_main", i);
	}
}
