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

-- headers that carry credentials or that proxies and frameworks trust to
-- say who calls or which method is meant are reserved; the hint lists them
SELECT outbox_queue('orders', '{}', headers => '{"Authorization": "Bearer stolen"}');
SELECT outbox_send('orders', '{}', headers => '{"x-forwarded-for": "10.0.0.1"}');

-- deliver_at must be a point in time
SELECT outbox_send('orders', '{}', deliver_at => 'infinity');
SELECT outbox_send('orders', '{}', deliver_at => '-infinity');

-- a message_id shaped like a webhook-id the outbox derives from a row id
-- (msg_<id>, msg_<database>_<id>) could name another message: refused
SELECT outbox_queue('orders', '{}', message_id => 'msg_3');
SELECT outbox_send('orders', '{}', message_id => 'msg_app_a_12');

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
    ($q$SELECT outbox_queue('orders', '{}', headers => '{"x-count": 3}')$q$),
    ($q$SELECT outbox_send('orders', '{}', deliver_at => 'infinity')$q$)
) AS t(call);

-- every reserved header name, in any case
SELECT name, pg_temp.sqlstate_of(format($q$SELECT outbox_queue('orders', '{}', headers => %L)$q$,
                                        jsonb_build_object(name, 'v'))) AS sqlstate
  FROM unnest(ARRAY['authorization', 'Cookie', 'PROXY-AUTHORIZATION', 'Forwarded',
                    'X-Forwarded', 'X-Forwarded-For', 'X-Forwarded-Host', 'x-forwarded-proto',
                    'X-HTTP-Method-Override', 'X-Method-Override', 'X-HTTP-Method',
                    'Keep-Alive', 'Proxy-Connection']) AS name;

-- every shape of derived webhook-id, whatever database tag produced it
SELECT message_id, pg_temp.sqlstate_of(format($q$SELECT outbox_queue('orders', '{}', message_id => %L)$q$,
                                              message_id)) AS sqlstate
  FROM unnest(ARRAY['msg_1', 'msg_9223372036854775807', 'msg_0042', 'msg_app_1',
                    'msg_app_a_12', 'msg_0_7', 'msg_outbox_x_y__3fa2c1d0_5',
                    'msg__1']) AS message_id;

-- nothing was queued by any of the above
SELECT count(*) FROM outbox.messages;

DROP EXTENSION outbox;
