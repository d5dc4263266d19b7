"""Configuration, secrets and a small self-healing PostgreSQL connection pool."""

import os
import threading

import psycopg2

VERSION_FILE = "/app/VERSION"
_idle = []
_lock = threading.Lock()
MAX_IDLE = 8


def app_version():
    """Baked into the image at build time (build-arg APP_VERSION), not taken from the env."""
    try:
        with open(VERSION_FILE, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        return "dev"


def has_created_at(version):
    return version in ("v2", "broken")


def read_secret(env_name):
    """The secret in the file named by env_name (secrets never come from plain env vars)."""
    path = os.environ.get(env_name)
    if not path:
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().rstrip("\r\n")


def connect():
    return psycopg2.connect(
        host=os.environ.get("DATABASE_HOST", "postgres"),
        port=int(os.environ.get("DATABASE_PORT", "5432")),
        dbname=os.environ.get("DATABASE_NAME", "app"),
        user=os.environ.get("DATABASE_USER", "app"),
        password=read_secret("DATABASE_PASSWORD_FILE"),
        connect_timeout=3,
        application_name="demo-backend",
        options="-c statement_timeout=5000",  # a stuck query must not hang a request forever
    )


def _checkout():
    with _lock:
        if _idle:
            return _idle.pop(), True
    return connect(), False


def _checkin(conn):
    with _lock:
        if not conn.closed and len(_idle) < MAX_IDLE:
            _idle.append(conn)
            return
    conn.close()


def query(sql, params=None, commit=False):
    """Runs one statement and returns its rows. A pooled connection that died (database
    restarted) is dropped and the statement retried once on a fresh connection."""
    while True:
        conn, pooled = _checkout()
        committing = False
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                rows = cur.fetchall() if cur.description else []
            committing = commit
            if commit:
                conn.commit()
            else:
                conn.rollback()
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            conn.close()
            if pooled and not committing:  # never repeat a write that may have committed
                continue
            raise
        except Exception:
            conn.close()
            raise
        _checkin(conn)
        return rows


def close_all():
    with _lock:
        while _idle:
            _idle.pop().close()
