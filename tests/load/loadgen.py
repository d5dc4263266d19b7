#!/usr/bin/env python3
"""Bounded HTTP load: a fixed request rate for a fixed time (or until a stop file appears),
then it stops by itself. Counts failed requests (connection errors, timeouts, non-2xx, or a
body without the expected text) and latency percentiles; prints and writes JSON.

Only for the project's own test hosts and 127.0.0.1.
Usage: loadgen.py URL [--rate 50] [--duration 60] [--stop-file F] [--output F] [--expect TEXT]
                   [--cacert PEM] [--resolve HOST:PORT:ADDRESS] [--timeline]
HTTPS: --cacert verifies the server against that CA; --resolve connects to ADDRESS for
HOST:PORT (as curl's option does) while TLS still checks the name HOST. --timeline adds every
request's [sent at (s), milliseconds, ok] to the JSON, and "epoch" is the wall-clock start.
"""

import argparse
import heapq
import http.client
import json
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

MAX_DURATION = 900  # hard upper bound, whatever the arguments say


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def https_opener(cacert, resolve):
    """An opener that verifies against `cacert` and connects HOST:PORT to ADDRESS per `resolve`."""
    context = ssl.create_default_context(cafile=cacert)
    overrides = {}
    for entry in resolve or []:
        host, port, address = entry.rsplit(":", 2)
        overrides[(host, int(port))] = address

    class Connection(http.client.HTTPSConnection):
        def connect(self):
            address = overrides.get((self.host, self.port), self.host)
            sock = socket.create_connection((address, self.port), self.timeout)
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)

    class Handler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(Connection, req, context=context)

    return urllib.request.build_opener(Handler(context=context))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (at most %d)" % MAX_DURATION)
    parser.add_argument("--timeout", type=float, default=5.0, help="per request, seconds")
    parser.add_argument("--stop-file", help="stop early once this file exists")
    parser.add_argument("--expect", help="text every successful body must contain")
    parser.add_argument("--output", help="write the JSON summary here")
    parser.add_argument("--cacert", help="HTTPS: the CA certificate (PEM) to verify the server with")
    parser.add_argument("--resolve", action="append", help="HOST:PORT:ADDRESS, connect there for HOST:PORT")
    parser.add_argument("--timeline", action="store_true", help="add every request's [sent at, ms, ok]")
    args = parser.parse_args()
    duration = min(args.duration, MAX_DURATION)
    opener = https_opener(args.cacert, args.resolve) if args.cacert or args.resolve else urllib.request.build_opener()

    lock = threading.Lock()
    timeline, failures, bodies = [], [], {}  # timeline: (sent at, seconds taken, ok) per request

    def one(sent_at):
        start = time.monotonic()
        try:
            with opener.open(args.url, timeout=args.timeout) as response:
                body = response.read().decode("utf-8", "replace")
                ok = 200 <= response.status < 300 and (args.expect is None or args.expect in body)
                reason = None if ok else "status %d / unexpected body" % response.status
        except (urllib.error.URLError, OSError) as e:
            ok, body, reason = False, "", type(e).__name__ + ": " + str(e)[:120]
        elapsed = time.monotonic() - start
        with lock:
            timeline.append((sent_at, elapsed, ok))
            if not ok:
                failures.append({"at": round(sent_at, 3), "reason": reason})
            key = body[:120]
            bodies[key] = bodies.get(key, 0) + 1

    epoch, started = time.time(), time.monotonic()
    interval = 1.0 / args.rate
    sent = 0
    with ThreadPoolExecutor(max_workers=64) as pool:
        while True:
            now = time.monotonic() - started
            if now >= duration:
                break
            if args.stop_file and sent % 10 == 0:
                try:
                    open(args.stop_file).close()
                    break
                except OSError:
                    pass
            target = sent * interval
            if target > now:
                time.sleep(target - now)
            pool.submit(one, time.monotonic() - started)
            sent += 1

    ordered = sorted(elapsed for _, elapsed, _ok in timeline)
    summary = {
        "url": args.url,
        "epoch": round(epoch, 3),
        "rate": args.rate,
        "seconds": round(time.monotonic() - started, 1),
        "requests": len(timeline),
        "failed": len(failures),
        "failed_pct": round(100.0 * len(failures) / max(1, len(timeline)), 3),
        "p50_ms": round(1000 * percentile(ordered, 50), 1) if ordered else None,
        "p99_ms": round(1000 * percentile(ordered, 99), 1) if ordered else None,
        "max_ms": round(1000 * ordered[-1], 1) if ordered else None,
        "slowest": [[round(at, 2), round(1000 * s, 1)] for at, s, _ok in heapq.nlargest(10, timeline, key=lambda t: t[1])],
        "first_failures": failures[:10],
        "failure_window_s": [failures[0]["at"], failures[-1]["at"]] if failures else None,
        "failure_reasons": sorted({f["reason"] for f in failures})[:10],
        "responses": sorted(bodies.items(), key=lambda kv: -kv[1])[:5],
    }
    if args.timeline:
        summary["timeline"] = [[round(at, 4), round(1000 * s, 2), ok] for at, s, ok in sorted(timeline)]
    text = json.dumps(summary, indent=2)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
