/* outbox--0.1--0.2.sql */

\echo Use "ALTER EXTENSION outbox UPDATE TO '0.2'" to load this file. \quit

-- 0.2 serves several databases (outbox.databases), each with a slot of its
-- own: outbox.workers finds this database's slot by asking the library.

CREATE FUNCTION outbox.slot_name()
RETURNS text
AS 'MODULE_PATHNAME', 'outbox_slot_name_sql'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION outbox.slot_name()
    IS 'The replication slot of this database''s decoder; NULL if no outbox worker serves this database';

CREATE OR REPLACE VIEW outbox.workers AS
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
