"use strict";
// Healthy while the worker's loop has heard from Redis within the last 15 s (it writes the
// heartbeat at least every second when Redis answers, and once per job).
const fs = require("node:fs");

const file = process.env.WORKER_HEARTBEAT_FILE || "/tmp/worker-heartbeat";
try {
  const age = Date.now() - Number(fs.readFileSync(file, "utf8"));
  process.exit(age >= 0 && age < 15_000 ? 0 : 1);
} catch {
  process.exit(1);
}
