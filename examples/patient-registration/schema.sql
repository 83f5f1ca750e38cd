-- The patient-registration saga: the clinic's tables, the fake identity
-- provider's table and the event sink's tables.
--
-- In real life the identity provider and the event consumers are other
-- systems with their own storage.  Here they keep their state in schemas of
-- the same database, so that the final check (check.sql) can be one SQL
-- script.  They never share a transaction with the clinic: the identity
-- provider is only reached over HTTP, which is why the saga needs a
-- compensating step at all.

CREATE EXTENSION outbox;

-- ---------------------------------------------------------------------------
-- The clinic (service.py)
-- ---------------------------------------------------------------------------

-- One row per registration request.  The saga moves it along
--   pending -> idp_created -> registered
--   pending | idp_created -> failed -> reverted        (compensation)
-- Every step checks the state it expects while holding the row lock: that
-- is what makes a repeated delivery of the same step harmless.
CREATE TABLE registrations (
    id            text PRIMARY KEY,          -- chosen by the client: retrying a request is safe
    name          text NOT NULL,
    email         text NOT NULL,
    insurance_no  text NOT NULL,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'idp_created', 'registered', 'failed', 'reverted')),
    failure       text,                      -- why it failed
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The patients.  The constraints are the business rules that can reject a
-- registration after the identity provider already created the user:
-- an insurance number must be well-formed and belong to one patient only.
CREATE TABLE patients (
    registration_id  text PRIMARY KEY REFERENCES registrations,
    name             text NOT NULL,
    email            text NOT NULL,
    insurance_no     text NOT NULL UNIQUE
                     CHECK (insurance_no ~ '^[A-Z][0-9]{9}$'),
    registered_at    timestamptz NOT NULL DEFAULT now()
);

-- Deliveries a handler recognised as already done (at-least-once delivery:
-- the outbox sends a message again when it did not see the 2xx).  Only for
-- the final report; the handlers do not need it to be idempotent.
CREATE TABLE duplicate_deliveries (
    message_id   text NOT NULL,
    type         text NOT NULL,
    seen_at      timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- The fake identity provider (idp.py)
-- ---------------------------------------------------------------------------
CREATE SCHEMA idp;

-- Users are created under the id the client gives (the registration id), so
-- creating the same user twice is a no-op: the IdP's own idempotency key.
CREATE TABLE idp.users (
    id          text PRIMARY KEY,
    email       text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every call the IdP got, and whether it failed it on purpose.
CREATE TABLE idp.calls (
    at        timestamptz NOT NULL DEFAULT now(),
    method    text NOT NULL,
    user_id   text NOT NULL,
    status    int NOT NULL,
    injected  bool NOT NULL
);

-- ---------------------------------------------------------------------------
-- The event sink (event_sink.py): a stand-in for whoever consumes the
-- saga's integration events (a mailer, the billing system, ...).
-- ---------------------------------------------------------------------------
CREATE SCHEMA sink;

-- One row per event, de-duplicated on webhook-id.
CREATE TABLE sink.events (
    webhook_id       text PRIMARY KEY,
    type             text NOT NULL,
    registration_id  text NOT NULL,
    payload          jsonb NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per HTTP delivery, repeats included.
CREATE TABLE sink.deliveries (
    webhook_id  text NOT NULL,
    attempt     int NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
