"""Schemathesis against our own OpenAPI document: generated requests to every operation.

Each operation gets valid requests (positive mode, with both random ids and ids that
exist) and invalid ones (negative mode). Every response must be no 5xx, a documented
status code, JSON, and valid against the documented response schema; invalid requests
must be refused with a 4xx. The app counts the requests it served, so the test proves
it made at least `MIN_REQUESTS` of them.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import schemathesis
from flask import request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from shared import workers
from shared.models import JobStatus
from tests.jobs.helpers import reset_process_caches
from tests.web.conftest import TOKEN
from tests.web.seed import add_run, add_sample_set

MIN_REQUESTS = 1000
# Examples per operation and mode, at most: hypothesis stops early where there are few
# distinct requests to make (GET /api/workers has no parameters).
POSITIVE = 50
EXISTING = 30
NEGATIVE = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, ignored_auth]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def fuzz_app(web_env, monkeypatch):
    """The app over a database with runs, jobs of every state, sample sets and a worker.
    `ignored_auth` sends a wrong token with many requests, all from one address: the token
    throttle (tested in test_login_throttle.py) is opened wide, or it would answer 429."""
    monkeypatch.setenv("TOKEN_FAILURES_PER_CLIENT", "100000")
    reset_process_caches()
    from web import create_app

    app = create_app({"TESTING": True})
    ids: dict[str, list[int]] = {"run_id": [], "set_id": []}
    for i, status in enumerate([*JobStatus, JobStatus.SUCCEEDED]):
        run_id = add_run(f"fuzz-{i}", status=status, steps=100, eval_every=50, log_every=10)
        ids["run_id"].append(run_id)
        if status == JobStatus.SUCCEEDED:
            ids["set_id"].append(add_sample_set(run_id, [f"In the beginning {i} words"]))
    workers.register("fuzz@box", ["cpu"], "cpu")
    ids["job_id"] = list(range(1, len(ids["run_id"]) + len(ids["set_id"]) + 1))

    served: Counter[int] = Counter()  # status codes of requests made with our token

    @app.after_request
    def _count(response):
        # `ignored_auth` also replays requests without the token: those are not counted.
        if request.headers.get("Authorization") == AUTH["Authorization"]:
            served[response.status_code] += 1
        return response

    return app, ids, served


def _strategies(operation, ids: dict[str, list[int]]):
    """(mode, strategy, examples) for one operation: random, existing ids, invalid."""
    out = [("positive", operation.as_strategy(), POSITIVE)]
    path_names = [p.name for p in operation.path_parameters]
    if path_names and all(name in ids for name in path_names):
        known = [
            operation.as_strategy(path_parameters={name: value for name in path_names})
            for value in ids[path_names[0]]
        ]
        out.append(("existing", st.one_of(known), EXISTING))
    out.append(("negative", operation.as_strategy(GenerationMode.NEGATIVE), NEGATIVE))
    return out


def _fuzz(strategy, checks, examples: int) -> None:
    """Call the app with `examples` cases drawn from `strategy`; every check must pass."""

    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a failure reproduces
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        response = case.call(headers=AUTH)
        case.validate_response(response, checks=checks, headers=AUTH)

    run()


def test_generated_requests_get_documented_answers_and_no_server_errors(fuzz_app):
    app, ids, served = fuzz_app
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        for mode, strategy, examples in _strategies(operation, ids):
            checks = [*CHECKS]
            checks.append(
                negative_data_rejection if mode == "negative" else response_schema_conformance
            )
            try:
                _fuzz(strategy, checks, examples)
            except Exception as exc:
                raise AssertionError(f"{operation.label} ({mode}): {exc}") from exc

    total = sum(served.values())
    elapsed = time.monotonic() - started
    print(f"\n{total} requests in {elapsed:.0f} s; by status: {dict(sorted(served.items()))}")
    assert total >= MIN_REQUESTS
    assert not [code for code in served if code >= 500]
    # Not only refusals: many requests found what they asked for, or queued a job.
    assert served[200] + served[201] >= 500
