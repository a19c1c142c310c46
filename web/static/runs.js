// The runs page: pick runs to compare, keep live rows fresh. URLs come from data- attributes
// of the compare button (the page holds no inline script: see web/security.py).
"use strict";

td.onReady(() => {
  const button = document.querySelector("#compare-selected");
  if (!button) return;
  td.pickForCompare("#runs", "#compare-selected", button.dataset.compareUrl);
  td.liveRuns("#runs", `${button.dataset.api}?${new URLSearchParams(location.search)}`);
});
