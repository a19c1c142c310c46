// Forms of the new-run and generate pages: the preset picker reloads the form, and the
// generate page counts the sample sets its grid will create as the user edits it (the
// server checks the same product with GenerateSpec(...).grid.size()) and hides the
// unmasking fields while an AR checkpoint is picked.
"use strict";

// Distinct entries of a comma/space separated list, as the server splits and dedupes them.
td.listCount = (text) => {
  const parts = text.split(/[,\s]+/).filter((x) => x !== "");
  return new Set(parts.map((x) => (Number.isNaN(Number(x)) ? x : Number(x)))).size;
};

// Number of prompts: non-blank lines, or one empty prompt when there are none.
td.promptCount = (text) => Math.max(1, text.split("\n").filter((l) => l.trim() !== "").length);

// The product of the grid's dimensions: checked boxes of a checkbox group, entries of a list.
// A hidden dimension (an unmasking one, on an AR checkpoint) is not part of the job.
td.gridSize = (form) => {
  let n = 1;
  for (const dim of form.querySelectorAll("[data-dim]")) {
    if (dim.hidden) continue;
    const boxes = dim.querySelectorAll("input[type=checkbox]");
    n *= boxes.length
      ? [...boxes].filter((b) => b.checked).length
      : td.listCount(dim.querySelector("input").value);
  }
  return n;
};

td.gridSummary = (form, out) => {
  const sets = td.gridSize(form);
  const prompts = td.promptCount(form.querySelector('[name="prompts"]').value);
  const samples = Number(form.querySelector('[name="num_samples"]').value) || 0;
  const maxGrid = Number(out.dataset.maxGrid);
  const maxSamples = Number(out.dataset.maxSamples);
  const plural = (k, word) => `${k} ${word}${k === 1 ? "" : "s"}`;
  let text = `This will create ${plural(sets, "sample set")} (${plural(prompts, "prompt")} × ${plural(samples, "sample")} each).`;
  const total = sets * prompts * samples;
  let over = false;
  if (sets > maxGrid) {
    text += ` Over the limit of ${maxGrid} combinations per job.`;
    over = true;
  } else if (total > maxSamples) {
    text += ` ${total} samples is over the limit of ${maxSamples} per job.`;
    over = true;
  }
  out.textContent = text;
  out.classList.toggle("error", over);
};

td.onReady(() => {
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  const out = document.querySelector("#grid-count");
  if (out) {
    const form = out.closest("form");
    // An AR checkpoint (the page lists them in data-ar-checkpoints) does not read the
    // fields marked data-diffusion-only: hide them, as the server ignores them.
    const arIds = JSON.parse(form.dataset.arCheckpoints || "[]").map(String);
    const picked = form.querySelector('[name="checkpoint"]');
    const showObjective = () => {
      const ar = arIds.includes(picked.value);
      for (const el of form.querySelectorAll("[data-diffusion-only]")) el.hidden = ar;
      document.getElementById("ar-grid-note").hidden = !ar;
    };
    if (picked) picked.addEventListener("change", showObjective);
    const update = () => td.gridSummary(form, out);
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    update();
  }
});
