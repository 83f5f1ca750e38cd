#!/usr/bin/env python3
"""The clinic's registration service: the saga's front door and its steps.

    POST /registrations     a registration request (from the client)
    POST /saga              the outbox's webhooks: one saga step per message,
                            chosen by the outbox-type header

The saga, one message per step, each queued in the transaction that
finishes the step before it:

    POST /registrations --> _AddUserToIdp --> _StorePatient --> PatientRegisteredSuccessfully
                                  |                |
                     IdP refuses  |                | the clinic rejects the patient
                                  v                v
                 PatientRegistrationFailed + _RevertPatientRegistration
                                                   (deletes the IdP user)

Every step follows the same recipe:
  1. lock the registration row and check that it is in the state this step
     expects; if not, the step was done already and this is a repeated
     delivery: answer 200 and do nothing;
  2. do the work (call the identity provider, insert the patient);
  3. move the registration to its next state and queue the next message
     with a deterministic message_id, in the same transaction;
  4. answer 2xx only after the commit.  A crash before the commit rolls
     everything back and the outbox delivers the message again; a crash
     after it makes the outbox deliver a message that step 1 recognises.
A failure that may go away (the IdP is down, a timeout) is answered 503:
the outbox retries.  A failure that will not go away (invalid data) is a
business outcome: the step records it, queues the compensation, and
answers 200.
"""

import argparse
import json
import urllib.error
import urllib.request

import psycopg2.errors
from psycopg2.extras import Json, RealDictCursor

from webhooks import Database, Response, log, serve

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--idp", required=True, help="base URL of the identity provider")
args = p.parse_args()

db = Database("clinic", cursor_factory=RealDictCursor)


class Retry(Exception):
    """A failure that may go away by itself: answer 503, the outbox retries."""


# ---------------------------------------------------------------------------
# The front door
# ---------------------------------------------------------------------------

def register(r):
    """Store the request and queue the saga's first step, in one transaction.
    The client chooses the registration id, so a retried request (its answer
    was lost, the service was down) has no effect: the row exists already,
    and outbox_queue with a message_id that was used queues nothing."""
    with db.transaction() as cur:
        cur.execute("""
            INSERT INTO registrations (id, name, email, insurance_no)
            VALUES (%(id)s, %(name)s, %(email)s, %(insurance_no)s)
            ON CONFLICT (id) DO NOTHING""", r)
        cur.execute("""
            SELECT outbox_queue('registration', %s, '_AddUserToIdp',
                                message_id => %s)""",
                    (Json({"registration_id": r["id"]}), f"add-user-to-idp-{r['id']}"))
    return Response(202, {"registration_id": r["id"]})


# ---------------------------------------------------------------------------
# The saga's steps
# ---------------------------------------------------------------------------

def add_user_to_idp(cur, reg):
    """Create the user in the identity provider, then queue _StorePatient."""
    if reg["state"] != "pending":
        return "duplicate"
    # The IdP is not part of our transaction.  Its PUT is idempotent (the
    # user id is ours), so calling it again after a crash is harmless.  The
    # row lock we hold keeps the compensation from deleting the user while
    # this call is in flight.
    status = idp("PUT", reg["id"], {"email": reg["email"], "name": reg["name"]})
    if status in (200, 201):
        set_state(cur, reg, "idp_created")
        cur.execute("""
            SELECT outbox_queue('registration', %s, '_StorePatient', message_id => %s)""",
                    (Json({"registration_id": reg["id"]}), f"store-patient-{reg['id']}"))
    elif status == 422:
        fail(cur, reg, "the identity provider refused the user")
    else:
        raise Retry(f"identity provider answered {status}")
    return "done"


def store_patient(cur, reg):
    """Store the patient and queue PatientRegisteredSuccessfully, or, when the
    clinic's rules reject the patient, compensate."""
    if reg["state"] != "idp_created":
        return "duplicate"
    try:
        cur.execute("SAVEPOINT store")
        cur.execute("""
            INSERT INTO patients (registration_id, name, email, insurance_no)
            VALUES (%(id)s, %(name)s, %(email)s, %(insurance_no)s)""", reg)
    except psycopg2.errors.CheckViolation:
        cur.execute("ROLLBACK TO SAVEPOINT store")
        fail(cur, reg, "invalid insurance number")
        return "done"
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT store")
        fail(cur, reg, "a patient with this insurance number exists")
        return "done"
    set_state(cur, reg, "registered")
    cur.execute("""
        SELECT outbox_queue('events', %s, 'PatientRegisteredSuccessfully', message_id => %s)""",
                (Json({"registration_id": reg["id"], "email": reg["email"]}),
                 f"patient-registered-{reg['id']}"))
    return "done"


def fail(cur, reg, reason):
    """A permanent failure: mark the registration failed and queue the
    compensation and the failure event, in the caller's transaction.
    outbox_send rather than outbox_queue: neither is urgent, and the table-
    polled path is the one meant for them.  Reverting is harmless even when
    the IdP never created the user, so every failure takes this one path."""
    set_state(cur, reg, "failed", reason)
    cur.execute("""
        SELECT outbox_send('registration', %s, '_RevertPatientRegistration', message_id => %s)""",
                (Json({"registration_id": reg["id"]}), f"revert-registration-{reg['id']}"))
    cur.execute("""
        SELECT outbox_send('events', %s, 'PatientRegistrationFailed', message_id => %s)""",
                (Json({"registration_id": reg["id"], "reason": reason}),
                 f"patient-registration-failed-{reg['id']}"))


def revert_registration(cur, reg):
    """The compensation: delete the IdP user (a user that is not there is
    fine: deleting twice, or what was never created, is a no-op)."""
    if reg["state"] != "failed":
        return "duplicate"
    status = idp("DELETE", reg["id"])
    if status not in (204, 404):
        raise Retry(f"identity provider answered {status}")
    set_state(cur, reg, "reverted")
    return "done"


STEPS = {
    "_AddUserToIdp": add_user_to_idp,
    "_StorePatient": store_patient,
    "_RevertPatientRegistration": revert_registration,
}


def saga_step(req):
    """One webhook: run the step named by outbox-type in one transaction."""
    step = STEPS.get(req.type)
    if step is None:
        return Response(410)        # 410 Gone: the outbox gives up on it at once
    with db.transaction() as cur:
        cur.execute("""
            SELECT id, name, email, insurance_no, state FROM registrations
            WHERE id = %s FOR UPDATE""", (req.json["registration_id"],))
        reg = cur.fetchone()
        if step(cur, reg) == "duplicate":
            cur.execute("INSERT INTO duplicate_deliveries (message_id, type) VALUES (%s, %s)",
                        (req.id, req.type))
    return Response(200)            # only now, after the COMMIT


def set_state(cur, reg, state, failure=None):
    cur.execute("""
        UPDATE registrations SET state = %s, failure = coalesce(%s, failure), updated_at = now()
        WHERE id = %s""", (state, failure, reg["id"]))


def idp(method, user_id, body=None):
    """Call the identity provider; return its HTTP status.  Not reaching it
    at all is a transient failure."""
    req = urllib.request.Request(
        f"{args.idp}/users/{user_id}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        raise Retry(f"identity provider unreachable: {e}")


def handle(req):
    try:
        if req.method == "POST" and req.path == "/registrations":
            return register(req.json)
        if req.method == "POST" and req.path == "/saga":
            return saga_step(req)
        return Response(404)
    except (Retry, psycopg2.OperationalError) as e:
        log(f"{req.type or req.path} {req.id}: {e}; answering 503")
        return Response(503, {"retry": str(e)})


serve(args.port, handle, "clinic service")
