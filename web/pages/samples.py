"""Sample sets: the list (filtered by run), and one set with its samples and trajectories.

    GET /sample-sets?run_id=3                   recent sets, newest first
    GET /sample-sets/<id>?sort=seed&order=desc  a set; samples sorted on the server

The set's page highlights the prompt at the start of each text and embeds every sample's
denoising trajectory as JSON (`|tojson`, so `<` arrives as `\\u003c`), which
static/trajectory.js replays pass by pass. Everything from the database is escaped.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, request

from shared.contracts.limits import MAX_ID
from shared.db import read_scope
from web import args
from web.errors import NotFound
from web.pages import bp
from web.queries.runs import get_run
from web.queries.samples import (
    QUALITY_KEYS,
    list_sample_sets,
    sample_set_detail,
    sample_set_runs,
)

# Set metrics shown in the list, in this order, when a set has them.
LIST_METRICS = (
    "forward_passes",
    "seconds_per_sample",
    "distinct_2",
    "entropy",
    "self_bleu",
    "repetition_rate",
    "mean_length",
    "seconds",
)
# Sampler settings named in a set's one-line summary, with their labels.
SUMMARY = (
    ("schedule", ""),
    ("sampling", ""),
    ("temperature", "T="),
    ("steps", "steps="),
    ("strategy", ""),
    ("seed", "seed "),
)
ORDERS = ("asc", "desc")


def settings_summary(settings: dict[str, Any] | None, objective: str = "diffusion") -> str:
    """'linear · topk k=50 · T=0.7 · steps=10 · entropy · seed 0'; an AR run's set:
    'AR, token by token · topk k=50 · T=0.7 · seed 0' (it has no unmasking settings)."""
    settings = settings or {}
    parts = ["AR, token by token"] if objective == "ar" else []
    for key, label in SUMMARY:
        if key in settings:
            part = f"{label}{settings[key]}"
            if key == "sampling" and settings[key] == "topk" and "top_k" in settings:
                part += f" k={settings['top_k']}"
            if key == "sampling" and settings[key] == "nucleus" and "top_p" in settings:
                part += f" p={settings['top_p']}"
            parts.append(part)
    return " · ".join(parts)


def split_prefix(text: str, prompt: str) -> tuple[str, str]:
    """(the prompt part at the start of `text`, the rest). Tokenizers may add or drop a
    leading space when decoding, so a prompt that matches after leading whitespace counts."""
    if not prompt:
        return "", text
    if text.startswith(prompt):
        return prompt, text[len(prompt) :]
    body, core = text.lstrip(), prompt.strip()
    if core and body.startswith(core):
        cut = len(text) - len(body) + len(core)
        return text[:cut], text[cut:]
    return "", text


def viewer_data(trajectory: dict[str, Any]) -> dict[str, Any]:
    """A stored trajectory as the viewer replays it: per pass, only the positions that
    changed ([position, piece or None]). A sample's passes repeat most tokens, so this is a
    fraction of the stored form; `given` and `committed_at` are passed on unchanged."""
    steps = [st for st in trajectory.get("steps") or [] if isinstance(st, dict)]
    n = max((len(st.get("tokens") or []) for st in steps), default=0)
    before: list[str | None] = [None] * n
    changes = []
    for st in steps:
        tokens = list(st.get("tokens") or [])
        tokens += [None] * (n - len(tokens))
        changes.append(
            [[p, t] for p, (a, t) in enumerate(zip(before, tokens, strict=True)) if a != t]
        )
        before = tokens
    return {
        "length": n,
        "steps": [st.get("step", i) for i, st in enumerate(steps)],
        "changes": changes,
        "given": list(trajectory.get("given") or []),
        "committed_at": list(trajectory.get("committed_at") or []),
    }


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def sort_samples(rows: list[dict[str, Any]], key: str, desc: bool) -> list[dict[str, Any]]:
    """Rows sorted on `key` (position, seed, length, or a metric), missing values last."""

    def value(row: dict[str, Any]) -> Any:
        if key in ("position", "seed"):
            return row[key]
        if key == "length":
            return len(row["text"])
        return row["metrics"].get(key)

    present = [r for r in rows if value(r) is not None]
    missing = [r for r in rows if value(r) is None]
    return sorted(present, key=value, reverse=desc) + missing


@bp.get("/sample-sets")
def sample_sets():
    run_id = args.id_arg(request.args, "run_id")
    checkpoint_id = args.id_arg(request.args, "checkpoint_id")
    with read_scope() as s:
        sets = list_sample_sets(s, run_id=run_id, checkpoint_id=checkpoint_id)
        runs = sample_set_runs(s)
    metrics = [m for m in LIST_METRICS if any(m in x["metrics"] for x in sets)]
    return render_template(
        "sample_sets.html",
        sets=sets,
        runs=runs,
        run_names={r["id"]: r["name"] for r in runs},
        run_id=run_id,
        checkpoint_id=checkpoint_id,
        metrics=metrics,
        summary=settings_summary,
    )


@bp.get("/sample-sets/<int:set_id>")
def sample_set(set_id: int):
    if set_id > MAX_ID:
        raise NotFound(f"no sample set with id {set_id}")
    with read_scope() as s:
        detail = sample_set_detail(s, set_id)
        run_name = get_run(s, detail["run_id"]).name
    rows = []
    for x in detail["samples"]:
        prefix, rest = split_prefix(x["text"], x["prompt"])
        rows.append({**x, "prefix": prefix, "rest": rest, "metrics": _numeric(x["metrics"])})
    metric_keys = sorted({k for r in rows for k in r["metrics"]})
    sorts = ("position", "seed", "length", *metric_keys)
    sort, order, error = request.args.get("sort") or "position", request.args.get("order"), None
    if sort not in sorts:
        error = f"sort: choose one of {', '.join(sorts)}"
        sort = "position"
    if order not in ORDERS:
        order = "asc"
    rows = sort_samples(rows, sort, order == "desc")
    trajectories = {
        str(x["id"]): viewer_data(x["trajectory"])
        for x in detail["samples"]
        if isinstance(x["trajectory"], dict)
    }
    return render_template(
        "sample_set.html",
        ss=detail,
        run_name=run_name,
        rows=rows,
        metric_keys=metric_keys,
        quality_keys=QUALITY_KEYS,
        sort=sort,
        order=order,
        error=error,
        trajectories=trajectories,
        summary=settings_summary,
    )
