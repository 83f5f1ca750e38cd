#!/usr/bin/env python3
"""A small HTTP/1.1 webhook receiver for the outbox tests and demo.

Only the Python 3 standard library is used.  It listens on 127.0.0.1 only,
keeps connections alive (HTTP/1.1), reads each request body by its
Content-Length (or chunked encoding), and answers with a short body.

Every request can be appended to a JSON-lines log file, one object per line,
flushed at once when the request has been read, *before* any --delay and
before the response is sent (so a request in flight is already in the log):

    {"t": <arrival, epoch seconds, float>, "method": "POST",
     "path": "/hooks/orders",
     "headers": {"<lower-case name>": "<value>", ...}, "body": "<text>",
     "status": <status to be answered, 0 for a drop>,
     "n": <1 for the first request with this webhook-id, 2, ...>,
     "peer": "<client ip:port>"}

With --answer-log FILE, one more line per request goes to FILE once the
answer was written (or failed, or was dropped):

    {"t": <arrival>, "t_done": <epoch seconds after the answer>,
     "webhook-id": "<id or empty>", "status": <status, 0 for a drop>,
     "sent": <true if the whole response was written to the socket>}

Options:
    --port N            port to listen on (required)
    --log FILE          append one JSON line per request to FILE
    --status CODE       status to answer (default 200)
    --fail-first N      answer 500 to the first N requests of each distinct
                        webhook-id, then the normal status
    --fail-rate P       answer 500 to a random fraction P (0..1) of all
                        requests (on top of --fail-first / --control)
    --delay SECONDS     sleep before answering
    --header "N: V"     add a response header (repeatable)
    --control FILE      if FILE exists, it is re-read on every request; it
                        holds JSON such as {"status": 503, "delay": 0.5}
                        that overrides --status / --delay.  {"drop": true}
                        closes the connection without answering.
                        {"headers": {"Retry-After": "2"}} adds response
                        headers.  {"by_id": {"<webhook-id>": RULE, "*": RULE}}
                        overrides the above per webhook-id ("*": any id not
                        listed); RULE is an object with any of status,
                        delay, drop, headers, or a list of such objects:
                        the n-th request of that id uses the n-th entry
                        (the last one repeats).  {"status_line": S}
                        answers with the status line S instead of
                        "HTTP/1.1 <status> <reason>"; each character of S
                        (code points 0-255) is sent as that byte, so any
                        bytes can be sent, invalid UTF-8 included.
    --answer-log FILE   append one JSON line per answer to FILE (see above)
    --max-seconds S     exit by itself after S seconds (default 900)
    --body-bytes N      answer with a body of N bytes (Content-Length N),
                        written in 64 kB pieces, instead of the short JSON
                        body; the answer log gets "body_sent", the bytes
                        of body written before the client went away
    --body-endless      answer with an endless chunked body (written until
                        the client closes the connection); also logs
                        "body_sent"
    --stall-headers     send "HTTP/1.1 200 OK\r\n" and then nothing more,
                        until the client closes the connection
    --print             print a one-line human summary of each request
                        to stdout

The receiver also exits when its parent process goes away.  Once it is
listening it prints "ready <port>" to stdout (with --print, a
"[receiver] listening on ..." line instead).
"""

import argparse
import json
import os
import random
import select
import signal
import socket
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
        self.answer_file = None
        if args.answer_log:
            self.answer_file = open(args.answer_log, "a", encoding="utf-8")

    def control(self, webhook_id="", n=1):
        """Return (status, delay, drop, headers, status_line) for the n-th
        request of this webhook-id."""
        status = self.args.status
        status_line = None
        delay = self.args.delay
        drop = False
        headers = dict(self.args.header_dict)
        path = self.args.control
        ctl = None
        if path and os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                if text.strip():
                    ctl = json.loads(text)
            except (OSError, ValueError) as e:
                sys.stderr.write("receiver: ignoring control file %s: %s\n"
                                 % (path, e))
        rules = [ctl] if isinstance(ctl, dict) else []
        by_id = ctl.get("by_id") if isinstance(ctl, dict) else None
        if isinstance(by_id, dict):
            rule = by_id.get(webhook_id, by_id.get("*"))
            if isinstance(rule, list):
                rule = rule[min(n, len(rule)) - 1] if rule else None
            if isinstance(rule, dict):
                rules.append(rule)
        for rule in rules:
            try:
                status = int(rule.get("status", status))
                delay = float(rule.get("delay", delay))
                drop = bool(rule.get("drop", drop))
                headers.update({str(k): str(v) for k, v in
                                (rule.get("headers") or {}).items()})
                if "status_line" in rule:
                    status_line = str(rule["status_line"]).encode("latin-1")
            except (TypeError, ValueError, AttributeError) as e:
                sys.stderr.write("receiver: ignoring control rule %r: %s\n"
                                 % (rule, e))
        return status, delay, drop, headers, status_line

    def count_attempt(self, webhook_id):
        """Count one more request for this webhook-id; return the count."""
        with self.lock:
            n = self.attempts_by_id.get(webhook_id, 0) + 1
            self.attempts_by_id[webhook_id] = n
            return n

    def record(self, entry, log_file=None):
        log_file = log_file or self.log_file
        if log_file is None:
            return
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True)
        with self.lock:
            log_file.write(line + "\n")
            log_file.flush()

    def record_answer(self, entry):
        if self.answer_file is not None:
            self.record(entry, self.answer_file)


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

        def setup(self):
            super().setup()
            # The headers and the body of an answer are separate writes:
            # without TCP_NODELAY the body waits for the client's delayed
            # ACK, ~40 ms on every keep-alive request.
            self.connection.setsockopt(socket.IPPROTO_TCP,
                                       socket.TCP_NODELAY, 1)

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

        def wait_unless_gone(self, seconds):
            """Sleep, but stop early (returning False) once the client has
            closed the connection, e.g. after its request timed out."""
            deadline = time.monotonic() + seconds
            sock = self.connection
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                try:
                    readable, _, _ = select.select([sock], [], [],
                                                   min(left, 0.05))
                    if readable and sock.recv(1, socket.MSG_PEEK) == b"":
                        return False
                except (OSError, ValueError):
                    return False
                if readable:
                    # a pipelined request is waiting: just sleep
                    time.sleep(min(max(left, 0), 0.05))

        def handle_any(self):
            received = time.time()
            body = self.read_body()
            headers = {}
            for name, value in self.headers.items():
                key = name.lower()
                headers[key] = (headers[key] + ", " + value
                                if key in headers else value)

            webhook_id = headers.get("webhook-id", "")
            n = state.count_attempt(webhook_id) if webhook_id else 1
            status, delay, drop, reply_headers, status_line = \
                state.control(webhook_id, n)
            if status_line is not None:
                try:
                    status = int(status_line.split()[1])
                except (IndexError, ValueError):
                    pass
            if webhook_id and state.args.fail_first > 0:
                if n <= state.args.fail_first:
                    status = 500
            if state.args.fail_rate > 0 and random.random() < state.args.fail_rate:
                status = 500

            entry = {
                "t": received,
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "body": body.decode("utf-8", errors="replace"),
                "status": 0 if drop else status,
                "n": n,
                "peer": "%s:%s" % self.client_address[:2],
            }
            state.record(entry)
            if state.args.print:
                sys.stdout.write(summary_line(entry) + "\n")
                sys.stdout.flush()

            answer = {"t": received, "webhook-id": webhook_id,
                      "status": 0 if drop else status, "sent": False}
            if delay > 0 and not self.wait_unless_gone(delay):
                # the client closed the connection while we waited
                self.close_connection = True
                answer["error"] = "client closed the connection"
                answer["t_done"] = time.time()
                state.record_answer(answer)
                return
            if drop:
                self.close_connection = True
                answer["t_done"] = time.time()
                state.record_answer(answer)
                return

            if state.args.stall_headers:
                self.close_connection = True
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    self.wfile.flush()
                    self.wait_unless_gone(state.args.max_seconds)
                    answer["error"] = "client closed the connection"
                except OSError as e:
                    answer["error"] = str(e)
                answer["t_done"] = time.time()
                state.record_answer(answer)
                return
            if state.args.body_bytes > 0 or state.args.body_endless:
                self.send_big_body(status, reply_headers, answer)
                answer["t_done"] = time.time()
                state.record_answer(answer)
                return

            reply = json.dumps({"ok": 200 <= status < 300,
                                "status": status}).encode() + b"\n"
            try:
                if status_line is not None:
                    self.send_raw_status_line(status_line)
                else:
                    self.send_response(status)
                for name, value in reply_headers.items():
                    if name.lower() not in ("content-type", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply)
                self.wfile.flush()
                answer["sent"] = True
            except OSError as e:    # the client went away (timeout, shutdown)
                self.close_connection = True
                answer["error"] = str(e)
            answer["t_done"] = time.time()
            state.record_answer(answer)

        def send_raw_status_line(self, line):
            """Begin an answer with these bytes as its status line (the
            headers sent next follow it, as after send_response)."""
            if not hasattr(self, "_headers_buffer"):
                self._headers_buffer = []
            self._headers_buffer.append(line + b"\r\n")

        def send_big_body(self, status, reply_headers, answer):
            """Answer with --body-bytes bytes, or an endless chunked body
            with --body-endless, until done or the client goes away."""
            piece = b"x" * 65536
            endless = state.args.body_endless
            left = state.args.body_bytes
            answer["body_sent"] = 0
            try:
                self.send_response(status)
                for name, value in reply_headers.items():
                    if name.lower() not in ("content-type", "content-length",
                                            "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Type", "application/octet-stream")
                if endless:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(left))
                self.end_headers()
                self.wfile.flush()
                while endless or left > 0:
                    n = len(piece) if endless else min(left, len(piece))
                    if endless:
                        self.wfile.write(b"%x\r\n" % n + piece[:n] + b"\r\n")
                    else:
                        self.wfile.write(piece[:n])
                        left -= n
                    self.wfile.flush()
                    answer["body_sent"] += n
                answer["sent"] = True
            except OSError as e:    # the client cut the response off
                self.close_connection = True
                answer["error"] = str(e)

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
    p.add_argument("--fail-rate", type=float, default=0.0)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--control")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--answer-log")
    p.add_argument("--max-seconds", type=float, default=900.0)
    p.add_argument("--print", action="store_true")
    p.add_argument("--body-bytes", type=int, default=0)
    p.add_argument("--body-endless", action="store_true")
    p.add_argument("--stall-headers", action="store_true")
    args = p.parse_args()
    args.header_dict = {}
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            p.error("--header wants \"Name: value\", not %r" % h)
        args.header_dict[name.strip()] = value.strip()

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
