"use strict";
// node-media's API. Uploads land on the shared volume (UPLOAD_DIR, default /data/uploads),
// a job goes onto the Redis list `jobs`, the worker processes it. Contract: ../README.md.
const crypto = require("node:crypto");
const fs = require("node:fs");
const fsp = require("node:fs/promises");
const os = require("node:os");
const path = require("node:path");
const { pipeline } = require("node:stream/promises");
const { Transform } = require("node:stream");
const express = require("express");
const { createClient } = require("redis");

const VERSION = readVersion();
const HOSTNAME = os.hostname();
const PORT = Number(process.env.PORT || 3000);
const UPLOAD_DIR = process.env.UPLOAD_DIR || "/data/uploads";
const MAX_UPLOAD_BYTES = Number(process.env.MAX_UPLOAD_BYTES || 10 * 1024 * 1024);
const REDIS_URL = required("REDIS_URL");
const ID = /^[0-9a-f]{32}$/;
// Served as themselves; anything else (HTML, SVG, scripts) is sent as a download.
const INLINE_TYPES = /^(image\/(png|jpeg|gif|webp)|text\/plain|application\/pdf|application\/json|audio\/\w+|video\/\w+)$/;

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

// Commands fail at once while Redis is away (no offline queue): requests answer 503, health says so.
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
redis.connect().catch(() => {}); // keeps reconnecting by itself

const files = (id) => ({
  data: path.join(UPLOAD_DIR, `${id}.data`),
  record: path.join(UPLOAD_DIR, `${id}.json`),
  meta: path.join(UPLOAD_DIR, `${id}.meta.json`),
});

function cleanName(raw) {
  let name = "";
  try {
    name = decodeURIComponent(String(raw || ""));
  } catch {
    name = String(raw || "");
  }
  name = path.basename(name.replace(/\\/g, "/")).replace(/[\x00-\x1f\x7f"]/g, "").slice(0, 200);
  return name || "upload.bin";
}

async function readJson(file) {
  try {
    return JSON.parse(await fsp.readFile(file, "utf8"));
  } catch (err) {
    if (err.code === "ENOENT") return null;
    throw err;
  }
}

// Status lives in Redis (hash upload:<id>); the files on the volume are the truth when Redis
// has forgotten (a new Redis volume): done once the worker's metadata exists.
async function status(id) {
  const [record, meta] = await Promise.all([readJson(files(id).record), readJson(files(id).meta)]);
  if (!record) return null;
  let state = meta ? "done" : "unknown";
  let detail = {};
  try {
    detail = await redis.hGetAll(`upload:${id}`);
    if (detail.status) state = detail.status;
  } catch (err) {
    log(`status ${id}: redis: ${err.message}`);
  }
  return { ...record, status: state, error: detail.error || undefined, result: meta || undefined };
}

const app = express();
app.disable("x-powered-by");
app.set("trust proxy", process.env.TRUST_PROXY || "loopback, linklocal, uniquelocal");
app.use((req, res, next) => {
  const started = process.hrtime.bigint();
  const client = req.ip; // read now: an aborted request has no socket by the time it finishes
  res.set({ "X-App-Version": VERSION, "X-Served-By": HOSTNAME, "Cache-Control": "no-store" });
  res.on("finish", () => {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    if (req.path !== "/api/health") log(`${client} "${req.method} ${req.originalUrl}" ${res.statusCode} ${ms.toFixed(1)}ms`);
  });
  next();
});

app.get("/api/health", async (req, res) => {
  const result = { status: "ok", version: VERSION, redis: "ok", storage: "ok" };
  try {
    if ((await redis.ping()) !== "PONG") result.redis = "error: unexpected answer";
  } catch (err) {
    result.redis = `error: ${err.name}`;
  }
  try {
    await fsp.access(UPLOAD_DIR, fs.constants.W_OK);
  } catch (err) {
    result.storage = `error: ${err.code}`;
  }
  if (result.redis !== "ok" || result.storage !== "ok") result.status = "error";
  res.status(result.status === "ok" ? 200 : 503).json(result);
});

app.post("/api/uploads", async (req, res) => {
  const type = (req.get("content-type") || "application/octet-stream").split(";")[0].trim().toLowerCase();
  if (type.startsWith("multipart/")) {
    return res.status(415).json({ error: "send the file itself as the request body (not multipart)" });
  }
  const declared = Number(req.get("content-length"));
  if (declared > MAX_UPLOAD_BYTES) return res.status(413).json({ error: `larger than ${MAX_UPLOAD_BYTES} bytes` });
  const id = crypto.randomBytes(16).toString("hex");
  const f = files(id);
  const name = cleanName(req.get("x-filename") || req.query.name);
  const part = `${f.data}.part`;
  let size = 0;
  const limit = new Transform({
    transform(chunk, _enc, done) {
      size += chunk.length;
      if (size > MAX_UPLOAD_BYTES) done(Object.assign(new Error("too large"), { status: 413 }));
      else done(null, chunk);
    },
  });
  try {
    await pipeline(req, limit, fs.createWriteStream(part, { flags: "wx", mode: 0o640 }));
  } catch (err) {
    await fsp.rm(part, { force: true });
    if (err.status === 413) {
      return res.status(413).set("Connection", "close").json({ error: `larger than ${MAX_UPLOAD_BYTES} bytes` });
    }
    throw err;
  }
  if (size === 0) {
    await fsp.rm(part, { force: true });
    return res.status(400).json({ error: "empty body: send the file as the request body" });
  }
  const record = { id, name, type, size, created_at: new Date().toISOString(), uploaded_by: VERSION };
  await fsp.writeFile(`${f.record}.part`, JSON.stringify(record) + "\n", { mode: 0o640 });
  await fsp.rename(`${f.record}.part`, f.record);
  await fsp.rename(part, f.data);
  try {
    await redis
      .multi()
      .hSet(`upload:${id}`, { status: "queued", name, size: String(size) })
      .lPush("jobs", id)
      .lPush("uploads:recent", id)
      .lTrim("uploads:recent", 0, 49)
      .exec();
  } catch (err) {
    // The file is kept; the upload is reported as not queued so the client can tell.
    log(`upload ${id}: could not queue the job: ${err.message}`);
    return res.status(503).json({ error: "stored, but the processing queue is unavailable", id });
  }
  log(`upload ${id}: ${size} bytes, ${type}, queued`);
  res.status(201).location(`/api/uploads/${id}`).json({ ...record, status: "queued", url: `/api/uploads/${id}` });
});

app.get("/api/uploads", async (req, res) => {
  const ids = (await redis.lRange("uploads:recent", 0, 19)).filter((id) => ID.test(id));
  const items = (await Promise.all(ids.map(status))).filter(Boolean);
  res.json({ uploads: items });
});

app.get("/api/uploads/:id/status", async (req, res) => {
  if (!ID.test(req.params.id)) return res.status(404).json({ error: "not found" });
  const item = await status(req.params.id);
  if (!item) return res.status(404).json({ error: "not found" });
  res.json(item);
});

// The file itself, with its processing status in headers.
app.get("/api/uploads/:id", async (req, res) => {
  if (!ID.test(req.params.id)) return res.status(404).json({ error: "not found" });
  const item = await status(req.params.id);
  if (!item) return res.status(404).json({ error: "not found" });
  const inline = INLINE_TYPES.test(item.type);
  res.set({
    "Content-Type": inline ? item.type : "application/octet-stream",
    "Content-Length": String(item.size),
    "Content-Disposition": `${inline ? "inline" : "attachment"}; filename="${encodeURIComponent(item.name)}"`,
    "X-Content-Type-Options": "nosniff",
    "X-Upload-Status": item.status,
  });
  if (item.result && item.result.sha256) res.set("X-Upload-Sha256", item.result.sha256);
  try {
    await pipeline(fs.createReadStream(files(item.id).data), res);
  } catch (err) {
    if (err.code !== "ERR_STREAM_PREMATURE_CLOSE") throw err; // the client went away: nothing to answer
  }
});

app.use("/api", (req, res) => res.status(404).json({ error: "not found" }));

// Express 5 hands rejected promises of async handlers to this.
app.use((err, req, res, _next) => {
  const down = err && (err.name === "ClientClosedError" || /closed|ECONNREFUSED|offline/i.test(err.message));
  log(`error on ${req.method} ${req.originalUrl}: ${err.name}: ${err.message}`);
  if (res.headersSent) return res.destroy();
  res.status(down ? 503 : err.status || 500).json({ error: down ? "a backing service is unavailable" : "internal error" });
});

const server = app.listen(PORT, () => log(`node-media-api ${VERSION} listening on :${PORT}, uploads in ${UPLOAD_DIR}`));
server.keepAliveTimeout = 65_000; // longer than the proxy's idle upstream connections
server.requestTimeout = 120_000;

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  log(`received ${signal}, finishing requests in flight`);
  server.close(async () => {
    await redis.quit().catch(() => {});
    log("stopped");
    process.exit(0);
  });
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 10_000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
