"""Commands over the job system: submit, jobs, worker(s), db. None of them imports torch.
`up`, which starts a worker beside the dashboard, is in `up.py`."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from text_diffusion.specflags import add_spec_flags, spec_values

from . import diffusion, remote


def register(sub: argparse._SubParsersAction) -> None:
    _submit_parsers(sub)
    _jobs_parsers(sub)
    w = sub.add_parser("worker", help="run a worker: jobs from the given queues")
    w.add_argument("--queues", default="cpu", help="comma-separated: cpu, gpu")
    w.add_argument("--concurrency", type=int, help="jobs at once (default WORKER_CONCURRENCY)")
    w.add_argument("--name", help="worker name (default NAME@HOST)")
    w.add_argument("--loglevel", default="INFO")
    w.set_defaults(handler=run_worker)
    _workers_parsers(sub)
    d = sub.add_parser("db", help="database maintenance")
    dsub = d.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dsub.add_parser("upgrade", help="migrate DATABASE_URL to the newest schema").set_defaults(
        handler=run_db_upgrade
    )


def _user_error(exc: Exception):
    from text_diffusion.errors import UserError

    return UserError(str(exc))


# --------------------------------------------------------------------------- submit
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queue", choices=["cpu", "gpu"], help="overrides the device's queue")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--wait", action="store_true", help="show progress until the job ends")
    remote.add_url_argument(p)


def _submit_parsers(sub) -> None:
    from shared import kinds

    s = sub.add_parser("submit", help="queue a job for the workers")
    ss = s.add_subparsers(dest="kind", required=True, metavar="KIND")
    # The same flags as `text-diffusion train`, built by the same function.
    diffusion.add_train_parser(ss)
    t = ss.choices["train"]
    t.add_argument("--name", help="run name")
    _common(t)
    t.set_defaults(handler=submit_train)
    for kind in kinds.routed():  # a command per job kind of the table, a flag per field
        p = ss.add_parser(kind.name, help=kind.help)
        flags = add_spec_flags(p, kind.spec, **kind.flags)
        _common(p)
        p.set_defaults(handler=submit_job, spec_flags=flags)


def _submitted(job, args) -> int:
    print(f"job {job.id} queued ({job.kind} on {job.queue})")
    return wait(job.id, jobs=remote.backend(args)) if args.wait else 0


def submit_train(args: argparse.Namespace) -> int:
    from shared.contracts.specs import SpecError

    jobs = remote.backend(args)
    spec = diffusion.spec_from_args(args)
    try:
        job = jobs.submit_train(spec, name=args.name, queue=args.queue, priority=args.priority)
    except SpecError as exc:
        raise _user_error(exc) from exc
    return _submitted(job, args)


def submit_job(args: argparse.Namespace) -> int:
    """`submit <kind>` for a job kind of the table: its spec from the flags, submitted."""
    from shared import kinds
    from shared.contracts.specs import SpecError

    spec = kinds.get(args.kind).spec.model_validate(spec_values(args, args.spec_flags))
    try:
        job = remote.backend(args).submit(args.kind, spec, queue=args.queue, priority=args.priority)
    except SpecError as exc:
        raise _user_error(exc) from exc
    return _submitted(job, args)


def wait(job_id: int, poll_s: float = 0.5, jobs: Any = None) -> int:
    """A progress bar until job `job_id` ends; 0 if it succeeded, else 1. `jobs` is where
    to read it (`remote.backend`; default the database)."""
    from tqdm.auto import tqdm

    from shared.models import JobStatus

    if jobs is None:
        jobs = remote.local_backend()

    with tqdm(total=100, desc=f"job {job_id}", unit="%", dynamic_ncols=True) as bar:
        while True:
            job = jobs.get_job(job_id)
            bar.update(round(job.progress * 100) - bar.n)
            bar.set_postfix_str(f"{job.status} attempt {job.attempts}", refresh=True)
            if JobStatus(job.status).finished:
                break
            time.sleep(poll_s)
    print(f"job {job_id} {job.status}" + (f": {job.error}" if job.error else ""))
    return 0 if job.status == JobStatus.SUCCEEDED else 1


# --------------------------------------------------------------------------- jobs
def _jobs_parsers(sub) -> None:
    j = sub.add_parser("jobs", help="list, show, cancel or retry jobs")
    js = j.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = js.add_parser("list", help="newest first")
    ls.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    ls.add_argument("--limit", type=int, default=20)
    remote.add_url_argument(ls)
    ls.set_defaults(handler=jobs_list)
    for name, handler, help_ in (
        ("show", jobs_show, "one job as JSON"),
        ("cancel", jobs_cancel, "stop a queued or running job"),
        ("retry", jobs_retry, "queue a failed or cancelled job again"),
    ):
        p = js.add_parser(name, help=help_)
        p.add_argument("job_id", type=int)
        remote.add_url_argument(p)
        p.set_defaults(handler=handler)
    js.add_parser("reconcile", help="requeue what the database says is owed").set_defaults(
        handler=jobs_reconcile
    )


def _row(job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": str(job.kind),
        "status": str(job.status),
        "run_id": job.run_id,
        "queue": job.queue,
        "progress": round(job.progress, 3),
        "attempts": f"{job.attempts}/{job.max_attempts}",
        "worker": job.worker,
        "created_at": job.created_at.isoformat(timespec="seconds"),
        "error": job.error,
    }


def jobs_list(args: argparse.Namespace) -> int:
    jobs = remote.backend(args)
    rows = jobs.list_jobs(args.limit, args.status)
    print(f"{'id':>5}  {'kind':<9} {'status':<10} {'progress':>8}  {'tries':<5} worker")
    for job in rows:
        r = _row(job)
        print(
            f"{r['id']:>5}  {r['kind']:<9} {r['status']:<10} {r['progress']:>8.0%}  "
            f"{r['attempts']:<5} {r['worker'] or ''}"
        )
    return 0


def _job_or_error(fn, job_id: int):
    from shared.errors import JobError

    try:
        return fn(job_id)
    except JobError as exc:
        raise _user_error(exc) from exc


def jobs_show(args: argparse.Namespace) -> int:
    jobs = remote.backend(args)
    job = _job_or_error(jobs.get_job, args.job_id)
    shown = {**_row(job), "spec": job.spec, "result": job.result}
    if str(job.kind) == "train" and job.run_id is not None:
        # Where its latest attempt started: 0 from scratch, else the checkpoint it resumed.
        shown["resumed_from_step"] = jobs.resumed_from_step(job.run_id)
    print(json.dumps(shown, indent=2))
    return 0


def jobs_cancel(args: argparse.Namespace) -> int:
    jobs = remote.backend(args)
    status = _job_or_error(jobs.cancel, args.job_id)
    verb = "stopping" if status == "running" else str(status)
    print(f"job {args.job_id}: {verb}")
    return 0


def jobs_retry(args: argparse.Namespace) -> int:
    jobs = remote.backend(args)
    job = _job_or_error(jobs.retry, args.job_id)
    print(f"job {job.id} queued again")
    return 0


def jobs_reconcile(args: argparse.Namespace) -> int:
    from shared import reconciler

    done = reconciler.reconcile()
    print(f"requeued {done.requeued}, failed {done.failed}, resent {done.resent}")
    return 0


# --------------------------------------------------------------------------- worker, db
def run_worker(args: argparse.Namespace) -> int:
    from shared.queue import QUEUES
    from worker.app import app

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        raise _user_error(ValueError(f"unknown queue(s) {unknown}; choose from {QUEUES}"))
    argv = ["worker", "-Q", ",".join(queues), "-l", args.loglevel, "--without-mingle"]
    if args.concurrency:
        argv += ["--concurrency", str(args.concurrency)]
    if args.name:
        argv += ["-n", args.name]
    app.worker_main(argv)
    return 0


def _workers_parsers(sub) -> None:
    ws = sub.add_parser("workers", help="list the workers, or drain one")
    wss = ws.add_subparsers(dest="action", required=True, metavar="ACTION")
    wss.add_parser("list", help="every worker that has registered").set_defaults(
        handler=workers_list
    )
    dr = wss.add_parser(
        "drain", help="finish the running job, take no new one, exit (start it to undo)"
    )
    dr.add_argument("name", help="the worker's name, as `workers list` shows it")
    dr.add_argument("--wait", action="store_true", help="return once the worker has exited")
    dr.set_defaults(handler=workers_drain)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    return f"{seconds / 60:.0f}m ago" if seconds < 7200 else f"{seconds / 3600:.0f}h ago"


def workers_list(args: argparse.Namespace) -> int:
    from shared import workers
    from shared.models import utcnow

    now = utcnow()
    rows = workers.list_workers()
    head = ("name", "host", "queues", "device", "state", "heartbeat", "job")
    table = [
        (
            w.name,
            w.host,
            ",".join(w.queues or []),
            w.device or "",
            workers.display_state(w, now),
            _ago((now - w.last_heartbeat).total_seconds()),
            "" if w.current_job_id is None else str(w.current_job_id),
        )
        for w in rows
    ]
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    for r in [head, *table]:
        print("  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip())
    return 0


def workers_drain(args: argparse.Namespace) -> int:
    from shared import workers
    from shared.settings import get_settings

    try:
        row = workers.request_drain(args.name)
    except workers.WorkerError as exc:
        raise _user_error(exc) from exc
    running = f"finishing job {row.current_job_id}" if row.current_job_id else "idle"
    print(f"worker {row.name}: draining ({running}); it exits when done")
    if not args.wait:
        return 0
    poll_s = min(1.0, get_settings().heartbeat_seconds)
    while (state := workers.display_state(workers.get_worker(args.name))) not in (
        "drained",
        "offline",
        "lost",
    ):
        time.sleep(poll_s)
    print(f"worker {args.name}: {state}")
    return 0 if state == "drained" else 1


def run_db_upgrade(args: argparse.Namespace) -> int:
    from shared import db

    db.upgrade()
    print(f"database at {db.head_revision()}: {db.database_url().render_as_string()}")
    return 0
