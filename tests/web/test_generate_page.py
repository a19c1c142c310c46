"""The generate page: checkpoints to pick, the sampler grid from the schema, its count and
limit, errors beside their fields, and one queued job on success."""

from __future__ import annotations

import html
import json
import re
import typing

from sqlalchemy import func, select, update

from shared.contracts.limits import MAX_GRID
from shared.contracts.options import DIFFUSION_ONLY, PackagedJudge, Sampling, Schedule, Strategy
from shared.db import session_scope
from shared.models import Checkpoint, Job, JobKind, JobStatus
from shared.storage import ArtifactStore
from tests.web.seed import add_run
from tests.web.test_new_run import Page


def jobs_count() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count(Job.id)))


def checkpoints(run_id: int) -> list[int]:
    with session_scope() as s:
        return list(
            s.scalars(
                select(Checkpoint.id).where(Checkpoint.run_id == run_id).order_by(Checkpoint.step)
            )
        )


def real_checkpoint(run_id: int, tmp_path) -> int:
    """The run's last checkpoint, pointed at a folder that exists in the artifact store."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    ckpt_id = checkpoints(run_id)[-1]
    url = ArtifactStore().put_dir(folder, f"runs/{run_id}/checkpoint-final")
    with session_scope() as s:
        s.execute(update(Checkpoint).where(Checkpoint.id == ckpt_id).values(url=url))
    return ckpt_id


def count_text(html: str) -> str:
    match = re.search(r'<p id="grid-count"[^>]*>([^<]*)</p>', html)
    assert match, "no sample-set count on the page"
    return match.group(1)


def test_the_form_offers_checkpoints_and_the_schemas_sampler_choices(client):
    run_id = add_run("my <i>run</i>", steps=200)
    first, last = checkpoints(run_id)
    r = client.get("/generate")
    assert r.status_code == 200
    page = Page(r.text)
    assert page.values["checkpoint"] == str(last)  # the newest by default
    assert f'<option value="{first}">my &lt;i&gt;run&lt;/i&gt; · step 100' in r.text
    picked = Page(client.get(f"/generate?checkpoint={first}").text)
    assert picked.values["checkpoint"] == str(first)
    # checkbox groups hold exactly the values the spec allows
    for name, literal in (
        ("grid.schedules", Schedule),
        ("grid.samplings", Sampling),
        ("grid.strategies", Strategy),
    ):
        offered = re.findall(rf'name="{re.escape(name)}" value="([^"]+)"', r.text)
        assert offered == list(typing.get_args(literal)), name
        assert page.fields[name]["inputs"][name] == "checkbox"
    assert page.values["grid.schedules"] == ["linear"] and page.values["grid.temperatures"] == "0.7"
    assert page.values["record_trajectory"] == ["on"] and page.values["prompts"] == ""
    for dim in ("grid.temperatures", "grid.steps", "grid.seeds"):
        assert f'data-field="{dim}" data-dim=""' in r.text
    assert count_text(r.text) == "This will create 1 sample set (1 prompt × 4 samples each)."
    assert "forms.js" in r.text


def test_gone_checkpoint_files_are_refused_beside_the_checkpoint_and_the_count_is_kept(client):
    run_id = add_run("gone")  # seeded checkpoints point at file:///nowhere
    page = Page(client.get("/generate").text)
    before = jobs_count()
    data = page.form_data(
        "generate",
        prompts="In the beginning\n\nAnd God said\n",
        num_samples="3",
        **{
            "grid.schedules": ["linear", "cosine"],
            "grid.temperatures": "0.5, 0.7 1.0",
            "grid.seeds": "1,2",
        },
    )
    r = client.post("/generate", data=data)
    assert r.status_code == 422
    shown = Page(r.text)
    assert "files are gone" in shown.fields["checkpoint"]["error"]
    assert [n for n, f in shown.fields.items() if f["error"]] == ["checkpoint"]
    assert count_text(r.text) == "This will create 12 sample sets (2 prompts × 3 samples each)."
    assert shown.values["prompts"] == "In the beginning\n\nAnd God said\n"
    assert shown.values["grid.schedules"] == ["linear", "cosine"]
    assert shown.values["grid.temperatures"] == "0.5, 0.7 1.0"
    assert jobs_count() == before
    assert run_id


def test_a_grid_over_the_limit_is_refused_beside_the_grid(client):
    add_run("r")
    page = Page(client.get("/generate").text)
    before = jobs_count()
    data = page.form_data(
        "generate",
        **{
            "grid.schedules": ["linear", "cosine", "exponential", "loglinear"],
            "grid.samplings": ["greedy", "topk", "nucleus"],
            "grid.temperatures": "0.5, 1.0",
            "grid.strategies": ["random", "entropy", "margin"],
        },
    )
    r = client.post("/generate", data=data)
    assert r.status_code == 422
    shown = Page(r.text)
    assert "72 combinations" in shown.groups["grid"]["error"]
    assert f"at most {MAX_GRID}" in shown.groups["grid"]["error"]
    assert count_text(r.text).startswith("This will create 72 sample sets")
    assert 'class="grid-count error"' in r.text
    assert jobs_count() == before


def test_bad_prompts_and_values_are_refused_beside_their_fields(client, tmp_path):
    run_id = add_run("r")
    ckpt = real_checkpoint(run_id, tmp_path)
    page = Page(client.get(f"/generate?checkpoint={ckpt}").text)
    before = jobs_count()
    cases = [
        ({"prompts": "\n".join(f"p{i}" for i in range(40))}, "prompts", "between 1 and 32"),
        ({"prompts": "x" * 2001}, "prompts", "at most 2000"),
        ({"grid.temperatures": "0.7, 20"}, "grid.temperatures", "outside (0, 10]"),
        ({"grid.steps": "10, ten"}, "grid.steps", "'ten' is not a whole number"),
        ({"grid.strategies": None}, "grid.strategies", "at least one value"),
        ({"num_samples": "0"}, "num_samples", "greater than or equal to 1"),
        ({"checkpoint": "abc"}, "checkpoint", "pick a checkpoint"),
        ({"checkpoint": "99999"}, "checkpoint", "no checkpoint with id 99999"),
        ({"queue": "tpu"}, "queue", "'cpu' or 'gpu'"),
    ]
    for changes, field, message in cases:
        r = client.post("/generate", data=page.form_data("generate", **changes))
        assert r.status_code == 422, changes
        shown = Page(r.text)
        assert message in shown.fields[field]["error"], (changes, shown.fields[field])
    # the total: 32 prompts x 256 samples is more than a job may write
    r = client.post(
        "/generate",
        data=page.form_data("generate", prompts="\n".join("p" * 32), num_samples="256"),
    )
    assert r.status_code == 422
    assert "at most 4096 per job" in Page(r.text).groups["grid"]["error"]
    assert jobs_count() == before


def test_a_valid_form_queues_one_job_and_redirects_to_the_run(client, tmp_path):
    run_id = add_run("trained")
    ckpt = real_checkpoint(run_id, tmp_path)
    page = Page(client.get(f"/generate?checkpoint={ckpt}").text)
    before = jobs_count()
    data = page.form_data(
        "generate",
        prompts="In the beginning\n<script>alert(1)</script>",
        num_samples="2",
        priority="3",
        record_trajectory=None,  # unchecked
        **{"grid.steps": "4, 8", "grid.samplings": ["greedy", "topk"], "grid.block_length": ""},
    )
    r = client.post("/generate", data=data)
    assert r.status_code == 302, Page(r.text).fields
    assert r.headers["Location"] == f"/runs/{run_id}"
    assert jobs_count() == before + 1
    with session_scope() as s:
        job = s.scalars(select(Job).order_by(Job.id.desc())).first()
        assert job.kind == JobKind.GENERATE and job.status == JobStatus.QUEUED
        assert job.run_id == run_id and job.queue == "cpu" and job.priority == 3
        spec = job.spec
    assert spec["checkpoint"] == ckpt
    assert spec["prompts"] == ["In the beginning", "<script>alert(1)</script>"]
    assert spec["grid"]["steps"] == [4, 8] and spec["grid"]["samplings"] == ["greedy", "topk"]
    assert spec["grid"]["block_length"] is None and spec["record_trajectory"] is False
    assert spec["num_samples"] == 2
    shown = client.get(r.headers["Location"]).text
    assert f"Job {job.id} queued: 4 sample sets." in shown


def test_an_empty_prompt_box_generates_without_a_prompt(client, tmp_path):
    run_id = add_run("trained")
    ckpt = real_checkpoint(run_id, tmp_path)
    page = Page(client.get(f"/generate?checkpoint={ckpt}").text)
    r = client.post("/generate", data=page.form_data("generate", prompts="  \n"))
    assert r.status_code == 302
    with session_scope() as s:
        job = s.scalars(select(Job).where(Job.kind == JobKind.GENERATE)).one()
        assert job.spec["prompts"] == [""]


def test_the_page_counts_sets_as_the_grid_is_edited_in_a_browser(browser):
    page, base, errors = browser
    add_run("r")
    page.goto(f"{base}/generate")
    count = page.locator("#grid-count")
    assert count.text_content() == "This will create 1 sample set (1 prompt × 4 samples each)."
    page.check('input[name="grid.schedules"][value="cosine"]')
    page.fill("#f-grid-temperatures", "0.5, 0.7 0.70")  # 0.7 twice: one value
    page.fill("#f-prompts", "In the beginning\n\nAnd God said")
    page.fill("#f-num_samples", "3")
    shown = "This will create 4 sample sets (2 prompts × 3 samples each)."
    assert count.text_content() == shown
    # the server counts the submitted form the same way (it refuses the gone checkpoint)
    with page.expect_navigation():
        page.click("#generate button[type=submit]")
    assert "files are gone" in page.text_content('[data-field="checkpoint"] .field-error')
    assert count.text_content() == shown
    for value in ("exponential", "loglinear"):
        page.check(f'input[name="grid.schedules"][value="{value}"]')
    page.fill("#f-grid-seeds", "0, 1, 2, 3, 4")
    assert count.text_content().startswith("This will create 40 sample sets")
    assert "error" not in (count.get_attribute("class") or "")
    page.fill("#f-grid-steps", "5 10")
    assert count.text_content() == (
        "This will create 80 sample sets (2 prompts × 3 samples each)."
        f" Over the limit of {MAX_GRID} combinations per job."
    )
    assert "error" in count.get_attribute("class")
    assert errors == []


def test_checkpoints_say_their_objective_and_the_judge_is_picked_from_a_list(client):
    diffusion = add_run("diff-run", steps=200)
    ar = add_run("ar-run", steps=200, spec_overrides={"objective": "ar"})  # the newest
    d_last = checkpoints(diffusion)[-1]
    a_first, a_last = checkpoints(ar)
    r = client.get("/generate")
    page = Page(r.text)
    # The newest diffusion checkpoint, not the newest of all (an AR one) by default.
    assert page.values["checkpoint"] == str(d_last)
    assert f'<option value="{a_last}">ar-run · step 200 · AR (checkpoint {a_last}' in r.text
    assert f'<option value="{d_last}" selected>diff-run · step 200 · diffusion' in r.text
    # The judge: none, the packaged judges, the AR checkpoints; no free text.
    judge = r.text.split('data-field="judge"', 1)[1].split("</select>", 1)[0]
    options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', judge)
    assert options[0] == ("", "none")
    packaged = [v for v, label in options if label.endswith("(packaged)")]
    assert packaged == list(typing.get_args(PackagedJudge))
    assert [int(v) for v, label in options if label.startswith("AR checkpoint")] == [
        a_last,
        a_first,
    ]
    assert len(options) == 1 + len(packaged) + 2  # no diffusion checkpoint is offered
    assert page.fields["judge"]["inputs"]["judge"] == "select"
    # The page's script learns which checkpoints are AR from the form's data.
    ar_ids = re.search(r'id="generate" data-ar-checkpoints="([^"]*)"', r.text).group(1)
    assert sorted(json.loads(html.unescape(ar_ids))) == [a_first, a_last]
    for name in DIFFUSION_ONLY:
        assert f'data-field="grid.{name}"' in r.text
        field = r.text.split(f'data-field="grid.{name}"', 1)[1].split(">", 1)[0]
        assert "data-diffusion-only" in field and "hidden" not in field
    # An AR checkpoint picked: those fields are hidden from the start and not counted.
    shown = client.get(f"/generate?checkpoint={a_last}").text
    for name in DIFFUSION_ONLY:
        field = shown.split(f'data-field="grid.{name}"', 1)[1].split(">", 1)[0]
        assert "hidden" in field, name
    assert '<p id="ar-grid-note" class="help">' in shown


def test_on_an_ar_checkpoint_the_unmasking_fields_are_neither_checked_nor_stored(client, tmp_path):
    ar = add_run("ar-run", spec_overrides={"objective": "ar"})
    ckpt = real_checkpoint(ar, tmp_path)
    page = Page(client.get(f"/generate?checkpoint={ckpt}").text)
    data = page.form_data(
        "generate",
        judge=str(ckpt),
        num_samples="2",
        # Left as a user may leave them before picking the AR checkpoint: bad, or a grid.
        **{
            "grid.steps": "many",
            "grid.strategies": ["confidence", "random"],
            "grid.schedules": [],
            "grid.threshold": "2",
        },
    )
    r = client.post("/generate", data=data)
    assert r.status_code == 302, Page(r.text).fields
    with session_scope() as s:
        spec = s.scalars(select(Job).where(Job.kind == JobKind.GENERATE)).one().spec
    assert not set(spec["grid"]) & set(DIFFUSION_ONLY), spec["grid"]
    assert spec["grid"]["samplings"] == ["topk"] and spec["num_samples"] == 2
    assert spec["judge"].endswith("checkpoint-final")  # the AR checkpoint, as its URL
