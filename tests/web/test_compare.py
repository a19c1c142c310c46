"""The compare page: embedded curves of every run, the settings diff, bounds, samples side by
side with a word diff, the picker, and bad run lists answered 400 with the reason."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import event

from shared.db import get_engine, session_scope
from shared.models import JobStatus
from tests.web.seed import add_run, add_sample_set, ce
from web.queries.compare import compare
from web.textdiff import split_prompt, word_diff

XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert match, "no embedded data on the page"
    return json.loads(match.group(1))


def _settings_rows(html: str) -> dict[str, str]:
    return dict(
        (field, kind)
        for kind, field in re.findall(r'<tr class="(same|diff)" data-field="([^"]+)"', html)
    )


def test_two_runs_render_with_curves_settings_bounds_and_samples(client):
    a = add_run("small-lr", spec_overrides={"lr": 0.001})
    b = add_run("big-lr", spec_overrides={"lr": 0.002}, offset=0.3)
    add_sample_set(a, ["In the beginning god made the earth"])
    set_b = add_sample_set(b, ["In the beginning god made heaven"])

    r = client.get(f"/compare?runs={b},{a}")
    assert r.status_code == 200
    html = r.text
    data = _data(html)
    assert [x["id"] for x in data["runs"]] == [b, a]  # the order asked for
    assert set(data["curves"]) == {str(a), str(b)}
    for run_id, offset in ((a, 0.0), (b, 0.3)):
        ev = data["curves"][str(run_id)]["eval"]
        assert ev["steps"] == [100, 200, 300, 400]
        assert len(ev["loss"]) == 11 and ev["loss"]["0.5"][-1] == pytest.approx(
            ce(0.5, 400, offset)
        )
        assert None not in ev["bound"] and len(ev["tokens"]) == 4
        assert "accuracy" not in ev  # the page does not draw it

    rows = _settings_rows(html)
    assert rows["lr"] == "diff" and rows["model"] == "same" and rows["masking.mode"] == "same"
    assert "1 of" in html.split("fields differ", 1)[0][-20:]
    assert 'id="show-all-settings"' in html  # identical rows are hidden until this is ticked

    # Bounds, from the runs' summaries: b's losses are 0.3 nats higher everywhere.
    row = r'<tr data-run="(\d+)">\s*<td>[^<]*</td>\s*<td class="num">400</td>\s*'
    bounds = {int(x): y for x, y in re.findall(row + r'<td class="num">([\d.]+)</td>', html)}
    assert float(bounds[b]) - float(bounds[a]) == pytest.approx(0.3, abs=2e-3)
    # Sample metrics: one row per metric, a column per run (as wide as the runs, however
    # many metrics), the sample sets' links first.
    metrics = html.split('id="sample-metrics"', 1)[1].split("</table>", 1)[0]
    assert '<tr data-metric="distinct_2"><th>distinct_<wbr>2</th>' in metrics  # may wrap at _
    assert metrics.index('data-metric="sample_set"') < metrics.index('data-metric="distinct_2"')
    assert f'href="/sample-sets/{set_b}"' in metrics

    # Samples side by side, each against the first run asked for (b).
    assert html.count('class="card sample-pair"') == 1
    col_a = html.split(f'<div class="sample-col" data-run="{a}">', 1)[1].split("</div>", 1)[0]
    assert "<del>heaven</del>" in col_a and "<ins>the earth</ins>" in col_a
    assert '<span class="prompt">In the beginning</span> <span>god made</span>' in col_a


def test_word_diff_ops_for_a_known_pair(client):
    assert word_diff("the cat sat on the mat", "the dog sat on mat") == [
        {"op": "equal", "text": "the"},
        {"op": "delete", "text": "cat"},
        {"op": "insert", "text": "dog"},
        {"op": "equal", "text": "sat on"},
        {"op": "delete", "text": "the"},
        {"op": "equal", "text": "mat"},
    ]
    a = add_run("a")
    b = add_run("b")
    add_sample_set(a, ["the cat sat on the mat"])
    add_sample_set(b, ["the dog sat on mat"])
    html = client.get(f"/compare?runs={a},{b}").text
    col_b = html.split(f'<div class="sample-col" data-run="{b}">', 1)[1].split("</div>", 1)[0]
    text = re.search(r'<p class="sample-text">(.*?)</p>', col_b).group(1)
    assert text == (
        "<span>the</span> <del>cat</del> <ins>dog</ins> <span>sat on</span> <del>the</del> "
        "<span>mat</span>"
    )
    col_a = html.split(f'<div class="sample-col" data-run="{a}">', 1)[1].split("</div>", 1)[0]
    assert "<ins>" not in col_a and "<del>" not in col_a


def test_the_diff_leaves_the_shared_prompt_alone(client):
    """A sample that repeats its prompt aligns best with the other's prompt plus text:
    diffing whole texts struck through the prompt; only the generated words are diffed."""
    a = add_run("a")
    b = add_run("b")
    add_sample_set(a, ["In the beginning In the beginning God"])
    add_sample_set(b, ["In the beginning God created"])
    html = client.get(f"/compare?runs={a},{b}").text
    col_b = html.split(f'<div class="sample-col" data-run="{b}">', 1)[1].split("</div>", 1)[0]
    text = re.search(r'<p class="sample-text">(.*?)</p>', col_b).group(1)
    assert text == (
        '<span class="prompt">In the beginning</span> '
        "<del>In the beginning</del> <span>God</span> <ins>created</ins>"
    )
    col_a = html.split(f'<div class="sample-col" data-run="{a}">', 1)[1].split("</div>", 1)[0]
    assert "<del>" not in col_a and "<ins>" not in col_a


def test_an_uncased_models_text_still_shares_the_prompt():
    assert split_prompt("In the Beginning", "in the beginning god said") == (
        "in the beginning",
        "god said",
    )
    assert split_prompt("Once upon", "in the beginning") == ("", "in the beginning")
    assert split_prompt("", "god said") == ("", "god said")


def test_eight_runs_render_with_every_runs_curves(client):
    ids = [add_run(f"run-{i}", steps=200, offset=i / 10) for i in range(8)]
    r = client.get("/compare?runs=" + ",".join(map(str, ids)))
    assert r.status_code == 200
    data = _data(r.text)
    assert [x["id"] for x in data["runs"]] == ids
    assert set(data["curves"]) == {str(i) for i in ids}
    for i, run_id in enumerate(ids):
        ev = data["curves"][str(run_id)]["eval"]
        assert ev["steps"] == [100, 200]
        assert ev["loss"]["1"][-1] == pytest.approx(ce(1.0, 200, i / 10))
    assert "No samples to pair" in r.text


def test_names_and_sample_texts_are_escaped(client):
    a = add_run(XSS)
    b = add_run("plain")
    add_sample_set(a, [f"In the beginning {XSS}"], prompt=f"In the {XSS}")
    add_sample_set(b, ["In the beginning nothing"], prompt=f"In the {XSS}")
    html = client.get(f"/compare?runs={a},{b}").text
    assert ESCAPED in html
    assert XSS not in html and "alert(1)</script>" not in html
    assert _data(html)["runs"][0]["name"] == XSS  # the JSON carries it as data


@pytest.mark.parametrize(
    ("runs", "reason"),
    [
        ("1", "pick 2 to 8 runs, got 1"),
        (",".join(str(i) for i in range(1, 10)), "pick 2 to 8 runs, got 9"),
        ("a,b", "expected run ids separated by commas, got &#39;a&#39;"),
        ("1,1", "pick 2 to 8 runs, got 1"),
    ],
)
def test_bad_run_lists_are_400_with_the_reason(client, runs, reason):
    for i in range(3):
        add_run(f"r{i}")
    r = client.get(f"/compare?runs={runs}")
    assert r.status_code == 400
    error = re.search(r'<p class="error" id="compare-error">(.*?)</p>', r.text).group(1)
    assert error == f"runs: {reason}"
    assert 'id="picker"' in r.text  # pick again
    assert 'id="data"' not in r.text


def test_an_unknown_run_is_404(client):
    a = add_run("a")
    r = client.get(f"/compare?runs={a},999")
    assert r.status_code == 404 and "no run with id 999" in r.text


def test_the_picker_lists_recent_runs_and_accepts_its_plain_form(client):
    a = add_run("first")
    b = add_run("second", status=JobStatus.RUNNING, progress_step=200)
    r = client.get("/compare")
    assert r.status_code == 200
    picks = re.findall(r'<input type="checkbox" class="pick" name="runs" value="(\d+)"', r.text)
    assert [int(x) for x in picks] == [b, a]  # newest first
    assert 'id="data"' not in r.text
    # Without the script the form sends runs=1&runs=2: the same comparison.
    r = client.get(f"/compare?runs={a}&runs={b}")
    assert r.status_code == 200 and set(_data(r.text)["curves"]) == {str(a), str(b)}


def test_the_compare_queries_use_indexes(client):
    """EXPLAIN every statement the page runs: none scans a whole table of points."""
    ids = [add_run(f"run-{i}", steps=300) for i in range(3)]
    for run_id in ids:
        add_sample_set(run_id, ["In the beginning"])
    statements = []
    engine = get_engine()

    def grab(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        with session_scope() as s:
            compare(s, ids)
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    assert statements
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        for statement, parameters in statements:
            plan = [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)]
            for step in plan:
                assert not re.match(r"SCAN (eval_points|loss_points)\b", step), (statement, plan)
            if "FROM eval_points" in statement:  # the unique (run_id, step, ratio) index
                assert any(re.match(r"SEARCH eval_points USING .*INDEX", p) for p in plan), plan


def test_an_ar_runs_samples_pair_with_each_diffusion_setting_without_its_labels(client):
    diffusion = add_run("diff")
    ar = add_run("ar", spec_overrides={"objective": "ar"})
    shared = {"sampling": "topk", "temperature": 0.7, "seed": 0}
    for steps in (4, 16):
        settings = {**shared, "steps": steps, "strategy": "confidence", "schedule": "linear"}
        add_sample_set(diffusion, [f"In the beginning at {steps} steps"], settings=settings)
    # Stored as an AR set was before its unmasking settings were dropped: still not shown.
    add_sample_set(ar, ["In the beginning God"], settings={**shared, "steps": 10})
    html = client.get(f"/compare?runs={diffusion},{ar}").text
    pairs = html.split('class="card sample-pair"')[1:]
    assert len(pairs) == 2  # the AR sample beside each of the diffusion run's settings
    for pair, steps in zip(pairs, (16, 4), strict=True):  # newest first
        header = pair.split("</p>", 1)[0]
        assert "sampling topk" in header and "temperature 0.7" in header
        assert "steps" not in header and "strategy" not in header
        col_d, col_ar = (
            pair.split(f'<div class="sample-col" data-run="{i}">', 1)[1].split("</div>", 1)[0]
            for i in (diffusion, ar)
        )
        assert f"steps {steps} · strategy confidence · schedule linear" in col_d
        assert '<p class="help own-settings">AR, token by token</p>' in col_ar
