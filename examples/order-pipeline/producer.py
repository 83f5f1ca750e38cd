#!/usr/bin/env python3
"""The shop's order processing: a burst of orders from several concurrent
clients.  Each order is created, then (usually) paid, then (usually)
shipped; each step is one transaction that changes the order and queues
its event with outbox_queue:

    OrderCreated, OrderPaid, OrderShipped    key = the order id

The key makes the outbox deliver one order's events one at a time, in
commit order; events of different orders flow concurrently.  The
message_id (order-<id>-v<version>) is deterministic, so running a step's
transaction twice could never queue its event twice.

Each client owns a share of the orders and advances a random one of them
at each step, so the events of many orders interleave.
"""

import argparse
import random
import threading
import time
from decimal import Decimal

import psycopg2

p = argparse.ArgumentParser()
p.add_argument("--orders", type=int, default=3000)
p.add_argument("--clients", type=int, default=4)
args = p.parse_args()

# Each statement changes the order and queues the event built from the row
# it wrote (to_jsonb of the new row), in one statement and one transaction.
EVENT = """
    SELECT outbox_queue('readmodel', to_jsonb(o), %(type)s,
                        key => o.id::text,
                        message_id => format('order-%%s-v%%s', o.id, o.version))
    FROM o"""
STEPS = [
    ("OrderCreated", """
        WITH o AS (INSERT INTO orders (id, customer, total, status, version, created_at)
                   VALUES (%(id)s, %(customer)s, %(total)s, 'created', 1, now())
                   RETURNING *)""" + EVENT),
    ("OrderPaid", """
        WITH o AS (UPDATE orders SET status = 'paid', version = 2, paid_at = now()
                   WHERE id = %(id)s AND status = 'created'
                   RETURNING *)""" + EVENT),
    ("OrderShipped", """
        WITH o AS (UPDATE orders SET status = 'shipped', version = 3, shipped_at = now()
                   WHERE id = %(id)s AND status = 'paid'
                   RETURNING *)""" + EVENT),
]

counts = {name: 0 for name, _ in STEPS}
lock = threading.Lock()


def client(order_ids):
    conn = psycopg2.connect(dbname="shop")
    # how far each order of this client goes: most are shipped, some are
    # only paid, some only created
    goal = {i: random.choices([1, 2, 3], weights=[10, 15, 75])[0] for i in order_ids}
    done = {i: 0 for i in order_ids}
    active = list(order_ids)
    while active:
        k = random.randrange(len(active))
        oid = active[k]
        name, sql = STEPS[done[oid]]
        with conn:                      # one transaction: the change and its event
            with conn.cursor() as cur:
                cur.execute(sql, {"id": oid, "type": name,
                                  "customer": f"customer-{random.randint(1, 200)}",
                                  "total": Decimal(random.randint(500, 50000)) / 100})
        done[oid] += 1
        with lock:
            counts[name] += 1
        if done[oid] == goal[oid]:
            active[k] = active[-1]
            active.pop()
    conn.close()


start = time.monotonic()
ids = list(range(1, args.orders + 1))
threads = [threading.Thread(target=client, args=(ids[c::args.clients],))
           for c in range(args.clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - start
total = sum(counts.values())
print(f"producer: {counts['OrderCreated']} orders created, {counts['OrderPaid']} paid, "
      f"{counts['OrderShipped']} shipped: {total} transactions in {elapsed:.1f} s "
      f"({total / elapsed:.0f}/s) from {args.clients} clients", flush=True)
