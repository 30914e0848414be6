// The mozaiks-bus console: plain script, no build step. The admin token lives in this
// tab's sessionStorage and goes out only in Authorization headers (and in the first
// message of the live-tail WebSocket), never in a URL.
"use strict";

const TOKEN_KEY = "mozaiks-bus.admin-token";
const REFRESH_MS = 3000;
const TAIL_MAX = 200;
let refreshTimer = null;
let tailSocket = null;

const $ = (id) => document.getElementById(id);
// The server marks the page "open" when it has no API token configured (loopback only).
const OPEN = () => document.body.dataset.auth === "open";
const token = () => (OPEN() ? "" : sessionStorage.getItem(TOKEN_KEY));
const signedIn = () => OPEN() || Boolean(token());

class Refused extends Error {}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (className) td.className = className;
  return td;
}

function row(cells) {
  const tr = document.createElement("tr");
  cells.forEach((c) => tr.appendChild(c instanceof Node ? c : cell(c)));
  return tr;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers,
    OPEN() ? {} : { Authorization: `Bearer ${token()}` });
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401 || response.status === 403) {
    signOut(`The token was refused (${response.status}). Sign in again.`);
    throw new Refused(String(response.status));
  }
  if (!response.ok && response.status !== 204) {
    throw new Error(`${path}: ${response.status}`);
  }
  return response;
}

function showConsole(shown) {
  $("sign-in").hidden = shown || OPEN();
  $("open-mode").hidden = !OPEN();
  $("console").hidden = !shown;
  $("sign-out").hidden = !shown || OPEN();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(refreshTimer);
  refreshTimer = null;
  stopTail();
  for (const id of ["streams", "dead-letters", "sinks", "tail"]) $(id).replaceChildren();
  $("sign-in-error").textContent = message || "";
  showConsole(false);
  $("token").focus();
}

function renderStreams(streams) {
  const rows = [];
  for (const stream of streams) {
    const groups = stream.groups.length ? stream.groups : [{}];
    for (const group of groups) {
      rows.push(row([stream.type, stream.length, stream.dead_letters, group.name,
        group.consumers, group.pending, group.lag, group.oldest_pending_age_s]));
    }
  }
  $("streams").replaceChildren(...rows);
}

function actionButton(label, letter, run) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.setAttribute("aria-label", `${label} ${letter.type} ${letter.event.id}`);
  button.addEventListener("click", async () => {
    const what = label === "Purge" ? "Delete this dead letter for good" : "Put this event back on its stream";
    if (!window.confirm(`${what}? (${letter.type} ${letter.event.id})`)) return;
    try {
      await run();
      $("dead-status").textContent = `${label === "Purge" ? "Purged" : "Replayed"} ${letter.event.id}`;
    } catch (error) {
      if (!(error instanceof Refused)) $("dead-status").textContent = `${label} failed: ${error.message}`;
    }
    refresh();
  });
  return button;
}

function letterRow(letter, path, group, deliveries) {
  const actions = document.createElement("td");
  actions.append(
    actionButton("Replay", letter, () => api(`${path}/replay`, { method: "POST" })),
    " ",
    actionButton("Purge", letter, () => api(path, { method: "DELETE" })),
  );
  return row([letter.type, letter.event.id, group, deliveries, cell(letter.error, "error"),
    actions]);
}

function renderDeadLetters(streamLetters, sinkLetters) {
  const rows = streamLetters.map((letter) => letterRow(letter,
    `/v1/dead-letters/${encodeURIComponent(letter.type)}/${encodeURIComponent(letter.id)}`,
    letter.group, letter.deliveries));
  for (const letter of sinkLetters) {
    const shown = Object.assign({}, letter, { type: letter.event.type });
    rows.push(letterRow(shown,
      `/v1/sinks/${encodeURIComponent(letter.sink)}/dead-letters/${encodeURIComponent(letter.id)}`,
      `sink ${letter.sink}`, letter.attempts));
  }
  $("dead-letters").replaceChildren(...rows);
}

async function sinkDeadLetters(sinks) {
  const lists = await Promise.all(sinks.filter((sink) => sink.dead_letters > 0).map((sink) =>
    api(`/v1/sinks/${encodeURIComponent(sink.name)}/dead-letters`).then((r) => r.json())));
  return lists.flatMap((body) => body.dead_letters);
}

function renderSinks(body) {
  const rows = body.sinks.map((sink) => row([sink.name,
    sink.circuit && sink.circuit.state ? sink.circuit.state : sink.circuit, sink.queued,
    sink.dead_letters, cell(sink.last_error, "error")]));
  if (body.bridge) {
    for (const instance of body.bridge.instances) {
      rows.push(row([`MassTransit bridge ${instance.instance}`,
        instance.connected ? "connected" : "disconnected", "-", "-",
        cell(instance.last_error, "error")]));
    }
  }
  $("sinks").replaceChildren(...rows);
}

async function renderHealth() {
  try {
    const response = await fetch("/readyz");
    const body = await response.json();
    const health = $("health");
    health.textContent = response.ok ? "health: ready" : `health: not ready (${JSON.stringify(body.checks || body)})`;
    health.className = response.ok ? "good" : "bad";
  } catch (error) {
    $("health").textContent = `health: unreachable (${error.message})`;
  }
}

async function refresh() {
  if (!signedIn()) return;
  try {
    const [streams, letters, sinks] = await Promise.all([
      api("/v1/streams").then((r) => r.json()),
      api("/v1/dead-letters").then((r) => r.json()),
      api("/v1/sinks").then((r) => r.json()),
    ]);
    renderStreams(streams.streams);
    renderDeadLetters(letters.dead_letters, await sinkDeadLetters(sinks.sinks));
    renderSinks(sinks);
    showConsole(true);
  } catch (error) {
    if (!(error instanceof Refused)) $("dead-status").textContent = `refresh failed: ${error.message}`;
  }
  renderHealth();
}

function stopTail() {
  if (tailSocket) {
    tailSocket.onclose = null;
    tailSocket.close();
    tailSocket = null;
  }
}

function startTail(pattern) {
  stopTail();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/admin/tail`);
  tailSocket = socket;
  $("tail-status").textContent = "connecting";
  socket.onopen = () => socket.send(JSON.stringify({ token: token(), pattern }));
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.ready) {
      $("tail-status").textContent = `watching ${event.pattern}`;
      return;
    }
    const item = document.createElement("li");
    item.textContent = `${event.time} ${event.type} ${event.id} ${JSON.stringify(event.data)}`;
    $("tail").prepend(item);
    while ($("tail").children.length > TAIL_MAX) $("tail").lastElementChild.remove();
  };
  socket.onclose = (close) => {
    if (close.code === 1008 && close.reason.includes("token")) {
      signOut("The token was refused for the live tail. Sign in again.");
    } else {
      $("tail-status").textContent = `stopped (${close.code})`;
    }
  };
}

async function signIn(event) {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token").value = "";
  $("sign-in-error").textContent = "";
  await refresh();
  if (signedIn()) {
    refreshTimer = setInterval(refresh, REFRESH_MS);
    startTail($("pattern").value || "*");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut(""));
  $("tail-form").addEventListener("submit", (event) => {
    event.preventDefault();
    startTail($("pattern").value || "*");
  });
  if (signedIn()) {
    refresh().then(() => {
      if (signedIn()) {
        refreshTimer = setInterval(refresh, REFRESH_MS);
        startTail($("pattern").value || "*");
      }
    });
  } else {
    showConsole(false);
  }
  renderHealth();
});
