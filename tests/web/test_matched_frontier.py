"""A frontier read at matched diversity (real SQLite rows): lines over temperature, human
text as a point under each judge, the matched judge perplexity per line, and sets scored
by different judges never on one line."""

from __future__ import annotations

import pytest

from shared.db import read_scope, session_scope
from shared.models import HumanReference, Job, SampleSet
from tests.web.conftest import TOKEN
from tests.web.seed import add_run, add_sample_set
from web.queries.frontier import frontier_points

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _reference(judge: str, entropy: float, ppl: float) -> int:
    with session_scope() as s:
        row = HumanReference(
            dataset="corpus.txt · validation=0.25 · seed=0",
            judge=judge,
            tokenizer="abc",
            length=8,
            metrics={"texts": 100, "judge_ppl": ppl, "unigram_entropy": entropy, "repetition": 0.0},
        )
        s.add(row)
        s.flush()
        return row.id


def _point(run_id: int, temperature: float, judge: str, ref: int, entropy: float, ppl: float):
    settings = {"steps": 8, "strategy": "entropy", "temperature": temperature, "seed": 0}
    sid = add_sample_set(run_id, ["x"], settings=settings, trajectory=False)
    with session_scope() as s:
        ss = s.get(SampleSet, sid)
        ss.metrics = {
            "forward_passes": 8,
            "seconds_per_sample": 0.01,
            "judge": judge,
            "judge_ppl": ppl,
            "unigram_entropy": entropy,
            "repetition": 0.5 - entropy / 10,
            "entropy_tokens": "judge",
            "human_reference_id": ref,
            "mauve": None,
            "mauve_reason": "too few",
        }
        s.get(Job, ss.job_id).spec = {"frontier": "qd", "checkpoint": ss.checkpoint_id}


def test_lines_over_temperature_read_at_human_diversity_one_judge_per_line(client):
    run = add_run("diff")
    packaged = _reference("smollm2-135m", entropy=2.5, ppl=100.0)
    other = _reference("checkpoint 9 (run 3, step 30)", entropy=2.5, ppl=40.0)
    # The same checkpoint and strategy, two judges: entropy rises with temperature.
    for t, h, ppl in ((0.5, 2.0, 20.0), (1.0, 3.0, 80.0)):
        _point(run, t, "smollm2-135m", packaged, h, ppl)
    for t, h, ppl in ((0.5, 2.2, 5.0), (1.0, 2.4, 9.0)):
        _point(run, t, "checkpoint 9 (run 3, step 30)", other, h, ppl)

    with read_scope() as s:
        data = frontier_points(s, "qd")
    lines = data["diversity_lines"]
    assert len(lines) == 2  # one per judge, never mixed
    for line in lines:
        judges = {data["points"][i]["judge"] for i in line["points"]}
        assert judges == {line["judge"]}
        assert [data["points"][i]["temperature"] for i in line["points"]] == [0.5, 1.0]
    by_judge = {line["judge"]: line for line in lines}
    packaged_line = by_judge["smollm2-135m"]
    assert packaged_line["human_reference_id"] == packaged
    assert packaged_line["matched"]["judge_ppl"] == pytest.approx(40.0)  # sqrt(20 * 80)
    assert tuple(packaged_line["matched"]["between"]) == (0.5, 1.0)  # the temperatures
    assert "judge smollm2-135m" in packaged_line["label"]  # two judges: labels say which
    never = by_judge["checkpoint 9 (run 3, step 30)"]["matched"]
    assert never["judge_ppl"] is None and "never reaches human diversity" in never["reason"]
    # The cost chart's lines are kept apart by judge too.
    for line in data["lines"]:
        assert len({data["points"][i]["judge"] for i in line["points"]}) == 1
    assert {r["id"] for r in data["references"]} == {packaged, other}

    api = client.get("/api/frontiers/qd", headers=AUTH).get_json()
    assert api["diversity_lines"][0]["matched"] is not None
    page = client.get("/frontier?name=qd").text
    assert 'id="chart-diversity"' in page and 'id="frontier-matched"' in page
    assert "human text (100 held-out snippets)" in page and "never reaches human" in page

    # The runs list and compare show that matched number (the packaged judge's line), not
    # a raw perplexity, for the run's judged sets.
    runs = client.get("/runs").text
    assert "samples: judge ppl <b>40</b> at human diversity" in runs
    compare = client.get(f"/compare?runs={run},{add_run('other')}").text
    assert 'data-metric="matched"' in compare
    assert "samples: judge ppl <b>40</b> at human diversity" in compare


def test_runs_judged_by_different_judges_say_which(client):
    a, b = add_run("a"), add_run("b")
    ref_a = _reference("smollm2-135m", entropy=2.5, ppl=100.0)
    ref_b = _reference("checkpoint 9 (run 3, step 30)", entropy=2.3, ppl=40.0)
    for t, h, ppl in ((0.5, 2.0, 20.0), (1.0, 3.0, 80.0)):
        _point(a, t, "smollm2-135m", ref_a, h, ppl)
        _point(b, t, "checkpoint 9 (run 3, step 30)", ref_b, h, ppl)
    compare = client.get(f"/compare?runs={a},{b}").text
    assert "(judge smollm2-135m)" in compare and "(judge checkpoint 9 (run 3, step 30))" in compare
    runs = client.get("/runs").text
    assert "(judge smollm2-135m)" in runs and "(judge checkpoint 9 (run 3, step 30))" in runs
