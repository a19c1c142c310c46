// The sweep page, drawn from /api/sweeps/<id> (the page embeds the first answer): best so
// far against trials or compute, a parallel-coordinates chart of the parameters coloured
// by the metric, parameter importance, and the trials table (sortable by any column).
// While the sweep runs, everything is fetched and drawn again every few seconds.
"use strict";

td.onReady(() => {
  const cfgEl = document.getElementById("sweep-config");
  if (!cfgEl) return;
  const cfg = JSON.parse(cfgEl.textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const LIVE_STATES = new Set(["running", "paused"]);
  let data = cfg.initial;
  let sortKey = "number";
  let sortDir = 1;

  const minimize = () => data.spec.metric.goal === "minimize";
  const better = (a, b) => (minimize() ? a < b : a > b);

  // ------------------------------------------------------------------ best so far
  const xSel = document.getElementById("best-x");
  let bestChart = null;
  const drawBest = () => {
    if (bestChart) bestChart.destroy();
    const byTrial = xSel.value === "trial";
    const rows = data.best_so_far;
    const trials = data.trials;
    bestChart = td.lineChart("#chart-best", {
      x: rows.map((r) => (byTrial ? r.trial : r.steps)),
      series: [
        { label: "best so far", values: rows.map((r) => r.best) },
        {
          label: "this trial",
          values: trials.map((t) => (t.state === "complete" ? t.value : null)),
          color: "#9ca3af",
          dash: [2, 4],
        },
      ],
      xLabel: byTrial ? "trial" : "trained steps (all trials)",
      integerX: true,
      yLabel: `${data.spec.metric.name} (${data.spec.metric.goal})`,
    });
    document.getElementById("sweep-best").textContent =
      data.best === null ? "no trial complete yet" : td.num(data.best, 4);
  };
  xSel.addEventListener("change", drawBest);

  // ------------------------------------------------------------------ parallel coordinates
  const svg = (tag, attrs = {}) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };
  const axisScale = (axis, trials) => {
    if (axis.kind === "choice") {
      const n = axis.values.length;
      return (v) => {
        const i = axis.values.findIndex((x) => x === v);
        return n === 1 ? 0.5 : i < 0 ? null : i / (n - 1);
      };
    }
    const f = axis.log ? Math.log : (v) => v;
    const lo = f(axis.min);
    const hi = f(axis.max);
    return (v) => (typeof v === "number" ? (f(v) - lo) / (hi - lo || 1) : null);
  };
  const drawParallel = () => {
    const el = document.getElementById("chart-parallel");
    el.replaceChildren();
    const axes = [...data.parameters, { name: data.spec.metric.name, kind: "metric" }];
    const done = data.trials.filter((t) => t.state !== "running");
    if (!done.length || axes.length < 2) {
      el.append(td.el("p", { class: "empty" }, "Lines appear as trials end."));
      return;
    }
    const width = Math.max(320, el.clientWidth || 700);
    const height = 300;
    const pad = { l: 40, r: 40, t: 28, b: 24 };
    const xs = axes.map((_, i) => pad.l + (i * (width - pad.l - pad.r)) / (axes.length - 1));
    // A pruned trial is drawn at its last reported value (dashed): where it was cut.
    const metricOf = (t) => (typeof t.value === "number" ? t.value : t.last_report ? t.last_report.value : null);
    const values = done.map(metricOf).filter((v) => typeof v === "number");
    const vmin = Math.min(...values);
    const vmax = Math.max(...values);
    const metricScale = (v) => (typeof v === "number" ? (v - vmin) / (vmax - vmin || 1) : null);
    const scales = axes.map((a) => (a.kind === "metric" ? metricScale : axisScale(a, done)));
    const y = (u) => pad.t + (1 - u) * (height - pad.t - pad.b);
    const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
    root.append(svg("title"));
    root.firstChild.textContent = "Parameters of each ended trial, coloured by its metric";
    for (const t of done) {
      const good = typeof metricOf(t) === "number" ? metricScale(metricOf(t)) : null;
      const shade = good === null ? 0.5 : minimize() ? good : 1 - good;  // 0 best .. 1 worst
      const points = axes.map((a, i) => {
        const u = scales[i](a.kind === "metric" ? metricOf(t) : t.params[a.name]);
        return u === null ? null : `${xs[i]},${y(u)}`;
      }).filter(Boolean);
      const line = svg("polyline", {
        points: points.join(" "),
        fill: "none",
        stroke: `hsl(215, 70%, ${25 + 50 * shade}%)`,
        "stroke-width": t.state === "complete" ? 1.8 : 1,
        "data-trial": t.number,
      });
      if (t.state !== "complete") line.setAttribute("stroke-dasharray", "4 3");
      const tip = svg("title");
      tip.textContent = `trial ${t.number}: ${t.state}${typeof metricOf(t) === "number" ? ` ${td.num(metricOf(t), 4)}` : ""}`;
      line.append(tip);
      root.append(line);
    }
    axes.forEach((a, i) => {
      root.append(svg("line", { x1: xs[i], x2: xs[i], y1: pad.t, y2: height - pad.b, stroke: "#6b7280" }));
      const label = svg("text", { x: xs[i], y: 16, "text-anchor": "middle", class: "axis-label" });
      label.textContent = a.name;
      root.append(label);
      const ends = a.kind === "choice" ? [a.values[0], a.values[a.values.length - 1]]
        : a.kind === "metric" ? [vmin, vmax] : [a.min, a.max];
      ends.forEach((v, j) => {
        const tick = svg("text", {
          x: xs[i] + (i === axes.length - 1 ? -4 : 4),
          y: j === 0 ? height - pad.b + 14 : pad.t - 2,
          "text-anchor": i === axes.length - 1 ? "end" : "start",
          class: "axis-tick",
        });
        tick.textContent = typeof v === "number" ? td.num(v, 3) : String(v);
        root.append(tick);
      });
    });
    el.append(root);
  };

  // ------------------------------------------------------------------ importance
  const drawImportance = () => {
    const el = document.getElementById("importance");
    el.replaceChildren();
    const { scores, reason } = data.importance;
    if (!scores) {
      el.append(td.el("p", { class: "help" }, `Not yet: ${reason}.`));
      return;
    }
    const table = td.el("table", { id: "importance-table" });
    for (const [name, score] of Object.entries(scores).sort((a, b) => b[1] - a[1])) {
      const bar = svg("svg", { width: 200, height: 12, role: "img" });
      bar.append(svg("rect", { x: 0, y: 1, width: Math.max(1, 200 * score), height: 10, fill: "#1f77b4" }));
      table.append(td.el("tr", {}, td.el("td", {}, name), td.el("td", { class: "num" }, td.num(score, 2)), td.el("td", {}, bar)));
    }
    el.append(table, td.el("p", { class: "help" }, "Optuna's PED-ANOVA over the complete trials: how much of the metric's spread among the good trials each parameter explains."));
  };

  // ------------------------------------------------------------------ trials table
  const show = (v) => (typeof v === "number" ? td.num(v, 4) : String(v ?? ""));
  const cellValue = (t, key) => {
    if (key.startsWith("param:")) return t.params[key.slice(6)];
    return t[key];
  };
  const drawTrials = () => {
    const body = document.querySelector("#trials tbody");
    const rows = [...data.trials].sort((a, b) => {
      const va = cellValue(a, sortKey);
      const vb = cellValue(b, sortKey);
      if (va === vb) return a.number - b.number;
      if (va === null || va === undefined) return 1;
      if (vb === null || vb === undefined) return -1;
      return (va < vb ? -1 : 1) * sortDir;
    });
    body.replaceChildren(...rows.map((t) => {
      let value = t.value === null ? "—" : td.num(t.value, 4);
      if (t.spread !== null) value += ` ± ${td.num(t.spread, 2)}`;
      // Reports are the held-out NLL; under a judged metric they are named as such.
      const nll = data.judged ? "NLL " : "";
      if (t.state === "pruned") {
        value = t.last_report ? `${nll}${td.num(t.last_report.value, 4)} at step ${t.pruned_at}, pruned` : `pruned at step ${t.pruned_at}`;
      }
      if (t.state === "running" && t.last_report) value = `${nll}${td.num(t.last_report.value, 4)} at step ${t.last_report.step}`;
      if (t.judging) value = "trained; judging its samples";
      const runs = t.runs.map((r) => td.el("a", { href: cfg.runUrl.replace(/0$/, String(r.id)) }, `run ${r.id}`));
      const runCell = td.el("td", {});
      runs.forEach((a, i) => runCell.append(...(i ? [" ", a] : [a])));
      return td.el("tr", { "data-trial": t.number, "data-state": t.state },
        td.el("td", { class: "num" }, String(t.number)),
        td.el("td", {}, td.el("span", { class: `badge ${t.state}` }, t.state)),
        td.el("td", { class: "num" }, value),
        td.el("td", { class: "num" }, String(t.steps)),
        ...data.parameters.map((a) => td.el("td", {}, show(t.params[a.name]))),
        runCell,
      );
    }));
    const counts = Object.entries(data.counts).map(([s, n]) => `${n} ${s}`).join(" · ");
    document.getElementById("sweep-counts").textContent = `${data.trials.length} of ${data.trial_cap}${counts ? ` · ${counts}` : ""}`;
    // Compare the best: the runs of the top trials (up to 8 runs, the compare page's limit).
    const top = data.trials.filter((t) => t.state === "complete")
      .sort((a, b) => (better(a.value, b.value) ? -1 : 1))
      .flatMap((t) => t.runs.map((r) => r.id)).slice(0, 8);
    const link = document.getElementById("compare-top");
    link.href = top.length >= 2 ? `${cfg.compareUrl}?runs=${top.join(",")}` : "#";
    link.classList.toggle("disabled", top.length < 2);
    link.textContent = top.length >= 2 ? `Compare the best ${top.length} runs` : "Compare the best (needs 2 complete)";
  };
  document.querySelectorAll("#trials th[data-key]").forEach((th) => {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      sortDir = key === sortKey ? -sortDir : 1;
      sortKey = key;
      drawTrials();
    });
  });

  const drawAll = () => {
    drawBest();
    drawParallel();
    drawImportance();
    drawTrials();
  };
  drawAll();
  const live = () => LIVE_STATES.has(data.status);
  if (live()) {
    td.poll(async () => {
      const before = data.status;
      data = await td.api(cfg.url);
      drawAll();
      if (data.status !== before) location.reload();  // the header and buttons are the server's
    }, cfg.pollMs, live);
  }
});
