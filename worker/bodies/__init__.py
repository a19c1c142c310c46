"""Job bodies: what a job of each kind does, apart from how its process is run.

A body is `run(claim, job, stop) -> None`. It runs in the job's own process
(`worker.execute`), reads its spec from `job.spec`, writes its results through
`worker.results` and `shared.jobs.set_result`, calls `stop.raise_if_stopped()` (or lets
the trainer ask `stop.should_stop()`) where stopping is safe, and raises on failure. The
first line of the exception's text is what the user reads as the job's error
(`worker.bodies.errors` turns library errors about the inputs into such lines); the
traceback goes to the job's log.

`BODIES` maps each job kind to its body, read from the job-kind table (`shared.kinds`),
named as "module:function" so that importing it imports no torch. `body_for` raises
`UnknownJobKind` for a kind it lacks. Adding a job kind: see `shared.kinds`.

`tests/jobs/test_states.py` checks that every `JobKind` has a body.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from shared import jobs
from shared.kinds import STORED, get
from shared.models import Job, JobKind
from worker.stopping import StopControl

Body = Callable[[jobs.Claim, Job, StopControl], None]

BODIES: dict[JobKind, str] = {JobKind(name): get(name).body for name in STORED}


class UnknownJobKind(LookupError):
    """A job whose kind has no body here (a newer submitter than this worker, say)."""


def body_modules() -> list[str]:
    """The modules that hold the bodies (what the warm process imports ahead of jobs)."""
    return [target.split(":")[0] for target in BODIES.values()]


def body_for(kind: str) -> Body:
    """The body that runs jobs of `kind`; `UnknownJobKind` if there is none."""
    target = BODIES.get(kind)  # type: ignore[call-overload]
    if target is None:
        known = ", ".join(BODIES)
        raise UnknownJobKind(f"no job body for kind {kind!r} on this worker (it knows {known})")
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)
