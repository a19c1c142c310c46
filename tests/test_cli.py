"""The command line end to end on a tiny corpus, and its errors."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from text_diffusion.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_corpus):
    """A tiny model trained through `text-diffusion train`; returns (run dir, checkpoint,
    what the command printed)."""
    root = tmp_path_factory.mktemp("cli")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(tiny_corpus))
    run = root / "run"
    args = [
        "train", "--preset", "tiny", "--dataset", str(corpus), "--max-steps", "30",
        "--seq-len", "32", "--batch-size", "8", "--eval-every", "1000", "--save-every", "1000",
        "--eval-ratios", "0.5,1.0", "--mixed-precision", "no", "--output-dir", str(run),
        "--samples", "2", "--prompt", "The king", "--no-progress",
    ]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    return run, run / "checkpoint-30", out.getvalue()


def test_train_prints_table_samples_and_checkpoint(trained):
    run, ckpt, printed = trained
    assert (ckpt / "model.safetensors").is_file()
    results = json.loads((run / "results.json").read_text())
    assert results["steps"] == 30 and results["checkpoint"] == str(ckpt)
    lines = printed.splitlines()
    # The table: a header, one row per eval ratio, the bound.
    header = lines.index("mask ratio   CE (nats)   accuracy")
    assert [line.split()[0] for line in lines[header + 1 : header + 3]] == ["0.50", "1.00"]
    assert lines[header + 3].startswith("ELBO bound: ")
    # The samples: two, each starting with the prompt.
    samples = [line for line in lines if line.startswith("  [")]
    assert len(samples) == 2 and all("The king" in line for line in samples)
    assert f"checkpoint: {ckpt}" in lines


def test_generate_from_a_checkpoint(trained, capsys):
    _, ckpt, _ = trained
    code = main([
        "generate", "--checkpoint", str(ckpt), "--prefix", "The king", "--num-samples", "3",
        "--length", "12", "--steps", "4", "--schedule", "cosine", "--sampling", "nucleus",
        "--top-p", "0.9", "--temperature", "0.7", "--strategy", "confidence", "--show-steps",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("[seed ") == 3 and "3 samples in" in out and "distinct-2" in out


def test_generate_takes_a_checkpoint_by_directory_url_or_id(trained, tmp_path, monkeypatch, capsys):
    """The same checkpoint named three ways gives the same samples."""
    from shared import db
    from shared.db import session_scope
    from shared.models import Checkpoint, Run
    from tests.jobs.helpers import reset_process_caches

    _, ckpt, _ = trained
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'td.db'}")
    monkeypatch.setenv("REDIS_URL", "")
    reset_process_caches()
    db.upgrade()
    with session_scope() as s:
        run = Run(name="cli", preset="tiny", spec={}, max_steps=30)
        s.add(run)
        s.flush()
        row = Checkpoint(run_id=run.id, step=30, url=ckpt.resolve().as_uri())
        s.add(row)
        s.flush()
        ckpt_id = row.id
    outputs = []
    for ref in (str(ckpt), ckpt.resolve().as_uri(), str(ckpt_id)):
        argv = ["generate", "--checkpoint", ref, "--num-samples", "2", "--length", "6", "--json"]
        assert main([*argv, "--steps", "3"]) == 0, ref
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2] and outputs[0].count("\n") == 2
    assert main(["generate", "--checkpoint", "999", "--num-samples", "1"]) == 2
    assert "no checkpoint with id 999" in capsys.readouterr().err
    reset_process_caches()


def test_generate_json_lines_and_infill(trained, capsys):
    _, ckpt, _ = trained
    code = main([
        "generate", "--checkpoint", str(ckpt), "--template", "The [MASK:2] walked to the city.",
        "--num-samples", "2", "--json",
    ])  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    sample = json.loads(lines[0])
    assert sample["text"].lower().startswith("the") and "city" in sample["text"].lower()


def test_evaluate_a_checkpoint(trained, capsys):
    _, ckpt, _ = trained
    assert main(["evaluate", "--checkpoint", str(ckpt), "--ratios", "0.1,0.5,1.0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["ratio"] for r in report["eval"]] == [0.1, 0.5, 1.0]
    assert report["bound"]["perplexity"] > 1


def test_viz_commands_write_pngs(trained, tmp_path, capsys):
    _, ckpt, _ = trained
    assert main(["viz", "schedules", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["viz", "masking", "--out", str(tmp_path / "m.png")]) == 0
    argv = [
        "viz", "trajectory", "--checkpoint", str(ckpt), "--prefix", "The", "--length", "8",
        "--steps", "4", "--out", str(tmp_path / "t.png"),
    ]  # fmt: skip
    assert main(argv) == 0
    for name in ("s.png", "m.png", "t.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_hub_presets_fail_fast_with_offline_options(monkeypatch, capsys):
    monkeypatch.setattr("worker.diffusion.hub.hub_reachable", lambda timeout_s=3.0: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert main(["train", "--quick-test", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err
    for option in ("'minilm'", "'tiny'", "builtin:kjv", "HF_HUB_OFFLINE"):
        assert option in err


def test_real_probe_of_an_unreachable_hub_is_fast(monkeypatch):
    import time

    from worker.diffusion.hub import HubUnavailableError
    from worker.diffusion.modeling import resolve_model_source

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    t0 = time.monotonic()
    with pytest.raises(HubUnavailableError, match="roberta-base"):
        resolve_model_source("roberta-base")
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--preset", "tiny", "--max-steps", "-3"], "max_steps"),
        (["train", "--preset", "tiny", "--mask-grid", "0.5,1.5"], "outside (0, 1]"),
        (["train", "--preset", "tiny", "--dataset", "./no/such/dir"], "does not exist"),
        (["generate", "--checkpoint", "./no/such/ckpt"], "does not exist"),
    ],
)
def test_bad_input_is_one_clear_line(argv, fragment, capsys):
    assert main([*argv, "--no-progress"] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and "Traceback" not in err
    assert "Value error" not in err  # pydantic's prefix; the validator's words alone


def test_a_validator_message_is_shown_without_pydantic_prefix(capsys):
    assert main(["train", "--preset", "tiny", "--mask-grid", "0.5,1.5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid settings: masking.grid: ") and "Value error" not in err


def test_the_cli_packages_import_no_cycle():
    """`text_diffusion` modules import each other (at any depth, lazy imports too) without a
    cycle: the API client and the commands depend on `errors`, not on `cli` or each other."""
    import ast
    from pathlib import Path

    import text_diffusion

    root = Path(text_diffusion.__file__).parent
    modules = {
        ".".join(("text_diffusion", *p.relative_to(root).with_suffix("").parts)).removesuffix(
            ".__init__"
        ): p
        for p in root.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in modules else base)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name and m != "text_diffusion"}

    def cycle_from(start: str, at: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph[at]):
            if nxt == start:
                return (*seen, nxt)
            if nxt not in seen:
                found = cycle_from(start, nxt, (*seen, nxt))
                if found:
                    return found
        return None

    cycles = [c for m in sorted(graph) if (c := cycle_from(m, m, (m,)))]
    assert cycles == []


def test_a_database_never_migrated_is_one_line_naming_the_fix(tmp_path, monkeypatch, capsys):
    """`frontier show` (or any read) before `up` or `db upgrade` has run: one line, no
    traceback."""
    from shared import db
    from shared.settings import get_settings

    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("REDIS_URL", "")
    get_settings.cache_clear()
    db.dispose_engines()
    try:
        assert main(["frontier", "show", "nope"]) == 2
    finally:
        get_settings.cache_clear()
        db.dispose_engines()
    err = capsys.readouterr().err
    assert err.startswith("error: the database has no tables yet") and "db upgrade" in err
    assert "Traceback" not in err
