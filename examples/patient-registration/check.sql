-- The final check of the saga, run once the outbox has nothing left to send.
-- psql -v submitted=N: the number of registrations the client submitted.
--
-- Every registration must have ended in one of two consistent states:
--   registered: state 'registered', a patient row, an IdP user, and exactly
--               one PatientRegisteredSuccessfully event (no failure event)
--   reverted:   state 'reverted', no patient row, no IdP user, and exactly
--               one PatientRegistrationFailed event (no success event)
-- Anything else is half-done.

\pset format unaligned
\pset tuples_only on

CREATE TEMP VIEW outcome AS
SELECT r.*,
       CASE
         WHEN r.state = 'registered' AND patient AND idp_user AND succeeded = 1 AND failed = 0
           THEN 'registered'
         WHEN r.state = 'reverted' AND NOT patient AND NOT idp_user AND succeeded = 0 AND failed = 1
           THEN 'reverted'
         ELSE 'half-done'
       END AS outcome,
       -- what the data says should happen (see client.py)
       r.insurance_no ~ '^[A-Z][0-9]{9}$' AND r.email NOT LIKE '%@blocked.example' AS can_succeed
FROM registrations r,
     LATERAL (SELECT EXISTS (SELECT FROM patients p WHERE p.registration_id = r.id) AS patient,
                     EXISTS (SELECT FROM idp.users u WHERE u.id = r.id) AS idp_user,
                     (SELECT count(*) FROM sink.events e WHERE e.registration_id = r.id
                        AND e.type = 'PatientRegisteredSuccessfully') AS succeeded,
                     (SELECT count(*) FROM sink.events e WHERE e.registration_id = r.id
                        AND e.type = 'PatientRegistrationFailed') AS failed) AS facts;

-- One line per check: what, the value, and for checks with an expected
-- value, that value and ok / FAILED.
CREATE TEMP TABLE checks (n serial, what text, value bigint, expected bigint);
INSERT INTO checks (what, value, expected) VALUES
  ('registrations', (SELECT count(*) FROM registrations), :submitted),
  ('  registered (patient + IdP user + 1 success event)',
        (SELECT count(*) FROM outcome WHERE outcome = 'registered'), NULL),
  ('  reverted (no patient, no IdP user, 1 failure event)',
        (SELECT count(*) FROM outcome WHERE outcome = 'reverted'), NULL);
INSERT INTO checks (what, value, expected)
  SELECT '    ' || failure, count(*), NULL FROM outcome WHERE outcome = 'reverted'
  GROUP BY failure ORDER BY failure;
INSERT INTO checks (what, value, expected) VALUES
  ('  half-done', (SELECT count(*) FROM outcome WHERE outcome = 'half-done'), 0),
  -- valid data with an insurance number of its own is registered; invalid
  -- data is reverted; of two registrations of one person exactly one wins
  ('registrations with an unexpected outcome',
        (SELECT count(*) FROM outcome WHERE NOT can_succeed AND outcome = 'registered')
      + (SELECT count(*) FROM (SELECT insurance_no FROM outcome WHERE can_succeed
                               GROUP BY insurance_no
                               HAVING count(*) FILTER (WHERE outcome = 'registered') <> 1) AS g), 0),
  ('IdP users without a registered patient',
        (SELECT count(*) FROM idp.users u
         WHERE NOT EXISTS (SELECT FROM outcome o WHERE o.id = u.id AND o.outcome = 'registered')), 0),
  ('outbox messages', (SELECT count(*) FROM outbox.messages), NULL),
  ('  delivered', (SELECT count(*) FROM outbox.messages WHERE state = 'delivered'),
        (SELECT count(*) FROM outbox.messages)),
  ('  pending or dead', (SELECT count(*) FROM outbox.messages WHERE state <> 'delivered'), 0),
  ('  HTTP attempts that failed and were retried',
        (SELECT sum(attempts) - count(*) FROM outbox.messages), NULL),
  ('identity provider calls', (SELECT count(*) FROM idp.calls), NULL),
  ('  failed on purpose', (SELECT count(*) FROM idp.calls WHERE injected), NULL),
  ('  repeated PUTs that found the user already created',
        (SELECT count(*) FROM idp.calls WHERE method = 'PUT' AND status = 200), NULL),
  ('duplicate deliveries absorbed by idempotency',
        (SELECT count(*) FROM duplicate_deliveries)
      + (SELECT count(*) FROM sink.deliveries) - (SELECT count(*) FROM sink.events), NULL),
  ('  by the saga''s steps (state check)', (SELECT count(*) FROM duplicate_deliveries), NULL),
  ('  by the event sink (webhook-id)',
        (SELECT count(*) FROM sink.deliveries) - (SELECT count(*) FROM sink.events), NULL);

SELECT format('%-56s %7s%s', what, value,
              CASE WHEN expected IS NULL THEN ''
                   WHEN value = expected THEN '   ok'
                   ELSE format('   FAILED (expected %s)', expected) END)
FROM checks ORDER BY n;

SELECT CASE WHEN bool_and(value IS NOT DISTINCT FROM expected) THEN 'RESULT: OK' ELSE 'RESULT: FAILED' END
FROM checks WHERE expected IS NOT NULL;
