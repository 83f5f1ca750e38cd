/* outbox--0.3--0.4.sql */

\echo Use "ALTER EXTENSION outbox UPDATE TO '0.4'" to load this file. \quit

-- Per-key order: the first pending message of a (target, key) is found by
-- one index probe.  Among a key's pending messages, those already attempted
-- come first, then the others by id (see OUTBOX_KEY_HEAD in ordering.h);
-- the index of 0.1 only had them by id, so finding the first one read every
-- pending message of the key, and a key with a backlog drained in
-- quadratic time.
CREATE INDEX messages_key_head_idx
    ON outbox.messages (target, key, (attempts = 0), id)
    WHERE state = 'pending' AND key IS NOT NULL;
DROP INDEX outbox.messages_key_idx;
