// The workers page: refreshes workers and queues from the API; its URLs and poll interval
// come from data- attributes of #queues (the page holds no inline script: see web/security.py).
"use strict";

td.onReady(() => {
  const queues = document.querySelector("#queues");
  if (!queues) return;
  const urls = queues.dataset;
  const runUrl = (id) => urls.runUrl.replace(/0$/, String(id));
  const priorityUrl = (id) => urls.priorityUrl.replace("/0/", `/${id}/`);
  const badge = (state) => td.el("span", { class: `badge ${state}` }, state);
  const etaText = (eta, online) =>
    eta === null || eta === undefined ? (online ? "unknown" : "no worker online")
      : eta >= 1 ? `in ${td.duration(eta)}` : "now";

  const workerRow = (w) => {
    const state = td.el("td", { class: "state" }, badge(w.state));
    return td.el("tr", { "data-worker": w.name },
      td.el("td", {}, w.name), td.el("td", {}, w.host), td.el("td", {}, w.queues.join(", ")),
      td.el("td", { class: "clip" }, w.device || ""), state,
      td.el("td", { class: "num age" }, `${td.duration(w.heartbeat_age_s)} ago`),
      td.el("td", { class: "job" }, w.current_job_id ? `job ${w.current_job_id}` : ""));
  };

  const priorityForm = (j) => {
    const form = td.el("form", { method: "post", action: priorityUrl(j.id), class: "priority row" },
      td.el("input", { type: "hidden", name: "csrf_token", value: td.csrf() }),
      td.el("input", { type: "number", name: "priority", value: String(j.priority), min: "-1000",
        max: "1000", step: "1", "aria-label": `priority of job ${j.id}` }),
      td.el("button", { type: "submit", class: "secondary" }, "Set"));
    return form;
  };

  const jobRow = (j, online) => {
    const run = td.el("td");
    if (j.run_id) run.append(td.el("a", { href: runUrl(j.run_id) }, `run ${j.run_id}`));
    return td.el("tr", { "data-job": String(j.id) },
      td.el("td", { class: "num" }, j.position), td.el("td", {}, j.id), td.el("td", {}, j.kind), run,
      td.el("td", {}, priorityForm(j)), td.el("td", { class: "eta" }, etaText(j.eta_s, online)),
      td.el("td", {}, td.el("time", { datetime: j.created_at }, j.created_at.slice(0, 19).replace("T", " "))));
  };

  const queueSection = (q) => {
    const stats = td.el("p", { class: "stats" },
      td.el("span", { class: "depth" }, q.queued), " queued · ",
      td.el("span", { class: "running" }, q.running), " running · ",
      td.el("span", { class: "online" }, q.workers_online),
      q.workers_online === 1 ? " worker online" : " workers online");
    const section = td.el("section", { class: "card queue", "data-queue": q.name }, td.el("h3", {}, q.name), stats);
    if (q.note) section.append(td.el("p", { class: "note help" }, q.note));
    if (!q.jobs.length) {
      section.append(td.el("p", { class: "empty" }, "Nothing queued."));
      return section;
    }
    const head = td.el("tr", {}, ...["position", "job", "kind", "run", "priority", "ETA to start", "queued at"]
      .map((h, i) => td.el("th", i === 0 ? { class: "num" } : {}, h)));
    section.append(td.el("table", { class: "queued" }, td.el("thead", {}, head),
      td.el("tbody", {}, ...q.jobs.map((j) => jobRow(j, q.workers_online)))));
    return section;
  };

  td.poll(async () => {
    const data = await td.api(urls.api);
    const online = data.workers.filter((w) => w.state === "online").length;
    document.querySelector("#workers-summary").textContent = `${online} online of ${data.workers.length}`;
    const body = document.querySelector("#workers tbody");
    if (data.workers.length) body.replaceChildren(...data.workers.map(workerRow));
    else body.replaceChildren(td.el("tr", { class: "none" }, td.el("td", { colspan: "7", class: "empty" },
      "No worker has reported yet. Start one with: text-diffusion worker --queues cpu")));
    // Leave the queues alone while someone is typing a priority.
    if (!queues.contains(document.activeElement)) {
      queues.replaceChildren(...data.queues.map(queueSection));
    }
  }, Number(urls.pollMs));
});
