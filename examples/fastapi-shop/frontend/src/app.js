"use strict";
// The page calls the API on its own origin (/api/...); the edge Nginx routes it to the API.
const version = "__APP_VERSION__";
const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const res = await fetch(path, Object.assign({ headers: { Accept: "application/json" } }, options));
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || (body.detail && JSON.stringify(body.detail)) || `${path}: HTTP ${res.status}`);
  return body;
}

function say(text, isError) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

async function loadItems() {
  const { items } = await api("/api/items");
  $("items").replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    tr.append(cell(item.id), cell(item.name));
    if (version !== "v1") tr.append(cell(item.created_at ? new Date(item.created_at).toLocaleString() : "–"));
    return tr;
  }));
}

$("add-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const item = await api("/api/items", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ name: $("name").value.trim() }),
    });
    $("name").value = "";
    say(`Added item #${item.id}`);
    await loadItems();
  } catch (err) {
    say(err.message, true);
  }
});

async function start() {
  document.body.classList.toggle("show-created", version !== "v1");
  const tasks = [
    api("/api/health").then((h) => { $("api-version").textContent = h.version; }),
    api("/api/counter").then((c) => { $("counter").textContent = c.counter; }),
    api("/api/whoami").then((w) => { $("whoami").textContent = JSON.stringify(w, null, 2); }),
    loadItems(),
  ];
  for (const result of await Promise.allSettled(tasks)) {
    if (result.status === "rejected") say(result.reason.message, true);
  }
}

start();
