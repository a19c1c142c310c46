"""The runs table: filter, sort and page runs; a run's row with its progress and ETA."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, literal_column, select
from sqlalchemy.orm import Session

from shared.models import Job, JobKind, JobStatus, Run, utcnow
from web.errors import NotFound
from web.queries.common import flat, iso
from web.queries.references import runs_matched

PER_PAGE = 50
MAX_PER_PAGE = 200
# How the runs table sorts: name -> the column (the API's `sort` values, and OpenAPI's).
SORT_KEYS = {
    "created": Run.created_at,
    "name": Run.name,
    "status": Run.status,
    "step": Run.step,
    "bound": Run.summary["ppl_bound"].as_float(),
    "id": Run.id,
}
RUN_SORTS = tuple(SORT_KEYS)
# The sorts whose column can be NULL (no bound before a run's first evaluation) put NULLs
# last. Only those: on a NOT NULL column NULLS LAST changes nothing but the plan, and
# PostgreSQL then cannot read ix_runs_created_at backwards (a descending index scan gives
# NULLS FIRST), so page 1 of 20,000 runs sorted them all (11 ms) instead of reading 50.
NULLABLE_SORTS = frozenset({"bound"})
# Shown in the runs table and compared first: what tells runs apart at a glance.
KEY_SETTINGS = ("model", "dataset", "seq_len", "batch_size", "lr", "max_steps", "masking.mode")


@dataclass(frozen=True)
class RunQuery:
    """Which runs, in which order (`web.args.run_query` reads one from a query string)."""

    status: str | None = None
    preset: str | None = None
    tag: str | None = None
    q: str | None = None  # substring of the name
    sort: str = "created"
    desc: bool = True
    page: int = 1
    per_page: int = PER_PAGE


def get_run(s: Session, run_id: int) -> Run:
    run = s.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run with id {run_id}")
    return run


def _has_tag(s: Session, tag: str):
    if s.get_bind().dialect.name == "postgresql":
        return Run.tags.contains([tag])  # JSONB @>
    each = func.json_each(Run.tags).table_valued("value")
    return exists(select(literal_column("1")).select_from(each).where(each.c.value == tag))


def list_runs(s: Session, rq: RunQuery) -> dict[str, Any]:
    where = []
    if rq.status:
        where.append(Run.status == rq.status)
    if rq.preset:
        where.append(Run.preset == rq.preset)
    if rq.tag:
        where.append(_has_tag(s, rq.tag))
    if rq.q:
        pattern = "%" + rq.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(Run.name.ilike(pattern, escape="\\"))
    total = s.scalar(select(func.count(Run.id)).where(*where)) or 0
    key = SORT_KEYS[rq.sort].desc() if rq.desc else SORT_KEYS[rq.sort].asc()
    order = [key.nulls_last() if rq.sort in NULLABLE_SORTS else key, Run.id.desc()]
    runs = s.scalars(
        select(Run)
        .where(*where)
        .order_by(*order)
        .offset((rq.page - 1) * rq.per_page)
        .limit(rq.per_page)
    ).all()
    jobs = train_jobs(s, [r.id for r in runs])
    pages = max(1, -(-total // rq.per_page))
    matched = runs_matched(s, [r.id for r in runs])
    return {
        "items": [run_row(r, jobs.get(r.id)) | {"matched": matched.get(r.id)} for r in runs],
        "total": total,
        "page": rq.page,
        "pages": pages,
        "per_page": rq.per_page,
    }


def train_jobs(s: Session, run_ids: list[int]) -> dict[int, Job]:
    """The newest training job of each run."""
    if not run_ids:
        return {}
    newest = (
        select(func.max(Job.id))
        .where(Job.run_id.in_(run_ids), Job.kind == JobKind.TRAIN)
        .group_by(Job.run_id)
    )
    return {j.run_id: j for j in s.scalars(select(Job).where(Job.id.in_(newest)))}


def _progress(run: Run, job: Job | None) -> tuple[float, float | None]:
    """(fraction done, seconds left or None).

    The rate is measured from when the training loop began (`train_started_at` and
    `train_start_step` in the run's summary, written by the worker once the model and data
    are loaded), so loading time does not inflate it, and the estimate holds steady as the
    run goes. None when the run is not training, has no step done in this attempt yet, or
    is finished (a done run has no time left to show).
    """
    if run.status == JobStatus.SUCCEEDED:
        return 1.0, None
    progress = job.progress if job is not None else 0.0
    if not progress and run.max_steps:
        progress = min(1.0, run.step / run.max_steps)
    summary = run.summary or {}
    began = summary.get("train_started_at")
    if run.status != JobStatus.RUNNING or not run.max_steps or not isinstance(began, str):
        return progress, None
    began_at = datetime.fromisoformat(began)
    if job is not None and job.started_at is not None and began_at < job.started_at:
        return progress, None  # a new attempt is still loading: the mark is the last one's
    done = run.step - int(summary.get("train_start_step") or 0)
    if done <= 0:
        return progress, None
    elapsed = (utcnow() - began_at).total_seconds()
    return progress, max(0.0, elapsed * (run.max_steps - run.step) / done)


def run_row(run: Run, job: Job | None) -> dict[str, Any]:
    progress, eta = _progress(run, job)
    settings = flat(run.spec)
    summary = run.summary or {}
    return {
        "id": run.id,
        "name": run.name,
        "status": str(run.status),
        "preset": run.preset,
        "tags": list(run.tags or []),
        "step": run.step,
        "max_steps": run.max_steps,
        "tokens_seen": run.tokens_seen,
        "progress": round(progress, 4),
        "eta_s": None if eta is None else round(eta, 1),
        "ppl_bound": summary.get("ppl_bound"),
        "nll_bound": summary.get("nll_bound"),
        # No evaluation yet: the page says so instead of an empty "bound ≤".
        "ppl_pending": summary.get("ppl_bound") is None,
        # diffusion: ppl_bound is the ELBO bound; ar: the exact perplexity, same tokens.
        "objective": (run.spec or {}).get("objective", "diffusion"),
        "settings": {k: settings.get(k) for k in KEY_SETTINGS},
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "job_id": job.id if job is not None else None,
        "queue": job.queue if job is not None else None,
        "error": job.error if job is not None and job.status == JobStatus.FAILED else None,
    }


def filter_options(s: Session) -> dict[str, list[str]]:
    """Values the runs page offers in its filters."""
    presets = sorted(p for p in s.scalars(select(Run.preset).distinct()) if p)
    return {"statuses": [x.value for x in JobStatus], "presets": presets}
