// rnnlab explore: the page. Plain JavaScript and SVG, no library, no network beyond this server's /api.
"use strict";

const GATES = new Set(["i", "f", "o", "z", "r"]);
const PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
const SVGNS = "http://www.w3.org/2000/svg";
const state = { info: null, trace: null, tokens: [], picked: null, timer: null, seq: 0 };
const $ = (id) => document.getElementById(id);

function showError(msg) { $("errors").textContent = msg || ""; }

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
  return data;
}

function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVGNS, tag);
  for (const k in attrs) el.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(el);
  return el;
}

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

// ------------------------------------------------------------------------------------------- set-up
async function init() {
  let info;
  try { info = await api("/api/info"); } catch (e) { showError(e.message); return; }
  state.info = info;
  // a layer that reads right to left (the backward half of a bidirectional layer) says so
  const layerText = (l) => `${l.label} (${l.cell} ${l.units}${l.direction === "right-to-left" ? ", reads right to left" : ""})`;
  const layerNames = info.layers.map(layerText).join(", ");
  $("model-info").textContent = `${info.kind} model ${info.file} · ${info.unit} level · ${layerNames}`;
  const layerSel = $("layer");
  for (const l of info.layers) {
    const o = document.createElement("option");
    o.value = l.label; o.textContent = layerText(l);
    layerSel.appendChild(o);
  }
  fillSeries();
  layerSel.addEventListener("change", () => { fillSeries(); schedule(0); });
  $("series").addEventListener("change", () => schedule(0));
  $("unit").addEventListener("input", () => schedule(0));
  $("chart-units").addEventListener("change", () => schedule(0));
  $("text").addEventListener("input", () => schedule(250));
  $("heatmap").addEventListener("click", onTokenClick);
  // remember the last span selected in the heat map: clicking a control afterwards clears the selection
  document.addEventListener("selectionchange", () => {
    const span = selectedSpan();
    if (span) { state.lastSpan = span; $("selection-info").textContent = `tokens ${span[0]}–${span[1] - 1} selected: press match`; }
  });
  $("match").addEventListener("click", doMatch);
  $("stats-btn").addEventListener("click", doStats);
  $("text").maxLength = info.limits.text_chars;
  if (info.predictions) {
    $("view-predict").hidden = false;
    $("temperature").addEventListener("input", () => { $("temperature-value").textContent = Number($("temperature").value).toFixed(2); });
    $("sample-btn").addEventListener("click", doSample);
  }
  if (info.attention) {
    $("view-attention").hidden = false;
    $("att-btn").addEventListener("click", doAttention);
    $("att-text").addEventListener("keydown", (e) => { if (e.key === "Enter") doAttention(); });
  }
  if (info.gradients) {
    $("view-gradients").hidden = false;
    $("grad-btn").addEventListener("click", doGradients);
    if (info.gradient_label === "tags" || info.gradient_label === "target") {
      $("grad-text-box").hidden = false;
      $("grad-text").placeholder = info.gradient_label === "tags" ? "one tag per word (empty: the predicted tags)"
                                                                  : "target text (empty: the model's own output)";
    }
    if (info.gradient_last_only) $("grad-last-box").hidden = false;
    if (info.gradient_label === "class") {
      $("grad-label-box").hidden = false;
      for (const c of info.classes) {
        const o = document.createElement("option"); o.value = c; o.textContent = c; $("grad-label").appendChild(o);
      }
    }
  }
  if (info.corpus) {
    $("chunk-controls").hidden = false;
    $("match-where").textContent = "the --text corpus (the typed text until it is processed)";
    $("load-chunk").addEventListener("click", loadChunk);
    pollProgress();
  }
  const examples = { char: "The quick brown fox jumps over the lazy dog. \"Quoted text\" (and brackets).",
                     word: "the meaning of life is not known", id: "1 2 3 4 5", step: "" };
  if (!$("text").value) $("text").value = examples[info.unit] || "";
  if ($("text").value) schedule(0);
  document.body.dataset.ready = "1";
}

function fillSeries() {
  const layer = state.info.layers.find((l) => l.label === $("layer").value) || state.info.layers[0];
  const sel = $("series"); const old = sel.value;
  clear(sel);
  for (const s of layer.series) {
    const o = document.createElement("option"); o.value = s; o.textContent = s; sel.appendChild(o);
  }
  if (layer.series.includes(old)) sel.value = old;
  $("unit").max = layer.units - 1;
}

async function pollProgress() {
  $("progress-box").hidden = false;
  try {
    const p = await api("/api/progress");
    $("progress").max = Math.max(1, p.total); $("progress").value = p.done;
    if (p.error) { $("progress-text").textContent = "processing --text failed: " + p.error; return; }
    if (p.ready) {
      $("progress-text").textContent = `--text processed: ${p.tokens} tokens`;
      document.body.dataset.corpusReady = "1";
      return;
    }
    $("progress-text").textContent = `processing --text: ${p.done} / ${p.total} chunks`;
  } catch (e) { $("progress-text").textContent = e.message; }
  setTimeout(pollProgress, 300);
}

async function loadChunk() {
  try {
    const d = await api(`/api/corpus?start=${Number($("chunk-start").value) || 0}&length=2000`);
    $("text").value = d.text; schedule(0);
  } catch (e) { showError(e.message); }
}

// ------------------------------------------------------------------------------------------- view 1
function chartUnits() {
  const u = Number($("unit").value) || 0;
  const extra = $("chart-units").value.split(/[ ,;]+/).filter((s) => s !== "").map(Number)
    .filter((v) => Number.isInteger(v) && v >= 0);
  return [u, ...extra.filter((v) => v !== u)].slice(0, 8);
}

function schedule(ms) {
  clearTimeout(state.timer);
  state.timer = setTimeout(doTrace, ms);
}

async function doTrace() {
  const text = $("text").value;
  if (!text.trim()) { clear($("heatmap")); clear($("chart")); return; }
  const seq = ++state.seq; const t0 = performance.now();
  $("trace-status").textContent = "computing…";
  let d;
  try {
    d = await api("/api/trace", { text, layer: $("layer").value, series: $("series").value, units: chartUnits() });
  } catch (e) { showError(e.message); $("trace-status").textContent = ""; return; }
  if (seq !== state.seq) return;  // a newer request is on its way
  if (text !== $("text").value) return;  // the box changed while this ran: its own trace is scheduled
  showError("");
  if (!state.trace || state.trace.tokens.join("\u0000") !== d.tokens.join("\u0000")) state.lastSpan = null;
  state.trace = d; state.tokens = d.tokens;
  renderHeatmap(d); renderChart(d); renderOutputs(d);
  const ms = performance.now() - t0;
  window.__lastRenderMs = ms;
  window.__renderedText = text;
  window.__renderCount = (window.__renderCount || 0) + 1;
  $("trace-status").textContent = `${d.tokens.length} ${state.info.unit === "char" ? "characters" : "tokens"} · ` +
    `server ${d.server_ms} ms · request + render ${ms.toFixed(0)} ms`;
  if (state.picked !== null) showTopk(state.picked);
}

function colour(v, lo, hi, gate) {
  // gates: 0 white -> 1 orange; others: diverging blue (-m) / white (0) / red (+m), m = max |v| of the unit
  let r, g, b;
  if (gate) {
    const t = Math.max(0, Math.min(1, v));
    r = 247 + (230 - 247) * t; g = 247 + (97 - 247) * t; b = 247 + (1 - 247) * t;
  } else {
    const m = Math.max(Math.abs(lo), Math.abs(hi), 1e-6);
    const t = Math.max(-1, Math.min(1, v / m));
    if (t >= 0) { r = 247 + (178 - 247) * t; g = 247 + (24 - 247) * t; b = 247 + (43 - 247) * t; }
    else { r = 247 + (33 - 247) * -t; g = 247 + (102 - 247) * -t; b = 247 + (172 - 247) * -t; }
  }
  return `rgb(${r | 0},${g | 0},${b | 0})`;
}

function renderHeatmap(d) {
  const box = $("heatmap");
  const u = String(d.units[0]); const vals = d.values[u];
  const gate = GATES.has(d.series);
  let lo = Infinity, hi = -Infinity;
  for (const v of vals) { if (v < lo) lo = v; if (v > hi) hi = v; }
  const frag = document.createDocumentFragment();
  const chars = state.info.unit === "char";
  box.classList.toggle("words", !chars);
  d.tokens.forEach((tok, i) => {
    const s = document.createElement("span");
    s.className = "tok"; s.dataset.i = i;
    const shown = chars ? (tok === "\n" ? "↵\n" : tok) : tok;
    s.textContent = shown;
    s.style.backgroundColor = colour(vals[i], lo, hi, gate);
    s.title = `#${i} ${JSON.stringify(tok)}: ${vals[i]}`;
    frag.appendChild(s);
    if (!chars) frag.appendChild(document.createTextNode(" "));
  });
  clear(box); box.appendChild(frag);
  box.dataset.unit = u; box.dataset.series = d.series;
  const L = $("legend"); clear(L);
  L.append(`${d.layer} · ${d.series} · unit ${u}: `);
  const bar = document.createElement("span"); bar.className = gate ? "bar gate" : "bar"; L.append(gate ? "0" : (-Math.max(Math.abs(lo), Math.abs(hi))).toFixed(2));
  L.appendChild(bar); L.append(gate ? "1" : Math.max(Math.abs(lo), Math.abs(hi)).toFixed(2));
  L.append(`   (min ${lo.toFixed(3)}, max ${hi.toFixed(3)})`);
}

function renderChart(d) {
  const el = $("chart"); clear(el);
  const W = 1000, H = 170, pad = 6;
  let lo = Infinity, hi = -Infinity;
  for (const u of d.units) for (const v of d.values[String(u)]) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (GATES.has(d.series)) { lo = Math.min(lo, 0); hi = Math.max(hi, 1); }
  if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
  const n = d.tokens.length;
  const x = (i) => n <= 1 ? W / 2 : (i / (n - 1)) * W;
  const y = (v) => pad + (1 - (v - lo) / (hi - lo)) * (H - 2 * pad);
  if (lo < 0 && hi > 0) svg("line", { x1: 0, x2: W, y1: y(0), y2: y(0), stroke: "#bbb", "stroke-dasharray": "4 4" }, el);
  const legend = $("chart-legend"); clear(legend);
  d.units.forEach((u, k) => {
    const vals = d.values[String(u)];
    const pts = vals.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    svg("polyline", { points: pts, fill: "none", stroke: PALETTE[k % PALETTE.length], "stroke-width": 1.5,
                      "vector-effect": "non-scaling-stroke" }, el);
    const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = PALETTE[k % PALETTE.length];
    legend.appendChild(sw); legend.append(`unit ${u}`);
  });
  legend.append(`   y from ${lo.toFixed(2)} to ${hi.toFixed(2)}; x = position in the text`);
}

function renderOutputs(d) {
  const out = $("outputs"); clear(out);
  if (d.classes) {
    out.textContent = "output: " + d.classes.map(([c, p]) => `${c} ${p.toFixed(3)}`).join(" · ");
  } else if (d.tags) {
    out.textContent = "tags: " + d.tokens.map((t, i) => `${t}/${d.tags[i]}`).join(" ");
  }
}

function onTokenClick(ev) {
  const t = ev.target.closest(".tok");
  if (!t || !window.getSelection().isCollapsed) return;
  const i = Number(t.dataset.i);
  document.querySelectorAll(".tok.picked").forEach((e) => e.classList.remove("picked"));
  t.classList.add("picked");
  state.picked = i;
  showTopk(i);
}

function showTopk(i) {
  const box = $("topk");
  if (!state.trace || !state.trace.topk || i >= state.trace.topk.length) return;
  clear(box);
  const tok = state.tokens[i];
  box.append(`after #${i} ${JSON.stringify(tok)}: `);
  for (const [t, p] of state.trace.topk[i]) {
    const s = document.createElement("span"); s.className = "p";
    s.textContent = `${JSON.stringify(t)} ${(100 * p).toFixed(1)}%`;
    box.appendChild(s);
  }
  const pn = state.trace.p_next[i];
  if (pn !== null && pn !== undefined) box.append(` · actual next ${JSON.stringify(state.tokens[i + 1])}: ${(100 * pn).toFixed(1)}%`);
}

// ------------------------------------------------------------------------------------------- view 2
function tokenIndex(node, isEnd) {
  let el = node && (node.nodeType === 1 ? node : node.parentElement);
  const tok = el && el.closest ? el.closest(".tok") : null;
  if (tok) return Number(tok.dataset.i);
  return null;
}

function selectedSpan() {
  const sel = window.getSelection();
  if (!sel || sel.isCollapsed || sel.rangeCount === 0) return null;
  const r = sel.getRangeAt(0);
  const box = $("heatmap");
  if (!box.contains(r.startContainer) || !box.contains(r.endContainer)) return null;
  let a = tokenIndex(r.startContainer), b = tokenIndex(r.endContainer);
  if (a === null || b === null) return null;
  // a range that ends at offset 0 of a token does not include it
  if (r.endContainer.nodeType === 3 && r.endOffset === 0 && b > a) b -= 1;
  if (b < a) [a, b] = [b, a];
  return [a, b + 1];
}

async function doMatch() {
  const span = selectedSpan() || state.lastSpan;
  if (!span) { showError("select a span of the coloured text first"); return; }
  state.lastSpan = span;
  const thr = $("threshold").value.trim();
  const body = { text: $("text").value, layer: $("layer").value, series: $("series").value, start: span[0], end: span[1],
                 n_units: Number($("n-units").value) || 3 };
  if (thr !== "") body.threshold = Number(thr);
  $("selection-info").textContent = "matching…";
  let d;
  try { d = await api("/api/select", body); } catch (e) { showError(e.message); return; }
  showError("");
  $("selection-info").textContent = `selection ${JSON.stringify(d.selection)} (tokens ${span[0]}–${span[1] - 1}); ` +
    `pattern: units ${d.chosen.join(", ")}; ${d.matches.length} matches in the ${d.where}`;
  const tbl = $("ranked"); clear(tbl);
  const head = tbl.insertRow(); ["unit", "score", "mean in", "mean around"].forEach((h) => {
    const th = document.createElement("th"); th.textContent = h; head.appendChild(th); });
  for (const r of d.ranked) {
    const tr = tbl.insertRow();
    if (d.chosen.includes(r.unit)) tr.className = "chosen";
    [r.unit, r.score.toFixed(3), r.mean_in.toFixed(3), r.mean_out.toFixed(3)].forEach((v) => { tr.insertCell().textContent = v; });
    tr.addEventListener("click", () => { $("unit").value = r.unit; schedule(0); });
  }
  const ol = $("matches"); clear(ol);
  for (const m of d.matches) {
    const li = document.createElement("li");
    const flat = (t) => t.replace(/\n/g, "↵");
    const b = document.createElement("span"); b.className = "ctx"; b.textContent = flat(m.before);
    const mm = document.createElement("span"); mm.className = "m"; mm.textContent = flat(m.match);
    const a = document.createElement("span"); a.className = "ctx"; a.textContent = flat(m.after);
    li.append(b, mm, a); li.title = `tokens ${m.start}–${m.end - 1}, mean ${m.strength}`;
    ol.appendChild(li);
  }
}

// ------------------------------------------------------------------------------------------- view 3
async function doStats() {
  $("stats-status").textContent = "computing…";
  let d;
  try { d = await api("/api/stats", { text: $("text").value, source: "corpus" }); }
  catch (e) { showError(e.message); $("stats-status").textContent = ""; return; }
  const box = $("stats"); clear(box);
  $("stats-status").textContent = `on the ${d.source}: ${d.steps} steps`;
  for (const layer in d.layers) {
    for (const g in d.layers[layer]) {
      const { left, right } = d.layers[layer][g];
      const fig = document.createElement("figure");
      const s = svg("svg", { viewBox: "-12 -4 120 120" }, fig);
      svg("line", { x1: 0, y1: 100, x2: 100, y2: 0, stroke: "#ccc" }, s);
      svg("line", { x1: 0, y1: 100, x2: 100, y2: 100, stroke: "#888" }, s);
      svg("line", { x1: 0, y1: 0, x2: 0, y2: 100, stroke: "#888" }, s);
      left.forEach((l, u) => svg("circle", { cx: 100 * l, cy: 100 - 100 * right[u], r: 1.8, fill: "#b2182b", "fill-opacity": 0.6 }, s)
        .appendChild(document.createElementNS(SVGNS, "title")).textContent = `unit ${u}: left ${l}, right ${right[u]}`);
      const t1 = svg("text", { x: 50, y: 114, "font-size": 8, "text-anchor": "middle" }, s); t1.textContent = "left-saturated (< 0.1)";
      const t2 = svg("text", { x: -4, y: 50, "font-size": 8, "text-anchor": "middle", transform: "rotate(-90 -4 50)" }, s);
      t2.textContent = "right-saturated (> 0.9)";
      const mean = (a) => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
      const cap = document.createElement("figcaption");
      cap.textContent = `${layer} · gate ${g}: mean left ${mean(left).toFixed(2)}, right ${mean(right).toFixed(2)}`;
      fig.appendChild(cap); box.appendChild(fig);
    }
  }
  if (!box.firstChild) box.textContent = "this model's recurrent layers have no gates (SimpleRNN)";
}

// ------------------------------------------------------------------------------------------- view 4
async function doSample() {
  $("sample-out").textContent = "sampling…";
  try {
    const d = await api("/api/sample", { seed: $("seed").value, temperature: Number($("temperature").value),
                                         length: Number($("sample-length").value) || 200 });
    $("sample-out").textContent = "";
    const b = document.createElement("b"); b.textContent = d.seed;
    $("sample-out").append(b, d.text);
  } catch (e) { $("sample-out").textContent = ""; showError(e.message); }
}

// ------------------------------------------------------------------------------------------- view 5
async function doAttention() {
  const text = $("att-text").value;
  let d;
  try { d = await api("/api/attention", { text }); } catch (e) { showError(e.message); return; }
  showError("");
  $("att-out").textContent = `${JSON.stringify(text)} → ${JSON.stringify(d.output)}`;
  const el = $("att-map"); clear(el);
  const cell = 22, left = 70, top = 40;
  const S = d.source.length, O = d.output_tokens.length;
  el.setAttribute("width", left + cell * S + 10); el.setAttribute("height", top + cell * O + 10);
  d.source.forEach((t, j) => {
    const tx = svg("text", { x: left + cell * j + cell / 2, y: top - 6, "font-size": 11, "text-anchor": "middle",
                             "font-family": "monospace" }, el);
    tx.textContent = t === " " ? "␣" : t;
  });
  d.output_tokens.forEach((t, i) => {
    const tx = svg("text", { x: left - 6, y: top + cell * i + cell * 0.7, "font-size": 11, "text-anchor": "end",
                             "font-family": "monospace" }, el);
    tx.textContent = t;
    d.attention[i].forEach((a, j) => {
      const v = Math.round(255 * (1 - a));
      const r = svg("rect", { x: left + cell * j, y: top + cell * i, width: cell - 1, height: cell - 1,
                              fill: `rgb(${v},${v},${255})`, class: "att-cell" }, el);
      svg("title", {}, r).textContent = `${t} ← ${d.source[j]}: ${a}`;
    });
  });
}

// ------------------------------------------------------------------------------------------- view 6
async function doGradients() {
  $("grad-status").textContent = "computing…";
  let d;
  const body = { text: $("text").value, last_only: !$("grad-last-box").hidden && $("grad-last").checked };
  if (state.info.gradient_label === "class") body.label = $("grad-label").value;
  else if (state.info.gradient_label && $("grad-text").value.trim()) body.label = $("grad-text").value;
  try { d = await api("/api/gradients", body); } catch (e) { showError(e.message); $("grad-status").textContent = ""; return; }
  const el = $("grad-chart"); clear(el);
  const W = 1000, H = 200, pad = 8;
  let lo = Infinity, hi = -Infinity;
  for (const k in d.norms) for (const v of d.norms[k]) if (v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!isFinite(lo)) { lo = 1e-8; hi = 1; }
  const L0 = Math.log10(lo), L1 = Math.max(Math.log10(hi), L0 + 1e-6);
  const legend = $("grad-legend"); clear(legend);
  let k = 0;
  for (const name in d.norms) {
    const vals = d.norms[name]; const n = vals.length;
    const pts = vals.map((v, i) => {
      const x = n <= 1 ? W / 2 : (i / (n - 1)) * W;
      const y = pad + (1 - (Math.log10(Math.max(v, lo)) - L0) / (L1 - L0)) * (H - 2 * pad);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    }).join(" ");
    svg("polyline", { points: pts, fill: "none", stroke: PALETTE[k % PALETTE.length], "stroke-width": 1.5,
                      "vector-effect": "non-scaling-stroke" }, el);
    const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = PALETTE[k % PALETTE.length];
    legend.appendChild(sw); legend.append(name); k++;
  }
  legend.append(`   log scale from ${lo.toExponential(1)} to ${hi.toExponential(1)}; x = step t of ${d.tokens.length}`);
  $("grad-status").textContent = `${d.tokens.length} steps`;
}

document.addEventListener("DOMContentLoaded", init);
