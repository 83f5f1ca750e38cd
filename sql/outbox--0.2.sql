/* outbox--0.2.sql */

\echo Use "CREATE EXTENSION outbox" to load this file. \quit

CREATE SCHEMA outbox;

COMMENT ON SCHEMA outbox IS 'Transactional outbox: queued webhook messages';

CREATE TABLE outbox.messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target          text NOT NULL,
    message_type    text,
    key             text,
    message_id      text,
    payload         jsonb NOT NULL,
    headers         jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    via_wal         boolean NOT NULL DEFAULT false
);

COMMENT ON TABLE outbox.messages IS 'One row per queued message; the source of truth for delivery';
COMMENT ON COLUMN outbox.messages.via_wal IS 'Queued by outbox_queue: delivered through the WAL fast path';

CREATE TABLE outbox.attempts (
    message     bigint NOT NULL,
    attempt     integer NOT NULL,
    started_at  timestamptz NOT NULL,
    duration    interval NOT NULL,
    status      integer,
    error       text
);

COMMENT ON TABLE outbox.attempts IS 'One row per HTTP attempt, kept for outbox.retention';
COMMENT ON COLUMN outbox.attempts.message IS 'outbox.messages.id';
COMMENT ON COLUMN outbox.attempts.status IS 'HTTP status; NULL for a transport error';
COMMENT ON COLUMN outbox.attempts.error IS 'Why the attempt failed: HTTP status line or curl error';

CREATE INDEX attempts_message_idx ON outbox.attempts (message);
-- Rows arrive in time order, so a BRIN index finds old ones cheaply.
CREATE INDEX attempts_started_idx ON outbox.attempts USING brin (started_at);

-- The dispatcher finds due work through this index, and only pending rows
-- are in it, so it stays small however many messages were delivered.
CREATE INDEX messages_due_idx ON outbox.messages (next_attempt_at, id)
    WHERE state = 'pending';

-- Per-key order: the pending messages of a (target, key), in order.
CREATE INDEX messages_key_idx ON outbox.messages (target, key, id)
    WHERE state = 'pending' AND key IS NOT NULL;

-- outbox.status counts dead letters per target, and finds recently delivered
-- messages, without reading the delivered history.
CREATE INDEX messages_dead_idx ON outbox.messages (target)
    WHERE state = 'dead';
CREATE INDEX messages_delivered_idx ON outbox.messages (delivered_at)
    WHERE state = 'delivered';

-- Idempotent enqueue: one message per (target, message_id).
CREATE UNIQUE INDEX messages_message_id_idx ON outbox.messages (target, message_id)
    WHERE message_id IS NOT NULL;

-- The functions run as the extension's owner, so that the roles that use
-- them need no rights on the tables: producers can queue without being able
-- to read or change anyone's messages.  A fixed search_path keeps callers'
-- objects out of the functions' queries.

CREATE FUNCTION outbox_queue(
    target text,
    payload jsonb,
    message_type text DEFAULT NULL,
    key text DEFAULT NULL,
    message_id text DEFAULT NULL,
    headers jsonb DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_queue'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION outbox_queue(text, jsonb, text, text, text, jsonb)
    IS 'Queue a webhook, delivered within milliseconds of COMMIT';

CREATE FUNCTION outbox_send(
    target text,
    payload jsonb,
    message_type text DEFAULT NULL,
    key text DEFAULT NULL,
    message_id text DEFAULT NULL,
    headers jsonb DEFAULT NULL,
    deliver_at timestamptz DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_send'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION outbox_send(text, jsonb, text, text, text, jsonb, timestamptz)
    IS 'Queue a webhook for the table-polled path, optionally at deliver_at';

CREATE FUNCTION outbox_retry(id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'outbox_retry'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION outbox_retry(bigint)
    IS 'Return one dead message to pending, with its attempts reset';

CREATE FUNCTION outbox_redrive(target text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_redrive'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION outbox_redrive(text)
    IS 'Return every dead message of a target (NULL: of all targets) to pending';

CREATE FUNCTION outbox_purge_dead(older_than interval)
RETURNS bigint
AS 'MODULE_PATHNAME', 'outbox_purge_dead'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION outbox_purge_dead(interval)
    IS 'Delete dead messages queued longer ago than older_than';

CREATE FUNCTION outbox.target_state(
    OUT target text,
    OUT url text,
    OUT circuit text,
    OUT circuit_opened_at timestamptz,
    OUT consecutive_failures integer,
    OUT concurrency integer,
    OUT inflight integer,
    OUT last_success_at timestamptz,
    OUT last_failure_at timestamptz,
    OUT last_error text,
    OUT next_probe_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'outbox_target_state'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE VIEW outbox.targets AS SELECT * FROM outbox.target_state();

COMMENT ON VIEW outbox.targets
    IS 'Each configured target with its circuit breaker and delivery state';

CREATE FUNCTION outbox_stats(
    OUT requests bigint,
    OUT responses_2xx bigint,
    OUT responses_3xx bigint,
    OUT responses_4xx bigint,
    OUT responses_5xx bigint,
    OUT transport_errors bigint,
    OUT timeouts bigint,
    OUT bytes_sent bigint,
    OUT decoded_from_wal bigint,
    OUT found_by_scan bigint,
    OUT decoder_starts bigint,
    OUT dispatcher_starts bigint,
    OUT inflight bigint,
    OUT stats_reset timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'outbox_stats'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION outbox_stats()
    IS 'Live counters of the outbox workers since the last outbox_stats_reset()';

CREATE FUNCTION outbox_stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'outbox_stats_reset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE VIEW outbox.stats AS SELECT * FROM outbox_stats();

COMMENT ON VIEW outbox.stats IS 'Live counters of the outbox workers';

CREATE FUNCTION outbox.worker_state(
    OUT worker text,
    OUT pid integer,
    OUT state text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'outbox_worker_state'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION outbox.slot_name()
RETURNS text
AS 'MODULE_PATHNAME', 'outbox_slot_name_sql'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION outbox.slot_name()
    IS 'The replication slot of this database''s decoder; NULL if no outbox worker serves this database';

CREATE VIEW outbox.workers AS
SELECT w.worker, w.pid, w.state,
       s.slot_name,
       CASE WHEN s.restart_lsn IS NOT NULL AND NOT pg_is_in_recovery()
            THEN pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint
       END AS slot_retained_bytes,
       CASE WHEN s.confirmed_flush_lsn IS NOT NULL AND NOT pg_is_in_recovery()
            THEN pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint
       END AS slot_lag_bytes
  FROM outbox.worker_state() w
  LEFT JOIN pg_replication_slots s
    ON w.worker = 'decoder'
   AND s.slot_name = outbox.slot_name();

COMMENT ON VIEW outbox.workers
    IS 'What each outbox worker is doing, and the WAL its slot holds';

CREATE VIEW outbox.status AS
SELECT t.target,
       (SELECT count(*) FROM outbox.messages m
         WHERE m.state = 'pending' AND m.target = t.target) AS pending,
       (SELECT count(*) FROM outbox.messages m
         WHERE m.state = 'pending' AND m.target = t.target AND m.attempts > 0) AS retrying,
       (SELECT count(*) FROM outbox.messages m
         WHERE m.state = 'dead' AND m.target = t.target) AS dead,
       (SELECT count(*) FROM outbox.messages m
         WHERE m.state = 'delivered' AND m.target = t.target
           AND m.delivered_at > now() - interval '5 minutes') AS delivered_5min,
       (SELECT now() - min(m.created_at) FROM outbox.messages m
         WHERE m.state = 'pending' AND m.target = t.target) AS oldest_pending_age,
       t.last_success_at,
       t.last_failure_at,
       t.last_error,
       t.circuit
  FROM outbox.targets t;

COMMENT ON VIEW outbox.status
    IS 'Per target: pending, retrying and dead messages, deliveries in the last 5 minutes, the oldest pending message';

REVOKE ALL ON FUNCTION outbox_stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_stats_reset() FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox.worker_state() FROM PUBLIC;
REVOKE ALL ON outbox.stats, outbox.workers, outbox.status FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_retry(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_redrive(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_purge_dead(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox.target_state() FROM PUBLIC;
REVOKE ALL ON outbox.targets FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_queue(text, jsonb, text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_send(text, jsonb, text, text, text, jsonb, timestamptz) FROM PUBLIC;
