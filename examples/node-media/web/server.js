"use strict";
// node-media's web frontend: static files from /app/public on PORT (8080), no dependencies.
// GET /healthz answers the version. Unknown paths without a file extension get index.html.
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");

const ROOT = path.join(__dirname, "public");
const PORT = Number(process.env.PORT || 8080);
const VERSION = (() => {
  try {
    return fs.readFileSync("/app/VERSION", "utf8").trim();
  } catch {
    return "dev";
  }
})();
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".json": "application/json", ".svg": "image/svg+xml",
                ".png": "image/png", ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8" };
const SECURITY = {
  "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' blob: data:",
  "X-Content-Type-Options": "nosniff",
  "X-App-Version": VERSION,
};

function send(res, status, headers, body) {
  res.writeHead(status, { ...SECURITY, ...headers });
  res.end(body);
}

const server = http.createServer((req, res) => {
  if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, { Allow: "GET, HEAD" }, "");
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(req.url, "http://localhost").pathname);
  } catch {
    return send(res, 400, {}, "bad request\n");
  }
  if (pathname === "/healthz") return send(res, 200, { "Content-Type": "text/plain", "Cache-Control": "no-store" }, `${VERSION}\n`);
  let file = path.normalize(path.join(ROOT, pathname));
  if (!file.startsWith(ROOT + path.sep) && file !== ROOT) return send(res, 404, {}, "not found\n");
  if (pathname.endsWith("/")) file = path.join(file, "index.html");
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) {
      if (path.extname(pathname)) return send(res, 404, { "Content-Type": "text/plain" }, "not found\n");
      file = path.join(ROOT, "index.html");
    }
    const ext = path.extname(file);
    // Revalidated on every load, so a new version's files are picked up at once.
    res.writeHead(200, { ...SECURITY, "Content-Type": TYPES[ext] || "application/octet-stream", "Cache-Control": "no-cache" });
    if (req.method === "HEAD") return res.end();
    fs.createReadStream(file).on("error", () => res.destroy()).pipe(res);
  });
});

server.listen(PORT, () => process.stdout.write(`node-media-web ${VERSION} listening on :${PORT}\n`));
function stop() {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
