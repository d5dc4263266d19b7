#!/usr/bin/env node
"use strict";
// A stand-in for the Prisma CLI, enough for the README model's migration
// `[npx, prisma, migrate, deploy]`: applies prisma/migrations/<name>/migration.sql (relative to
// the working directory, as Prisma does) in name order, each once, in a transaction, and records
// it in "_prisma_migrations", Prisma's own table. It also logs every invocation in
// "_standin_migrate_runs" (version, migrations applied), so a test can count how often the
// migration ran. DATABASE_URL comes from the environment only. Exit 0 on success, 1 otherwise.
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const { Client } = require("pg");

const USAGE = "usage: prisma migrate deploy (this stand-in knows nothing else)";
const LOCK_KEY = 72707369; // one migration at a time per database, as Prisma's advisory lock

function fail(message) {
  process.stderr.write(`Error: ${message}\n`);
  process.exit(1);
}

function version() {
  try {
    return fs.readFileSync(path.join(process.cwd(), "VERSION"), "utf8").trim();
  } catch {
    return "dev";
  }
}

function migrations(dir) {
  let names;
  try {
    names = fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch (err) {
    fail(`cannot read ${dir}: ${err.message}`);
  }
  return names.map((name) => {
    const sql = fs.readFileSync(path.join(dir, name, "migration.sql"), "utf8");
    return { name, sql, checksum: crypto.createHash("sha256").update(sql).digest("hex") };
  });
}

async function deploy() {
  const url = process.env.DATABASE_URL;
  if (!url) fail("Environment variable not found: DATABASE_URL.");
  const found = migrations(path.join(process.cwd(), "prisma", "migrations"));
  process.stdout.write(`Datasource "db": PostgreSQL database\n\n${found.length} migration(s) found in prisma/migrations\n`);
  const db = new Client({ connectionString: url, connectionTimeoutMillis: 10000 });
  await db.connect();
  try {
    await db.query("SELECT pg_advisory_lock($1)", [LOCK_KEY]);
    await db.query(`CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
      "id" VARCHAR(36) PRIMARY KEY, "checksum" VARCHAR(64) NOT NULL, "finished_at" TIMESTAMPTZ,
      "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT, "rolled_back_at" TIMESTAMPTZ,
      "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(), "applied_steps_count" INTEGER NOT NULL DEFAULT 0)`);
    await db.query(`CREATE TABLE IF NOT EXISTS "_standin_migrate_runs" (
      "id" SERIAL PRIMARY KEY, "version" TEXT NOT NULL, "applied" INTEGER NOT NULL,
      "ran_at" TIMESTAMPTZ NOT NULL DEFAULT now())`);
    const done = new Map((await db.query(
      `SELECT "migration_name", "checksum" FROM "_prisma_migrations" WHERE "finished_at" IS NOT NULL
       AND "rolled_back_at" IS NULL`)).rows.map((r) => [r.migration_name, r.checksum]));
    const applied = [];
    for (const m of found) {
      if (done.has(m.name)) {
        if (done.get(m.name) !== m.checksum) fail(`migration ${m.name} was modified after it was applied`);
        continue;
      }
      await db.query("BEGIN");
      try {
        await db.query(m.sql);
        await db.query(`INSERT INTO "_prisma_migrations" ("id", "checksum", "finished_at", "migration_name",
          "applied_steps_count") VALUES ($1, $2, now(), $3, 1)`, [crypto.randomUUID(), m.checksum, m.name]);
        await db.query("COMMIT");
      } catch (err) {
        await db.query("ROLLBACK");
        fail(`migration ${m.name} failed: ${err.message}`);
      }
      applied.push(m.name);
    }
    await db.query(`INSERT INTO "_standin_migrate_runs" ("version", "applied") VALUES ($1, $2)`,
      [version(), applied.length]);
    if (applied.length) {
      process.stdout.write(`\nThe following migration(s) have been applied:\n\n${applied.map((n) => `  ${n}\n`).join("")}\n`);
      process.stdout.write("All migrations have been successfully applied.\n");
    } else {
      process.stdout.write("\nNo pending migrations to apply.\n");
    }
  } finally {
    await db.end();
  }
}

const args = process.argv.slice(2);
if (args[0] !== "migrate" || args[1] !== "deploy" || args.length !== 2) fail(USAGE);
deploy().catch((err) => fail(err.message));
