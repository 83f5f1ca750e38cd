#!/usr/bin/env python3
"""A small HTTP/1.1 webhook receiver for the outbox tests and demo.

Only the Python 3 standard library is used.  It listens on 127.0.0.1 only,
keeps connections alive (HTTP/1.1), reads each request body by its
Content-Length (or chunked encoding), and answers with a short body.

Every request can be appended to a JSON-lines log file, one object per line,
flushed at once, *before* the response is sent:

    {"t": <epoch seconds, float>, "method": "POST", "path": "/hooks/orders",
     "headers": {"<lower-case name>": "<value>", ...}, "body": "<text>",
     "status": <status answered>, "peer": "<client ip:port>"}

Options:
    --port N            port to listen on (required)
    --log FILE          append one JSON line per request to FILE
    --status CODE       status to answer (default 200)
    --fail-first N      answer 500 to the first N requests of each distinct
                        webhook-id, then the normal status
    --delay SECONDS     sleep before answering
    --control FILE      if FILE exists, it is re-read on every request; it
                        holds JSON such as {"status": 503, "delay": 0.5}
                        that overrides --status / --delay.  {"drop": true}
                        closes the connection without answering.
    --max-seconds S     exit by itself after S seconds (default 900)
    --print             print a one-line human summary of each request
                        to stdout

The receiver also exits when its parent process goes away.  Once it is
listening it prints "ready <port>" to stdout (with --print, a
"[receiver] listening on ..." line instead).
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    """Settings and counters shared by all handler threads."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.attempts_by_id = {}
        self.log_file = None
        if args.log:
            self.log_file = open(args.log, "a", encoding="utf-8")

    def control(self):
        """Return (status, delay, drop) for the next answer."""
        status = self.args.status
        delay = self.args.delay
        drop = False
        path = self.args.control
        if path and os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                if text.strip():
                    ctl = json.loads(text)
                    status = int(ctl.get("status", status))
                    delay = float(ctl.get("delay", delay))
                    drop = bool(ctl.get("drop", False))
            except (OSError, ValueError) as e:
                sys.stderr.write("receiver: ignoring control file %s: %s\n"
                                 % (path, e))
        return status, delay, drop

    def count_attempt(self, webhook_id):
        """Count one more request for this webhook-id; return the count."""
        with self.lock:
            n = self.attempts_by_id.get(webhook_id, 0) + 1
            self.attempts_by_id[webhook_id] = n
            return n

    def record(self, entry):
        if self.log_file is None:
            return
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True)
        with self.lock:
            self.log_file.write(line + "\n")
            self.log_file.flush()


def summary_line(entry):
    h = entry["headers"]
    t = entry["t"]
    clock = time.strftime("%H:%M:%S", time.localtime(t)) + ".%03d" % (
        int((t % 1) * 1000))
    parts = ["[receiver %s]" % clock, entry["method"], entry["path"],
             "id=" + h.get("webhook-id", "-")]
    if "outbox-type" in h:
        parts.append("type=" + h["outbox-type"])
    if "outbox-attempt" in h and h["outbox-attempt"] != "1":
        parts.append("attempt=" + h["outbox-attempt"])
    parts.append("-> %d" % entry["status"])
    body = " ".join(entry["body"].split())
    if len(body) > 120:
        body = body[:117] + "..."
    parts.append(body)
    return "  ".join(parts)


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "outbox-test-receiver/1"
        # idle keep-alive connections are closed after this many seconds
        timeout = 120

        def log_message(self, fmt, *args):  # quiet: no per-request stderr
            pass

        def read_body(self):
            te = (self.headers.get("Transfer-Encoding") or "").lower()
            if "chunked" in te:
                chunks = []
                while True:
                    size_line = self.rfile.readline()
                    if not size_line:
                        break
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        # trailers, up to the empty line
                        while True:
                            line = self.rfile.readline()
                            if not line or line in (b"\r\n", b"\n"):
                                break
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()  # CRLF after the chunk
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length > 0 else b""

        def handle_any(self):
            received = time.time()
            body = self.read_body()
            headers = {}
            for name, value in self.headers.items():
                key = name.lower()
                headers[key] = (headers[key] + ", " + value
                                if key in headers else value)

            status, delay, drop = state.control()
            webhook_id = headers.get("webhook-id", "")
            if webhook_id and state.args.fail_first > 0:
                if state.count_attempt(webhook_id) <= state.args.fail_first:
                    status = 500

            entry = {
                "t": received,
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "body": body.decode("utf-8", errors="replace"),
                "status": 0 if drop else status,
                "peer": "%s:%s" % self.client_address[:2],
            }
            state.record(entry)
            if state.args.print:
                sys.stdout.write(summary_line(entry) + "\n")
                sys.stdout.flush()

            if delay > 0:
                time.sleep(delay)
            if drop:
                self.close_connection = True
                return

            reply = json.dumps({"ok": 200 <= status < 300,
                                "status": status}).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply)
            self.wfile.flush()

        do_POST = handle_any
        do_PUT = handle_any
        do_PATCH = handle_any
        do_DELETE = handle_any
        do_GET = handle_any
        do_HEAD = handle_any

    return Handler


def watchdog(max_seconds, parent_pid):
    """Exit when the time is up or the parent process has gone away."""
    deadline = time.monotonic() + max_seconds
    while True:
        time.sleep(0.2)
        if time.monotonic() >= deadline:
            sys.stderr.write("receiver: --max-seconds reached, exiting\n")
            os._exit(0)
        if os.getppid() != parent_pid:
            os._exit(0)


def main():
    p = argparse.ArgumentParser(description="outbox test webhook receiver")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log")
    p.add_argument("--status", type=int, default=200)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--control")
    p.add_argument("--max-seconds", type=float, default=900.0)
    p.add_argument("--print", action="store_true")
    args = p.parse_args()

    parent_pid = os.getppid()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))

    state = State(args)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", args.port),
                                 make_handler(state))

    threading.Thread(target=watchdog, args=(args.max_seconds, parent_pid),
                     daemon=True).start()

    if args.print:
        sys.stdout.write("[receiver] listening on http://127.0.0.1:%d\n"
                         % args.port)
    else:
        sys.stdout.write("ready %d\n" % args.port)
    sys.stdout.flush()
    server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
