"""`--url`: the job commands through a server's HTTP API instead of the database.

`text-diffusion submit ... --url http://host:8000` (or TD_URL in the environment) sends the
same spec to POST /api/runs (or /api/generate, /api/evaluate) with the token in
TD_API_TOKEN; `jobs list|show|cancel|retry` and `--wait` read and act through the API too.
The commands themselves do not change: they call `backend(args)`, which is `local_backend()`
(`shared.submit`, `shared.jobs`, `shared.job_reads`) locally and
`text_diffusion.api_client.RemoteJobs` with a URL.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from text_diffusion.errors import TOKEN_ENV, URL_ENV


def add_url_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        help=f"a dashboard to go through (its API) instead of the database; default ${URL_ENV}. "
        f"The token is read from ${TOKEN_ENV}.",
    )


def url(args: argparse.Namespace) -> str | None:
    return getattr(args, "url", None) or os.environ.get(URL_ENV) or None


def backend(args: argparse.Namespace) -> Any:
    """What the job commands call: the API at --url / TD_URL, else the database."""
    target = url(args)
    if target is None:
        return local_backend()
    from text_diffusion.api_client import RemoteJobs

    return RemoteJobs(target, os.environ.get(TOKEN_ENV) or None)


def local_backend() -> Any:
    """The functions `RemoteJobs` offers over HTTP, straight on the database."""
    from types import SimpleNamespace

    from shared import job_reads, jobs, kinds, submit

    def submit_kind(kind: str, spec, *, queue: str | None = None, priority: int = 0):
        return kinds.get(kind).submit_function()(spec, queue=queue, priority=priority)

    return SimpleNamespace(
        submit_train=submit.submit_train,
        submit=submit_kind,
        get_job=job_reads.get_job,
        list_jobs=job_reads.list_jobs,
        resumed_from_step=job_reads.resumed_from_step,
        cancel=jobs.cancel,
        retry=jobs.retry,
    )
