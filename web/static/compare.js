// The compare page. Without runs: the picker builds ?runs=1,2,3. With runs: draws the
// embedded curves (#data) and keeps the chart state in the URL (x, smooth, ratio) with
// history.replaceState, so the address bar is always a link to the same picture.
"use strict";

td.onReady(() => {
  const picker = document.getElementById("picker");
  if (picker) {
    picker.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const ids = [...picker.querySelectorAll("input.pick:checked")].map((c) => c.value);
      location.href = `${picker.action}?runs=${ids.join(",")}`;
    });
    return;
  }
  const dataEl = document.getElementById("data");
  if (!dataEl) return;
  const data = JSON.parse(dataEl.textContent);
  const runs = data.runs; // in the order asked for: keys of data.curves arrive sorted as text
  const color = (i) => td.COLORS[i % td.COLORS.length];
  const DASHES = [undefined, [8, 4], [2, 3], [10, 3, 2, 3], [4, 4], [1, 5]];

  for (const sw of document.querySelectorAll(".swatch[data-i]")) sw.style.background = color(Number(sw.dataset.i));

  // Every ratio some run evaluated, as the server's keys ("0.5", "1"), in numeric order.
  const byNumber = (a, b) => Number(a) - Number(b);
  const ratios = [...new Set(runs.flatMap((r) => Object.keys(data.curves[r.id].eval.loss)))].sort(byNumber);

  // State from the URL, every value checked against what the page offers.
  const params = new URLSearchParams(location.search);
  const AXES = {
    step: { key: "steps", label: "step" },
    tokens: { key: "tokens", label: "tokens seen" },
    time: { key: "elapsed", label: "wall time" },
  };
  const state = {
    x: AXES[params.get("x")] ? params.get("x") : "step",
    smooth: Math.min(0.99, Math.max(0, Number(params.get("smooth")) || 0)),
    ratios: (params.get("ratio") || "").split(",").filter((r) => ratios.includes(r)),
  };
  if (!state.ratios.length && ratios.length) {
    state.ratios = [ratios.includes("0.5") ? "0.5" : ratios[Math.floor(ratios.length / 2)]];
  }

  const saveState = () => {
    const q = [`runs=${runs.map((r) => r.id).join(",")}`, `x=${state.x}`, `smooth=${state.smooth}`];
    if (state.ratios.length) q.push(`ratio=${state.ratios.join(",")}`);
    history.replaceState(null, "", `${location.pathname}?${q.join("&")}`);
  };

  // Series measured at different x values, on one shared x: the union, nulls elsewhere.
  const align = (tables) => {
    const xs = [...new Set(tables.flatMap((t) => t.x))].sort((a, b) => a - b);
    const at = new Map(xs.map((x, i) => [x, i]));
    const ys = tables.map((t) => {
      const out = new Array(xs.length).fill(null);
      t.x.forEach((x, i) => { out[at.get(x)] = t.y[i]; });
      return out;
    });
    return { x: xs, ys };
  };

  // Large x values in readable units: tokens in k/M/B, seconds in minutes or hours.
  const scaleX = (axis, xs) => {
    const max = Math.max(0, ...xs);
    if (axis === "time") {
      if (max >= 7200) return { f: 1 / 3600, label: "wall time (h)" };
      if (max >= 120) return { f: 1 / 60, label: "wall time (min)" };
      return { f: 1, label: "wall time (s)" };
    }
    if (axis === "tokens") {
      if (max >= 1e9) return { f: 1e-9, label: "tokens seen (B)" };
      if (max >= 1e6) return { f: 1e-6, label: "tokens seen (M)" };
      if (max >= 1e3) return { f: 1e-3, label: "tokens seen (k)" };
    }
    return { f: 1, label: AXES[axis].label };
  };

  let curvesChart = null;
  let curvesKey = null;
  const drawCurves = () => {
    const tables = [];
    const series = [];
    runs.forEach((run, i) => {
      const ev = data.curves[run.id].eval;
      const xs = ev[AXES[state.x].key];
      state.ratios.forEach((ratio, j) => {
        const loss = ev.loss[ratio];
        if (!loss) return;
        const y = td.smooth(loss, state.smooth);
        const t = { x: [], y: [] };
        xs.forEach((x, k) => {
          if (x !== null && x !== undefined) { t.x.push(x); t.y.push(y[k]); }
        });
        tables.push(t);
        series.push({ label: `${run.name} · t=${ratio}`, color: color(i), dash: DASHES[j % DASHES.length] });
      });
    });
    const { x, ys } = align(tables);
    const scale = scaleX(state.x, x);
    const xs = x.map((v) => v * scale.f);
    // Smoothing only changes the values: swap them into the chart as it is.
    const key = `${state.x}|${state.ratios.join(",")}`;
    if (curvesChart && curvesKey === key) {
      curvesChart.setData([xs, ...ys]);
      return;
    }
    // Otherwise a new chart in a new box (the old box's resize observer goes with it).
    if (curvesChart) curvesChart.destroy();
    const old = document.getElementById("chart-curves");
    const el = td.el("div", { id: "chart-curves", class: old.className });
    old.replaceWith(el);
    curvesKey = key;
    curvesChart = td.lineChart(el, {
      x: xs,
      series: series.map((s, i) => ({ ...s, values: ys[i] })),
      xLabel: scale.label,
      yLabel: "loss (nats)",
      height: 340,
    });
  };

  const drawVsRatio = () => {
    const tables = runs.map((run) => {
      const ev = data.curves[run.id].eval;
      const keys = Object.keys(ev.loss).sort(byNumber);
      // The last evaluation step with a value at every ratio (else the last step at all).
      let i = ev.bound.map((b) => b !== null).lastIndexOf(true);
      if (i < 0) i = ev.steps.length - 1;
      return { x: keys.map(Number), y: keys.map((k) => (i < 0 ? null : ev.loss[k][i])), step: ev.steps[i] };
    });
    const { x, ys } = align(tables);
    td.lineChart("#chart-vs-ratio", {
      x,
      series: runs.map((run, i) => ({
        label: run.objective === "ar" ? `${run.name} (AR: no mask ratios)` : `${run.name} (step ${tables[i].step ?? "none"})`,
        values: ys[i],
        color: color(i),
      })),
      xLabel: "mask ratio t",
      yLabel: "loss (nats)",
    });
  };

  // Controls, set from the state, then driving it.
  const xSel = document.getElementById("x-axis");
  const smooth = document.getElementById("smooth");
  const smoothValue = document.getElementById("smooth-value");
  const box = document.getElementById("ratios");
  xSel.value = state.x;
  smooth.value = String(state.smooth);
  smoothValue.textContent = String(state.smooth);
  for (const r of ratios) {
    const input = td.el("input", { type: "checkbox", value: r });
    input.checked = state.ratios.includes(r);
    box.append(td.el("label", { class: "inline" }, input, ` ${r}`));
  }
  const changed = () => { saveState(); drawCurves(); };
  xSel.addEventListener("change", () => { state.x = xSel.value; changed(); });
  smooth.addEventListener("input", () => {
    state.smooth = Number(smooth.value);
    smoothValue.textContent = smooth.value;
    changed();
  });
  box.addEventListener("change", () => {
    state.ratios = [...box.querySelectorAll("input:checked")].map((c) => c.value);
    changed();
  });

  saveState();
  drawCurves();
  drawVsRatio();
});
