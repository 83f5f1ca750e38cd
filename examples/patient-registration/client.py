#!/usr/bin/env python3
"""Submits registration requests to the clinic, a few at a time, at a steady
pace, retrying each one until the clinic accepted it (202).  The client
chooses each registration's id, so a retry never registers anyone twice.

The test data is deterministic; some of it is meant to fail:
    every 10th request (i % 10 == 3)  an invalid insurance number: the
                                      clinic rejects it after the IdP
                                      created the user -> compensation
    every 20th (i % 20 == 7)          an e-mail domain the IdP refuses
    every 20th (i % 20 == 16)         the insurance number of request i-5:
                                      the same person registering twice,
                                      one of the two is rejected
"""

import argparse
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--count", type=int, default=60)
p.add_argument("--rate", type=float, default=20, help="requests per second")
p.add_argument("--deadline", type=float, default=120, help="give up after (s)")
args = p.parse_args()


def registration(i):
    def insurance_no(n):
        return "ABCDEFGHJK"[n % 10] + f"{100000000 + n:09d}"
    r = {"id": f"reg-{i:04d}", "name": f"Patient {i}",
         "email": f"patient{i}@example.org", "insurance_no": insurance_no(i)}
    if i % 10 == 3:
        r["insurance_no"] = f"X-{i}"
    elif i % 20 == 7:
        r["email"] = f"patient{i}@blocked.example"
    elif i % 20 == 16:
        r["insurance_no"] = insurance_no(i - 5)
    return r


def submit(i, deadline):
    """POST registration i until the clinic accepts it; returns the number
    of retries it took."""
    data = json.dumps(registration(i)).encode()
    retries = 0
    while True:
        req = urllib.request.Request(args.url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                if resp.status == 202:
                    return retries
        except OSError:
            pass                # the clinic is down or failed: try again
        retries += 1
        if time.monotonic() > deadline:
            raise SystemExit(f"client: gave up on registration {i}")
        time.sleep(0.2)


deadline = time.monotonic() + args.deadline
with ThreadPoolExecutor(max_workers=8) as pool:
    futures = []
    for i in range(1, args.count + 1):
        futures.append(pool.submit(submit, i, deadline))
        time.sleep(1 / args.rate)
    retries = sum(f.result() for f in futures)
print(f"client: {args.count} registrations accepted "
      f"({retries} requests retried while the clinic was unavailable)", flush=True)
