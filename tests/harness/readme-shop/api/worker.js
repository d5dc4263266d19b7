"use strict";
// The README shop's worker (a stand-in for a user's image, tests only): no port, no routes, no
// healthcheck. Every second it asks Redis (REDIS_URL, from the environment only; without it it
// exits 2), writes its heartbeat to the uploads volume (.worker-heartbeat.json: version, host,
// Redis' answer) and leaves a receipt <id>.seen beside every complete upload <id>.upload the API
// wrote there (sha256, size, its version, the count of uploads seen, kept in Redis).
// SIGTERM: exits 0 at once (within the current pass when one runs).
const crypto = require("node:crypto");
const fs = require("node:fs");
const fsp = require("node:fs/promises");
const os = require("node:os");
const path = require("node:path");
const { createClient } = require("redis");

const VERSION = readVersion();
const HOST = os.hostname();
const REDIS_URL = required("REDIS_URL");
const UPLOAD_DIR = process.env.UPLOAD_DIR || "/data/uploads";
const PERIOD_MS = 1000;
const UPLOAD = /^([0-9a-f]{32})\.upload$/;

function readVersion() {
  try {
    return fs.readFileSync(path.join(__dirname, "VERSION"), "utf8").trim();
  } catch {
    return "dev";
  }
}

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set (the environment must provide it)`);
    process.exit(2);
  }
  return value;
}

function log(msg) {
  process.stdout.write(`${new Date().toISOString()} ${msg}\n`);
}

async function writeJson(file, value) {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  await fsp.writeFile(tmp, JSON.stringify(value) + "\n", { mode: 0o640 });
  await fsp.rename(tmp, file);
}

const redis = createClient({
  url: REDIS_URL,
  disableOfflineQueue: true,
  socket: { connectTimeout: 3000, reconnectStrategy: (retries) => Math.min(200 + retries * 200, 2000) },
});
let redisError = null;
redis.on("error", (err) => {
  if (!redisError) log(`redis: ${err.code || err.name}: ${err.message}`);
  redisError = err.message;
});
redis.on("ready", () => {
  redisError = null;
  log("redis: connected");
});

async function pass() {
  let answer;
  try {
    answer = await redis.ping();
  } catch (err) {
    answer = `error: ${err.message}`;
  }
  if (answer === "PONG") {
    for (const name of await fsp.readdir(UPLOAD_DIR)) {
      const match = UPLOAD.exec(name);
      if (!match || fs.existsSync(path.join(UPLOAD_DIR, `${match[1]}.seen`))) continue;
      const body = await fsp.readFile(path.join(UPLOAD_DIR, name));
      const count = await redis.incr("readme-shop:uploads-seen");
      await writeJson(path.join(UPLOAD_DIR, `${match[1]}.seen`), {
        sha256: crypto.createHash("sha256").update(body).digest("hex"), size: body.length,
        worker_version: VERSION, worker_host: HOST, count, seen_at: new Date().toISOString() });
      log(`seen ${match[1]} (${body.length} bytes, #${count})`);
    }
  }
  await writeJson(path.join(UPLOAD_DIR, ".worker-heartbeat.json"),
    { version: VERSION, host: HOST, pid: process.pid, redis: answer, at: new Date().toISOString() });
}

let timer = null;
let stopping = false;
async function loop() {
  try {
    await pass();
  } catch (err) {
    log(`pass failed: ${err.message}`);
  }
  if (!stopping) timer = setTimeout(loop, PERIOD_MS);
}

function stop(signal) {
  if (stopping) return;
  stopping = true;
  clearTimeout(timer);
  log(`received ${signal}, stopping`);
  redis.disconnect().catch(() => {}).finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.once("SIGTERM", () => stop("SIGTERM"));
process.once("SIGINT", () => stop("SIGINT"));

log(`readme-shop-worker ${VERSION} started`);
redis.connect().catch((err) => log(`redis: ${err.message} (retrying)`));
loop();
