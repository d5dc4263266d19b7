"use strict";
// node-media's media-processing worker: no port, no routes. BRPOP from the Redis list `jobs`,
// "process" the upload (checksum, type sniffing, v2: image dimensions and a text preview),
// write <id>.meta.json next to it on the shared volume, mark the job done in Redis (hash
// upload:<id>) and publish "processed <id>" on the channel `events`.
// SIGTERM: the job in hand is finished, then the worker exits 0.
const crypto = require("node:crypto");
const fs = require("node:fs");
const fsp = require("node:fs/promises");
const os = require("node:os");
const path = require("node:path");
const { createClient } = require("redis");

const VERSION = readVersion();
const HOSTNAME = os.hostname();
const REDIS_URL = required("REDIS_URL");
const UPLOAD_DIR = process.env.UPLOAD_DIR || "/data/uploads";
const DELAY_MS = Number(process.env.WORKER_DELAY_MS || 500); // stands in for real work
const HEARTBEAT = process.env.WORKER_HEARTBEAT_FILE || "/tmp/worker-heartbeat";
const POP_TIMEOUT_S = 1;
const ID = /^[0-9a-f]{32}$/;

function readVersion() {
  try {
    return fs.readFileSync("/app/VERSION", "utf8").trim();
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

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const redis = createClient({
  url: REDIS_URL,
  disableOfflineQueue: true,
  socket: { connectTimeout: 3000, reconnectStrategy: (retries) => Math.min(200 + retries * 200, 2000) },
});
let redisErrorLogged = false;
redis.on("error", (err) => {
  if (!redisErrorLogged) log(`redis: ${err.code || err.name}: ${err.message}`);
  redisErrorLogged = true;
});
redis.on("ready", () => {
  redisErrorLogged = false;
  log("redis: connected");
});

let stopping = false;
let current = null;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  log(current ? `received ${signal}, finishing job ${current} first` : `received ${signal}, stopping`);
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));

// What the file is, from its first bytes.
function sniff(head) {
  const hex = head.subarray(0, 12).toString("hex");
  if (hex.startsWith("89504e470d0a1a0a")) return "image/png";
  if (hex.startsWith("ffd8ff")) return "image/jpeg";
  if (hex.startsWith("474946383")) return "image/gif";
  if (hex.startsWith("25504446")) return "application/pdf";
  if (hex.startsWith("52494646") && head.subarray(8, 12).toString() === "WEBP") return "image/webp";
  if (head.length && !head.includes(0) && /^[\t\n\r\x20-\x7e\x80-\xff]*$/.test(head.toString("latin1"))) return "text/plain";
  return "application/octet-stream";
}

// v2: width and height of PNG, GIF and JPEG images.
function dimensions(type, buf) {
  if (type === "image/png" && buf.length >= 24) return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
  if (type === "image/gif" && buf.length >= 10) return { width: buf.readUInt16LE(6), height: buf.readUInt16LE(8) };
  if (type === "image/jpeg") {
    for (let i = 2; i + 9 < buf.length; ) {
      if (buf[i] !== 0xff) return null;
      const marker = buf[i + 1];
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
        return { width: buf.readUInt16BE(i + 7), height: buf.readUInt16BE(i + 5) };
      }
      i += 2 + buf.readUInt16BE(i + 2);
    }
  }
  return null;
}

async function processUpload(id) {
  const data = path.join(UPLOAD_DIR, `${id}.data`);
  const hash = crypto.createHash("sha256");
  let size = 0;
  let head = Buffer.alloc(0);
  for await (const chunk of fs.createReadStream(data)) {
    hash.update(chunk);
    size += chunk.length;
    if (head.length < 65536) head = Buffer.concat([head, chunk.subarray(0, 65536 - head.length)]);
  }
  await sleep(DELAY_MS);
  const type = sniff(head.subarray(0, 512));
  const meta = { id, sha256: hash.digest("hex"), size, detected_type: type,
                 processed_at: new Date().toISOString(), processed_by: HOSTNAME, worker_version: VERSION };
  if (VERSION !== "v1") {
    const dims = dimensions(type, head);
    if (dims) meta.dimensions = dims;
    if (type === "text/plain") {
      const text = head.toString("utf8");
      meta.preview = text.slice(0, 120);
      meta.lines = size <= head.length ? text.split("\n").length - (text.endsWith("\n") ? 1 : 0) : undefined;
    }
  }
  // Written whole and renamed: the API never reads half a file.
  const target = path.join(UPLOAD_DIR, `${id}.meta.json`);
  await fsp.writeFile(`${target}.part`, JSON.stringify(meta, null, 2) + "\n", { mode: 0o640 });
  await fsp.rename(`${target}.part`, target);
  return meta;
}

async function handle(id) {
  current = id;
  const started = Date.now();
  try {
    if (!ID.test(id)) throw new Error("not an upload id");
    await redis.hSet(`upload:${id}`, { status: "processing", worker: HOSTNAME });
    const meta = await processUpload(id);
    await redis.hSet(`upload:${id}`, { status: "done", sha256: meta.sha256, processed_at: meta.processed_at });
    await redis.publish("events", `processed ${id}`);
    log(`job ${id}: done in ${Date.now() - started} ms (${meta.size} bytes, ${meta.detected_type})`);
  } catch (err) {
    log(`job ${id}: failed: ${err.code || err.name}: ${err.message}`);
    await redis
      .multi()
      .hSet(`upload:${id}`, { status: "failed", error: err.code || err.message })
      .publish("events", `failed ${id}`)
      .exec()
      .catch(() => {});
  } finally {
    current = null;
  }
}

async function main() {
  log(`node-media-worker ${VERSION} started, uploads in ${UPLOAD_DIR}`);
  redis.connect().catch(() => {});
  while (!stopping) {
    let job;
    try {
      // A short timeout: the loop sees `stopping` within a second when idle.
      job = await redis.brPop("jobs", POP_TIMEOUT_S);
      fs.writeFileSync(HEARTBEAT, `${Date.now()}\n`); // Redis answered: the health check looks at this
    } catch (err) {
      await sleep(1000);
      continue;
    }
    if (job) await handle(job.element); // once popped, a job is finished even when stopping
  }
  await redis.quit().catch(() => {});
  log("stopped");
  process.exit(0);
}

main();
