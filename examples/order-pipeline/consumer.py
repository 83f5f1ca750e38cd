#!/usr/bin/env python3
"""The read-model consumer: applies the order events to the order_view table
of the readmodel database.

    POST /events    one order event (outbox-type OrderCreated, OrderPaid,
                    OrderShipped; the body is the order as the event left it)

Idempotent by version: an order's events carry version 1, 2, 3.  The
consumer applies version v only when the row is at v-1 (or absent, for
v = 1); a version it has applied already is a repeated delivery (answered
200, nothing changes).  Any other version would mean that an event was
skipped or came too early: the outbox's per-key order says that never
happens; the consumer counts it (out_of_order) and answers 409, so the
event would be sent again later.

It fails on purpose: a fifth of the requests are answered 500 before doing
anything, a few are slow, and a twentieth of the answers are "lost" (500
after the commit), so the outbox delivers those events again.
"""

import argparse
import random
import time

from psycopg2.extras import Json

from webhooks import Database, Response, serve

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--fail-rate", type=float, default=0.2)
p.add_argument("--slow-rate", type=float, default=0.02)
p.add_argument("--lose-answers", type=float, default=0.05)
args = p.parse_args()

db = Database("readmodel")


def apply_event(req):
    event = req.json
    with db.transaction() as cur:
        cur.execute("SELECT version FROM order_view WHERE id = %s FOR UPDATE", (event["id"],))
        row = cur.fetchone()
        current = row[0] if row else 0
        if event["version"] <= current:
            outcome = "duplicate"
        elif event["version"] > current + 1:
            outcome = "out_of_order"
        elif current == 0:
            outcome = "applied"
            # the order's first event: the row as the event describes it
            # (jsonb_populate_record maps the JSON fields to the columns).
            # Were the same event applied concurrently, the primary key
            # would fail one of them: a 500, and a duplicate on its retry.
            cur.execute("""
                INSERT INTO order_view
                SELECT * FROM jsonb_populate_record(NULL::order_view, %s)""", (Json(event),))
        else:
            outcome = "applied"
            cur.execute("""
                UPDATE order_view
                SET (customer, total, status, version, created_at, paid_at, shipped_at) =
                    (SELECT customer, total, status, version, created_at, paid_at, shipped_at
                     FROM jsonb_populate_record(NULL::order_view, %s))
                WHERE id = %s""", (Json(event), event["id"]))
        cur.execute("INSERT INTO consumer_log (event_id, order_id, version, outcome) "
                    "VALUES (%s, %s, %s, %s)", (req.id, event["id"], event["version"], outcome))
    return outcome


def handle(req):
    if req.method != "POST" or req.path != "/events":
        return Response(404)
    fate = random.random()
    if fate < args.fail_rate:
        with db.transaction() as cur:
            cur.execute("INSERT INTO consumer_log (event_id, outcome) VALUES (%s, 'failed_on_purpose')",
                        (req.id,))
        return Response(500)
    if fate < args.fail_rate + args.slow_rate:
        time.sleep(random.uniform(0.2, 0.5))
    outcome = apply_event(req)
    if outcome == "out_of_order":
        return Response(409)
    if random.random() < args.lose_answers:
        return Response(500)            # applied, but the outbox will not know
    return Response(200)


serve(args.port, handle, "read-model consumer")
