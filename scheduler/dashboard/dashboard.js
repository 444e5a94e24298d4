// skiff's dashboard: reads the worker's own API every 5 s and draws it.
// No framework and no build step. Everything shown comes from job
// requests, so it is set as text (textContent), never parsed as HTML.
"use strict";

const OUTCOMES = [
  ["complete", "#2e9e55"], ["error", "#d7263d"], ["timeout", "#f29e4c"],
  ["killed", "#7b4fbf"], ["cancelled", "#9aa3ad"],
];
const STATES = ["delayed", "queued", "running", "complete", "error", "timeout", "killed", "cancelled"];
const SVG = "http://www.w3.org/2000/svg";

// A TCP worker wants its bearer token: open the page as /#token=TOKEN.
// The fragment never reaches a server; it is kept for this tab only.
(function takeToken() {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("skiff-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
})();

async function api(path, text) {
  const headers = {};
  const token = sessionStorage.getItem("skiff-token");
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(path, { headers, cache: "no-store" });
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = r.status + ": " + (await r.json()).error; } catch (_) { /* not JSON */ }
    const e = new Error(path + ": " + msg);
    e.status = r.status;
    throw e;
  }
  return text ? r.text() : r.json();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const c of cells) tr.append(c instanceof Node ? wrap(c) : el("td", c));
  return tr;
}

function wrap(node) {
  const td = el("td");
  td.append(node);
  return td;
}

function fill(id, rows, empty) {
  const tbody = document.querySelector("#" + id + " tbody");
  tbody.replaceChildren(...rows);
  if (!rows.length) {
    const td = el("td", empty, "muted");
    td.colSpan = document.querySelectorAll("#" + id + " thead th").length;
    const tr = el("tr");
    tr.append(td);
    tbody.append(tr);
  }
}

function ago(ms, now) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 90) return s + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function bytes(n) {
  if (!n) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (n >= 10 || i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function short(id) { return id.length > 14 ? id.slice(0, 14) + "…" : id; }

function logLink(id) {
  const a = el("a", short(id));
  a.href = "#log=" + encodeURIComponent(id);
  a.title = id;
  a.className = "job";
  return a;
}

function drawFleet(f, now) {
  const live = f.workers.filter(w => !w.lost);
  const slots = live.reduce((s, w) => s + w.slots, 0);
  const running = live.reduce((s, w) => s + w.running, 0);
  document.getElementById("summary").textContent =
    live.length + " live worker" + (live.length === 1 ? "" : "s") +
    (f.workers.length > live.length ? ", " + (f.workers.length - live.length) + " lost" : "") +
    " · " + running + "/" + slots + " slots busy · " + f.engine;
  fill("fleet", f.workers.map(w => {
    const bar = el("span", null, "bar");
    const fillBar = el("span");
    fillBar.style.width = Math.min(100, Math.round(100 * w.running / Math.max(1, w.slots))) + "%";
    bar.append(fillBar);
    const load = el("span");
    load.append(bar, document.createTextNode(w.running + "/" + w.slots));
    const id = el("span", short(w.id) + (w.id === f.worker ? " (this)" : ""));
    id.title = w.id;
    id.className = "worker-id";
    id.dataset.id = w.id;
    const tr = row([
      id, w.host + (w.address ? " " + w.address : ""),
      el("span", w.lost ? "lost" : "live", w.lost ? "state-lost" : "state-live"),
      load, bytes(w.memory_bytes), w.cpus, w.images.length, w.version, ago(w.heartbeat_at, now),
    ], w.lost ? "worker lost" : "worker");
    tr.dataset.id = w.id;
    return tr;
  }), "no workers");
}

function drawQueues(s) {
  const byQueue = new Map();
  for (const c of s.counts) {
    if (!byQueue.has(c.queue)) byQueue.set(c.queue, {});
    byQueue.get(c.queue)[c.state] = c.count;
  }
  const names = [...byQueue.keys()].sort();
  fill("queues", names.map(q => {
    const tr = row([q, ...STATES.map(st => byQueue.get(q)[st] || 0)], "queue");
    tr.dataset.queue = q;
    return tr;
  }), "no jobs yet");
}

function drawChart(t) {
  const W = 560, H = 170, L = 36, B = 18, T = 6;
  const buckets = t.buckets;
  const totals = buckets.map(b => OUTCOMES.reduce((s, [k]) => s + b[k], 0));
  const max = Math.max(1, ...totals);
  const bw = (W - L) / buckets.length;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 " + W + " " + (H + 22));
  svg.setAttribute("width", "100%");
  svg.setAttribute("role", "img");
  const scale = v => (H - B - T) * v / max;
  const text = (x, y, s, anchor) => {
    const e = document.createElementNS(SVG, "text");
    e.setAttribute("x", x); e.setAttribute("y", y);
    e.setAttribute("font-size", "10"); e.setAttribute("fill", "#5b6570");
    if (anchor) e.setAttribute("text-anchor", anchor);
    e.textContent = s;
    svg.append(e);
  };
  const line = (x1, y1, x2, y2) => {
    const e = document.createElementNS(SVG, "line");
    e.setAttribute("x1", x1); e.setAttribute("y1", y1);
    e.setAttribute("x2", x2); e.setAttribute("y2", y2);
    e.setAttribute("stroke", "#c9ced4");
    svg.append(e);
  };
  line(L, H - B, W, H - B);
  line(L, T, L, H - B);
  text(L - 4, T + 8, String(max), "end");
  text(L - 4, H - B, "0", "end");
  buckets.forEach((b, i) => {
    let y = H - B;
    for (const [k, color] of OUTCOMES) {
      if (!b[k]) continue;
      const h = scale(b[k]);
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("x", L + i * bw + 0.5);
      r.setAttribute("y", y - h);
      r.setAttribute("width", Math.max(1, bw - 1));
      r.setAttribute("height", h);
      r.setAttribute("fill", color);
      r.setAttribute("class", "bar-" + k);
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = new Date(b.at).toLocaleTimeString() + ": " + b[k] + " " + k;
      r.append(tip);
      svg.append(r);
      y -= h;
    }
  });
  text(L, H - 4, "−60 min");
  text(W, H - 4, "now", "end");
  let lx = L;
  for (const [k, color] of OUTCOMES) {
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", lx); r.setAttribute("y", H + 8);
    r.setAttribute("width", 9); r.setAttribute("height", 9);
    r.setAttribute("fill", color);
    svg.append(r);
    text(lx + 12, H + 16, k);
    lx += 90;
  }
  document.getElementById("chart").replaceChildren(svg);
  const total = totals.reduce((a, b) => a + b, 0);
  document.getElementById("hour-total").textContent = "(" + total + " in all)";
}

async function drawJobs(now) {
  const running = (await api("/v1/jobs?state=running&order=newest&limit=20")).jobs;
  fill("running", running.map(j => row([
    logLink(j.id), j.queue, j.label || "", j.request.image, j.attempts, ago(j.updated_at, now),
  ], "job")), "none running");
  const failed = [];
  for (const st of ["error", "timeout", "killed"]) {
    failed.push(...(await api("/v1/jobs?state=" + st + "&order=newest&limit=10")).jobs);
  }
  failed.sort((a, b) => b.updated_at - a.updated_at);
  fill("failed", failed.slice(0, 15).map(j => row([
    logLink(j.id), j.state, j.reason || "", j.queue, j.label || "", j.request.image, ago(j.updated_at, now),
  ], "job")), "none failed");
}

async function drawSchedules(now) {
  const note = document.getElementById("schedules-note");
  let list;
  try {
    list = (await api("/v1/schedules")).schedules;
  } catch (e) {
    if (e.status !== 501) throw e;
    fill("schedules", [], "—");
    note.hidden = false;
    note.textContent = e.message.replace(/^[^:]*: /, "");
    return;
  }
  note.hidden = true;
  fill("schedules", list.map(s => row([
    s.id, s.state, s.cron || (s.run_every ? "every " + s.run_every + " s" : "once"),
    s.next_at ? new Date(s.next_at).toLocaleString() : "", s.run_count,
    s.last_job_id ? logLink(s.last_job_id) : "",
  ], "schedule")), "no schedules");
}

async function showLog() {
  const m = location.hash.match(/^#log=(.+)$/);
  const section = document.getElementById("log-section");
  if (!m) { section.hidden = true; return; }
  const id = decodeURIComponent(m[1]);
  section.hidden = false;
  document.getElementById("log-id").textContent = id;
  const pre = document.getElementById("log");
  try {
    pre.textContent = await api("/v1/jobs/" + encodeURIComponent(id) + "/log", true) || "(no output)";
  } catch (e) {
    pre.textContent = e.message;
  }
}

async function refresh() {
  const err = document.getElementById("error");
  try {
    const [fleet, stats] = await Promise.all([api("/v1/fleet"), api("/v1/stats")]);
    const now = stats.now;
    drawFleet(fleet, now);
    drawQueues(stats);
    drawChart(stats.throughput);
    await drawJobs(now);
    await drawSchedules(now);
    document.getElementById("updated").textContent = "updated " + new Date(now).toLocaleTimeString();
    err.hidden = true;
    document.body.dataset.ready = "1";
  } catch (e) {
    err.hidden = false;
    err.textContent = e.status === 401
      ? "This worker needs its bearer token: open this page as /#token=TOKEN."
      : String(e.message || e);
  }
}

window.addEventListener("hashchange", showLog);
document.getElementById("log-close").addEventListener("click", e => {
  e.preventDefault();
  history.replaceState(null, "", location.pathname);
  showLog();
});
refresh();
showLog();
setInterval(refresh, 5000);
