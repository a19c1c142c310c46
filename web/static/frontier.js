// The frontier page: quality against cost from /api/frontiers/<name>, one line per
// checkpoint, strategy and temperature (each line's points in order of cost), the AR
// baseline's quality as a dashed reference across the chart. A click on a point opens its
// sample set. While the frontier's jobs run, the data is fetched again every few seconds.
"use strict";

td.onReady(() => {
  const cfgEl = document.getElementById("frontier-config");
  if (!cfgEl) return;
  const cfg = JSON.parse(cfgEl.textContent);
  const xSel = document.getElementById("frontier-x");
  const ySel = document.getElementById("frontier-y");
  const note = document.getElementById("frontier-note");
  const el = document.getElementById("chart-frontier");
  const LABELS = {
    forward_passes: "forward passes per sample",
    seconds_per_sample: "seconds per sample",
    judge_ppl: "judge perplexity (lower is better)",
    mauve: "MAUVE (higher is better)",
    unigram_entropy: "entropy (nats)",
  };
  let data = null;
  let chart = null;

  const finite = (v) => typeof v === "number" && Number.isFinite(v);

  const draw = () => {
    if (chart) chart.destroy();
    chart = null;
    el.replaceChildren();
    if (typeof uPlot === "undefined") {
      el.append(td.el("p", { class: "help" }, "Chart library not installed (npm ci --prefix web)."));
      return;
    }
    const xKey = xSel.value;
    const yKey = ySel.value;
    const pts = data.points;
    const xs = [...new Set(pts.map((p) => p[xKey]).filter(finite))].sort((a, b) => a - b);
    const at = new Map(xs.map((x, i) => [x, i]));
    const series = [];
    const setIds = [];  // per series, per x index: the sample set drawn there
    data.lines.forEach((line, n) => {
      const values = xs.map(() => null);
      const ids = xs.map(() => null);
      for (const i of line.points) {
        const p = pts[i];
        if (!finite(p[xKey]) || !finite(p[yKey])) continue;
        values[at.get(p[xKey])] = p[yKey];
        ids[at.get(p[xKey])] = p.sample_set_id;
      }
      const ar = line.objective === "ar";
      series.push({ label: line.label, values, color: ar ? "#111827" : td.COLORS[n % td.COLORS.length], ar });
      setIds.push(ids);
      if (ar) {
        const level = line.points.map((i) => pts[i][yKey]).filter(finite);
        if (level.length) {
          series.push({ label: `${line.label} (baseline)`, values: xs.map(() => level[0]), color: "#111827", dash: [6, 4], reference: true });
          setIds.push(xs.map(() => null));
        }
      }
    });
    const drawn = series.filter((s) => !s.reference && s.values.some((v) => v !== null)).length;
    note.textContent = drawn
      ? `${drawn} line${drawn === 1 ? "" : "s"}; click a point to open its sample set.`
      : `No point has ${LABELS[yKey]} yet${yKey === "judge_ppl" ? " (a frontier without a judge has none)" : ""}.`;
    if (!xs.length) {
      el.append(td.el("p", { class: "empty" }, "No points yet."));
      return;
    }
    const height = 340;
    const opts = {
      width: Math.max(320, el.clientWidth || 700),
      height,
      scales: { x: { time: false } },
      axes: [{ label: LABELS[xKey] }, { label: LABELS[yKey] }],
      series: [
        { label: LABELS[xKey] },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: s.reference ? 1 : 1.5,
          dash: s.dash,
          spanGaps: true,
          points: { show: !s.reference, size: s.ar ? 9 : 6 },
        })),
      ],
      legend: { live: true },
    };
    chart = new uPlot(opts, [xs, ...series.map((s) => s.values)], el);
    chart.over.addEventListener("click", () => {
      const idx = chart.cursor.idx;
      if (idx === null || idx === undefined) return;
      const top = chart.cursor.top;
      let best = null;
      series.forEach((s, k) => {
        const v = s.values[idx];
        const id = setIds[k][idx];
        if (v === null || id === null) return;
        const d = Math.abs(chart.valToPos(v, "y") - top);
        if (best === null || d < best.d) best = { d, id };
      });
      if (best && best.d < 30) location.href = cfg.sampleSetUrl.replace(/0$/, String(best.id));
    });
    new ResizeObserver(() => chart && chart.setSize({ width: Math.max(320, el.clientWidth), height })).observe(el);
  };

  const load = async () => {
    data = await td.api(cfg.url);
    draw();
    return data;
  };
  xSel.addEventListener("change", () => data && draw());
  ySel.addEventListener("change", () => data && draw());
  load().catch((e) => el.replaceChildren(td.el("p", { class: "error" }, `Could not load the frontier: ${e.message}`)));
  if (cfg.live) {
    const running = () => !data || data.jobs.some((j) => j.status === "queued" || j.status === "running");
    td.poll(async () => {
      await load();
      if (!running()) location.reload();  // the table and statuses are drawn by the server
    }, 4000, running);
  }
});
