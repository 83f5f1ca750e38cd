#!/usr/bin/env python3
"""A fake identity provider: the external system the saga has to undo.

    PUT    /users/<id>   create the user (idempotent: the id is the caller's)
                         201 created, 200 it existed already,
                         422 refused for good (an e-mail domain it blocks)
    DELETE /users/<id>   delete the user: 204 deleted, 404 there was none

Like any remote service it takes its time (10-50 ms a call), and it is
unreliable on purpose: a third of the calls fail, half of them before
doing anything (503) and half of them after doing the work (500: the
caller cannot know the user was created or deleted).  Its state is the
table idp.users; it never shares a transaction with the clinic.
"""

import argparse
import random
import re
import time

from webhooks import Database, Response, serve

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--fail-rate", type=float, default=1 / 3)
args = p.parse_args()

db = Database("clinic")


def handle(req):
    m = re.fullmatch(r"/users/([\w.-]+)", req.path)
    if not m or req.method not in ("PUT", "DELETE"):
        return Response(404)
    user_id = m.group(1)
    time.sleep(random.uniform(0.01, 0.05))
    fate = random.random()
    with db.transaction() as cur:
        if fate < args.fail_rate / 2:
            status, injected = 503, True              # failed before the work
        elif req.method == "PUT":
            user = req.json
            if user["email"].endswith("@blocked.example"):
                status = 422
            else:
                cur.execute("""
                    INSERT INTO idp.users (id, email, name) VALUES (%s, %s, %s)
                    ON CONFLICT (id) DO NOTHING""", (user_id, user["email"], user["name"]))
                status = 201 if cur.rowcount == 1 else 200
            injected = False
        else:
            cur.execute("DELETE FROM idp.users WHERE id = %s", (user_id,))
            status = 204 if cur.rowcount == 1 else 404
            injected = False
        if not injected and fate < args.fail_rate:
            status, injected = 500, True              # did the work, "lost" the answer
        cur.execute("INSERT INTO idp.calls (method, user_id, status, injected) VALUES (%s, %s, %s, %s)",
                    (req.method, user_id, status, injected))
    return Response(status)


serve(args.port, handle, "identity provider")
