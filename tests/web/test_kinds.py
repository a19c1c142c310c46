"""A job kind is one entry of `shared.kinds`: a toy kind registered here gets an API route,
a `SubmitToy` body and an OpenAPI path, a `submit toy` command with a flag per spec field,
and the API client's method, with nothing else declared. Its submit function is the toy's
own (it stores nothing: a kind that stores new things adds a migration)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Literal

import pytest
from flask import request
from pydantic import Field
from werkzeug.serving import make_server

from shared import kinds
from shared.contracts.options import SpecModel
from tests.web.conftest import TOKEN
from text_diffusion.cli import main


class ToySpec(SpecModel):
    """What a toy job needs."""

    word: str = Field(description="The word to repeat.")
    times: int = Field(2, ge=1, le=9, description="How often.")
    mode: Literal["soft", "loud"] = "soft"
    tags: list[str] = Field(default_factory=list, description="Labels.")


SUBMITTED: list[tuple[ToySpec, str | None, int]] = []


def submit_toy(spec: ToySpec, *, queue: str | None = None, priority: int = 0):
    SUBMITTED.append((spec, queue, priority))
    return SimpleNamespace(id=len(SUBMITTED), kind="toy", queue=queue or "cpu", run_id=None)


@pytest.fixture
def toy():
    kind = kinds.register(
        kinds.Kind(
            name="toy",
            spec=ToySpec,
            submit=f"{__name__}:submit_toy",
            body=f"{__name__}:run_toy",
            help="repeat a word",
            route="toys",
            answer=lambda spec: {"words": spec.times},
        )
    )
    SUBMITTED.clear()
    yield kind
    kinds.unregister("toy")


@pytest.fixture
def toy_app(toy, web_env):
    from web import create_app

    return create_app({"TESTING": True})  # made after the kind: it has its route


def test_a_toy_kind_is_submitted_through_the_api(toy_app):
    api = toy_app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"spec": {"word": "hi", "times": 3, "mode": "loud"}, "priority": 5}
    r = api.post("/api/toys", json=body, headers=auth)
    assert r.status_code == 201, r.text
    assert r.json == {"job_id": 1, "run_id": None, "queue": "cpu", "words": 3}
    assert [(ToySpec(word="hi", times=3, mode="loud"), None, 5)] == SUBMITTED

    r = api.post("/api/toys", json={"spec": {"word": "hi", "times": 10}}, headers=auth)
    assert r.status_code == 422
    assert [f["field"] for f in r.json["error"]["fields"]] == ["spec.times"]
    assert len(SUBMITTED) == 1  # refused before the submit function

    doc = api.get("/api/openapi.json", headers=auth).json
    post = doc["paths"]["/api/toys"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SubmitToy"
    )
    assert set(doc["components"]["schemas"]["ToySpec"]["properties"]) == set(ToySpec.model_fields)
    assert api.get("/api/schema/toy", headers=auth).json["title"] == "ToySpec"


def test_a_toy_kind_is_submitted_through_the_cli(toy, web_env, capsys):
    argv = ["submit", "toy", "--word", "a,b", "--mode", "loud", "--tags", "x", "--tags", "y"]
    assert main([*argv, "--queue", "gpu"]) == 0
    assert capsys.readouterr().out.strip() == "job 1 queued (toy on gpu)"
    assert [(ToySpec(word="a,b", mode="loud", tags=["x", "y"]), "gpu", 0)] == SUBMITTED
    assert main(["submit", "toy", "--word", "w", "--times", "0"]) == 2
    assert "times" in capsys.readouterr().err


@pytest.fixture
def toy_server(toy_app):
    """(base URL, "METHOD /path" of each request) of the app in a thread."""
    seen: list[str] = []

    @toy_app.after_request
    def _log(response):
        seen.append(f"{request.method} {request.path}")
        return response

    srv = make_server("127.0.0.1", 0, toy_app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.port}", seen
    srv.shutdown()
    thread.join(10)


def test_a_toy_kind_is_submitted_through_the_api_client(toy_server, monkeypatch, capsys):
    url, seen = toy_server
    monkeypatch.setenv("TD_API_TOKEN", TOKEN)
    assert main(["submit", "toy", "--word", "far", "--times", "4", "--url", url]) == 0
    assert "POST /api/toys" in seen
    assert [(ToySpec(word="far", times=4), None, 0)] == SUBMITTED
    assert capsys.readouterr().out.strip() == "job 1 queued (toy on cpu)"
