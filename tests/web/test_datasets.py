"""Uploading a corpus from the dashboard: limits, checks, and nothing half-written."""

from __future__ import annotations

import io

import pytest

from shared.settings import get_settings
from tests.web.conftest import csrf_token


def upload(client, name: str, data: bytes):
    token = csrf_token(client.get("/datasets").text)
    return client.post(
        "/datasets",
        data={"csrf_token": token, "file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def uploads_dir():
    return get_settings().dataset_root / "uploads"


def test_upload_lands_under_the_data_root_and_is_listed(client):
    r = upload(client, "my corpus.txt", b"In the beginning.\n\nAnd the earth.\n")
    assert r.status_code == 302
    assert "/runs/new?dataset=uploads/my_corpus.txt" in r.headers["Location"]
    assert (uploads_dir() / "my_corpus.txt").read_text().startswith("In the beginning")
    assert "uploads/my_corpus.txt" in client.get("/datasets").text


@pytest.mark.parametrize(
    ("name", "data", "status", "message"),
    [
        ("evil.exe", b"MZ", 400, "expected one of"),
        ("latin1.txt", "caf\xe9 ".encode("latin-1") * 10, 400, "not UTF-8"),
        ("empty.txt", b"", 400, "empty"),
    ],
)
def test_bad_uploads_are_refused_with_a_reason_and_leave_nothing(
    client, name, data, status, message
):
    r = upload(client, name, data)
    assert r.status_code == status
    assert message in r.text
    leftovers = list(uploads_dir().glob("*")) if uploads_dir().exists() else []
    assert leftovers == []


def test_too_large_an_upload_is_refused(client, monkeypatch):
    monkeypatch.setenv("MAX_UPLOAD_MB", "1")
    get_settings.cache_clear()
    r = upload(client, "big.txt", b"word " * 300_000)  # 1.5 MB
    assert r.status_code == 413
    assert "larger than the 1 MB limit" in r.text
    assert not (uploads_dir() / "big.txt").exists()
    assert not list(uploads_dir().glob(".upload-*"))  # the partial file was removed


def test_an_existing_name_is_not_overwritten(client):
    assert upload(client, "a.txt", b"first").status_code == 302
    r = upload(client, "a.txt", b"second")
    assert r.status_code == 400 and "exists already" in r.text
    assert (uploads_dir() / "a.txt").read_bytes() == b"first"


def test_upload_without_csrf_token_is_refused(client):
    r = client.post(
        "/datasets",
        data={"file": (io.BytesIO(b"text"), "x.txt")},
        content_type="multipart/form-data",
    )
    assert r.status_code == 400
    assert not (uploads_dir() / "x.txt").exists()
