"use strict";
// The README shop's frontend (a stand-in for a user's image, tests only) on PORT (8080): every
// GET answers a small page naming its version (also in the X-App-Version header).
// SIGTERM: stops listening, exits 0.
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");

const PORT = Number(process.env.PORT || 8080);
const VERSION = (() => {
  try {
    return fs.readFileSync(path.join(__dirname, "VERSION"), "utf8").trim();
  } catch {
    return "dev";
  }
})();
const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>shop</title></head>
<body><h1>shop</h1><p>web <span id="version">${VERSION}</span></p></body></html>
`;

const server = http.createServer((req, res) => {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { Allow: "GET, HEAD" });
    return res.end();
  }
  res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache",
                       "X-App-Version": VERSION, "Content-Length": Buffer.byteLength(PAGE) });
  res.end(req.method === "HEAD" ? undefined : PAGE);
});

server.listen(PORT, () => process.stdout.write(`readme-shop-web ${VERSION} listening on :${PORT}\n`));
function stop() {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 5000).unref();
}
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
