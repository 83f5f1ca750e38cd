--
-- The failure policy on an injected clock.  outbox_test_policy() runs the
-- dispatcher's policy (policy.c) against a script of attempt results, one
-- message at a time to one target, on a clock of its own: each step
-- happens when its message (or, with the circuit open, the probe) is due.
-- The settings are test/regress.conf's: outbox.max_attempts = 6, retry
-- delays from 1 s to 8 s, outbox.circuit_failures = 3,
-- outbox.max_inflight = 8.  The function is not part of the extension.
--
CREATE FUNCTION outbox_test_policy(steps text[], start timestamptz,
    OUT step int, OUT result text, OUT at timestamptz, OUT probe bool,
    OUT state text, OUT attempts int, OUT probe_failures int,
    OUT next_attempt_at timestamptz, OUT concurrency int,
    OUT circuit_open bool, OUT probe_at timestamptz)
RETURNS SETOF record
AS '$libdir/outbox', 'outbox_test_policy' LANGUAGE C STRICT;

-- The same, with the delays in milliseconds from the step's time
CREATE FUNCTION policy(steps text[])
RETURNS TABLE (step int, result text, probe bool, state text, attempts int,
               probe_failures int, delay_ms float8, concurrency int,
               circuit_open bool, probe_in_ms float8)
LANGUAGE sql AS $$
    SELECT step, result, probe, state, attempts, probe_failures,
           extract(epoch FROM next_attempt_at - at) * 1000, concurrency,
           circuit_open, extract(epoch FROM probe_at - at) * 1000
    FROM outbox_test_policy(steps, '2026-01-01 00:00:00+00')
$$;

-- A failing message is retried after a full-jitter backoff, within
-- [0, min(1 s * 2^(n-1), 8 s)] after its n-th attempt, and is dead after
-- outbox.max_attempts attempts.
SELECT step, state, attempts,
       delay_ms BETWEEN 0 AND least(1000 * 2 ^ (attempts - 1), 8000) AS within_backoff
FROM policy(array_fill('400'::text, ARRAY[7]));

-- Retry-After on a 429 or 503 sets the next attempt exactly, at most
-- outbox.retry_max_delay later; each of them halves the target's request
-- limit (8), and every 2xx raises it by one again.
SELECT step, result, state, attempts, delay_ms, concurrency
FROM policy(ARRAY['429 retry-after=2500', '503 retry-after=600000', '200', '200']);

-- Retry-After on another status is not a request to wait: the backoff holds.
SELECT step, result, delay_ms BETWEEN 0 AND 1000 AS within_backoff
FROM policy(ARRAY['500 retry-after=60000']);

-- 410 Gone and "webhook-delivery: abort-message" make a message dead at
-- once; the next message starts afresh.
SELECT step, result, state, attempts
FROM policy(ARRAY['410', 'abort', '200']);

-- The circuit opens after outbox.circuit_failures target failures in a row
-- (transport errors and 5xx); then one probe at a time goes out, at least
-- half the backoff cap after the one before.  Failed probes are attempts,
-- counted apart: the message is never dead for them (10 attempts, beyond
-- outbox.max_attempts).  The first 2xx closes the circuit.
SELECT step, result, probe, state, attempts, probe_failures, circuit_open,
       probe_in_ms BETWEEN least(1000 * 2 ^ probe_failures, 8000) / 2
                       AND least(1000 * 2 ^ probe_failures, 8000) AS probe_on_schedule
FROM policy(ARRAY['500', 'error', '500', 'error', 'error', 'error', 'error',
                  'error', 'error', 'error', '200', '200']);

-- A message whose probe failed is due again at the next probe, not on a
-- backoff of its own.
SELECT step, probe, state, delay_ms = probe_in_ms AS due_at_next_probe
FROM policy(ARRAY['500', '500', '500', '500', '500'])
WHERE probe;

-- A message's own failure (a 4xx but 408 and 429) says nothing about the
-- target: it ends a run of target failures, and the circuit stays closed.
SELECT step, result, state, circuit_open
FROM policy(ARRAY['500', '500', '400', '500', '500', '200']);

-- A step the function does not know is refused, with what it accepts.
SELECT * FROM policy(ARRAY['teapot']);

DROP FUNCTION policy(text[]);
DROP FUNCTION outbox_test_policy(text[], timestamptz);
