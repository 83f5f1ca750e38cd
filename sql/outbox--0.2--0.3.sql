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

-- Nothing is granted to PUBLIC, whatever the default privileges (ALTER
-- DEFAULT PRIVILEGES) of the role that runs CREATE EXTENSION say: they
-- apply to the objects this script and the earlier ones create.  Objects
-- added by later scripts must be revoked there.  outbox.slot_name() is
-- called by outbox.workers, so operators who read it need EXECUTE on it.
REVOKE ALL ON SCHEMA outbox FROM PUBLIC;
REVOKE ALL ON TABLE outbox.messages, outbox.attempts FROM PUBLIC;
REVOKE ALL ON SEQUENCE outbox.messages_id_seq FROM PUBLIC;
REVOKE ALL ON outbox.targets, outbox.status, outbox.stats, outbox.workers FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox.slot_name() FROM PUBLIC;

-- Roles that could read outbox.workers before this update still can: they
-- get EXECUTE on outbox.slot_name(), which PUBLIC no longer has.
DO $$
DECLARE
    grantee regrole;
BEGIN
    FOR grantee IN
        SELECT DISTINCT a.grantee::regrole
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = 'outbox.workers'::regclass
           AND a.privilege_type = 'SELECT'
           AND a.grantee NOT IN (0, c.relowner)
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION outbox.slot_name() TO %s', grantee);
    END LOOP;
END
$$;

-- The messages and their attempts are data, not part of the extension's
-- definition: pg_dump must dump their rows (a dump restored elsewhere keeps
-- every message, pending ones are delivered there).  pg_dump dumps the
-- position of the identity sequence of messages.id only when the sequence
-- is registered too; without it, new ids would start again at 1 and collide
-- with the restored ones.
SELECT pg_catalog.pg_extension_config_dump('outbox.messages', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.attempts', '');
SELECT pg_catalog.pg_extension_config_dump('outbox.messages_id_seq', '');
