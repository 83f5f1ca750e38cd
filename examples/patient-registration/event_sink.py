#!/usr/bin/env python3
"""The event sink: a stand-in for the consumers of the saga's integration
events (PatientRegisteredSuccessfully, PatientRegistrationFailed).

    POST /events    record the event once per webhook-id, answer 200

It records every delivery too, and "loses" a tenth of its answers after
recording (answers 500), so the outbox sends those events again: the
de-duplication on webhook-id absorbs the repeats, as every receiver of an
at-least-once delivery must.
"""

import argparse
import random

from psycopg2.extras import Json

from webhooks import Database, Response, serve

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--lose-answers", type=float, default=0.1)
args = p.parse_args()

db = Database("clinic")


def handle(req):
    if req.method != "POST" or req.path != "/events":
        return Response(404)
    event = req.json
    with db.transaction() as cur:
        cur.execute("INSERT INTO sink.deliveries (webhook_id, attempt) VALUES (%s, %s)",
                    (req.id, req.attempt))
        cur.execute("""
            INSERT INTO sink.events (webhook_id, type, registration_id, payload)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (webhook_id) DO NOTHING""",
                    (req.id, req.type, event["registration_id"], Json(event)))
    if random.random() < args.lose_answers:
        return Response(500)        # recorded, but the outbox will not know
    return Response(200)


serve(args.port, handle, "event sink")
