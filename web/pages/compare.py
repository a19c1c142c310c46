"""Compare 2 to 8 runs: overlaid per-mask-ratio curves, loss-vs-ratio curves, bounds and
sample metrics, a settings diff, and samples of the same prompt and seed side by side.

    /compare?runs=1,2,3                      (also ?runs=1&runs=2: the picker's plain form)
    /compare?runs=1,2&x=tokens&smooth=0.6&ratio=0.5,1

One request: the view renders `web.queries.compare` and embeds what the charts need as JSON in
the page; static/compare.js draws it and keeps the chart state (x axis, smoothing, ratios)
in the URL, so a link shows the same picture. Without `runs` the page is a picker over the
recent runs; a bad list is answered 400 with the reason, and the picker again.
"""

from __future__ import annotations

import math
from typing import Any

from flask import render_template, request

from shared.db import read_scope
from web import args
from web.errors import QueryError
from web.pages import bp
from web.queries.compare import compare as compare_runs
from web.queries.runs import RunQuery, list_runs
from web.queries.samples import QUALITY_KEYS

PICKER_RUNS = 50
# Decimals kept of the losses sent to the charts: far below what a chart can show, and it
# keeps 8 runs x 300 steps x 10 ratios to a few hundred kilobytes.
DECIMALS = 5


def _rounded(values: list[float | None]) -> list[float | None]:
    return [None if v is None else round(v, DECIMALS) for v in values]


def chart_data(data: dict[str, Any]) -> dict[str, Any]:
    """What the page's script draws, from `web.queries.compare`: each run's evaluation curves
    (loss per ratio, bound, and the x axes step / tokens / wall time). The training loss,
    accuracies and samples are left out: the page shows them as HTML, or not at all."""
    curves = {}
    for run_id, c in data["curves"].items():
        ev = c["eval"]
        curves[run_id] = {
            "ratios": c["ratios"],
            "eval": {
                "steps": ev["steps"],
                "tokens": ev["tokens"],
                "elapsed": ev["elapsed"],
                "bound": _rounded(ev["bound"]),
                "loss": {k: _rounded(v) for k, v in ev["loss"].items()},
            },
        }
    runs = [
        {"id": r["id"], "name": r["name"], "status": r["status"], "objective": r["objective"]}
        for r in data["runs"]
    ]
    return {"runs": runs, "curves": curves}


def bounds(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each run's bound: the final one it recorded, else the last complete evaluation's."""
    out = []
    for r in data["runs"]:
        ev = data["curves"][str(r["id"])]["eval"]
        nats, step, final = r["nll_bound"], r["step"], True
        if nats is None:
            last = [(b, s) for b, s in zip(ev["bound"], ev["steps"], strict=True) if b is not None]
            nats, step = last[-1] if last else (None, None)
            final = False
        ppl = None if nats is None else (math.exp(nats) if nats < 700 else math.inf)
        out.append({"run": r, "nats": nats, "ppl": ppl, "step": step, "final": final})
    return out


def _recent(s) -> list[dict[str, Any]]:
    return list_runs(s, RunQuery(per_page=PICKER_RUNS))["items"]


@bp.get("/compare")
def compare():
    raw = ",".join(request.args.getlist("runs"))
    if not raw.strip(" ,"):
        with read_scope() as s:
            return render_template("compare.html", data=None, recent=_recent(s), error=None)
    try:
        ids = args.run_ids(raw)
    except QueryError as exc:
        picked = {int(p) for p in raw.replace(" ", ",").split(",") if p.isascii() and p.isdigit()}
        with read_scope() as s:
            page = render_template(
                "compare.html", data=None, recent=_recent(s), error=str(exc), picked=picked
            )
        return page, 400
    with read_scope() as s:
        data = compare_runs(s, ids)
    metric_names = sorted(
        {k for m in data["sample_metrics"].values() if m for k in m}
        - {"sample_set_id", "settings"}
        - QUALITY_KEYS
    )
    return render_template(
        "compare.html",
        data=data,
        chart=chart_data(data),
        bounds=bounds(data),
        metric_names=metric_names,
        judged=any(m and "unigram_entropy" in m for m in data["sample_metrics"].values()),
        error=None,
    )
