"use strict";
// The README shop's API (a stand-in for a user's image, tests only), on PORT (8000):
//   GET  /api/health              {"status":"ok","version","host"}
//   GET  /api/items               the rows of "Item", a table the migration created (PostgreSQL)
//   POST /api/items               {"name"} -> 201, the new row
//   GET  /api/migrations          "_prisma_migrations" and every run of the migration command
//   POST /api/uploads             the body as a file on the uploads volume -> 201 {id, size, sha256}
//   GET  /api/uploads/<id>        {id, size, seen}: seen is the worker's receipt for it, or null
//   GET  /api/worker              the worker's last heartbeat (it writes it on the volume)
//   GET  /api/session             {"hmac"}: HMAC-SHA256 of "readme-shop" with SESSION_KEY
//   /ws/                          WebSocket: "hello <version>", then every message echoed
// DATABASE_URL and SESSION_KEY are read only from the environment; without one it exits 2.
// SIGTERM: stops listening, closes WebSockets (1001), exits 0.
const crypto = require("node:crypto");
const fs = require("node:fs");
const fsp = require("node:fs/promises");
const http = require("node:http");
const os = require("node:os");
const path = require("node:path");
const { Pool } = require("pg");
const { WebSocketServer } = require("ws");

const VERSION = readVersion();
const HOST = os.hostname();
const DATABASE_URL = required("DATABASE_URL");
const SESSION_KEY = required("SESSION_KEY");
const PORT = Number(process.env.PORT || 8000);
const UPLOAD_DIR = process.env.UPLOAD_DIR || "/data/uploads";
const MAX_BODY = 1024 * 1024;
const ID = /^[0-9a-f]{32}$/;

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

const pool = new Pool({ connectionString: DATABASE_URL, max: 4, connectionTimeoutMillis: 3000 });
pool.on("error", (err) => log(`postgres: ${err.message}`));

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store",
                          "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error("body too large"), { status: 413 }));
        req.destroy();
      } else {
        chunks.push(chunk);
      }
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

async function readJson(file) {
  try {
    return JSON.parse(await fsp.readFile(file, "utf8"));
  } catch (err) {
    if (err.code === "ENOENT") return null;
    throw err;
  }
}

const routes = {
  "GET /api/health": async () => [200, { status: "ok", version: VERSION, host: HOST }],
  "GET /api/items": async () => {
    const { rows } = await pool.query('SELECT "id", "name", "createdAt" FROM "Item" ORDER BY "id"');
    return [200, { items: rows }];
  },
  "POST /api/items": async (req) => {
    let name;
    try {
      name = JSON.parse((await readBody(req)).toString("utf8")).name;
    } catch {
      return [400, { error: "a JSON body {\"name\": ...} is expected" }];
    }
    if (typeof name !== "string" || !name || name.length > 200) return [400, { error: "name: 1 to 200 characters" }];
    const { rows } = await pool.query('INSERT INTO "Item" ("name") VALUES ($1) RETURNING "id", "name", "createdAt"', [name]);
    return [201, rows[0]];
  },
  "GET /api/migrations": async () => {
    const applied = await pool.query('SELECT "migration_name", "finished_at" FROM "_prisma_migrations" ORDER BY "started_at"');
    const runs = await pool.query('SELECT "version", "applied", "ran_at" FROM "_standin_migrate_runs" ORDER BY "id"');
    return [200, { applied: applied.rows, runs: runs.rows }];
  },
  "POST /api/uploads": async (req) => {
    const body = await readBody(req);
    if (!body.length) return [400, { error: "empty body" }];
    const id = crypto.randomBytes(16).toString("hex");
    const tmp = path.join(UPLOAD_DIR, `.${id}.tmp`);
    await fsp.writeFile(tmp, body, { mode: 0o640 });
    await fsp.rename(tmp, path.join(UPLOAD_DIR, `${id}.upload`)); // the worker sees complete files only
    return [201, { id, size: body.length, sha256: crypto.createHash("sha256").update(body).digest("hex") }];
  },
  "GET /api/worker": async () => {
    const beat = await readJson(path.join(UPLOAD_DIR, ".worker-heartbeat.json"));
    return beat ? [200, beat] : [404, { error: "no heartbeat from the worker yet" }];
  },
  "GET /api/session": async () =>
    [200, { hmac: crypto.createHmac("sha256", SESSION_KEY).update("readme-shop").digest("hex") }],
};

async function handle(req, res) {
  const { pathname } = new URL(req.url, "http://localhost");
  const route = routes[`${req.method} ${pathname}`];
  if (route) return send(res, ...(await route(req)));
  const upload = /^\/api\/uploads\/([^/]+)$/.exec(pathname);
  if (upload && req.method === "GET" && ID.test(upload[1])) {
    const id = upload[1];
    let stat;
    try {
      stat = await fsp.stat(path.join(UPLOAD_DIR, `${id}.upload`));
    } catch {
      return send(res, 404, { error: "no such upload" });
    }
    return send(res, 200, { id, size: stat.size, seen: await readJson(path.join(UPLOAD_DIR, `${id}.seen`)) });
  }
  return send(res, 404, { error: "not found" });
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    log(`${req.method} ${req.url}: ${err.message}`);
    if (!res.headersSent) send(res, err.status || 503, { error: err.message });
  });
});

const wss = new WebSocketServer({ noServer: true });
wss.on("connection", (socket) => {
  socket.send(`hello ${VERSION} ${HOST}`);
  socket.on("message", (data, binary) => socket.send(data, { binary }));
});
server.on("upgrade", (req, socket, head) => {
  if (!req.url.startsWith("/ws/")) return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
});

server.listen(PORT, () => log(`readme-shop-api ${VERSION} listening on :${PORT}`));

function stop(signal) {
  log(`received ${signal}, stopping`);
  for (const client of wss.clients) client.close(1001, "going away");
  server.close(() => pool.end().finally(() => process.exit(0)));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 5000).unref();
}
process.once("SIGTERM", () => stop("SIGTERM"));
process.once("SIGINT", () => stop("SIGINT"));
