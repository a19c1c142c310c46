"""Submitting jobs: the checks a spec must pass on this machine (its model, dataset, judge
and checkpoint exist and are allowed here), then the rows, committed before their messages
are sent (`shared.jobs.enqueue`). Every refusal is a `SpecError` naming the field, and
nothing is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.contracts import labels, sources
from shared.contracts.limits import MAX_ID
from shared.contracts.options import DIFFUSION_ONLY
from shared.contracts.specs import EvalSpec, GenerateSpec, SpecError, TrainSpec
from shared.db import session_scope
from shared.jobs import enqueue
from shared.models import Checkpoint, Job, JobKind, Run, utcnow
from shared.queue import check_queue, queue_for_device
from shared.settings import get_settings
from shared.storage import ArtifactStore


def _queue(spec: TrainSpec | GenerateSpec | EvalSpec, queue: str | None) -> str:
    """An explicit queue wins; otherwise the one the spec's device asks for."""
    return check_queue(queue if queue is not None else queue_for_device(spec.device))


def _new_job(kind: JobKind, spec: dict[str, Any], run_id: int | None, queue: str, priority: int):
    return Job(
        kind=kind,
        spec=spec,
        run_id=run_id,
        queue=check_queue(queue),
        priority=priority,
        max_attempts=get_settings().max_attempts,
    )


def submit_train(
    spec: TrainSpec,
    *,
    name: str | None = None,
    tags: list[str] | None = None,
    queue: str | None = None,
    priority: int = 0,
) -> Job:
    """Insert a run and its training job, commit, enqueue (`add_train`)."""
    with session_scope() as s:
        job = add_train(s, spec, name=name, tags=tags, queue=queue, priority=priority)
    enqueue([job.id])
    return job


def add_train(
    s: Session,
    spec: TrainSpec,
    *,
    name: str | None = None,
    tags: list[str] | None = None,
    queue: str | None = None,
    priority: int = 0,
    sweep_trial_id: int | None = None,
) -> Job:
    """Add a run and its training job to session `s` (the caller commits, then `enqueue`s
    the job). The model and dataset sources are checked first (`shared.contracts.sources`;
    `SpecError`, nothing is added), and stored in the form the worker loads. The queue is
    the spec's device's (`queue_for_device`) unless `queue` names one."""
    labels.check_labels(name, tags)
    spec = spec.model_copy(
        update={"model": model_source(spec.model), "dataset": dataset_source(spec.dataset)}
    )
    queue = _queue(spec, queue)
    payload = spec.model_dump(mode="json")
    run = Run(
        name=name or f"{spec.preset}-{utcnow():%Y%m%d-%H%M%S}",
        preset=spec.preset,
        tags=tags or [],
        spec=payload,
        max_steps=spec.max_steps,
        sweep_trial_id=sweep_trial_id,
    )
    s.add(run)
    s.flush()
    job = _new_job(JobKind.TRAIN, payload, run.id, queue, priority)
    s.add(job)
    s.flush()
    return job


def dataset_source(source: str) -> str:
    """A dataset source as the worker loads it (`sources.resolve_dataset` with this machine's
    roots and URL prefixes); `SpecError` naming `dataset` if refused."""
    settings = get_settings()
    return sources.resolve_dataset(source, settings.dataset_root, settings.dataset_url_prefix_list)


def model_source(source: str) -> str:
    """A model source as the worker loads it: a checkpoint (id or URL) as its recorded URL,
    anything else through `sources.resolve_model`; `SpecError` naming `model` if refused.
    The worker calls it again before loading."""
    ref = sources.checkpoint_ref(source)
    if ref is None:
        return sources.resolve_model(source, get_settings().model_root)
    with session_scope() as s:
        return resolve_checkpoint(s, ref, field="model").url


def judge_source(source: str) -> str:
    """A judge as the worker loads it: a packaged judge's name unchanged, an AR run's
    checkpoint (id or URL) as its recorded URL, a directory under MODEL_ROOT made absolute,
    a hub name unchanged; `SpecError` naming `judge` for anything else, or for a model
    known not to be causal."""
    if source in sources.PACKAGED_JUDGES:
        return source
    ref = sources.checkpoint_ref(source)
    if ref is not None:
        with session_scope() as s:
            ckpt = resolve_checkpoint(s, ref, field="judge")
            objective = (ckpt.run.spec or {}).get("objective", "diffusion")
            if objective != "ar":
                raise SpecError(
                    "judge",
                    f"checkpoint {ckpt.id} is of a {objective} run; a judge must be a causal "
                    "LM (an AR run's checkpoint)",
                )
            return ckpt.url
    if source == sources.SCRATCH or source in sources.PACKAGED_MODELS:
        raise SpecError("judge", f"{source!r} is a masked LM; a judge must be a causal LM")
    resolved = sources.resolve_model(source, get_settings().model_root, field="judge")
    directory = Path(resolved)
    if directory.is_dir() and not sources.is_causal_config(directory):
        raise SpecError("judge", f"{source!r} does not hold a causal LM (see its config.json)")
    if directory.is_dir() and not sources.has_weights(directory):
        names = " or ".join(sources.WEIGHT_FILES[::2])
        raise SpecError("judge", f"{source!r} holds no weights ({names})")
    return resolved


def checkpoint_url(ref: str) -> str:
    """A checkpoint named by URL or by its local directory, as the store records it (a
    directory of a local store is its `file://` URL)."""
    if "://" not in ref:
        try:
            path = Path(ref).expanduser()
            if path.is_dir():
                return path.resolve().as_uri()
        except (OSError, RuntimeError, ValueError):  # no such home, a name too long
            pass
    return ref.rstrip("/")


def resolve_checkpoint(s: Session, ref: int | str, field: str = "checkpoint") -> Checkpoint:
    """The checkpoint row named by id, artifact URL or (on a local store) its directory;
    `SpecError` if there is none."""
    if isinstance(ref, int) or (ref.isascii() and ref.isdigit()):
        if not 0 < int(ref) <= MAX_ID:
            raise SpecError(field, f"no checkpoint with id {ref}")
        ckpt = s.get(Checkpoint, int(ref))
        if ckpt is None:
            raise SpecError(field, f"no checkpoint with id {ref}")
    else:
        url = checkpoint_url(ref)
        ckpt = s.scalars(select(Checkpoint).where(Checkpoint.url == url)).first()
        if ckpt is None:
            raise SpecError(field, f"no checkpoint is recorded at {ref}")
    if not ArtifactStore().exists(ckpt.url):
        raise SpecError(field, f"checkpoint {ckpt.id}'s files are gone from {ckpt.url}")
    return ckpt


# The grid axes of iterative unmasking: an AR checkpoint samples token by token, so more
# than one value on any of them would only repeat the same sample set.
UNMASKING_AXES = ("steps", "strategies", "schedules")


def _check_grid_applies(spec: GenerateSpec, ckpt: Checkpoint) -> None:
    if (ckpt.run.spec or {}).get("objective", "diffusion") != "ar":
        return
    for axis in UNMASKING_AXES:
        values = getattr(spec.grid, axis)
        if len(values) > 1:
            raise SpecError(
                f"grid.{axis}",
                f"checkpoint {ckpt.id} is of an AR run, which samples token by token: "
                f"{axis} do not apply, so give one value (got {len(values)})",
            )


def _generate_payload(spec: GenerateSpec, ckpt: Checkpoint) -> dict[str, Any]:
    """The generation job's spec as stored, pinned to the checkpoint's row. On an AR
    checkpoint the grid is stored without the settings only unmasking reads
    (`DIFFUSION_ONLY`): kept, they would read as if they had been used."""
    _check_grid_applies(spec, ckpt)
    payload = spec.model_dump(mode="json")
    payload["checkpoint"] = ckpt.id  # pin the row, whatever the user named
    if (ckpt.run.spec or {}).get("objective", "diffusion") == "ar":
        payload["grid"] = {k: v for k, v in payload["grid"].items() if k not in DIFFUSION_ONLY}
    return payload


def _submit_on_checkpoint(
    kind: JobKind, spec: GenerateSpec | EvalSpec, queue: str | None, priority: int
) -> Job:
    queue = _queue(spec, queue)
    with session_scope() as s:
        ckpt = resolve_checkpoint(s, spec.checkpoint)
        if isinstance(spec, GenerateSpec):
            payload = _generate_payload(spec, ckpt)
        else:
            payload = {**spec.model_dump(mode="json"), "checkpoint": ckpt.id}
        job = _new_job(kind, payload, ckpt.run_id, queue, priority)
        s.add(job)
    enqueue([job.id])
    return job


def add_generate(s: Session, spec: GenerateSpec, *, queue: str | None, priority: int = 0) -> Job:
    """Add a generation job over `spec.checkpoint` to session `s` (the caller commits, then
    `enqueue`s it). Its judge must already be in the form `judge_source` returns (a sweep
    resolves its judge once, when it is created)."""
    ckpt = resolve_checkpoint(s, spec.checkpoint)
    job = _new_job(
        JobKind.GENERATE, _generate_payload(spec, ckpt), ckpt.run_id, _queue(spec, queue), priority
    )
    s.add(job)
    s.flush()
    return job


def submit_generate(spec: GenerateSpec, *, queue: str | None = None, priority: int = 0) -> Job:
    """Insert a generation job over `spec.checkpoint` (which must exist), commit, enqueue.
    Its judge, if any, is checked first (`judge_source`) and stored as the worker loads it."""
    if spec.judge is not None:
        spec = spec.model_copy(update={"judge": judge_source(spec.judge)})
    return _submit_on_checkpoint(JobKind.GENERATE, spec, queue, priority)


def submit_generate_all(
    specs: list[GenerateSpec], *, queue: str | None = None, priority: int = 0
) -> list[Job]:
    """Insert several generation jobs in one transaction, all or none (a frontier's), each
    checked as `submit_generate` checks one; commit, enqueue them."""
    judges: dict[str, str] = {}
    for spec in specs:
        if spec.judge is not None and spec.judge not in judges:
            judges[spec.judge] = judge_source(spec.judge)
    with session_scope() as s:
        rows = []
        for spec in specs:
            ckpt = resolve_checkpoint(s, spec.checkpoint)
            payload = _generate_payload(spec, ckpt)
            payload["judge"] = judges.get(spec.judge) if spec.judge is not None else None
            rows.append(
                _new_job(JobKind.GENERATE, payload, ckpt.run_id, _queue(spec, queue), priority)
            )
        s.add_all(rows)
    enqueue([j.id for j in rows])
    return rows


def checkpoint_objective(ref: int | str, field: str = "checkpoint") -> str:
    """'diffusion' or 'ar': the objective of the run that wrote checkpoint `ref`;
    `SpecError` naming `field` if there is no such checkpoint."""
    with session_scope() as s:
        ckpt = resolve_checkpoint(s, ref, field=field)
        return (ckpt.run.spec or {}).get("objective", "diffusion")


def submit_evaluate(spec: EvalSpec, *, queue: str | None = None, priority: int = 0) -> Job:
    """Insert an evaluation job over `spec.checkpoint`, commit, enqueue."""
    if spec.dataset is not None:
        spec = spec.model_copy(update={"dataset": dataset_source(spec.dataset)})
    return _submit_on_checkpoint(JobKind.EVALUATE, spec, queue, priority)
