/* outbox--0.2--0.3.sql */

\echo Use "ALTER EXTENSION outbox UPDATE TO '0.3'" to load this file. \quit

-- Every HTTP request of a message is an attempt (messages.attempts, the
-- outbox-attempt header and outbox.attempts agree).  Requests that failed
-- while the target's circuit was open (probes) are counted apart as well:
-- they do not bring a message closer to outbox.max_attempts.
ALTER TABLE outbox.messages
    ADD COLUMN probe_failures integer NOT NULL DEFAULT 0;

COMMENT ON COLUMN outbox.messages.probe_failures
    IS 'Attempts that failed while the target''s circuit was open; they do not count toward outbox.max_attempts';
