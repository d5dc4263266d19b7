"use strict";
// Same origin throughout: /api/ goes to the API, /ws/ to the WebSocket service (the edge proxy routes them).
const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const res = await fetch(path, options);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `${path}: HTTP ${res.status}`);
  return body;
}

function say(text, isError) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

function cell(content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  return td;
}

async function loadUploads() {
  const { uploads } = await api("/api/uploads");
  $("uploads").replaceChildren(...uploads.map((u) => {
    const link = document.createElement("a");
    link.href = `/api/uploads/${u.id}`;
    link.textContent = u.name;
    const tr = document.createElement("tr");
    tr.append(cell(link), cell(`${u.size} B`), cell(u.status), cell(u.result ? u.result.sha256.slice(0, 16) + "…" : "–"));
    return tr;
  }));
}

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  try {
    const up = await api("/api/uploads", {
      method: "POST",
      headers: { "Content-Type": file.type || "application/octet-stream", "X-Filename": encodeURIComponent(file.name) },
      body: file,
    });
    say(`Uploaded ${up.name} (${up.size} bytes), ${up.status}`);
    $("file").value = "";
    await loadUploads();
  } catch (err) {
    say(err.message, true);
  }
});

function event(text) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $("events").prepend(li);
  while ($("events").children.length > 20) $("events").lastChild.remove();
}

function connect(delay) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/`);
  ws.onopen = () => { $("ws-state").textContent = "connected"; delay = 1000; };
  ws.onmessage = (msg) => {
    event(msg.data);
    if (/^(processed|failed) /.test(msg.data)) loadUploads().catch(() => {});
  };
  ws.onclose = () => {
    $("ws-state").textContent = "reconnecting…";
    setTimeout(() => connect(Math.min(delay * 2, 15000)), delay);
  };
}

api("/api/health").then((h) => { $("api-version").textContent = h.version; }).catch((e) => say(e.message, true));
loadUploads().catch((e) => say(e.message, true));
connect(1000);
