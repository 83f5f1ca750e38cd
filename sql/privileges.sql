--
-- Nothing of the extension is granted to PUBLIC: not by the install script,
-- and not by the default privileges of the role that installs it.
--
CREATE FUNCTION pg_temp.granted_to_public()
RETURNS TABLE (object text, privilege text)
LANGUAGE sql AS $$
  SELECT pg_describe_object(d.classid, d.objid, 0), a.privilege_type
    FROM pg_depend d,
         LATERAL (SELECT CASE d.classid
                    WHEN 'pg_class'::regclass THEN
                      (SELECT coalesce(relacl, acldefault(CASE relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", relowner))
                         FROM pg_class WHERE oid = d.objid AND relkind <> 'i')
                    WHEN 'pg_proc'::regclass THEN
                      (SELECT coalesce(proacl, acldefault('f', proowner)) FROM pg_proc WHERE oid = d.objid)
                    WHEN 'pg_namespace'::regclass THEN
                      (SELECT coalesce(nspacl, acldefault('n', nspowner)) FROM pg_namespace WHERE oid = d.objid)
                  END AS acl) o,
         LATERAL aclexplode(o.acl) a
   WHERE d.refclassid = 'pg_extension'::regclass
     AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'outbox')
     AND d.deptype = 'e'
     AND a.grantee = 0
   ORDER BY 1, 2
$$;

CREATE EXTENSION outbox;

-- every table, view, sequence, function and the schema has an ACL to check
SELECT count(*) > 0 AS has_tables,
       bool_and(pg_describe_object(classid, objid, 0) IS NOT NULL) AS described
  FROM pg_depend
 WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'outbox') AND deptype = 'e';
SELECT pg_describe_object(classid, objid, 0) AS identity_sequence_is_a_member
  FROM pg_depend
 WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'outbox') AND deptype = 'e'
   AND classid = 'pg_class'::regclass
   AND objid = pg_get_serial_sequence('outbox.messages', 'id')::regclass;

-- a fresh installation grants PUBLIC nothing
SELECT * FROM pg_temp.granted_to_public();
SELECT has_table_privilege('public', 'outbox.messages', 'SELECT') AS public_reads_messages,
       has_table_privilege('public', 'outbox.attempts', 'SELECT') AS public_reads_attempts,
       has_function_privilege('public', 'outbox.slot_name()', 'EXECUTE') AS public_runs_slot_name;
DROP EXTENSION outbox;

-- nor does one made by a role whose default privileges grant everything to
-- PUBLIC: the install script revokes it
ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC;
ALTER DEFAULT PRIVILEGES GRANT ALL ON SEQUENCES TO PUBLIC;
ALTER DEFAULT PRIVILEGES GRANT ALL ON FUNCTIONS TO PUBLIC;
ALTER DEFAULT PRIVILEGES GRANT ALL ON SCHEMAS TO PUBLIC;
CREATE EXTENSION outbox;
SELECT * FROM pg_temp.granted_to_public();
SELECT has_table_privilege('public', 'outbox.messages', 'SELECT') AS public_reads_messages,
       has_table_privilege('public', 'outbox.attempts', 'DELETE') AS public_deletes_attempts,
       has_sequence_privilege('public', pg_get_serial_sequence('outbox.messages', 'id'), 'UPDATE')
         AS public_sets_ids,
       has_schema_privilege('public', 'outbox', 'CREATE') AS public_creates_in_schema;
DROP EXTENSION outbox;
ALTER DEFAULT PRIVILEGES REVOKE ALL ON TABLES FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE ALL ON SEQUENCES FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE ALL ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE ALL ON SCHEMAS FROM PUBLIC;
-- (back to the built-in defaults: PUBLIC may execute new functions)
ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
SELECT count(*) AS default_privileges_left FROM pg_default_acl;
