"""What the dashboard reads, as plain JSON-ready dicts: pages and API share these.

Every function takes an open session and returns dicts and lists only, so a page renders
them and the API returns them unchanged. Long series are downsampled here, in SQL where
it matters, never in the browser: a chart never receives more than `MAX_POINTS` points
per curve, whatever the run's length.
"""

from __future__ import annotations

import difflib
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, literal_column, or_, select
from sqlalchemy.orm import Session

from shared.contracts.bound import quadrature_weights
from shared.models import (
    Checkpoint,
    EvalPoint,
    Job,
    JobKind,
    JobStatus,
    LossPoint,
    Run,
    Sample,
    SampleSet,
    Worker,
    WorkerState,
    utcnow,
)
from shared.workers import display_state

MAX_POINTS = 300  # per curve sent to a chart
PER_PAGE = 50
MAX_PER_PAGE = 200
MAX_COMPARE = 8
RUN_SORTS = ("created", "name", "status", "step", "bound", "id")
# Shown in the runs table and compared first: what tells runs apart at a glance.
KEY_SETTINGS = ("model", "dataset", "seq_len", "batch_size", "lr", "max_steps", "masking.mode")


class QueryError(ValueError):
    """A bad query parameter: `field` names it (the API answers 400 with it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(LookupError):
    """No object with that id (the API answers 404)."""


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _flat(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"masking": {"mode": "grid"}} -> {"masking.mode": "grid"}."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunQuery:
    status: str | None = None
    preset: str | None = None
    tag: str | None = None
    q: str | None = None  # substring of the name
    sort: str = "created"
    desc: bool = True
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def from_args(cls, args: Any) -> RunQuery:
        """From request args; `QueryError` names a bad one."""
        status = args.get("status") or None
        if status is not None and status not in {s.value for s in JobStatus}:
            raise QueryError("status", f"unknown status {status!r}")
        sort = args.get("sort") or "created"
        if sort not in RUN_SORTS:
            raise QueryError("sort", f"choose one of {', '.join(RUN_SORTS)}")
        order = args.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise QueryError("order", "choose asc or desc")
        page = int_arg(args, "page", 1, 1, 10**6)
        per_page = int_arg(args, "per_page", PER_PAGE, 1, MAX_PER_PAGE)
        q = (args.get("q") or "").strip() or None
        if q is not None and len(q) > 200:
            raise QueryError("q", "at most 200 characters")
        return cls(
            status=status,
            preset=args.get("preset") or None,
            tag=args.get("tag") or None,
            q=q,
            sort=sort,
            desc=order == "desc",
            page=page,
            per_page=per_page,
        )


def int_arg(args: Any, name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise QueryError(name, f"expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise QueryError(name, f"must be between {low} and {high}")
    return value


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
    key = {
        "created": Run.created_at,
        "name": Run.name,
        "status": Run.status,
        "step": Run.step,
        "bound": Run.summary["ppl_bound"].as_float(),
        "id": Run.id,
    }[rq.sort]
    order = [key.desc().nulls_last() if rq.desc else key.asc().nulls_last(), Run.id.desc()]
    runs = s.scalars(
        select(Run)
        .where(*where)
        .order_by(*order)
        .offset((rq.page - 1) * rq.per_page)
        .limit(rq.per_page)
    ).all()
    jobs = _train_jobs(s, [r.id for r in runs])
    pages = max(1, -(-total // rq.per_page))
    return {
        "items": [run_row(r, jobs.get(r.id)) for r in runs],
        "total": total,
        "page": rq.page,
        "pages": pages,
        "per_page": rq.per_page,
    }


def _train_jobs(s: Session, run_ids: list[int]) -> dict[int, Job]:
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
    """(fraction done, seconds left or None) from the job's progress and its elapsed time."""
    if run.status == JobStatus.SUCCEEDED:
        return 1.0, 0.0
    progress = job.progress if job is not None else 0.0
    if not progress and run.max_steps:
        progress = min(1.0, run.step / run.max_steps)
    eta = None
    started = job.started_at if job is not None else run.started_at
    if run.status == JobStatus.RUNNING and started is not None and 0.0 < progress < 1.0:
        elapsed = (utcnow() - started).total_seconds()
        eta = max(0.0, elapsed * (1.0 - progress) / progress)
    return progress, eta


def run_row(run: Run, job: Job | None) -> dict[str, Any]:
    progress, eta = _progress(run, job)
    flat = _flat(run.spec or {})
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
        "settings": {k: flat.get(k) for k in KEY_SETTINGS},
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "job_id": job.id if job is not None else None,
        "queue": job.queue if job is not None else None,
        "error": job.error if job is not None and job.status == JobStatus.FAILED else None,
    }


def flat_settings(spec: dict[str, Any] | None) -> dict[str, Any]:
    """A spec as dotted field -> value, in the spec's own order (the run page's table)."""
    return _flat(spec or {})


def train_job_id(s: Session, run_id: int) -> int | None:
    """The id of the run's newest training job (None if it has none); `NotFound` if no run."""
    get_run(s, run_id)
    job = _train_jobs(s, [run_id]).get(run_id)
    return job.id if job is not None else None


def get_run(s: Session, run_id: int) -> Run:
    run = s.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run with id {run_id}")
    return run


def run_detail(s: Session, run_id: int) -> dict[str, Any]:
    run = get_run(s, run_id)
    jobs = s.scalars(select(Job).where(Job.run_id == run_id).order_by(Job.id)).all()
    train = [j for j in jobs if j.kind == JobKind.TRAIN]
    return {
        **run_row(run, train[-1] if train else None),
        "spec": run.spec,
        "summary": run.summary or {},
        "checkpoints": [checkpoint_row(c) for c in run.checkpoints],
        "jobs": [job_row(j) for j in jobs],
        "sample_sets": list_sample_sets(s, run_id=run_id),
    }


def checkpoint_row(c: Checkpoint) -> dict[str, Any]:
    return {
        "id": c.id,
        "run_id": c.run_id,
        "step": c.step,
        "url": c.url,
        "metrics": c.metrics or {},
        "created_at": _iso(c.created_at),
    }


def list_checkpoints(s: Session, run_id: int | None = None, limit: int = 500) -> list[dict]:
    q = (
        select(Checkpoint, Run.name)
        .join(Run, Run.id == Checkpoint.run_id)
        .order_by(Checkpoint.id.desc())
        .limit(limit)
    )
    if run_id is not None:
        q = q.where(Checkpoint.run_id == run_id)
    return [{**checkpoint_row(c), "run_name": name} for c, name in s.execute(q)]


# ----------------------------------------------------------------------------- curves


def _pick(values: list[int], n: int) -> list[int]:
    """At most n of `values` (sorted), evenly spaced, first and last always kept."""
    if len(values) <= n:
        return values
    idx = {round(i * (len(values) - 1) / (n - 1)) for i in range(n)}
    return [values[i] for i in sorted(idx)]


def run_curves(
    s: Session, run_id: int, max_points: int = MAX_POINTS, *, with_train: bool = True
) -> dict[str, Any]:
    """Per-mask-ratio evaluation curves, the bound per step, and the training loss.

    eval: steps (<= max_points, evenly picked), and per ratio the loss and accuracy at
    those steps (None where missing); bound: nats per token at each step whose grid is
    complete. train: the loss averaged over <= max_points buckets of steps (left out,
    and not computed, with `with_train=False`: the compare page draws no training loss).
    """
    get_run(s, run_id)
    steps = list(
        s.scalars(
            select(EvalPoint.step).where(EvalPoint.run_id == run_id).distinct().order_by("step")
        )
    )
    picked = _pick(steps, max_points)
    # Core rows, not ORM ones: these are thousands of plain tuples per run. All of the
    # run's rows by its index prefix, filtered here: cheaper than binding hundreds of
    # picked steps into an IN list.
    rows = s.connection().execute(
        select(EvalPoint.step, EvalPoint.ratio, EvalPoint.loss, EvalPoint.accuracy).where(
            EvalPoint.run_id == run_id
        )
    )
    if len(picked) < len(steps):
        keep = set(picked)
        rows = [r for r in rows if r[0] in keep]
    else:
        rows = rows.all()
    steps = picked
    # Up to max_points x ratios rows per run, and the compare page asks for 8 runs: plain
    # tuples and one set of quadrature weights keep this loop to a few ms per run.
    ratios = sorted({ratio for _, ratio, _, _ in rows})
    at = {s_: i for i, s_ in enumerate(steps)}
    loss: dict[float, list[float | None]] = {r: [None] * len(steps) for r in ratios}
    acc: dict[float, list[float | None]] = {r: [None] * len(steps) for r in ratios}
    for step, ratio, value, accuracy in rows:
        loss[ratio][at[step]] = value
        acc[ratio][at[step]] = accuracy
    weights = quadrature_weights(ratios) if ratios else []
    columns = [loss[r] for r in ratios]
    bound: list[float | None] = []
    for values in zip(*columns, strict=True):
        complete = None not in values and all(map(math.isfinite, values))
        # shared.contracts.bound.elbo_bound's nats per token, with the weights computed once
        bound.append(sum(w * v for w, v in zip(weights, values, strict=True)) if complete else None)
    return {
        "ratios": ratios,
        "eval": {
            "steps": steps,
            "loss": {f"{r:g}": loss[r] for r in ratios},
            "accuracy": {f"{r:g}": acc[r] for r in ratios},
            "bound": bound,
            **_x_axes(s, run_id, steps),
        },
        **({"train": _train_curve(s, run_id, max_points)} if with_train else {}),
    }


def _x_axes(s: Session, run_id: int, steps: list[int]) -> dict[str, list]:
    """tokens seen and wall time at each evaluation step, from the loss points there."""
    if not steps:
        return {"tokens": [], "elapsed": []}
    rows = (
        s.connection()
        .execute(
            select(LossPoint.step, LossPoint.tokens_seen, LossPoint.elapsed_s).where(
                LossPoint.run_id == run_id, LossPoint.step.in_(steps)
            )
        )
        .all()
    )
    logged = {r.step: r for r in rows}
    return {
        "tokens": [logged[x].tokens_seen if x in logged else None for x in steps],
        "elapsed": [logged[x].elapsed_s if x in logged else None for x in steps],
    }


def _train_curve(s: Session, run_id: int, max_points: int) -> dict[str, list]:
    last = s.scalar(select(func.max(LossPoint.step)).where(LossPoint.run_id == run_id))
    if last is None:
        return {"step": [], "loss": [], "tokens": [], "elapsed": []}
    bucket = max(1, -(-(last + 1) // max_points))
    group = LossPoint.step // bucket
    rows = (
        s.connection()
        .execute(
            select(
                func.max(LossPoint.step),
                func.avg(LossPoint.loss),
                func.max(LossPoint.tokens_seen),
                func.max(LossPoint.elapsed_s),
            )
            .where(LossPoint.run_id == run_id)
            .group_by(group)
            .order_by(group)
        )
        .all()
    )
    return {
        "step": [r[0] for r in rows],
        "loss": [float(r[1]) for r in rows],
        "tokens": [r[2] for r in rows],
        "elapsed": [r[3] for r in rows],
    }


# ----------------------------------------------------------------------------- compare


def parse_run_ids(text: str | None) -> list[int]:
    ids: list[int] = []
    for part in (text or "").replace(" ", ",").split(","):
        if not part:
            continue
        if not (part.isascii() and part.isdigit()) or int(part) > 2**31 - 1:
            raise QueryError("runs", f"expected run ids separated by commas, got {part!r}")
        if int(part) not in ids:
            ids.append(int(part))
    if not 2 <= len(ids) <= MAX_COMPARE:
        raise QueryError("runs", f"pick 2 to {MAX_COMPARE} runs, got {len(ids)}")
    return ids


def compare(s: Session, run_ids: list[int], max_points: int = MAX_POINTS) -> dict[str, Any]:
    runs = [get_run(s, i) for i in run_ids]
    jobs = _train_jobs(s, run_ids)
    flats = [_flat(r.spec or {}) for r in runs]
    fields = sorted(set().union(*flats))
    settings = [
        {
            "field": f,
            "values": [fl.get(f) for fl in flats],
            "same": all(fl.get(f) == flats[0].get(f) for fl in flats),
        }
        for f in fields
    ]
    return {
        "runs": [run_row(r, jobs.get(r.id)) for r in runs],
        "curves": {str(r.id): run_curves(s, r.id, max_points, with_train=False) for r in runs},
        "settings": settings,
        "sample_metrics": {str(r.id): _latest_sample_metrics(s, r.id) for r in runs},
        "samples": _paired_samples(s, run_ids),
    }


def _latest_sample_metrics(s: Session, run_id: int) -> dict[str, Any] | None:
    row = s.execute(
        select(SampleSet.id, SampleSet.metrics, SampleSet.settings)
        .join(Checkpoint, Checkpoint.id == SampleSet.checkpoint_id)
        .where(Checkpoint.run_id == run_id)
        .order_by(SampleSet.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return {"sample_set_id": row.id, "settings": row.settings, **(row.metrics or {})}


def _settings_key(settings: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in settings.items() if k != "seed"))


def _paired_samples(s: Session, run_ids: list[int], limit: int = 12) -> list[dict[str, Any]]:
    """Samples with the same prompt, seed and sampler settings from every run, side by side,
    each with a word-level diff against the first run's text."""
    rows = s.execute(
        select(Checkpoint.run_id, Sample.prompt, Sample.seed, Sample.text, SampleSet.settings)
        .join(SampleSet, SampleSet.id == Sample.sample_set_id)
        .join(Checkpoint, Checkpoint.id == SampleSet.checkpoint_id)
        .where(Checkpoint.run_id.in_(run_ids))
        .order_by(Sample.id.desc())
        .limit(5000)
    ).all()
    by_key: dict[tuple, dict[int, str]] = defaultdict(dict)
    raw: dict[tuple, dict[str, Any]] = {}  # the settings as stored, for display
    for r in rows:
        key = (r.prompt, r.seed, _settings_key(r.settings or {}))
        by_key[key].setdefault(r.run_id, r.text)  # newest wins
        raw.setdefault(key, {k: v for k, v in (r.settings or {}).items() if k != "seed"})
    out = []
    for key, texts in by_key.items():
        prompt, seed, _ = key
        if len(texts) < 2:
            continue
        base = texts.get(run_ids[0], next(iter(texts.values())))
        out.append(
            {
                "prompt": prompt,
                "seed": seed,
                "settings": raw[key],
                "texts": {
                    str(i): {"text": texts.get(i), "diff": word_diff(base, texts[i])}
                    if i in texts
                    else None
                    for i in run_ids
                },
            }
        )
        if len(out) >= limit:
            break
    return out


def word_diff(a: str, b: str) -> list[dict[str, str]]:
    """b against a, word by word: [{"op": "equal" | "insert" | "delete", "text": ...}]."""
    wa, wb = a.split(), b.split()
    out: list[dict[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes():
        if op == "equal":
            out.append({"op": "equal", "text": " ".join(wa[i1:i2])})
            continue
        if i2 > i1:
            out.append({"op": "delete", "text": " ".join(wa[i1:i2])})
        if j2 > j1:
            out.append({"op": "insert", "text": " ".join(wb[j1:j2])})
    return out


# ----------------------------------------------------------------------------- samples


def list_sample_sets(
    s: Session, *, run_id: int | None = None, checkpoint_id: int | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    q = (
        select(SampleSet, Checkpoint.run_id, Checkpoint.step, func.count(Sample.id))
        .join(Checkpoint, Checkpoint.id == SampleSet.checkpoint_id)
        .outerjoin(Sample, Sample.sample_set_id == SampleSet.id)
        .group_by(SampleSet.id, Checkpoint.run_id, Checkpoint.step)
        .order_by(SampleSet.id.desc())
        .limit(limit)
    )
    if run_id is not None:
        q = q.where(Checkpoint.run_id == run_id)
    if checkpoint_id is not None:
        q = q.where(SampleSet.checkpoint_id == checkpoint_id)
    return [
        {
            "id": ss.id,
            "job_id": ss.job_id,
            "checkpoint_id": ss.checkpoint_id,
            "run_id": run,
            "step": step,
            "combination": ss.combination,
            "settings": ss.settings,
            "metrics": ss.metrics or {},
            "samples": n,
            "created_at": _iso(ss.created_at),
        }
        for ss, run, step, n in s.execute(q)
    ]


def sample_set_runs(s: Session) -> list[dict[str, Any]]:
    """Runs that have sample sets, newest first: [{"id", "name"}] (the samples page's filter)."""
    q = (
        select(Run.id, Run.name)
        .where(
            exists(
                select(literal_column("1"))
                .select_from(SampleSet)
                .join(Checkpoint, Checkpoint.id == SampleSet.checkpoint_id)
                .where(Checkpoint.run_id == Run.id)
            )
        )
        .order_by(Run.id.desc())
    )
    return [{"id": i, "name": name} for i, name in s.execute(q)]


def sample_set_detail(s: Session, set_id: int) -> dict[str, Any]:
    ss = s.get(SampleSet, set_id)
    if ss is None:
        raise NotFound(f"no sample set with id {set_id}")
    ckpt = ss.checkpoint
    return {
        "id": ss.id,
        "job_id": ss.job_id,
        "checkpoint_id": ss.checkpoint_id,
        "run_id": ckpt.run_id,
        "step": ckpt.step,
        "combination": ss.combination,
        "settings": ss.settings,
        "metrics": ss.metrics or {},
        "created_at": _iso(ss.created_at),
        "samples": [
            {
                "id": x.id,
                "position": x.position,
                "prompt": x.prompt,
                "text": x.text,
                "seed": x.seed,
                "metrics": x.metrics or {},
                "trajectory": x.trajectory,
            }
            for x in ss.samples
        ],
    }


# ----------------------------------------------------------------------------- jobs


def job_row(j: Job) -> dict[str, Any]:
    return {
        "id": j.id,
        "kind": str(j.kind),
        "status": str(j.status),
        "run_id": j.run_id,
        "queue": j.queue,
        "priority": j.priority,
        "attempts": j.attempts,
        "max_attempts": j.max_attempts,
        "progress": j.progress,
        "worker": j.worker,
        "cancel_requested": j.cancel_requested,
        "error": j.error,
        "result": j.result,
        "created_at": _iso(j.created_at),
        "started_at": _iso(j.started_at),
        "finished_at": _iso(j.finished_at),
        "heartbeat_at": _iso(j.heartbeat_at),
    }


def list_jobs(
    s: Session, *, status: str | None = None, kind: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    if status is not None and status not in {x.value for x in JobStatus}:
        raise QueryError("status", f"unknown status {status!r}")
    if kind is not None and kind not in {x.value for x in JobKind}:
        raise QueryError("kind", f"unknown kind {kind!r}")
    q = select(Job).order_by(Job.id.desc()).limit(limit)
    if status:
        q = q.where(Job.status == status)
    if kind:
        q = q.where(Job.kind == kind)
    return [job_row(j) for j in s.scalars(q)]


def get_job_row(s: Session, job_id: int, *, with_spec: bool = False) -> dict[str, Any]:
    job = s.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return {**job_row(job), "spec": job.spec} if with_spec else job_row(job)


# ----------------------------------------------------------------------------- workers


def _runtime_estimates(s: Session) -> dict[str, float]:
    """Median seconds of the last 50 finished jobs of each kind."""
    out: dict[str, float] = {}
    for kind in JobKind:
        rows = s.execute(
            select(Job.started_at, Job.finished_at)
            .where(
                Job.kind == kind,
                Job.status == JobStatus.SUCCEEDED,
                Job.started_at.is_not(None),
                Job.finished_at.is_not(None),
            )
            .order_by(Job.id.desc())
            .limit(50)
        ).all()
        durations = [(f - st).total_seconds() for st, f in rows]
        if durations:
            out[str(kind)] = statistics.median(durations)
    return out


def workers_and_queues(s: Session) -> dict[str, Any]:
    """Workers with their state, and each queue's running and queued jobs.

    A queued job's ETA is when a worker of its queue should be free to start it: the
    remaining time of the running jobs plus the jobs ahead of it, each estimated by the
    median runtime of its kind, shared over the queue's online workers.
    """
    now = utcnow()
    workers = s.scalars(select(Worker).order_by(Worker.name)).all()
    estimates = _runtime_estimates(s)
    # "lost" (no heartbeat), "drained" and "draining" workers take no jobs: not online.
    states = {w.name: display_state(w, now) for w in workers}
    worker_rows = []
    for w in workers:
        age = (now - w.last_heartbeat).total_seconds()
        worker_rows.append(
            {
                "name": w.name,
                "host": w.host,
                "queues": list(w.queues or []),
                "device": w.device,
                "state": states[w.name],
                "last_heartbeat": _iso(w.last_heartbeat),
                "heartbeat_age_s": round(age, 1),
                "current_job_id": w.current_job_id,
            }
        )
    owed = s.scalars(
        select(Job)
        .where(or_(Job.status == JobStatus.QUEUED, Job.status == JobStatus.RUNNING))
        .order_by(Job.priority.desc(), Job.id)
    ).all()
    queues = []
    for name in sorted({j.queue for j in owed} | {"cpu", "gpu"}):
        online = sum(
            1 for w in workers if name in (w.queues or []) and states[w.name] == WorkerState.ONLINE
        )
        running = [j for j in owed if j.queue == name and j.status == JobStatus.RUNNING]
        queued = [j for j in owed if j.queue == name and j.status == JobStatus.QUEUED]
        busy = 0.0
        for j in running:
            est = estimates.get(str(j.kind))
            if est is not None and j.started_at is not None:
                busy += max(0.0, est - (now - j.started_at).total_seconds())
        rows = []
        for pos, j in enumerate(queued, start=1):
            eta = None
            if online and all(str(x.kind) in estimates for x in queued[: pos - 1]):
                ahead = sum(estimates[str(x.kind)] for x in queued[: pos - 1])
                eta = round((busy + ahead) / online, 1)
            rows.append({**job_row(j), "position": pos, "eta_s": eta})
        queues.append(
            {
                "name": name,
                "workers_online": online,
                "running": len(running),
                "queued": len(queued),
                "jobs": rows,
            }
        )
    return {"workers": worker_rows, "queues": queues, "runtime_estimates_s": estimates}


def filter_options(s: Session) -> dict[str, list[str]]:
    """Values the runs page offers in its filters."""
    presets = sorted(p for p in s.scalars(select(Run.preset).distinct()) if p)
    return {"statuses": [x.value for x in JobStatus], "presets": presets}
