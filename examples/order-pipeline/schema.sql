-- The shop: the orders table, the source of truth, in the database the
-- outbox serves.  Each change to an order is one transaction that also
-- queues the matching event (producer.py).
CREATE EXTENSION outbox;

CREATE TABLE orders (
    id          bigint PRIMARY KEY,
    customer    text NOT NULL,
    total       numeric(10,2) NOT NULL,
    status      text NOT NULL CHECK (status IN ('created', 'paid', 'shipped')),
    -- 1 when created, 2 when paid, 3 when shipped: the number of the
    -- order's latest event, which lets a consumer spot repeats and gaps
    version     int NOT NULL,
    created_at  timestamptz NOT NULL,
    paid_at     timestamptz,
    shipped_at  timestamptz
);
