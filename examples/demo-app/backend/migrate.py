#!/usr/bin/env python3
"""Idempotent schema migration for the demo backend: python3 /app/migrate.py

Same env contract as the API. Waits up to MIGRATE_TIMEOUT seconds (default 60) for the
database. v1 creates table items; v2 (and broken) add created_at, which v1 code ignores.
"""

import os
import sys
import time

import psycopg2

import db

LOCK_ID = 727400  # advisory lock: concurrent runs (several replicas) apply steps one at a time

STEPS = {
    "v1": [
        "CREATE TABLE IF NOT EXISTS items ("
        " id bigserial PRIMARY KEY,"
        " name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200))",
    ],
    "v2": [
        "ALTER TABLE items ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now()",
    ],
}


def wait_for_db(timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return db.connect()
        except psycopg2.OperationalError as exc:
            if time.monotonic() >= deadline:
                raise
            print(f"migrate: database not ready ({str(exc).strip().splitlines()[0]}), retrying", flush=True)
            time.sleep(2)


def main():
    version = db.app_version()
    steps = STEPS["v1"] + (STEPS["v2"] if db.has_created_at(version) else [])
    conn = wait_for_db(float(os.environ.get("MIGRATE_TIMEOUT", "60")))
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            for sql in steps:
                cur.execute(sql)
    finally:
        conn.close()
    print(f"migrate: schema is up to date for {version} ({len(steps)} idempotent steps)", flush=True)


if __name__ == "__main__":
    try:
        main()
    except psycopg2.Error as exc:
        print(f"migrate: failed: {type(exc).__name__}: {str(exc).strip()}", file=sys.stderr)
        sys.exit(1)
