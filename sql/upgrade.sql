--
-- Upgrades.  Like contrib modules, the extension ships the install script of
-- its first version and one upgrade script per later version, so a fresh
-- CREATE EXTENSION runs the same scripts as an update does.  What an update
-- must add is a check of its own: an installation of 0.1 updated to the
-- current version keeps its data and grants and has every object of a
-- fresh installation at the current version.
--
CREATE FUNCTION pg_temp.outbox_objects()
RETURNS TABLE (object text, definition text, acl text, comment text)
LANGUAGE sql AS $$
  SELECT pg_describe_object(d.classid, d.objid, 0),
         CASE d.classid
           WHEN 'pg_proc'::regclass THEN pg_get_functiondef(d.objid)
           WHEN 'pg_class'::regclass THEN
             coalesce(pg_get_viewdef(d.objid),
                      (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
                         FROM pg_attribute WHERE attrelid = d.objid AND attnum > 0 AND NOT attisdropped)
                      || (SELECT coalesce(string_agg(pg_get_indexdef(indexrelid), '; ' ORDER BY indexrelid::regclass::text), '')
                            FROM pg_index WHERE indrelid = d.objid))
         END,
         CASE d.classid
           WHEN 'pg_proc'::regclass THEN (SELECT coalesce(proacl, acldefault('f', proowner))::text FROM pg_proc WHERE oid = d.objid)
           WHEN 'pg_class'::regclass THEN (SELECT coalesce(relacl, acldefault('r', relowner))::text FROM pg_class WHERE oid = d.objid)
           WHEN 'pg_namespace'::regclass THEN (SELECT coalesce(nspacl, acldefault('n', nspowner))::text FROM pg_namespace WHERE oid = d.objid)
         END,
         obj_description(d.objid, d.classid::regclass::text)
    FROM pg_depend d
   WHERE d.refclassid = 'pg_extension'::regclass
     AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'outbox')
     AND d.deptype = 'e'
     -- the row types of tables and views, and their array types, are
     -- members of their own on PostgreSQL 17 and 18, not on 15: they
     -- follow their relation, compared above
     AND NOT EXISTS (SELECT FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem
                      WHERE d.classid = 'pg_type'::regclass AND t.oid = d.objid
                        AND (t.typrelid <> 0 OR e.typrelid <> 0))
  UNION ALL
  -- what pg_dump dumps the data of
  SELECT 'configuration ' || c.relid::regclass::text, c.condition, NULL, NULL
    FROM pg_extension e,
         unnest(e.extconfig, e.extcondition) AS c(relid, condition)
   WHERE e.extname = 'outbox'
$$;

CREATE ROLE outbox_upgrade_ops;
CREATE EXTENSION outbox VERSION '0.1';
SELECT outbox_send('orders', '{"kept": true}') > 0 AS queued;
GRANT USAGE ON SCHEMA outbox TO outbox_upgrade_ops;
GRANT SELECT ON outbox.workers TO outbox_upgrade_ops;
GRANT EXECUTE ON FUNCTION outbox.worker_state() TO outbox_upgrade_ops;

ALTER EXTENSION outbox UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'outbox';

-- the data and the grants made before the update survive it
SELECT payload FROM outbox.messages;
SELECT has_table_privilege('outbox_upgrade_ops', 'outbox.workers', 'SELECT') AS ops_can_read_workers;
-- outbox.workers calls outbox.slot_name(), no longer executable by PUBLIC:
-- the update granted it to the roles that read the view
SELECT has_function_privilege('outbox_upgrade_ops', 'outbox.slot_name()', 'EXECUTE') AS ops_can_run_slot_name;
SET ROLE outbox_upgrade_ops;
SELECT count(*) AS ops_reads_workers FROM outbox.workers;
RESET ROLE;
REVOKE SELECT ON outbox.workers FROM outbox_upgrade_ops;
REVOKE EXECUTE ON FUNCTION outbox.slot_name(), outbox.worker_state() FROM outbox_upgrade_ops;
REVOKE USAGE ON SCHEMA outbox FROM outbox_upgrade_ops;
CREATE TEMP TABLE upgraded AS SELECT * FROM pg_temp.outbox_objects();

-- a library not preloaded serves no database: the view still answers
SELECT count(*) FROM outbox.workers;
SELECT outbox.slot_name() IS NULL AS no_slot_here;

DROP EXTENSION outbox;
CREATE EXTENSION outbox;
SELECT extversion = (SELECT default_version FROM pg_available_extensions WHERE name = 'outbox')
       AS fresh_install_is_current FROM pg_extension WHERE extname = 'outbox';
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.outbox_objects();

-- nothing differs between the updated and the fresh installation
(SELECT 'only after update' AS side, * FROM upgraded EXCEPT SELECT 'only after update', * FROM fresh)
UNION ALL
(SELECT 'only when fresh', * FROM fresh EXCEPT SELECT 'only when fresh', * FROM upgraded)
ORDER BY 1, 2;
SELECT count(*) AS objects_compared FROM fresh;

DROP EXTENSION outbox;
DROP ROLE outbox_upgrade_ops;
