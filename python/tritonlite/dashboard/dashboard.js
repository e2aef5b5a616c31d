// tritonlite dashboard: polls /dashboard/api/state every second and draws, per model version,
// throughput, request latency percentiles (over the last poll interval, from the core's latency
// histograms), queue depth and the batch sizes executed, on plain <canvas>. Load/unload buttons
// appear in explicit model-control mode and call Triton's repository API (with the header a
// restricted API asks for, which the user types in once per tab).
"use strict";

const POLL_MS = 1000;
const HISTORY = 120;  // points kept per chart (two minutes)
const state = { bounds: [], series: new Map(), last: null, header: null, busy: false };

function headers() {
  const h = {};
  if (state.header) h[state.header.key] = state.header.value;
  return h;
}

// The q quantile (0..1) in ms of a histogram's (non-cumulative) bucket counts, interpolated
// inside its bucket as the server's latency.quantile does; null without observations.
function quantileMs(counts, q) {
  let total = 0;
  for (const c of counts) total += c;
  if (total <= 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i];
    if (c && seen + c >= rank) {
      if (i >= state.bounds.length) return state.bounds[state.bounds.length - 1] / 1000;
      const low = i === 0 ? 0 : state.bounds[i - 1];
      return (low + (state.bounds[i] - low) * Math.max(0, rank - seen) / c) / 1000;
    }
    seen += c;
  }
  return state.bounds[state.bounds.length - 1] / 1000;
}

function key(m) { return `${m.name}/${m.version || "-"}`; }

function seriesFor(k) {
  if (!state.series.has(k)) {
    state.series.set(k, { t: [], throughput: [], p50: [], p90: [], p99: [], queue: [] });
  }
  return state.series.get(k);
}

function push(arr, v) { arr.push(v); if (arr.length > HISTORY) arr.shift(); }

function fmt(v, digits = 2) {
  return v === null || v === undefined || Number.isNaN(v) ? "–" : v.toFixed(digits);
}

// ---- charts ------------------------------------------------------------------------------------

function setupCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 360, h = canvas.clientHeight || 140;
  if (canvas.width !== w * ratio) { canvas.width = w * ratio; canvas.height = h * ratio; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "10px system-ui, sans-serif";
  return { ctx, w, h };
}

function lineChart(canvas, lines) {
  const { ctx, w, h } = setupCanvas(canvas);
  const pad = { l: 42, r: 8, t: 8, b: 16 };
  let max = 0;
  for (const line of lines) for (const v of line.values) if (v !== null && v > max) max = v;
  max = max > 0 ? max * 1.1 : 1;
  ctx.strokeStyle = "#e3e6ea"; ctx.fillStyle = "#5f6672";
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + (h - pad.t - pad.b) * i / 4;
    ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
    ctx.fillText((max * (4 - i) / 4).toPrecision(3), 2, y + 3);
  }
  const x = (i) => pad.l + (w - pad.l - pad.r) * i / (HISTORY - 1);
  const y = (v) => pad.t + (h - pad.t - pad.b) * (1 - v / max);
  let legend = pad.l + 4;
  for (const line of lines) {
    const offset = HISTORY - line.values.length;
    ctx.strokeStyle = line.color; ctx.lineWidth = 1.5; ctx.beginPath();
    let started = false;
    line.values.forEach((v, i) => {
      if (v === null) { started = false; return; }
      if (started) ctx.lineTo(x(offset + i), y(v)); else ctx.moveTo(x(offset + i), y(v));
      started = true;
    });
    ctx.stroke(); ctx.lineWidth = 1;
    if (lines.length > 1) {
      ctx.fillStyle = line.color; ctx.fillText(line.label, legend, h - 3);
      legend += ctx.measureText(line.label).width + 10;
    }
  }
}

function barChart(canvas, bars) {
  const { ctx, w, h } = setupCanvas(canvas);
  const pad = { l: 42, r: 8, t: 8, b: 16 };
  if (!bars.length) {
    ctx.fillStyle = "#5f6672"; ctx.fillText("no executions yet", pad.l, h / 2); return;
  }
  const max = Math.max(...bars.map((b) => b.count)) * 1.1;
  const slot = (w - pad.l - pad.r) / bars.length;
  ctx.fillStyle = "#5f6672";
  ctx.fillText(max.toPrecision(3), 2, pad.t + 3);
  bars.forEach((b, i) => {
    const bh = (h - pad.t - pad.b) * b.count / max;
    ctx.fillStyle = "#3a6ea5";
    ctx.fillRect(pad.l + i * slot + 1, h - pad.b - bh, Math.max(1, slot - 2), bh);
    if (bars.length <= 24 || i % Math.ceil(bars.length / 24) === 0) {
      ctx.fillStyle = "#5f6672"; ctx.fillText(String(b.size), pad.l + i * slot + 1, h - 3);
    }
  });
}

function card(k) {
  const id = "card-" + k.replace(/[^a-zA-Z0-9_-]/g, "_");
  let el = document.getElementById(id);
  if (!el) {
    el = document.getElementById("chart-card").content.firstElementChild.cloneNode(true);
    el.id = id;
    el.dataset.model = k;
    el.querySelector("h2").textContent = k;
    document.getElementById("charts").appendChild(el);
  }
  return el;
}

// ---- the table and the buttons -------------------------------------------------------------------

async function control(name, action) {
  const status = document.getElementById("status");
  status.textContent = `${action} ${name}…`;
  try {
    const r = await fetch(`/v2/repository/models/${encodeURIComponent(name)}/${action}`,
                          { method: "POST", headers: headers() });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      status.textContent = `${action} ${name}: ${body.error || r.status}`;
      status.className = "status error";
      if (r.status === 403) askForHeader(body.error);
      return;
    }
    status.textContent = `${action} ${name}: done`;
    status.className = "status";
  } catch (e) {
    status.textContent = `${action} ${name}: ${e}`;
    status.className = "status error";
  }
  poll();
}

function askForHeader(message) {
  const m = /expecting header '([^']+)'/.exec(message || "");
  if (!m) return;
  document.getElementById("access-key").textContent = m[1];
  document.getElementById("access").hidden = false;
  document.getElementById("access-form").onsubmit = (ev) => {
    ev.preventDefault();
    state.header = { key: m[1], value: document.getElementById("access-value").value };
    document.getElementById("access").hidden = true;
    poll();
  };
}

function row(m, rates, explicit) {
  const tr = document.createElement("tr");
  tr.dataset.model = key(m);
  const cell = (text, cls) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  };
  cell(m.name);
  cell(m.version || "–");
  const st = cell(m.state || "(not loaded)", "state-" + (m.state || "none"));
  if (m.reason) {
    const r = document.createElement("span");
    r.className = "reason"; r.textContent = m.reason; st.appendChild(r);
  }
  const loaded = m.state === "READY";
  cell(loaded ? String(m.instances) : "–", "num");
  cell(loaded ? String(m.pending) : "–", "num");
  cell(loaded ? fmt(rates.throughput, 1) : "–", "num throughput");
  cell(loaded ? fmt(rates.p50) : "–", "num");
  cell(loaded ? fmt(rates.p90) : "–", "num");
  cell(loaded ? fmt(rates.p99) : "–", "num");
  cell(loaded ? `${m.success} / ${m.failure}` : "–", "num");
  const actions = cell("");
  if (explicit) {
    for (const action of loaded ? ["unload"] : ["load"]) {
      const b = document.createElement("button");
      b.textContent = action; b.dataset.action = action;
      b.onclick = () => control(m.name, action);
      actions.appendChild(b);
    }
  }
  return tr;
}

// ---- polling -------------------------------------------------------------------------------------

function render(data) {
  state.bounds = data.latency_bounds_us;
  const now = data.time;
  const prev = state.last;
  const previous = new Map();
  if (prev) for (const m of prev.models) previous.set(key(m), m);
  const tbody = document.querySelector("#models tbody");
  const rows = [];
  const seen = new Set();
  for (const m of data.models) {
    const k = key(m);
    const rates = { throughput: null, p50: null, p90: null, p99: null };
    if (m.state === "READY") {
      seen.add(k);
      const before = previous.get(k);
      const s = seriesFor(k);
      if (before && before.state === "READY" && prev) {
        const dt = Math.max(1e-3, now - prev.time);
        rates.throughput = Math.max(0, m.inference_count - before.inference_count) / dt;
        const window = m.request_histogram.map((c, i) => Math.max(0, c - (before.request_histogram[i] || 0)));
        rates.p50 = quantileMs(window, 0.5);
        rates.p90 = quantileMs(window, 0.9);
        rates.p99 = quantileMs(window, 0.99);
      }
      push(s.t, now); push(s.throughput, rates.throughput);
      push(s.p50, rates.p50); push(s.p90, rates.p90); push(s.p99, rates.p99);
      push(s.queue, m.pending);
      const el = card(k);
      el.querySelector("canvas.throughput").dataset.last = String(rates.throughput ?? "");
      lineChart(el.querySelector("canvas.throughput"), [{ values: s.throughput, color: "#3a6ea5", label: "infer/s" }]);
      lineChart(el.querySelector("canvas.latency"), [
        { values: s.p50, color: "#1b7f3b", label: "p50" },
        { values: s.p90, color: "#c77700", label: "p90" },
        { values: s.p99, color: "#b3261e", label: "p99" },
      ]);
      lineChart(el.querySelector("canvas.queue"), [{ values: s.queue, color: "#6b4fa0", label: "queue" }]);
      const bars = Object.entries(m.batch_sizes).map(([size, count]) => ({ size: Number(size), count }));
      bars.sort((a, b) => a.size - b.size);
      barChart(el.querySelector("canvas.batches"), bars);
    }
    rows.push(row(m, rates, data.server.control_mode === "explicit"));
  }
  tbody.replaceChildren(...rows);
  for (const el of [...document.querySelectorAll("#charts .card")]) {
    if (!seen.has(el.dataset.model)) { el.remove(); state.series.delete(el.dataset.model); }
  }
  document.getElementById("server-info").textContent =
    `${data.server.id} ${data.server.version} · model control: ${data.server.control_mode} · ` +
    `${data.models.filter((m) => m.state === "READY").length} ready`;
  state.last = data;
}

async function poll() {
  if (state.busy) return;
  state.busy = true;
  const status = document.getElementById("status");
  try {
    const r = await fetch("/dashboard/api/state", { headers: headers() });
    const body = await r.json();
    if (!r.ok) {
      status.textContent = body.error || `HTTP ${r.status}`;
      status.className = "status error";
      if (r.status === 403) askForHeader(body.error);
      return;
    }
    render(body);
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
    if (status.className.includes("error")) { status.textContent = ""; status.className = "status"; }
  } catch (e) {
    status.textContent = `server unreachable (${e})`;
    status.className = "status error";
  } finally {
    state.busy = false;
  }
}

poll();
setInterval(poll, POLL_MS);
