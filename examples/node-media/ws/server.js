"use strict";
// node-media's WebSocket service on PORT (8090): WebSocket upgrades under /ws/, echoes what a
// client sends, and pushes the worker's events (Redis channel `events`, e.g. "processed <id>")
// to every client. GET /health (and /ws/health through the proxy) for health checks.
const fs = require("node:fs");
const http = require("node:http");
const os = require("node:os");
const { WebSocketServer } = require("ws");
const { createClient } = require("redis");

const VERSION = readVersion();
const HOSTNAME = os.hostname();
const PORT = Number(process.env.PORT || 8090);
const REDIS_URL = required("REDIS_URL");
const CHANNEL = "events";
const PING_MS = 25_000;

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

// A browser sends Origin with the upgrade: refuse pages of other sites (cross-site WebSocket
// hijacking). A Host without a port (a proxy forwarding Nginx's $host) is compared by name.
function sameOrigin(origin, host) {
  if (origin === undefined) return true; // not a browser
  try {
    const o = new URL(origin);
    const h = new URL(`http://${host}`);
    if (!/^https?:$/.test(o.protocol) || o.hostname !== h.hostname) return false;
    if (!h.port) return true;
    return (o.port || (o.protocol === "https:" ? "443" : "80")) === h.port;
  } catch {
    return false;
  }
}

let subscribed = false;
const subscriber = createClient({
  url: REDIS_URL,
  socket: { connectTimeout: 3000, reconnectStrategy: (retries) => Math.min(200 + retries * 200, 2000) },
});
let redisErrorLogged = false;
subscriber.on("error", (err) => {
  if (!redisErrorLogged) log(`redis: ${err.code || err.name}: ${err.message}`);
  redisErrorLogged = true;
  subscribed = false;
});
subscriber.on("ready", () => {
  redisErrorLogged = false;
  subscribed = true; // node-redis subscribes again by itself after a reconnect
  log(`redis: connected, subscribed to ${CHANNEL}`);
});
subscriber.on("end", () => (subscribed = false));

const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024, clientTracking: true });

function health(res) {
  const ok = subscribed && subscriber.isReady;
  const body = JSON.stringify({
    status: ok ? "ok" : "error",
    version: VERSION,
    redis: ok ? "ok" : "error: not subscribed",
    clients: wss.clients.size,
  });
  res.writeHead(ok ? 200 : 503, {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
    "X-App-Version": VERSION,
    "X-Served-By": HOSTNAME,
  });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (req.method === "GET" && (url.pathname === "/health" || url.pathname === "/ws/health")) return health(res);
  res.writeHead(url.pathname.startsWith("/ws") ? 426 : 404, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ error: url.pathname.startsWith("/ws") ? "WebSocket upgrade required" : "not found" }));
});

server.on("upgrade", (req, socket, head) => {
  const url = new URL(req.url, "http://localhost");
  if (!(url.pathname === "/ws" || url.pathname.startsWith("/ws/"))) {
    socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
    return;
  }
  if (!sameOrigin(req.headers.origin, req.headers.host || "")) {
    log(`refused upgrade: Origin ${req.headers.origin} does not match Host ${req.headers.host}`);
    socket.end("HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n");
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
});

wss.on("connection", (ws, req) => {
  ws.alive = true;
  ws.on("pong", () => (ws.alive = true));
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary })); // echo
  ws.on("error", (err) => log(`client error: ${err.message}`));
  ws.send(`hello ${VERSION} ${HOSTNAME}`);
  const who = req.headers["x-forwarded-for"] || req.socket.remoteAddress;
  log(`client connected from ${who} (${wss.clients.size} open)`);
});

// Dead connections (a client that vanished without a close) are dropped after one missed ping.
const pinger = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.alive) {
      ws.terminate();
      continue;
    }
    ws.alive = false;
    ws.ping();
  }
}, PING_MS);

function broadcast(message) {
  for (const ws of wss.clients) if (ws.readyState === ws.OPEN) ws.send(message);
}

subscriber
  .connect()
  .then(() => subscriber.subscribe(CHANNEL, (message) => broadcast(message)))
  .catch((err) => log(`redis: ${err.message}`));

server.listen(PORT, () => log(`node-media-ws ${VERSION} listening on :${PORT} (/ws/)`));

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  log(`received ${signal}, closing ${wss.clients.size} connections`);
  clearInterval(pinger);
  // 1001 "going away": clients reconnect, to another replica during a rollout.
  for (const ws of wss.clients) ws.close(1001, "server restarting");
  server.close();
  subscriber.quit().catch(() => {});
  setTimeout(() => process.exit(0), 2000).unref();
  wss.close(() => process.exit(0));
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
