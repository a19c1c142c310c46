// The run page: charts from /api/runs/<id>/curves and, while the run is queued or running,
// every part of the page from one poll every few seconds: the header, the jobs, checkpoints
// and sample sets from /api/runs/<id>, the curves from /api/runs/<id>/curves whenever the
// run's step moved, and the log tail from /runs/<id>/log. Each tick draws what it fetched at
// once, so the header's step and the training chart's last step agree.
// Text from the server goes in with textContent (td.el); the log fragment is HTML the
// server escaped, parsed inertly and swapped in whole.
"use strict";

td.onReady(() => {
  const cfg = JSON.parse(document.getElementById("run-config").textContent);
  const LIVE = ["queued", "running"];
  const statusBox = document.getElementById("status");
  let status = cfg.status;
  let curves = null;
  const charts = {};

  // One colour per mask ratio, from blue (few masked) to red (all masked).
  const ratioColor = (i, n) => `hsl(${Math.round(230 - (220 * i) / Math.max(1, n - 1))}, 70%, 45%)`;

  // Draw a chart once, then only swap its data while its series stay the same.
  const plot = (key, el, spec, make = td.lineChart) => {
    const old = charts[key];
    if (old && old.series.length === spec.series.length + 1 && spec.x.length) {
      old.setData([spec.x, ...spec.series.map((s) => s.values)]);
      return old;
    }
    if (old) old.destroy();
    charts[key] = make(el, spec);
    return charts[key];
  };

  // The bound in nats/token on the left axis; the right axis labels the same scale as
  // perplexity (exp), so one curve reads both ways.
  const boundChart = (el, { x, series, height = 260 }) => {
    if (typeof uPlot === "undefined" || !x.length) return td.lineChart(el, { x, series: [] });
    if (typeof el === "string") el = document.querySelector(el);
    el.replaceChildren();
    const opts = {
      width: Math.max(320, el.clientWidth || 600),
      height,
      scales: { x: { time: false } },
      axes: [
        { label: "step" },
        { label: "nats / token" },
        {
          side: 1,
          scale: "y",
          label: "perplexity",
          grid: { show: false },
          values: (u, ticks) => ticks.map((v) => td.num(Math.exp(v))),
        },
      ],
      series: [
        { label: "step" },
        ...series.map((s) => ({
          label: s.label,
          stroke: td.COLORS[3],
          width: 1.5,
          spanGaps: true,
          points: { show: x.length < 40 },
          value: (u, v) => (v === null || v === undefined ? "" : `${td.num(v)} (ppl ${td.num(Math.exp(v))})`),
        })),
      ],
    };
    const chart = new uPlot(opts, [x, ...series.map((s) => s.values)], el);
    new ResizeObserver(() => chart.setSize({ width: Math.max(320, el.clientWidth), height })).observe(el);
    return chart;
  };

  const pick = document.getElementById("step-pick");
  const pickLabel = document.getElementById("pick-label");
  const smooth = document.getElementById("train-smooth");

  // The ratios' keys in numeric order (JSON objects arrive with their keys sorted as text).
  const ratioKeys = () => Object.keys(curves.eval.loss).sort((a, b) => Number(a) - Number(b));

  const drawVsRatio = () => {
    const ev = curves.eval;
    const keys = ratioKeys();
    const i = Number(pick.value);
    pickLabel.textContent = ev.steps.length ? String(ev.steps[i]) : "";
    const series = [{ label: `step ${ev.steps[i] ?? ""}`, values: keys.map((k) => ev.loss[k][i]), color: td.COLORS[0] }];
    if (ev.steps.length > 1) {
      series.push({ label: `step ${ev.steps[0]} (first)`, values: keys.map((k) => ev.loss[k][0]), color: "#98a2b3", dash: [4, 4] });
    }
    plot("vsRatio", "#chart-vs-ratio", { x: keys.map(Number), series, xLabel: "mask ratio t", yLabel: "loss (nats)" });
  };

  const drawTrain = () => {
    const tr = curves.train;
    const values = td.smooth(tr.loss, Number(smooth.value));
    plot("train", "#chart-train", { x: tr.step, series: [{ label: "loss", values }], xLabel: "step", yLabel: "loss (nats)" });
    const n = tr.step.length;
    document.getElementById("train-now").textContent = n
      ? `Last logged: step ${tr.step[n - 1]}, loss ${td.num(tr.loss[n - 1])} (averaged over its bucket).`
      : "No training loss logged yet.";
  };

  const drawAll = () => {
    const ev = curves.eval;
    if (cfg.objective === "ar") {
      drawTrain();  // an AR run has no per-ratio curves (the page says so)
      return;
    }
    const keys = ratioKeys();
    plot("ratios", "#chart-ratios", {
      x: ev.steps,
      series: keys.map((k, i) => ({ label: `t=${k}`, values: ev.loss[k], color: ratioColor(i, keys.length) })),
      xLabel: "step",
      yLabel: "loss (nats)",
    });
    // Keep the slider on the last step unless the user moved it.
    const atEnd = Number(pick.value) >= Number(pick.max);
    pick.max = String(Math.max(0, ev.steps.length - 1));
    if (atEnd) pick.value = pick.max;
    drawVsRatio();
    plot("bound", "#chart-bound", { x: ev.steps, series: [{ label: "bound", values: ev.bound }] }, boundChart);
    const last = ev.bound.map((b, i) => [b, ev.steps[i]]).filter(([b]) => b !== null).pop();
    document.getElementById("bound-now").textContent = last
      ? `At step ${last[1]}: ${td.num(last[0])} nats/token, perplexity ≤ ${td.num(Math.exp(last[0]))}.`
      : "No complete evaluation grid yet.";
    drawTrain();
  };

  const loadCurves = async () => {
    curves = await td.api(cfg.curvesUrl);
    drawAll();
  };
  const showCurvesError = (e) => {
    document.getElementById("chart-train").replaceChildren(td.el("p", { class: "error" }, `Could not load the curves: ${e.message}`));
  };

  if (pick) pick.addEventListener("input", () => curves && drawVsRatio());
  smooth.addEventListener("input", () => curves && drawTrain());
  loadCurves().catch(showCurvesError);

  if (!LIVE.includes(status)) return;

  const checkpointRow = (c) =>
    td.el(
      "tr",
      { "data-checkpoint": c.id },
      td.el("td", { class: "num" }, c.step),
      td.el("td", {}, c.id),
      td.el("td", { class: "clip" }, td.el("code", {}, c.url)),
      td.el("td", {}, ...Object.entries(c.metrics).map(([k, v]) => td.el("span", { class: "metric" }, `${k} ${td.num(v)} `))),
      td.el("td", {}, td.el("a", { href: `${cfg.generateUrl}?checkpoint=${encodeURIComponent(c.id)}` }, "Generate from this")),
    );

  const emptyRow = (columns, text) => td.el("tr", { class: "none" }, td.el("td", { colspan: columns, class: "empty" }, text));
  const metrics = (m) =>
    Object.entries(m)
      .filter(([k]) => !td.QUALITY_KEYS.includes(k))
      .map(([k, v]) => td.el("span", { class: "metric" }, `${td.metricLabel(k)} ${td.num(v)} `));
  const badge = (status) => td.el("span", { class: `badge ${status}` }, status);
  const lastLine = (text, n) => {
    const line = text.trim().split("\n").pop();
    return line.length > n ? `${line.slice(0, n - 3)}...` : line;
  };

  const jobRow = (j) =>
    td.el(
      "tr",
      { "data-job": j.id },
      td.el("td", {}, j.id),
      td.el("td", {}, j.kind),
      td.el("td", {}, badge(j.status), ...(j.cancel_requested && j.status === "running" ? [" ", td.el("small", {}, "cancel requested")] : [])),
      td.el("td", { class: "num" }, `${j.attempts} / ${j.max_attempts}`),
      td.el("td", {}, j.queue),
      td.el("td", {}, j.worker || ""),
      td.el("td", { class: "job-error" }, ...(j.error ? [td.el("details", {}, td.el("summary", {}, lastLine(j.error, 120)), td.el("pre", {}, j.error))] : [])),
    );

  const sampleSetRow = (ss) =>
    td.el(
      "tr",
      { "data-sample-set": ss.id },
      td.el("td", {}, td.el("a", { href: cfg.sampleSetUrl.replace(/0$/, String(ss.id)) }, `sample set ${ss.id}`)),
      td.el("td", { class: "num" }, ss.step),
      td.el("td", { class: "clip" }, cfg.samplerKeys.filter((k) => k in ss.settings).map((k) => `${k} ${ss.settings[k]}`).join(", ")),
      td.el("td", { class: "num" }, ss.samples),
      td.el("td", {}, td.quality(ss.metrics), " ", ...metrics(ss.metrics)),
      td.el("td", {}, td.el("time", { datetime: ss.created_at }, ss.created_at.slice(0, 16).replace("T", " "))),
    );

  // Replace a table's rows when what they show changed (not on every tick: an open
  // <details> or a selection survives the polls that bring nothing new).
  const fillTable = (selector, items, row, empty, columns) => {
    const body = document.querySelector(`${selector} tbody`);
    const key = JSON.stringify(items);
    if (body.dataset.shown === key) return;
    body.dataset.shown = key;
    body.replaceChildren(...(items.length ? items.map(row) : [emptyRow(columns, empty)]));
  };

  const update = (run) => {
    statusBox.dataset.status = run.status;
    td.setBadge(statusBox.querySelector(".status"), run.status);
    td.setProgress(statusBox.querySelector(".prog"), run.progress, run.eta_s);
    statusBox.querySelector(".step").textContent = String(run.step);
    statusBox.querySelector(".tokens").textContent = td.num(run.tokens_seen);
    // The header and the AR card show the same figure.
    for (const el of document.querySelectorAll(".ppl-value")) td.setPpl(el, run);
    const nll = statusBox.querySelector(".nll");
    nll.hidden = run.nll_bound === null;
    nll.querySelector("span").textContent = td.num(run.nll_bound);
    const resumed = run.summary.resumed_from_step;
    statusBox.querySelector(".resumed-note").hidden = !resumed;
    statusBox.querySelector(".resumed").textContent = resumed ? String(resumed) : "";
    fillTable("#checkpoints", run.checkpoints.slice().reverse(), checkpointRow, "No checkpoint yet.", 5);
    document.getElementById("checkpoint-count").textContent = String(run.checkpoints.length);
    fillTable("#lineage", run.sample_sets, sampleSetRow, "No samples yet: generate from one of its checkpoints above.", 6);
    document.getElementById("sample-set-count").textContent = String(run.sample_sets.length);
    fillTable("#jobs", run.jobs, jobRow, "No jobs.", 7);
  };

  const refreshLog = async () => {
    const res = await fetch(cfg.logUrl, { credentials: "same-origin" });
    if (!res.ok) return;
    // Parsed in a separate document: nothing in it runs; the server escaped the log's text.
    const doc = new DOMParser().parseFromString(await res.text(), "text/html");
    const fresh = doc.getElementById("log");
    const old = document.getElementById("log");
    if (fresh && old) old.replaceWith(document.adoptNode(fresh));
  };

  // What the drawn curves reflect: a new loss point moves the step, a new evaluation the
  // bound's step; the page's first curves are of the run as the server rendered it.
  const curvesKey = (run) => `${run.step}/${run.summary.bound_step ?? ""}`;
  let drawnKey = cfg.curvesKey;
  td.poll(
    async () => {
      const run = await td.api(cfg.runUrl);
      const changed = run.status !== status;
      status = run.status;
      // The curves of the same moment as the header: fetched before anything is drawn.
      const key = curvesKey(run);
      const fresh = key !== drawnKey ? await td.api(cfg.curvesUrl).catch(() => null) : null;
      if (fresh) {
        curves = fresh;
        drawnKey = key;
      }
      update(run);
      if (fresh) drawAll();
      await refreshLog();
      // Finished: reload once so the buttons and final numbers are the server's.
      if (changed && !LIVE.includes(status)) location.reload();
    },
    cfg.pollMs,
    () => LIVE.includes(status),
  );
});
