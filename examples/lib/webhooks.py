"""The plumbing the example services share: an HTTP server for webhooks and a
PostgreSQL connection pool.  Standard library and psycopg2 only.

A service is a function that takes a Request and returns a Response:

    def handle(req):
        if req.path == "/saga" and req.type == "_StorePatient": ...
        return Response(200)

    serve(port, handle)

What a webhook from the outbox carries (see the outbox README):
    body            the payload, JSON
    webhook-id      the message_id: the same on every attempt, for de-duplication
    outbox-type     the message_type
    outbox-key      the key, when the message has one
    outbox-attempt  1, 2, ...: which attempt this is
A 2xx answer tells the outbox the message is done; anything else (or no
answer at all: a crash, a timeout) makes it retry later.
"""

import contextlib
import json
import os
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import psycopg2.pool


class Request:
    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers          # lower-case names
        self.body = body                # raw bytes

    @property
    def json(self):
        return json.loads(self.body or b"null")

    @property
    def id(self):
        return self.headers.get("webhook-id", "")

    @property
    def type(self):
        return self.headers.get("outbox-type", "")

    @property
    def attempt(self):
        return int(self.headers.get("outbox-attempt", "1"))


class Response:
    def __init__(self, status, body=None):
        self.status = status
        self.body = body                # anything json.dumps takes


def serve(port, handle, name="service"):
    """Answer HTTP requests on 127.0.0.1:port with handle(Request) -> Response,
    one thread per connection (the outbox keeps its connections open).  An
    exception in handle is answered 500, so the outbox retries the message."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # keep-alive

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            req = Request(self.command, self.path,
                          {k.lower(): v for k, v in self.headers.items()}, body)
            try:
                resp = handle(req)
            except Exception:
                traceback.print_exc()
                resp = Response(500, {"error": "internal error"})
            data = json.dumps(resp.body).encode() if resp.body is not None else b""
            self.send_response(resp.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

        def log_message(self, fmt, *args):  # no line per request
            pass

    exit_with_parent()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"{name} listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


def exit_with_parent():
    """The examples must stop by themselves: leave when run.sh is gone."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


class Database:
    """A small thread-safe connection pool.  The connection parameters come
    from the environment (PGHOST, PGPORT, PGUSER) plus dbname.

        with db.transaction() as cur:
            cur.execute(...)        # committed at the end of the block,
                                    # rolled back if it raises
    """

    def __init__(self, dbname, size=50, cursor_factory=None):
        self.pool = psycopg2.pool.ThreadedConnectionPool(1, size, dbname=dbname)
        self.cursor_factory = cursor_factory

    @contextlib.contextmanager
    def transaction(self):
        conn = self.pool.getconn()
        broken = False
        try:
            with conn:                  # COMMIT on success, ROLLBACK on error
                with conn.cursor(cursor_factory=self.cursor_factory) as cur:
                    yield cur
        except psycopg2.OperationalError:
            broken = True               # e.g. the server restarted
            raise
        finally:
            self.pool.putconn(conn, close=broken or bool(conn.closed))


def log(*args):
    print(*args, file=sys.stderr, flush=True)
