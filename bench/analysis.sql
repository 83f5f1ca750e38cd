-- The benchmark's analysis, run by bench/bench.pl once the receiver has
-- stopped (which flushes its access log):
--
--   psql -X -At -v ON_ERROR_STOP=1 -v hooks_log=FILE -v target=orders -f analysis.sql
--
-- Input: FILE, nginx's access log, one line per request: webhook-id, $msec
-- (time answered), status, connection serial number, requests on that
-- connection, outbox-key ("-" when none); and the table bench_phase (name,
-- lo, hi), the message ids (lo, hi] each measured phase queued.
--
-- Output: one row per measure, "phase|measure|value"; phase "all" is the
-- whole run.  Only the messages of :target count (the memory phase queues
-- to other targets, whose messages are never meant to be delivered).
--
-- Commit time of a message: its payload's "ts", the producer's
-- clock_timestamp() in the outbox_queue statement, before COMMIT and its
-- fsync.  Receipt time: $msec + 1 ms ($msec is truncated to the
-- millisecond).  The latencies are therefore upper bounds.

CREATE TABLE bench_log (
    line          bigserial,    -- COPY keeps the file's order: the order answered
    webhook_id    text,
    msec          numeric,
    status        int,
    conn          bigint,
    conn_requests int,
    key           text
);
COPY bench_log (webhook_id, msec, status, conn, conn_requests, key)
    FROM :'hooks_log' WITH (FORMAT text, DELIMITER ' ');

-- One row per message id received: its first 2xx answer (time and place in
-- the log), the key it carried, how many requests and 2xx answers it had
CREATE TABLE bench_recv AS
    SELECT substr(webhook_id, 5)::bigint AS id,
           min(msec) FILTER (WHERE status BETWEEN 200 AND 299) AS received,
           min(line) FILTER (WHERE status BETWEEN 200 AND 299) AS line,
           min(nullif(key, '-')) AS key,
           count(*) AS requests,
           count(*) FILTER (WHERE status BETWEEN 200 AND 299) AS ok
      FROM bench_log
     WHERE webhook_id ~ '^msg_[0-9]+$'
     GROUP BY 1;
CREATE UNIQUE INDEX ON bench_recv (id);
ANALYZE bench_recv;

CREATE TEMP VIEW bench_messages AS
    SELECT * FROM outbox.messages WHERE target = :'target';

-- What happened to every message queued
SELECT 'all', 'queued', count(*) FROM bench_messages
UNION ALL
SELECT 'all', 'lost', count(*)    -- never answered with a 2xx
  FROM bench_messages m
 WHERE NOT EXISTS (SELECT 1 FROM bench_recv r WHERE r.id = m.id AND r.ok > 0)
UNION ALL
SELECT 'all', 'duplicates', count(*) FROM bench_recv WHERE ok > 1
UNION ALL
SELECT 'all', 'not_ok', count(*)
  FROM bench_log WHERE webhook_id ~ '^msg_' AND status NOT BETWEEN 200 AND 299
UNION ALL
SELECT 'all', 'undelivered', count(*) FROM bench_messages WHERE state <> 'delivered'
UNION ALL
SELECT 'all', 'stray', count(*)   -- received ids that were never queued
  FROM bench_recv r WHERE NOT EXISTS (SELECT 1 FROM outbox.messages m WHERE m.id = r.id)
UNION ALL
-- TCP connections the outbox opened to the receiver (keep-alive reuse)
SELECT 'all', 'connections', count(DISTINCT conn)
  FROM bench_log WHERE webhook_id ~ '^msg_'
UNION ALL
SELECT 'all', 'requests_per_connection',
       round(count(*)::numeric / greatest(count(DISTINCT conn), 1))
  FROM bench_log WHERE webhook_id ~ '^msg_';

-- Per phase: commit -> receipt latency, payload size
SELECT p.name, s.measure, s.value
  FROM bench_phase p,
       LATERAL (SELECT percentile_cont(0.50) WITHIN GROUP (ORDER BY ms) AS p50,
                       percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95,
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
                       max(ms) AS max, count(*) AS n, avg(bytes) AS bytes
                  FROM (SELECT (r.received + 0.001 - (m.payload->>'ts')::numeric) * 1000 AS ms,
                               octet_length(m.payload::text) AS bytes
                          FROM bench_messages m JOIN bench_recv r USING (id)
                         WHERE m.id > p.lo AND m.id <= p.hi
                           AND r.received IS NOT NULL) x) l,
       LATERAL (VALUES ('p50', round(l.p50::numeric, 1)),
                       ('p95', round(l.p95::numeric, 1)),
                       ('p99', round(l.p99::numeric, 1)),
                       ('max', round(l.max, 1)),
                       ('latency_n', l.n),
                       ('payload_bytes', round(l.bytes))) s (measure, value);

-- Per phase with keys: per-key order as the receiver saw it.  A violation
-- is a message answered after a message of its key with a higher id (the
-- order of the log is the order nginx answered in: one worker process, and
-- message n+1 of a key is not sent before n is answered).  key_mismatch: a
-- message whose outbox-key header is not its key.
SELECT p.name, 'order_violations', count(*) FILTER (WHERE o.id < o.previous)
  FROM bench_phase p,
       LATERAL (SELECT r.id, lag(r.id) OVER (PARTITION BY r.key ORDER BY r.line) AS previous
                  FROM bench_recv r
                 WHERE r.id > p.lo AND r.id <= p.hi
                   AND r.line IS NOT NULL AND r.key IS NOT NULL) o
 GROUP BY p.name
UNION ALL
SELECT p.name, 'key_mismatch', count(*)
  FROM bench_phase p
  JOIN bench_messages m ON m.id > p.lo AND m.id <= p.hi
  JOIN bench_recv r USING (id)
 WHERE r.key IS DISTINCT FROM m.key
 GROUP BY p.name;
