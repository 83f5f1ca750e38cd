--
-- Bad input: a clear error, and nothing queued.
--
CREATE EXTENSION outbox;
\set VERBOSITY default

-- NULL target or payload
SELECT outbox_queue(NULL, '{}');
SELECT outbox_queue('orders', NULL);
SELECT outbox_send(NULL, '{}');

-- a target that is not in outbox.targets names the configured ones
SELECT outbox_queue('shipping', '{}');

-- message_type, key and message_id travel as header values
SELECT outbox_queue('orders', '{}', message_type => '');
SELECT outbox_queue('orders', '{}', key => E'a\r\nX-Injected: 1');
SELECT outbox_queue('orders', '{}', message_id => repeat('x', 1001));

-- headers must be an object of strings with safe names and values
SELECT outbox_queue('orders', '{}', headers => '["x-a", "b"]');
SELECT outbox_queue('orders', '{}', headers => '"x-a"');
SELECT outbox_queue('orders', '{}', headers => '{"x-count": 3}');
SELECT outbox_queue('orders', '{}', headers => '{"webhook-id": "spoofed"}');
SELECT outbox_queue('orders', '{}', headers => '{"Content-Length": "0"}');
SELECT outbox_queue('orders', '{}', headers => '{"x a": "b"}');
SELECT outbox_queue('orders', '{}', headers => '{"x-a": "b\r\nX-Injected: 1"}');

SELECT outbox_queue('orders', '{}',
    headers => (SELECT jsonb_object_agg('x-h' || g, 'v') FROM generate_series(1, 101) g));
SELECT outbox_queue('orders', '{}', headers => jsonb_build_object('x-big', repeat('v', 70000)));

-- NUL bytes and invalid UTF-8 never reach the functions: text and jsonb
-- refuse them on input
SELECT outbox_queue(convert_from('\x6f72646572730078'::bytea, 'UTF8'), '{}');
SELECT outbox_queue('orders', '{}', key => convert_from('\xff'::bytea, 'UTF8'));
SELECT outbox_queue('orders', '{"a": "\u0000"}');

-- payloads over outbox.max_payload_size
SET outbox.max_payload_size = '1kB';
SELECT outbox_queue('orders', jsonb_build_object('blob', repeat('x', 2000)));
RESET outbox.max_payload_size;

-- bad outbox.targets values are refused with the reason
ALTER SYSTEM SET outbox.targets = 'orders';
ALTER SYSTEM SET outbox.targets = 'orders=ftp://example.com/x';
ALTER SYSTEM SET outbox.targets = 'orders=http://a/x, orders=http://b/y';
ALTER SYSTEM SET outbox.targets = 'or ders=http://a/x';
SET outbox.targets = 'orders=http://a/x';

-- each error carries an SQLSTATE a program can test
CREATE FUNCTION pg_temp.sqlstate_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SELECT call, pg_temp.sqlstate_of(call) AS sqlstate FROM (VALUES
    ($q$SELECT outbox_queue(NULL, '{}')$q$),
    ($q$SELECT outbox_queue('shipping', '{}')$q$),
    ($q$SELECT outbox_queue('orders', '{}', key => E'\n')$q$),
    ($q$SELECT outbox_queue('orders', '{}', message_id => repeat('x', 1001))$q$),
    ($q$SELECT outbox_queue('orders', '{}', headers => '{"x-count": 3}')$q$)
) AS t(call);

-- nothing was queued by any of the above
SELECT count(*) FROM outbox.messages;

DROP EXTENSION outbox;
