// The fleet page: fetches its JSON from /ui/api/*, listens to /ui/api/live (Server-Sent
// Events) and redraws what a change touches. No framework, no build step: every element
// is made with el(), and text is only ever set as text (never parsed as HTML).
"use strict";

const PAGE_SIZE = 100;
const REFRESH_DELAY_MS = 100; // changes arriving together cause one refresh
// Under churn a part is fetched at most once a second (a viewer's cost to the server);
// with the feed's 0.2 s batches a change still shows within 1.5 s.
const MIN_REFRESH_INTERVAL_MS = 1000;
const LIVE_LOG_MAX = 200;
const SVG_NS = "http://www.w3.org/2000/svg";

const state = { offset: 0, matched: 0, selected: null, refreshing: {}, pending: {}, last: {}, rerun: {} };

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG_NS, tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function since(iso) {
  if (!iso) return "–";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h ago`;
  return `${(seconds / 86400).toFixed(1)} d ago`;
}

function short(id) {
  return id.length > 14 ? id.slice(0, 12) + "…" : id;
}

const MAPPING_LABELS = {
  endpoint_independent: "endpoint-independent",
  endpoint_dependent: "endpoint-dependent",
  unknown: "unknown",
  no_endpoint: "no endpoint yet",
};

function badge(mapping) {
  return el("span", { class: `badge ${mapping}`, "data-mapping": mapping }, MAPPING_LABELS[mapping] || mapping);
}

// --- Fleet -------------------------------------------------------------------------

function fleetQuery() {
  const params = new URLSearchParams({ offset: state.offset, limit: PAGE_SIZE });
  const text = document.getElementById("search").value.trim();
  const mapping = document.getElementById("mapping-filter").value;
  const tag = document.getElementById("tag-filter").value;
  if (text) params.set("q", text);
  if (mapping) params.set("mapping", mapping);
  if (tag) params.set("tag", tag);
  return params;
}

function fillSelect(select, counts, labels) {
  const current = select.value;
  const first = select.options[0];
  select.replaceChildren(first);
  for (const [value, count] of Object.entries(counts)) {
    select.append(el("option", { value }, `${labels ? labels[value] || value : value} (${count})`));
  }
  if ([...select.options].some((option) => option.value === current)) select.value = current;
}

async function refreshFleet() {
  const body = await getJSON(`/ui/api/workers?${fleetQuery()}`);
  state.matched = body.matched;
  document.getElementById("fleet-count").textContent =
    `${body.total} worker${body.total === 1 ? "" : "s"}`;
  fillSelect(document.getElementById("mapping-filter"), body.mappings, MAPPING_LABELS);
  fillSelect(document.getElementById("tag-filter"), body.tags);
  const rows = body.rows.map((row) =>
    el("tr", {
        "data-worker-id": row.worker_id,
        "data-mapping": row.mapping,
        class: row.worker_id === state.selected ? "selected" : null,
        onclick: () => select(row.worker_id),
      },
      el("td", { class: "id", title: row.worker_id }, row.worker_id),
      el("td", {}, row.tags.map((tag) => el("span", { class: "tag" }, tag))),
      el("td", {}, badge(row.mapping)),
      el("td", { class: "mono" }, row.endpoint || "–"),
      el("td", { class: "mono", title: row.keyless ? "keyless worker" : "SHA-256 of its key" },
         row.key_fingerprint || "keyless"),
      el("td", { title: row.connected_since }, since(row.connected_since)),
      el("td", { title: row.endpoint_updated_at || "" },
         row.endpoint_updated_at ? `${since(row.endpoint_updated_at)} (#${row.endpoint_updates})` : "–"),
    ));
  document.querySelector("#fleet-table tbody").replaceChildren(...rows);
  const last = Math.min(body.offset + body.rows.length, body.matched);
  document.getElementById("page-info").textContent = body.matched
    ? `${body.offset + 1}–${last} of ${body.matched}${body.matched < body.total ? ` (of ${body.total})` : ""}`
    : "no worker matches";
  document.getElementById("prev").disabled = body.offset === 0;
  document.getElementById("next").disabled = last >= body.matched;
  document.getElementById("worker-ids").replaceChildren(
    ...body.rows.map((row) => el("option", { value: row.worker_id })));
  if (!document.body.dataset.fleetLoaded) performance.mark("first-rows"); // make bench-ui
  document.body.dataset.fleetLoaded = "true";
}

// --- Paths -------------------------------------------------------------------------

function drawPaths(picture) {
  const svg = document.getElementById("paths-svg");
  const width = 600, height = 420, cx = width / 2, cy = height / 2;
  const ids = [];
  for (const session of picture.sessions) {
    for (const id of [session.initiator, session.responder]) if (!ids.includes(id)) ids.push(id);
  }
  const radius = Math.min(cx, cy) - 40;
  const at = {};
  ids.forEach((id, index) => {
    const angle = (2 * Math.PI * index) / Math.max(ids.length, 1) - Math.PI / 2;
    at[id] = [cx + radius * Math.cos(angle), cy + radius * Math.sin(angle)];
  });
  const children = [];
  for (const session of picture.sessions) {
    const [ax, ay] = at[session.initiator];
    const [bx, by] = at[session.responder];
    const rtt = session.rtt_ms === null ? "" : `${session.rtt_ms} ms`;
    const label = session.state === "failed" ? "✕ failed" : session.state === "punching" ? "punching…" : rtt;
    const attrs = {
      class: `path ${session.state}`, "data-state": session.state, "data-session": session.session_id,
      "data-a": session.initiator, "data-b": session.responder,
    };
    let line, lx, ly;
    if (session.state === "relayed") {
      line = el("svg:polyline", { points: `${ax},${ay} ${cx},${cy} ${bx},${by}` });
      [lx, ly] = [(ax + cx) / 2, (ay + cy) / 2];
    } else {
      line = el("svg:line", { x1: ax, y1: ay, x2: bx, y2: by });
      [lx, ly] = [(ax + bx) / 2, (ay + by) / 2];
    }
    children.push(el("svg:g", attrs,
      el("svg:title", {}, `${session.initiator} ↔ ${session.responder}: ${session.state} ${rtt}`),
      line, el("svg:text", { x: lx, y: ly - 4, "text-anchor": "middle" }, label)));
  }
  if (picture.sessions.some((s) => s.state === "relayed")) { // drawn over the relayed lines
    children.push(el("svg:g", { class: "relay-node" },
      el("svg:title", {}, "relayed through the rendezvous"),
      el("svg:rect", { x: cx - 38, y: cy - 12, width: 76, height: 24, rx: 5 }),
      el("svg:text", { x: cx, y: cy + 4, "text-anchor": "middle" }, "relay")));
  }
  for (const id of ids) {
    const [x, y] = at[id];
    children.push(el("svg:g", {
        class: `node${id === state.selected ? " selected" : ""}`, "data-worker-id": id,
        onclick: () => select(id),
      },
      el("svg:title", {}, id),
      el("svg:circle", { cx: x, cy: y, r: 9 }),
      el("svg:text", { x, y: y + (y < cy ? -14 : 22), "text-anchor": "middle" }, short(id))));
  }
  if (!ids.length) {
    children.push(el("svg:text", { x: cx, y: cy, "text-anchor": "middle", class: "muted" },
      "no punch sessions yet"));
  }
  svg.replaceChildren(...children);
}

async function refreshPaths() {
  const picture = await getJSON("/ui/api/paths");
  document.getElementById("path-counts").replaceChildren(
    ...Object.entries(picture.counts).map(([name, count]) =>
      el("span", { class: name }, `${name} ${count}`)));
  drawPaths(picture);
  document.getElementById("results").replaceChildren(
    ...picture.recent_results.slice(0, 30).map(resultItem));
}

function resultItem(result) {
  const rtt = result.rtt_ms == null ? "" : `, ${Math.round(result.rtt_ms * 10) / 10} ms`;
  const reason = result.reason ? ` (${result.reason})` : "";
  return el("li", { class: `state-${result.status === "failed" ? "failed" : result.path === "direct" ? "direct" : "relayed"}` },
    `${short(result.worker_id)} → ${short(result.peer_id)}: ${result.status} via ${result.path}${rtt}${reason}`);
}

// --- Drill-down and actions --------------------------------------------------------

function select(workerId) {
  state.selected = workerId;
  for (const row of document.querySelectorAll("#fleet-table tbody tr")) {
    row.classList.toggle("selected", row.dataset.workerId === workerId);
  }
  for (const node of document.querySelectorAll("#paths-svg .node")) {
    node.classList.toggle("selected", node.dataset.workerId === workerId);
  }
  schedule("detail", 0);
}

async function refreshDetail() {
  if (!state.selected) return;
  const id = state.selected;
  const body = await getJSON(`/ui/api/workers/${encodeURIComponent(id)}`);
  if (state.selected !== id) return;
  const row = body.row;
  const share = body.relay_share === null ? "–" : `${Math.round(body.relay_share * 100)} %`;
  const sessions = body.sessions.map((s) => {
    const peer = s.initiator === id ? s.responder : s.initiator;
    return el("li", { class: `state-${s.state}` },
      `${short(peer)}: ${s.state}${s.rtt_ms === null ? "" : `, ${s.rtt_ms} ms`}`);
  });
  const events = body.events.map((event) =>
    el("li", {}, `${new Date(event.at * 1000).toLocaleTimeString()} ${describeChange(event)}`));
  const release = el("button", { type: "button", class: "danger", id: "release-binding",
                                 onclick: () => releaseBinding(id) }, "Release key binding…");
  const introduce = el("button", { type: "button", onclick: () => {
    document.getElementById("intro-a").value = id;
    document.getElementById("intro-b").focus();
  } }, "Introduce to…");
  document.getElementById("detail-body").replaceChildren(
    el("h3", { class: "mono" }, id),
    el("dl", { class: "fields" },
      el("dt", {}, "connected"), el("dd", {}, body.connected ? `yes, since ${row.connected_since}` : "no"),
      el("dt", {}, "NAT mapping"), el("dd", {}, row ? badge(row.mapping) : "–"),
      el("dt", {}, "endpoint"), el("dd", { class: "mono" }, row && row.endpoint ? row.endpoint : "–"),
      el("dt", {}, "key"), el("dd", { class: "mono" }, row ? row.key_fingerprint || "keyless" : "–"),
      el("dt", {}, "relay share"), el("dd", { id: "relay-share" }, share)),
    el("h3", {}, `Sessions (${body.sessions.length})`),
    el("ul", { id: "detail-sessions" }, sessions),
    el("h3", {}, "Last events"),
    el("ul", { class: "live-log" }, events),
    el("p", {}, introduce, " ", row && !row.keyless ? release : null));
}

async function admin(method, url, body) {
  const response = await fetch(url, {
    method, credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Holepunch-UI": "1" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  return { ok: response.ok, status: response.status, answer };
}

function report(text, ok) {
  const status = document.getElementById("action-status");
  status.textContent = text;
  status.dataset.outcome = ok ? "ok" : "error";
}

async function introduce(event) {
  event.preventDefault();
  const initiator = document.getElementById("intro-a").value.trim();
  const responder = document.getElementById("intro-b").value.trim();
  const { ok, answer } = await admin("POST", "/admin/introduce", { initiator, responder });
  report(ok ? `Introduced ${initiator} and ${responder} (session ${answer.session_id})`
            : `Not introduced: ${answer.error || "error"}: ${answer.detail || ""}`, ok);
}

function confirmDialog(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

async function releaseBinding(id) {
  const sure = await confirmDialog(
    `Release ${id}'s key binding? The next key proven for this worker_id claims it.`);
  if (!sure) return report("Release cancelled.", true);
  const { ok, answer } = await admin("DELETE", `/admin/bindings/${encodeURIComponent(id)}`);
  report(ok ? `Released ${id} from key ${answer.key_fingerprint}`
            : `Not released: ${answer.error || "error"}: ${answer.detail || ""}`, ok);
}

// --- Live --------------------------------------------------------------------------

function describeChange(change) {
  switch (change.kind) {
    case "worker_joined": return `${change.worker_id} joined`;
    case "worker_left": return `${change.worker_id} left`;
    case "endpoint_updated":
      return change.moved
        ? `${change.worker_id} moved ${change.previous} → ${change.endpoint}`
        : `${change.worker_id} reported ${change.endpoint} (${MAPPING_LABELS[change.mapping] || change.mapping})`;
    case "introduced": return `${change.worker_id} introduced to ${change.peer_id}`;
    case "punch_result": {
      const reason = change.reason ? `, ${change.reason}` : "";
      return `${change.worker_id} → ${change.peer_id}: ${change.status} via ${change.path}${reason}`;
    }
    default: return change.kind;
  }
}

const TOUCHES = {
  worker_joined: ["fleet"], worker_left: ["fleet", "paths"], endpoint_updated: ["fleet"],
  introduced: ["paths"], punch_result: ["paths"],
};

// A change schedules its part after REFRESH_DELAY_MS, and no sooner than
// MIN_REFRESH_INTERVAL_MS after its last fetch; the operator's own input (delay 0) at once.
function schedule(what, delay = REFRESH_DELAY_MS) {
  if (delay === 0 && state.pending[what]) {
    clearTimeout(state.pending[what]);
    state.pending[what] = null;
  }
  if (state.pending[what]) return;
  const earliest = delay === 0 ? 0 : (state.last[what] || 0) + MIN_REFRESH_INTERVAL_MS - performance.now();
  state.pending[what] = setTimeout(() => run(what), Math.max(delay, earliest));
}

async function run(what) {
  state.pending[what] = null;
  if (state.refreshing[what]) { // one request at a time per part: again once it is back
    state.rerun[what] = true;
    return;
  }
  state.refreshing[what] = true;
  state.last[what] = performance.now();
  try {
    await { fleet: refreshFleet, paths: refreshPaths, detail: refreshDetail }[what]();
  } catch (error) {
    report(String(error), false);
  } finally {
    state.refreshing[what] = false;
    if (state.rerun[what]) {
      state.rerun[what] = false;
      run(what);
    }
  }
}

function onChanges(batch) {
  const log = document.getElementById("live-log");
  const touched = new Set();
  for (const change of batch.changes) {
    (TOUCHES[change.kind] || []).forEach((part) => touched.add(part));
    const item = el("li", { "data-kind": change.kind },
      `${new Date(change.at * 1000).toLocaleTimeString()} ${describeChange(change)}`);
    log.prepend(item);
    if (state.selected && [change.worker_id, change.peer_id].includes(state.selected)) touched.add("detail");
  }
  while (log.children.length > LIVE_LOG_MAX) log.lastChild.remove();
  touched.forEach((part) => schedule(part));
}

function connectLive() {
  const status = document.getElementById("live-status");
  const source = new EventSource("/ui/api/live");
  source.addEventListener("hello", () => {
    status.dataset.state = "live";
    status.textContent = "live";
    ["fleet", "paths", "detail"].forEach((part) => schedule(part, 0)); // missed while away
  });
  source.addEventListener("changes", (event) => onChanges(JSON.parse(event.data)));
  source.addEventListener("resync", () => ["fleet", "paths", "detail"].forEach((p) => schedule(p, 0)));
  source.addEventListener("error", () => {
    status.dataset.state = "lost";
    status.textContent = "reconnecting…";
  });
}

function start() {
  const refilter = () => { state.offset = 0; schedule("fleet", 0); };
  document.getElementById("search").addEventListener("input", refilter);
  document.getElementById("mapping-filter").addEventListener("change", refilter);
  document.getElementById("tag-filter").addEventListener("change", refilter);
  document.getElementById("filters").addEventListener("submit", (event) => event.preventDefault());
  document.getElementById("prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE_SIZE); schedule("fleet", 0);
  });
  document.getElementById("next").addEventListener("click", () => {
    state.offset += PAGE_SIZE; schedule("fleet", 0);
  });
  document.getElementById("introduce").addEventListener("submit", introduce);
  schedule("fleet", 0);
  schedule("paths", 0);
  connectLive();
}

start();
