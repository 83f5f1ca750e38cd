#!/usr/bin/env python3
"""The final check of the order pipeline, run once the outbox has nothing
left to send: the read model (database readmodel) must match the orders
table (database shop) row by row, and the consumer must never have seen an
order's event n+1 before its event n.  Prints one line per fact and
RESULT: OK or RESULT: FAILED; exits 1 when it failed."""

import sys

import psycopg2

COLUMNS = "id, customer, total, status, version, created_at, paid_at, shipped_at"
shop = psycopg2.connect(dbname="shop").cursor()
readmodel = psycopg2.connect(dbname="readmodel").cursor()


def one(cur, sql):
    cur.execute(sql)
    return cur.fetchone()[0]


lines = []          # (what, value, expected or None)
failed = False


def line(what, value, expected=None):
    global failed
    if expected is None:
        verdict = ""
    elif value == expected:
        verdict = "   ok"
    else:
        verdict = f"   FAILED (expected {expected})"
        failed = True
    print(f"{what:<56} {value:>7}{verdict}")


# --- the source of truth -------------------------------------------------
shop.execute(f"SELECT {COLUMNS} FROM orders")
orders = {row[0]: row for row in shop.fetchall()}
line("orders (shop database)", len(orders))
for status in ("created", "paid", "shipped"):
    line(f"  {status} (last event)", sum(1 for o in orders.values() if o[3] == status))

# --- the outbox ------------------------------------------------------------
events = one(shop, "SELECT count(*) FROM outbox.messages")
line("events queued (one per order change)", events,
     sum(o[4] for o in orders.values()))
line("  delivered", one(shop, "SELECT count(*) FROM outbox.messages WHERE state = 'delivered'"),
     events)
line("  pending or dead", one(shop, "SELECT count(*) FROM outbox.messages WHERE state <> 'delivered'"),
     0)
line("  HTTP attempts that failed and were retried",
     one(shop, "SELECT coalesce(sum(attempts) - count(*), 0) FROM outbox.messages"))

# --- the consumer ----------------------------------------------------------
readmodel.execute("SELECT outcome, count(*) FROM consumer_log GROUP BY outcome")
outcomes = dict(readmodel.fetchall())
line("requests the consumer got", sum(outcomes.values()))
line("  answered 500 on purpose", outcomes.get("failed_on_purpose", 0))
line("  events applied", outcomes.get("applied", 0), events)
line("  duplicate deliveries absorbed (version check)", outcomes.get("duplicate", 0))
line("  events seen before the previous one of their order",
     outcomes.get("out_of_order", 0), 0)

# --- the read model against the orders table -------------------------------
readmodel.execute(f"SELECT {COLUMNS} FROM order_view")
view = {row[0]: row for row in readmodel.fetchall()}
line("read model rows", len(view), len(orders))
differ = sorted(i for i in orders.keys() | view.keys() if orders.get(i) != view.get(i))
line("rows that differ from the orders table", len(differ), 0)
for i in differ[:5]:
    if i not in view:
        print(f"    order {i}: missing from the read model")
    elif i not in orders:
        print(f"    order {i}: in the read model only")
    else:
        print(f"    order {i}: " + "; ".join(
            f"{name}: {a} in orders, {b} in the read model"
            for name, a, b in zip(COLUMNS.split(", "), orders[i], view[i]) if a != b))

print("RESULT: FAILED" if failed else "RESULT: OK")
sys.exit(1 if failed else 0)
