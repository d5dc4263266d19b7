#!/usr/bin/env python3
"""Demo backend API: items in PostgreSQL, a counter in Redis. See ../README.md."""

import datetime
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import redis

import db

VERSION = db.app_version()
HOSTNAME = socket.gethostname()
MAX_BODY = 16 * 1024
MAX_NAME = 200
draining = threading.Event()


def log(msg):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sys.stdout.write(f"{stamp} {msg}\n")
    sys.stdout.flush()


class Redis:
    """Lazily created client; redis-py reconnects by itself once it exists."""

    _client = None
    _lock = threading.Lock()

    @classmethod
    def get(cls):
        with cls._lock:
            if cls._client is None:
                cls._client = redis.Redis(
                    host=os.environ.get("REDIS_HOST", "redis"),
                    port=int(os.environ.get("REDIS_PORT", "6379")),
                    password=db.read_secret("REDIS_PASSWORD_FILE"),
                    socket_connect_timeout=2,
                    socket_timeout=2,
                )
            return cls._client


def item_json(row):
    item = {"id": row[0], "name": row[1]}
    if db.has_created_at(VERSION):
        item["created_at"] = row[2].isoformat()
    return item


def item_columns():
    return "id, name, created_at" if db.has_created_at(VERSION) else "id, name"


class Handler(BaseHTTPRequestHandler):
    timeout = 15  # an idle or slow client must not hold up a graceful shutdown

    def version_string(self):
        return "demo-backend"

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-App-Version", VERSION)
        self.send_header("X-Served-By", HOSTNAME)
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code="-", size="-"):
        ms = (time.monotonic() - self.started) * 1000 if hasattr(self, "started") else 0
        log(f'{self.client_address[0]} "{self.command} {self.path}" {code} {ms:.1f}ms')

    def log_message(self, fmt, *args):
        log(f"{self.client_address[0]} {fmt % args}")

    def route(self, method):
        self.started = time.monotonic()
        path = self.path.split("?", 1)[0]
        handler = ROUTES.get((method, path))
        if handler is None:
            known = any(p == path for _, p in ROUTES)
            self.send_json(405 if known else 404, {"error": "method not allowed" if known else "not found"})
            return
        try:
            handler(self)
        except (psycopg2.Error, redis.RedisError, OSError) as exc:
            log(f"backend error on {method} {path}: {type(exc).__name__}: {str(exc).strip()}")
            self.send_json(503, {"error": "a backing service is unavailable"})

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    # --- endpoints -----------------------------------------------------------------------

    def health(self):
        result = {"status": "ok", "postgres": "ok", "redis": "ok", "version": VERSION}
        try:
            db.query("SELECT 1")
        except (psycopg2.Error, OSError) as exc:
            result["postgres"] = f"error: {type(exc).__name__}"
            log(f"health: postgres: {type(exc).__name__}: {str(exc).strip()}")
        try:
            Redis.get().ping()
        except (redis.RedisError, OSError) as exc:
            result["redis"] = f"error: {type(exc).__name__}"
            log(f"health: redis: {type(exc).__name__}: {str(exc).strip()}")
        if VERSION == "broken":
            result["status"] = "error: this build is broken on purpose"
        elif draining.is_set():
            result["status"] = "draining"
        elif result["postgres"] != "ok" or result["redis"] != "ok":
            result["status"] = "error"
        self.send_json(200 if result["status"] == "ok" else 503, result)

    def version(self):
        self.send_json(200, {"version": VERSION})

    def list_items(self):
        rows = db.query(f"SELECT {item_columns()} FROM items ORDER BY id")
        self.send_json(200, {"items": [item_json(r) for r in rows]})

    def create_item(self):
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.send_json(411, {"error": "Content-Length required"})
            return
        if length > MAX_BODY:
            self.send_json(413, {"error": "body too large"})
            return
        try:
            name = json.loads(self.rfile.read(length) or b"null")["name"]
        except (ValueError, TypeError, KeyError):
            self.send_json(400, {"error": 'expected a JSON object {"name": "..."}'})
            return
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            self.send_json(400, {"error": f"name must be a non-empty string of at most {MAX_NAME} characters"})
            return
        rows = db.query(
            f"INSERT INTO items (name) VALUES (%s) RETURNING {item_columns()}", (name.strip(),), commit=True
        )
        self.send_json(201, item_json(rows[0]))

    def counter(self):
        self.send_json(200, {"counter": Redis.get().incr("demo:counter")})


ROUTES = {
    ("GET", "/api/health"): Handler.health,
    ("GET", "/api/version"): Handler.version,
    ("GET", "/api/items"): Handler.list_items,
    ("POST", "/api/items"): Handler.create_item,
    ("GET", "/api/counter"): Handler.counter,
}


class Server(ThreadingHTTPServer):
    # Non-daemon threads: server_close() waits for in-flight requests before the exit.
    daemon_threads = False
    block_on_close = True


def main():
    port = int(os.environ.get("LISTEN_PORT", "8000"))
    grace = float(os.environ.get("SHUTDOWN_DELAY_SECONDS", "0"))
    server = Server(("0.0.0.0", port), Handler)

    def stop(signum, _frame):
        if draining.is_set():
            return
        draining.set()
        log(f"received {signal.Signals(signum).name}, shutting down (drain delay {grace:g}s)")

        def shutdown():
            time.sleep(grace)  # health says 503 meanwhile, so a proxy can take us out first
            server.shutdown()

        threading.Thread(target=shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"demo-backend {VERSION} listening on :{port}")
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    db.close_all()
    log("stopped")


if __name__ == "__main__":
    main()
