// The frontier page, from /api/frontiers/<name>:
// - quality against diversity: one line per checkpoint, strategy and judge over temperature,
//   held-out human text as a point (one per judge and tokenizer), the AR lines in black;
// - quality against cost: one line per checkpoint, strategy and temperature, the AR level
//   dashed across the chart (drawn, not a series: the legend lists each line once).
// While the frontier's jobs run, the data is fetched every few seconds and the point count,
// the job statuses, the tables and the charts are redrawn in place (no reload).
"use strict";

td.onReady(() => {
  const cfgEl = document.getElementById("frontier-config");
  if (!cfgEl) return;
  const cfg = JSON.parse(cfgEl.textContent);
  const $ = (id) => document.getElementById(id);
  const LABELS = {
    forward_passes: "forward passes per sample",
    seconds_per_sample: "seconds per sample",
    judge_ppl: "judge perplexity (lower is better)",
    mauve: "MAUVE (higher is better)",
    unigram_entropy: "unigram entropy (nats)",
    repetition: "repeated 4-grams (share)",
  };
  const AR = "#111827";
  const HUMAN = "#b42318";
  const finite = (v) => typeof v === "number" && Number.isFinite(v);
  const charts = {};
  let data = null;

  // A scale padded by 8% on each side (and at least ±1 unit around one value), so a point
  // on the edge keeps its whole circle.
  const padded = (u, min, max) => {
    if (min === null || max === null) return [min, max];
    const span = max - min || Math.abs(max) || 1;
    return [min - span * 0.08, max + span * 0.08];
  };

  // Draw `series` (label, values over xs, color, ...) into element `el`; `extra(u)` paints
  // on top (reference levels). Returns the chart, or null when there is nothing to draw.
  // Perplexities span orders of magnitude (a tiny model's 30,000 beside human text's 700):
  // drawn on a log scale from the power of ten below the lowest to the one above the highest.
  const decades = (u, min, max) => (min === null || max === null || min <= 0 ? [min, max]
    : [10 ** Math.floor(Math.log10(min) - 1e-9), 10 ** Math.ceil(Math.log10(max) + 1e-9)]);

  const plot = (key, el, xs, series, xLabel, yLabel, extra, logY = false) => {
    if (charts[key]) charts[key].destroy();
    charts[key] = null;
    el.replaceChildren();
    if (typeof uPlot === "undefined") {
      el.append(td.el("p", { class: "help" }, "Chart library not installed (npm ci --prefix web)."));
      return null;
    }
    if (!xs.length) {
      el.append(td.el("p", { class: "empty" }, "No points yet."));
      return null;
    }
    const height = 320;
    const opts = {
      width: Math.max(320, el.clientWidth || 700),
      height,
      scales: { x: { time: false, range: padded }, y: logY ? { distr: 3, log: 10, range: decades } : { range: padded } },
      axes: [{ label: xLabel }, { label: yLabel, size: 70 }],
      series: [
        { label: xLabel },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: s.noLine ? 0 : 1.5,
          spanGaps: true,
          points: { show: true, size: s.size || 6, fill: s.fill || s.color },
        })),
      ],
      legend: { live: true },
      hooks: extra ? { draw: [extra] } : {},
    };
    const chart = new uPlot(opts, [xs, ...series.map((s) => s.values)], el);
    new ResizeObserver(() => chart.setSize({ width: Math.max(320, el.clientWidth), height })).observe(el);
    charts[key] = chart;
    return chart;
  };

  const openOnClick = (chart, series, setIds) => {
    chart.over.addEventListener("click", () => {
      const idx = chart.cursor.idx;
      if (idx === null || idx === undefined) return;
      let best = null;
      series.forEach((s, k) => {
        const v = s.values[idx];
        const id = setIds[k][idx];
        if (v === null || id === null || id === undefined) return;
        const d = Math.abs(chart.valToPos(v, "y") - chart.cursor.top);
        if (best === null || d < best.d) best = { d, id };
      });
      if (best && best.d < 30) location.href = cfg.sampleSetUrl.replace(/0$/, String(best.id));
    });
  };

  // Lines over a shared x axis: each line's values at the x values of its points.
  const gather = (lines, xKey, yKey) => {
    const pts = data.points;
    const xs = [...new Set(lines.flatMap((l) => l.points.map((i) => pts[i][xKey])).filter(finite))].sort((a, b) => a - b);
    const at = new Map(xs.map((x, i) => [x, i]));
    const series = [];
    const setIds = [];
    lines.forEach((line, n) => {
      const values = xs.map(() => null);
      const ids = xs.map(() => null);
      for (const i of line.points) {
        const p = pts[i];
        if (!finite(p[xKey]) || !finite(p[yKey])) continue;
        values[at.get(p[xKey])] = p[yKey];
        ids[at.get(p[xKey])] = p.sample_set_id;
      }
      const ar = line.objective === "ar";
      series.push({ label: line.label, values, color: ar ? AR : td.COLORS[n % td.COLORS.length], size: ar ? 9 : 6, ar, line });
      setIds.push(ids);
    });
    return { xs, at, series, setIds };
  };

  const drawDiversity = () => {
    const xKey = $("diversity-x").value;
    const lines = data.diversity_lines;
    const { xs: lineXs, series, setIds } = gather(lines, xKey, "judge_ppl");
    // Human text: one point per reference, at its own diversity.
    const refs = (data.references || []).filter((r) => finite(r[xKey]) && finite(r.judge_ppl));
    const xs = [...new Set([...lineXs, ...refs.map((r) => r[xKey])])].sort((a, b) => a - b);
    const at = new Map(xs.map((x, i) => [x, i]));
    const regrid = (values) => {
      const out = xs.map(() => null);
      values.forEach((v, i) => { if (v !== null) out[at.get(lineXs[i])] = v; });
      return out;
    };
    const all = series.map((s) => ({ ...s, values: regrid(s.values) }));
    const ids = setIds.map(regrid);
    const judges = new Set(refs.map((r) => r.judge));
    refs.forEach((r) => {
      const values = xs.map(() => null);
      values[at.get(r[xKey])] = r.judge_ppl;
      all.push({ label: judges.size > 1 ? `human text · judge ${r.judge}` : "human text", values, color: HUMAN, fill: "#fff", size: 11, noLine: true });
      ids.push(xs.map(() => null));
    });
    const read = lines.filter((l) => finite(l.matched && l.matched.judge_ppl)).length;
    $("diversity-note").textContent = lines.length
      ? `${lines.length} line${lines.length === 1 ? "" : "s"} over temperature; ${read} reach human text's diversity (table below). Each judge's sets are on lines of their own.`
      : "No judged point yet (a frontier with judge 'none' has none).";
    const chart = plot("diversity", $("chart-diversity"), xs, all, LABELS[xKey], "judge ppl (log; lower is better)", null, true);
    if (chart) openOnClick(chart, all, ids);
  };

  const drawCost = () => {
    const xKey = $("frontier-x").value;
    const yKey = $("frontier-y").value;
    const { xs, series, setIds } = gather(data.lines, xKey, yKey);
    // The AR level (its first point with a value) dashed across the whole chart.
    const levels = series.filter((s) => s.ar).map((s) => s.values.find((v) => v !== null)).filter(finite);
    const baseline = (u) => {
      const ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = AR;
      ctx.setLineDash([6, 4]);
      ctx.lineWidth = 1;
      for (const level of levels) {
        const y = u.valToPos(level, "y", true);
        ctx.beginPath();
        ctx.moveTo(u.bbox.left, y);
        ctx.lineTo(u.bbox.left + u.bbox.width, y);
        ctx.stroke();
      }
      ctx.restore();
    };
    const drawn = series.filter((s) => s.values.some((v) => v !== null)).length;
    $("frontier-note").textContent = drawn
      ? `${drawn} line${drawn === 1 ? "" : "s"}${levels.length ? "; dashed: the AR baseline's level" : ""}; click a point to open its sample set.`
      : `No point has ${LABELS[yKey]} yet${yKey === "judge_ppl" ? " (a frontier without a judge has none)" : ""}.`;
    const logY = yKey === "judge_ppl";
    const chart = plot("cost", $("chart-frontier"), xs, series, LABELS[xKey], logY ? "judge ppl (log; lower is better)" : LABELS[yKey], baseline, logY);
    if (chart) openOnClick(chart, series, setIds);
  };

  // The parts the server drew at first, redrawn from the data.
  const num = (v) => (finite(v) ? td.num(v) : "—");
  const drawText = () => {
    const n = data.points.length;
    $("frontier-count").textContent = `${n} point${n === 1 ? "" : "s"}`;
    $("frontier-judge").textContent = data.judge ? `judge ${data.judge}` : "no judge";
    const jobs = $("frontier-jobs");
    jobs.replaceChildren();
    data.jobs.forEach((j, k) => {
      if (k) jobs.append(" · ");
      const span = td.el("span", { class: "frontier-job", "data-job": String(j.id) }, `job ${j.id} (checkpoint ${j.checkpoint_id}) `, td.el("span", { class: `badge ${j.status}` }, j.status));
      if (j.status === "failed" && j.error) span.append(" ", td.el("small", { class: "error" }, j.error.trim().split("\n").pop().slice(0, 160)));
      jobs.append(span);
    });
    const rows = data.lines.flatMap((line) => line.points.map((i) => {
      const p = data.points[i];
      return td.el("tr", { "data-set": String(p.sample_set_id), "data-objective": p.objective },
        td.el("td", {}, line.label),
        td.el("td", { class: "num" }, p.steps === null || p.steps === undefined ? "—" : String(p.steps)),
        td.el("td", { class: "num" }, num(p.temperature)),
        td.el("td", { class: "num" }, num(p.forward_passes)),
        td.el("td", { class: "num" }, num(p.seconds_per_sample)),
        td.el("td", {}, td.quality(p)),
        td.el("td", {}, td.el("a", { href: cfg.sampleSetUrl.replace(/0$/, String(p.sample_set_id)) }, `set ${p.sample_set_id}`)));
    }));
    $("frontier-points").tBodies[0].replaceChildren(...(rows.length ? rows
      : [td.el("tr", { class: "none" }, td.el("td", { colspan: "7", class: "empty" }, "No points yet: its jobs are still running."))]));
    const matched = data.diversity_lines.map((line) => {
      const m = line.matched || {};
      const read = finite(m.judge_ppl) ? [td.el("b", {}, td.num(m.judge_ppl))] : ["— ", td.el("small", { class: "q-reason" }, `(${m.reason || ""})`)];
      return td.el("tr", { "data-objective": line.objective || "" },
        td.el("td", {}, line.label), td.el("td", {}, line.judge),
        td.el("td", { class: "num" }, ...read),
        td.el("td", { class: "num" }, num(m.repetition)),
        td.el("td", {}, m.between ? `T ${td.num(m.between[0])} – ${td.num(m.between[1])}` : ""));
    });
    const humans = (data.references || []).map((r) => td.el("tr", { class: "human", "data-reference": String(r.id) },
      td.el("td", {}, `human text (${r.texts} held-out snippets)`), td.el("td", {}, r.judge),
      td.el("td", { class: "num" }, num(r.judge_ppl)), td.el("td", { class: "num" }, num(r.repetition)),
      td.el("td", {}, `entropy ${num(r.unigram_entropy)}${finite(r.mauve) ? ` · MAUVE ${td.num(r.mauve)} vs other held-out` : ""}`)));
    $("frontier-matched").tBodies[0].replaceChildren(...(matched.length ? matched
      : [td.el("tr", { class: "none" }, td.el("td", { colspan: "5", class: "empty" }, "No judged point yet."))]), ...humans);
  };

  const load = async () => {
    data = await td.api(cfg.url);
    drawText();
    drawDiversity();
    drawCost();
    return data;
  };
  for (const id of ["frontier-x", "frontier-y"]) $(id).addEventListener("change", () => data && drawCost());
  $("diversity-x").addEventListener("change", () => data && drawDiversity());
  load().catch((e) => $("chart-frontier").replaceChildren(td.el("p", { class: "error" }, `Could not load the frontier: ${e.message}`)));
  if (cfg.live) {
    const running = () => !data || data.jobs.some((j) => j.status === "queued" || j.status === "running");
    td.poll(load, 3000, running);
  }
});
