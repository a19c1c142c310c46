"""Every job kind, declared once: its spec, its submit function, its body and its way in.

From this table come the `JobKind` names stored in `jobs.kind` (`shared.models`), the
worker's bodies (`worker.bodies.BODIES`), and, for a kind with a `route`, its ways in:
`POST /api/<route>` taking `{"spec", "queue", "priority"}` (`web.api`), its `Submit<Kind>`
body and OpenAPI path (`web.api_models`, `web.openapi`), the API client's
`RemoteJobs.submit(kind, ...)` and the command `text-diffusion submit <kind>` with a flag
per spec field (`text_diffusion.commands.jobs`). Training has its own way in (a run, from a
preset: `POST /api/runs`, `submit train`), so it has no route.

Adding a job kind (`tests/web/test_kinds.py` adds a toy one):

1. its spec: a pydantic model in `shared/contracts/` (the flags, the form, the API schema);
2. its submit function, `submit(spec, *, queue=None, priority=0) -> Job`, which checks the
   spec against this machine and stores the job (`shared/submit.py`; `_submit_on_checkpoint`
   does it for a job over a checkpoint);
3. its entry below;
4. its body, `worker/bodies/<kind>.py` (`run(claim, job, stop)`);
5. a migration under `migrations/versions/` that widens the `ck_jobs_job_kind` CHECK
   constraint (and creates whatever new rows it stores).

Functions are named "module:function", so reading this table imports neither the database
nor torch (the command line builds its parser from it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from shared.contracts.specs import EvalSpec, GenerateSpec, TrainSpec


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one entry, one kind
class Kind:
    name: str  # stored in `jobs.kind`; the command is `submit <name>`
    spec: type[BaseModel]
    submit: str  # "module:function": function(spec, *, queue, priority) -> Job
    body: str  # "module:function" a worker runs (`worker.bodies`)
    help: str  # one line: the command's help and the API operation's summary
    route: str | None = None  # POST /api/<route>; None: a way in of its own
    # How the command line names the spec's fields (`text_diffusion.specflags.add_spec_flags`).
    flags: dict[str, Any] = field(default_factory=dict)
    # Keys the API adds to its answer, from the spec (the sample sets a grid will write).
    answer: Callable[[Any], dict[str, Any]] | None = None

    def submit_function(self) -> Callable[..., Any]:
        return _load(self.submit)


def _load(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add `kind` to the table (a kind declared here, or a test's toy kind)."""
    if kind.name in KINDS:
        raise ValueError(f"job kind {kind.name!r} is registered already")
    if kind.route is not None and any(k.route == kind.route for k in KINDS.values()):
        raise ValueError(f"route /api/{kind.route} is taken")
    KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    KINDS.pop(name, None)


def get(name: str) -> Kind:
    if name not in KINDS:
        raise LookupError(f"no job kind {name!r}; known: {', '.join(KINDS)}")
    return KINDS[name]


def routed() -> list[Kind]:
    """The kinds whose ways in are derived from this table (all but training)."""
    return [k for k in KINDS.values() if k.route is not None]


register(
    Kind(
        name="train",
        spec=TrainSpec,
        submit="shared.submit:submit_train",
        body="worker.bodies.train:run_train",
        help="train a masked diffusion LM",
    )
)
register(
    Kind(
        name="generate",
        spec=GenerateSpec,
        submit="shared.submit:submit_generate",
        body="worker.bodies.generate:run_generate",
        help="a grid of sampler settings over one checkpoint",
        route="generate",
        # `frontier` is set by `frontier submit` for the jobs it makes, never typed.
        flags={"skip": {"frontier"}, "flatten": {"grid"}, "rename": {"prompts": "prompt"}},
        answer=lambda spec: {"sample_sets": spec.grid.size()},
    )
)
register(
    Kind(
        name="evaluate",
        spec=EvalSpec,
        submit="shared.submit:submit_evaluate",
        body="worker.bodies.evaluate:run_evaluate",
        help="per-mask-ratio loss and the bound of a checkpoint",
        route="evaluate",
    )
)

# The kinds a database row may hold (`shared.models.JobKind`): the ones declared above.
STORED = tuple(KINDS)
