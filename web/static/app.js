// text-diffusion dashboard: small helpers shared by the pages. No framework; charts by uPlot
// (installed from npm, served from /vendor). Text from the server is always set with
// textContent, never innerHTML, so prompts and samples cannot inject markup.
"use strict";

const td = {};

td.onReady = (fn) => {
  if (document.readyState !== "loading") fn();
  else document.addEventListener("DOMContentLoaded", fn);
};

td.csrf = () => document.querySelector('meta[name="csrf-token"]').content;

// fetch JSON from the API; throws an Error whose message is the API's error text.
td.api = async (path, { method = "GET", body } = {}) => {
  const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-CSRFToken"] = td.csrf();
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error((data.error && data.error.message) || res.statusText);
    err.fields = (data.error && data.error.fields) || [];
    err.status = res.status;
    throw err;
  }
  return data;
};

td.el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
};

td.duration = (s) => {
  if (s === null || s === undefined) return "";
  s = Math.round(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
};

td.num = (v, digits = 3) => {
  if (v === null || v === undefined) return "";
  if (Number.isInteger(v)) return v.toLocaleString("en");
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e6)) return v.toExponential(digits - 1);
  return String(Number(v.toPrecision(digits)));
};

// Call fn every `ms` while keepGoing() is true; pauses while the tab is hidden.
td.poll = (fn, ms, keepGoing = () => true) => {
  let timer = null;
  const tick = async () => {
    if (!keepGoing()) return;
    if (!document.hidden) {
      try { await fn(); } catch (e) { console.warn("poll:", e); }
    }
    timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => clearTimeout(timer);
};

const LIVE = new Set(["queued", "running"]);

td.setBadge = (cell, status) => {
  cell.replaceChildren(td.el("span", { class: `badge ${status}` }, status));
};

// Progress bars are drawn from their data-progress attribute: the page's policy allows no
// inline style attribute (web/security.py), and the CSSOM is not inline style.
td.onReady(() => {
  for (const bar of document.querySelectorAll(".progress[data-progress] > span")) {
    bar.style.width = `${(Number(bar.parentElement.dataset.progress) * 100).toFixed(1)}%`;
  }
});

td.setProgress = (cell, progress, eta) => {
  const bar = cell.querySelector(".progress > span");
  if (bar) bar.style.width = `${(progress * 100).toFixed(1)}%`;
  const e = cell.querySelector(".eta");
  if (e) e.textContent = eta === null || eta === undefined ? "" : td.duration(eta);
};

// A run's perplexity as the pages' `ppl` macro shows it: the kind and the number, or a
// note while the run has no evaluation yet.
td.setPpl = (el, run) => {
  if (!el) return;
  el.querySelector(".ppl-kind").hidden = run.ppl_pending;
  el.querySelector(".bound").textContent = !run.ppl_pending
    ? td.num(run.ppl_bound)
    : LIVE.has(run.status) ? "pending first evaluation" : "not evaluated";
};

// Runs table: refresh status, progress, ETA, step and bound while any run is live.
td.liveRuns = (tableSel, url) => {
  const table = document.querySelector(tableSel);
  if (!table) return;
  const live = () => [...table.querySelectorAll("tr[data-run]")].some((r) => LIVE.has(r.dataset.status));
  td.poll(async () => {
    const page = await td.api(url);
    for (const run of page.items) {
      const row = table.querySelector(`tr[data-run="${run.id}"]`);
      if (!row) continue;
      row.dataset.status = run.status;
      td.setBadge(row.querySelector(".status"), run.status);
      td.setProgress(row.querySelector(".prog"), run.progress, run.eta_s);
      row.querySelector(".step").textContent = `${run.step}/${run.max_steps ?? "?"}`;
      td.setPpl(row.querySelector(".ppl-value"), run);
    }
  }, 3000, live);
};

// Checkboxes in a table + a button that opens the compare page with the picked ids.
td.pickForCompare = (tableSel, buttonSel, compareUrl) => {
  const table = document.querySelector(tableSel);
  const button = document.querySelector(buttonSel);
  if (!table || !button) return;
  const picked = () => [...table.querySelectorAll("input.pick:checked")].map((c) => c.value);
  table.addEventListener("change", () => {
    const n = picked().length;
    button.disabled = n < 2 || n > 8;
    button.textContent = n ? `Compare ${n} selected` : "Compare selected";
  });
  button.addEventListener("click", () => {
    location.href = `${compareUrl}?runs=${picked().join(",")}`;
  });
};

td.COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];

// Exponential moving average that skips gaps (null stays null).
td.smooth = (values, alpha) => {
  if (!alpha) return values;
  let acc = null;
  return values.map((v) => {
    if (v === null || v === undefined) return null;
    acc = acc === null ? v : alpha * acc + (1 - alpha) * v;
    return acc;
  });
};

// Tick steps of an axis that counts (trials, steps): whole numbers only.
const INTEGER_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 1e6];

// A line chart: x (array), series [{label, values, color?, dash?}]; `integerX`: x counts
// things, so no tick falls between two. Returns the uPlot instance, or null (with a note
// in the element) when the chart library is missing.
td.lineChart = (el, { x, series, xLabel = "", yLabel = "", height = 260, logX = false, integerX = false }) => {
  if (typeof el === "string") el = document.querySelector(el);
  el.replaceChildren();
  if (typeof uPlot === "undefined") {
    el.append(td.el("p", { class: "help" }, "Chart library not installed (npm ci --prefix web)."));
    return null;
  }
  if (!x.length) {
    el.append(td.el("p", { class: "empty" }, "No points yet."));
    return null;
  }
  const opts = {
    width: Math.max(320, el.clientWidth || 600),
    height,
    scales: { x: { time: false, distr: logX ? 3 : 1 } },
    axes: [integerX ? { label: xLabel, incrs: INTEGER_INCRS } : { label: xLabel }, { label: yLabel }],
    series: [
      { label: xLabel },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: s.color || td.COLORS[i % td.COLORS.length],
        width: 1.5,
        dash: s.dash,
        spanGaps: true,
        points: { show: x.length < 40 },
      })),
    ],
    legend: { live: true },
  };
  const chart = new uPlot(opts, [x, ...series.map((s) => s.values)], el);
  new ResizeObserver(() => chart.setSize({ width: Math.max(320, el.clientWidth), height })).observe(el);
  return chart;
};

// Stored metric names shown under another label, as the pages' `metric_label` filter does:
// `entropy` is the pooled word-level entropy, not the judged token entropy.
td.METRIC_LABELS = { entropy: "word entropy" };
td.metricLabel = (name) => td.METRIC_LABELS[name] || name;

// A sample set's judged quality, as the pages' `quality` macro draws it: judge perplexity
// always beside the samples' token entropy, then MAUVE or why there is none.
td.QUALITY_KEYS = ["judge", "judge_ppl", "unigram_entropy", "entropy_tokens", "mauve", "mauve_reason",
  "mauve_featurizer", "mauve_references", "mauve_length", "objective", "repetition", "mauve_at_floor",
  "human_reference_id"];
td.quality = (m) => {
  if (!m || !("unigram_entropy" in m)) return td.el("span", { class: "help" }, "not judged");
  const dash = (v) => (v === null || v === undefined ? "—" : td.num(v));
  const mauve = [td.el("b", {}, dash(m.mauve))];
  if ((m.mauve === null || m.mauve === undefined) && m.mauve_reason) {
    mauve.push(" ", td.el("small", { class: "q-reason" }, `(${m.mauve_reason})`));
  }
  if (m.mauve_at_floor) {
    mauve.push(" ", td.el("small", { class: "q-floor" }, "(at its floor: indistinguishable from fully separated)"));
  }
  const repeats = typeof m.repetition === "number"
    ? [" ", td.el("span", { class: "metric q-repetition", title: "share of repeated 4-grams within a sample: phrase loops" }, "repeats ", td.el("b", {}, td.num(m.repetition)))]
    : [];
  return td.el(
    "span",
    { class: "quality", "data-quality": "" },
    td.el("span", { class: "metric q-judge", title: m.judge ? `judge: ${m.judge}` : "no judge was given" }, "judge ppl ", td.el("b", {}, dash(m.judge_ppl))),
    " ",
    td.el("span", { class: "metric q-entropy", title: `mean unigram entropy of the generated tokens (${m.entropy_tokens}'s tokens)` }, "token entropy ", td.el("b", {}, td.num(m.unigram_entropy))),
    ...repeats,
    " ",
    td.el("span", { class: "metric q-mauve", title: m.mauve_reason || "" }, "MAUVE ", ...mauve),
  );
};
