"use strict";
// Talks to the API on the same origin (/api/...), routed to the backend by the edge proxy.
const version = document.documentElement.dataset.version;
const showCreated = version !== "v1";
const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const res = await fetch(path, Object.assign({ headers: { "Accept": "application/json" } }, options));
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `${path}: HTTP ${res.status}`);
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
  const rows = items.map((item) => {
    const tr = document.createElement("tr");
    tr.append(cell(item.id), cell(item.name));
    if (showCreated) tr.append(cell(item.created_at ? new Date(item.created_at).toLocaleString() : "–"));
    return tr;
  });
  $("items").replaceChildren(...rows);
}

$("add-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  try {
    const item = await api("/api/items", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name }),
    });
    $("name").value = "";
    say(`Added item #${item.id}`);
    await loadItems();
  } catch (err) {
    say(err.message, true);
  }
});

async function start() {
  document.body.classList.toggle("show-created", showCreated);
  const tasks = [
    api("/api/version").then((v) => { $("api-version").textContent = v.version; }),
    api("/api/counter").then((c) => { $("counter").textContent = c.counter; }),
    loadItems(),
  ];
  for (const result of await Promise.allSettled(tasks)) {
    if (result.status === "rejected") say(result.reason.message, true);
  }
}

start();
