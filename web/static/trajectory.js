// Denoising trajectory viewer of the sample set page. The page embeds, per sample, the
// positions each denoising pass changed (web/pages/samples.py `viewer_data`):
//   {length, steps: [pass number], changes: [[[position, piece or null], ...] per pass],
//    given: [bool], committed_at: [pass]}
// The viewer replays them: a slider over the passes with play/pause, masked positions as
// grey boxes, prompt tokens styled as the prefix, every other token coloured by the pass
// that put it there (a scale from early to late, with a legend). Pieces are text nodes.
"use strict";

// Pass k of n as a light background: blue (early) through green to orange (late).
td.passColor = (k, n) => {
  const t = n > 1 ? k / (n - 1) : 0;
  return `hsl(${Math.round(210 - 180 * t)}, 75%, 82%)`;
};

// The tokens after pass `upto` (null = masked) and the pass that set each one.
td.replay = (data, upto) => {
  const tokens = new Array(data.length).fill(null);
  const since = new Array(data.length).fill(-1);
  for (let i = 0; i <= upto; i++) {
    for (const [p, piece] of data.changes[i]) {
      tokens[p] = piece;
      since[p] = piece === null ? -1 : i;
    }
  }
  return { tokens, since };
};

td.passLegend = (data) => {
  const n = data.steps.length;
  const items = [
    td.el("span", { class: "tok prefix" }, "prompt"),
    td.el("span", { class: "tok mask", title: "masked" }, "\u2003"),
    td.el("span", {}, " masked · committed at pass "),
  ];
  if (n <= 16) {
    data.steps.forEach((step, i) => {
      items.push(td.el("span", { class: "tok swatch", style: `background:${td.passColor(i, n)}` }, String(step)));
    });
  } else {
    const stops = [0, 0.25, 0.5, 0.75, 1].map((t) => td.passColor(t * (n - 1), n)).join(", ");
    items.push(
      td.el("span", {}, String(data.steps[0])),
      td.el("span", { class: "scale", style: `background:linear-gradient(to right, ${stops})` }),
      td.el("span", {}, String(data.steps[n - 1])),
    );
  }
  return td.el("div", { class: "traj-legend" }, ...items);
};

td.trajectoryViewer = (el, data) => {
  const n = data.steps.length;
  if (!n) {
    el.replaceChildren(td.el("p", { class: "empty" }, "No passes recorded."));
    return;
  }
  const slider = td.el("input", { type: "range", min: 0, max: n - 1, value: 0, step: 1, "aria-label": "denoising pass" });
  const play = td.el("button", { type: "button", class: "secondary play" }, "▶ play");
  const label = td.el("span", { class: "traj-label" });
  const strip = td.el("div", { class: "traj-tokens" });
  let timer = null;

  const show = (i) => {
    const { tokens, since } = td.replay(data, i);
    const masked = tokens.filter((t) => t === null).length;
    label.textContent = `pass ${data.steps[i]} (${i + 1} of ${n}) · ${masked} masked`;
    strip.replaceChildren(
      ...tokens.map((piece, p) => {
        if (piece === null) return td.el("span", { class: "tok mask", title: `position ${p}: masked` }, "\u2003");
        if (data.given[p]) return td.el("span", { class: "tok prefix", title: "prompt" }, piece);
        return td.el(
          "span",
          { class: "tok", style: `background:${td.passColor(since[p], n)}`, title: `pass ${data.steps[since[p]]}` },
          piece,
        );
      }),
    );
  };
  const stop = () => {
    clearInterval(timer);
    timer = null;
    play.textContent = "▶ play";
  };
  play.addEventListener("click", () => {
    if (timer) return stop();
    if (Number(slider.value) >= n - 1) slider.value = 0;
    show(Number(slider.value));
    play.textContent = "❚❚ pause";
    timer = setInterval(() => {
      const next = Math.min(n - 1, Number(slider.value) + 1);
      slider.value = next;
      show(next);
      if (next === n - 1) stop();
    }, Math.min(600, Math.max(80, 4000 / n)));
  });
  slider.addEventListener("input", () => {
    stop();
    show(Number(slider.value));
  });
  el.replaceChildren(td.el("div", { class: "traj-controls row" }, play, slider, label), strip, td.passLegend(data));
  show(0);
};

td.onReady(() => {
  const source = document.querySelector("#trajectories");
  if (!source) return;
  const all = JSON.parse(source.textContent);
  for (const button of document.querySelectorAll("button.traj-toggle")) {
    button.addEventListener("click", () => {
      const id = button.dataset.sample;
      const row = document.querySelector(`tr.traj-row[data-sample="${id}"]`);
      const view = row.querySelector(".traj-view");
      if (!view.childElementCount) td.trajectoryViewer(view, all[id]);
      row.hidden = !row.hidden;
      button.setAttribute("aria-expanded", String(!row.hidden));
    });
  }
});
