--
-- The first pending message of a (target, key), the only one of its key
-- that may be sent, is found by one index probe however many messages of
-- the key are pending (OUTBOX_KEY_HEAD in src/ordering.h; the dispatcher's
-- gate, key lookups and probes run it once per message).  Among a key's
-- pending messages those already attempted come first, then the others by
-- id: the index holds them in that order, so no sort of the key's backlog
-- is needed.
--
CREATE EXTENSION outbox;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF)
SELECT id FROM outbox.messages
 WHERE state = 'pending' AND target = 'orders' AND key = 'k'
 ORDER BY attempts = 0, id LIMIT 1;

-- and the order is the one described
SELECT outbox_queue('orders', jsonb_build_object('n', n), key => 'k') > 0
  FROM generate_series(1, 3) n;
UPDATE outbox.messages SET attempts = 1 WHERE payload->>'n' = '2';
SELECT payload->>'n' AS first FROM outbox.messages
 WHERE state = 'pending' AND target = 'orders' AND key = 'k'
 ORDER BY attempts = 0, id LIMIT 1;
DROP EXTENSION outbox;
