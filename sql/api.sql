--
-- The SQL surface: what CREATE EXTENSION installs and what the functions do.
--
CREATE EXTENSION outbox;

-- the extension, its schema and its functions
SELECT extname, extversion, extrelocatable FROM pg_extension WHERE extname = 'outbox';
SELECT proname, pronamespace::regnamespace AS schema, pg_get_function_arguments(oid) AS arguments,
       prorettype::regtype AS returns
  FROM pg_proc WHERE proname IN ('outbox_queue', 'outbox_send') ORDER BY proname;

-- outbox.messages has the documented columns
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull
  FROM pg_attribute
 WHERE attrelid = 'outbox.messages'::regclass AND attnum > 0 AND NOT attisdropped
 ORDER BY attnum;

-- outbox_queue returns the new message's id and stores a pending row
SELECT outbox_queue('orders', '{"order_id": 42}', 'OrderCreated') AS id \gset
SELECT id = :id AS same_id, target, message_type, key, message_id, payload, headers,
       state, attempts, last_status, last_error, delivered_at, via_wal,
       next_attempt_at = created_at AS due_now
  FROM outbox.messages WHERE id = :id;

-- every argument, by name
SELECT outbox_queue(target => 'billing', payload => '[1, 2]', message_type => 'InvoiceSent',
                    key => 'customer-7', message_id => 'inv-1',
                    headers => '{"x-tenant": "acme"}') AS id \gset
SELECT target, message_type, key, message_id, payload, headers, via_wal
  FROM outbox.messages WHERE id = :id;

-- outbox_send takes the table-polled path and may schedule for later
SELECT outbox_send('orders', '{"compensate": true}') AS id \gset
SELECT via_wal, state, next_attempt_at = created_at AS due_now FROM outbox.messages WHERE id = :id;
SELECT outbox_send('orders', '{"later": true}', deliver_at => '2099-01-01 00:00+00') AS id \gset
SELECT next_attempt_at = '2099-01-01 00:00+00' AS scheduled FROM outbox.messages WHERE id = :id;

-- message_ids that no derived webhook-id (msg_<id>, msg_<database>_<id>)
-- can equal are the caller's to choose
SELECT count(outbox_queue('orders', '{}', message_id => m)) AS queued
  FROM unnest(ARRAY['msg_2KWPBgLlAfxdpx2AI54pPJ85f4W', 'msg_abc', 'msg_12a', 'msg_1_',
                    'msg-3', 'MSG_3', 'msg_App_3', 'msg_', 'order_3', 'xmsg_3']) AS m;

-- headers that are not reserved pass as given
SELECT outbox_queue('orders', '{}', headers =>
       '{"x-tenant": "acme", "X-Request-Id": "r-1", "traceparent": "00-4bf9-00f0-01"}') AS id \gset
SELECT headers FROM outbox.messages WHERE id = :id;

-- a duplicate (target, message_id) returns the existing id and queues nothing
SELECT outbox_queue('orders', '{"v": 1}', message_id => 'order-42-created') AS first \gset
SELECT outbox_queue('orders', '{"v": 2}', message_id => 'order-42-created') = :first AS same_id;
SELECT outbox_send('orders', '{"v": 3}', message_id => 'order-42-created') = :first AS same_id;
SELECT count(*), min(payload::text) FROM outbox.messages WHERE message_id = 'order-42-created';

-- the same message_id for another target is another message
SELECT outbox_queue('billing', '{"v": 1}', message_id => 'order-42-created') <> :first AS new_id;

-- a rolled-back transaction leaves nothing behind
SELECT count(*) AS before FROM outbox.messages \gset
BEGIN;
SELECT outbox_queue('orders', '{"rolled": "back"}') > 0 AS queued;
ROLLBACK;
SELECT count(*) = :before AS nothing_left FROM outbox.messages;

-- a keyed message holds a lock on its (target, key) until the transaction
-- ends, which pg_locks shows; unkeyed messages take none
BEGIN;
SELECT outbox_queue('orders', '{}') > 0 AS queued_unkeyed;
SELECT count(*) AS key_locks FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT outbox_queue('orders', '{}', key => 'customer-9') > 0 AS queued,
       outbox_send('orders', '{}', key => 'customer-9') > 0 AS sent;
SELECT outbox_queue('billing', '{}', key => 'customer-9') > 0 AS queued_other_target;
SELECT locktype, database = (SELECT oid FROM pg_database WHERE datname = current_database()) AS this_database,
       objsubid, mode, granted
  FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
ROLLBACK;
SELECT count(*) AS key_locks_after_rollback FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- outbox_retry returns one dead message to pending, with attempts (failed
-- probes included) reset
UPDATE outbox.messages SET state = 'dead', attempts = 12, probe_failures = 4,
       last_status = 500
 WHERE message_id IN ('inv-1', 'order-42-created');
SELECT outbox_retry(id) FROM outbox.messages WHERE message_id = 'inv-1';
SELECT state, attempts, probe_failures, last_status, next_attempt_at <= now() AS due_now
  FROM outbox.messages WHERE message_id = 'inv-1';
-- a message that is not dead is left alone
SELECT outbox_retry(id) FROM outbox.messages WHERE message_id = 'inv-1';
SELECT outbox_retry(-1);

-- outbox_redrive returns the dead messages of one target, or of all
SELECT outbox_redrive('orders');
SELECT outbox_redrive('orders');
UPDATE outbox.messages SET state = 'dead' WHERE state = 'pending';
SELECT outbox_redrive() = count(*) AS all_redriven FROM outbox.messages;
SELECT count(*) AS still_dead FROM outbox.messages WHERE state = 'dead';

-- outbox_purge_dead removes dead messages older than the given age only
UPDATE outbox.messages SET state = 'dead' WHERE message_id = 'inv-1';
SELECT outbox_purge_dead('1 hour');
SELECT outbox_purge_dead('0 seconds');
SELECT count(*) AS dead_left FROM outbox.messages WHERE state = 'dead';

-- outbox.attempts keeps one row per HTTP attempt
SELECT attname, format_type(atttypid, atttypmod) AS type
  FROM pg_attribute
 WHERE attrelid = 'outbox.attempts'::regclass AND attnum > 0 AND NOT attisdropped
 ORDER BY attnum;

-- outbox.targets lists the configured targets; without the workers their
-- circuits are closed and nothing is known yet
SELECT target, url, circuit, consecutive_failures, last_error FROM outbox.targets;

-- the monitoring views answer, with nothing to say, when the library is
-- not preloaded (no workers, no shared memory)
SELECT target, pending, retrying, dead, delivered_5min, circuit FROM outbox.status ORDER BY target;
SELECT requests, inflight, stats_reset IS NULL AS no_stats FROM outbox.stats;
SELECT count(*) AS workers FROM outbox.workers;
SELECT outbox_stats_reset();

-- functions are not executable by PUBLIC
CREATE ROLE outbox_nobody;
SET ROLE outbox_nobody;
SELECT outbox_queue('orders', '{}');
SELECT outbox_send('orders', '{}');
SELECT outbox_redrive();
SELECT * FROM outbox.targets;
SELECT * FROM outbox_stats();
SELECT outbox_stats_reset();
-- nor can they read the signing secrets
-- (the error's code only: its wording differs between PostgreSQL majors)
\set VERBOSITY sqlstate
SHOW outbox.secrets;
SELECT current_setting('outbox.secrets');
\set VERBOSITY default
SELECT count(*) FROM pg_settings WHERE name = 'outbox.secrets';
RESET ROLE;
DROP ROLE outbox_nobody;

-- a producer needs EXECUTE only: it queues without rights on the tables,
-- and cannot read or change the messages, its own included
CREATE ROLE outbox_producer;
GRANT EXECUTE ON FUNCTION outbox_queue(text, jsonb, text, text, text, jsonb),
                          outbox_send(text, jsonb, text, text, text, jsonb, timestamptz)
   TO outbox_producer;
SET ROLE outbox_producer;
SELECT outbox_queue('orders', '{"from": "producer"}', message_id => 'p-1') > 0 AS queued;
SELECT outbox_send('orders', '{"from": "producer"}', message_id => 'p-2') > 0 AS sent;
SELECT count(*) FROM outbox.messages;
UPDATE outbox.messages SET state = 'delivered';
SELECT outbox_redrive();
-- a search_path of the caller's choosing changes nothing in the functions:
-- here the caller's now() would make the message look due in 2000
RESET ROLE;
CREATE SCHEMA producer_tricks AUTHORIZATION outbox_producer;
SET ROLE outbox_producer;
CREATE FUNCTION producer_tricks.now() RETURNS timestamptz
    LANGUAGE sql AS $$ SELECT '2000-01-01 00:00+00'::timestamptz $$;
SET search_path = producer_tricks, pg_catalog, public;
SELECT outbox_queue('orders', '{"from": "producer"}', message_id => 'p-3') > 0 AS queued;
RESET search_path;
RESET ROLE;
SELECT message_id, payload, next_attempt_at > '2001-01-01' AS due_now_not_in_2000
  FROM outbox.messages WHERE message_id LIKE 'p-%' ORDER BY message_id;
DROP SCHEMA producer_tricks CASCADE;
REVOKE ALL ON FUNCTION outbox_queue(text, jsonb, text, text, text, jsonb),
                       outbox_send(text, jsonb, text, text, text, jsonb, timestamptz)
  FROM outbox_producer;
DROP ROLE outbox_producer;

-- DROP EXTENSION removes everything it created; CREATE starts afresh
DROP EXTENSION outbox;
SELECT count(*) FROM pg_namespace WHERE nspname = 'outbox';
SELECT count(*) FROM pg_proc WHERE proname IN ('outbox_queue', 'outbox_send');
CREATE EXTENSION outbox;
SELECT outbox_queue('orders', '{"again": true}');
DROP EXTENSION outbox;
