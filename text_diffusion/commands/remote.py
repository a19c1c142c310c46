"""`--url`: the job commands through a server's HTTP API instead of the database.

`text-diffusion submit ... --url http://host:8000` (or TD_URL in the environment) sends the
same spec to POST /api/runs (or /api/generate, /api/evaluate) with the token in
TD_API_TOKEN; `jobs list|show|cancel|retry` and `--wait` read and act through the API too.
The commands themselves do not change: they call `backend(args)`, which is `shared.jobs`
locally and `text_diffusion.api_client.RemoteJobs` with a URL.
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
    """What the job commands call: the API at --url / TD_URL, else `shared.jobs` itself."""
    target = url(args)
    if target is None:
        from shared import jobs

        return jobs
    from text_diffusion.api_client import RemoteJobs

    return RemoteJobs(target, os.environ.get(TOKEN_ENV) or None)
