-- The read model: a separate database, which the outbox does not serve.
-- consumer.py keeps it up to date from the order events, and nothing else
-- writes to it.

-- One row per order, as the events describe it.  Here it has the columns
-- of the orders table, so that the final check can compare them row by row;
-- a real read model would be shaped for its queries (a customer's orders
-- page, a shipping dashboard, ...).
CREATE TABLE order_view (
    id          bigint PRIMARY KEY,
    customer    text NOT NULL,
    total       numeric(10,2) NOT NULL,
    status      text NOT NULL,
    version     int NOT NULL,      -- the last event applied
    created_at  timestamptz NOT NULL,
    paid_at     timestamptz,
    shipped_at  timestamptz
);

-- What the consumer did with each request it got, for the final report.
CREATE TABLE consumer_log (
    event_id  text NOT NULL,
    order_id  bigint,
    version   int,
    outcome   text NOT NULL,       -- applied, duplicate, out_of_order, failed_on_purpose
    at        timestamptz NOT NULL DEFAULT now()
);
