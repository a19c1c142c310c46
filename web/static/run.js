// The run page: charts from /api/runs/<id>/curves, and while the run is queued or running,
// progress from /api/runs/<id> and the log tail from /runs/<id>/log every few seconds.
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
  };

  const drawAll = () => {
    const ev = curves.eval;
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

  pick.addEventListener("input", () => curves && drawVsRatio());
  smooth.addEventListener("input", () => curves && drawTrain());
  loadCurves().catch((e) => {
    document.getElementById("chart-ratios").replaceChildren(td.el("p", { class: "error" }, `Could not load the curves: ${e.message}`));
  });

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

  const update = (run) => {
    statusBox.dataset.status = run.status;
    td.setBadge(statusBox.querySelector(".status"), run.status);
    td.setProgress(statusBox.querySelector(".prog"), run.progress, run.eta_s);
    statusBox.querySelector(".step").textContent = String(run.step);
    statusBox.querySelector(".tokens").textContent = td.num(run.tokens_seen);
    statusBox.querySelector(".bound").textContent = td.num(run.ppl_bound);
    const body = document.querySelector("#checkpoints tbody");
    if (body.querySelectorAll("tr[data-checkpoint]").length !== run.checkpoints.length) {
      body.replaceChildren(...run.checkpoints.slice().reverse().map(checkpointRow));
    }
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

  let polls = 0;
  td.poll(
    async () => {
      const run = await td.api(cfg.runUrl);
      const changed = run.status !== status;
      status = run.status;
      update(run);
      await refreshLog();
      polls += 1;
      if (polls % 5 === 0) await loadCurves(); // every 15 s: a curve gains a point per eval
      // Finished: reload once so the buttons, jobs and final numbers are the server's.
      if (changed && !LIVE.includes(status)) location.reload();
    },
    cfg.pollMs,
    () => LIVE.includes(status),
  );
});
