"""Sample set pages: the list with its run filter, one set with escaped samples, the prompt
highlighted, server-side sorting, and the trajectory viewer's embedded data."""

from __future__ import annotations

import json
import re

from sqlalchemy import select, update

from shared.db import session_scope
from shared.models import Sample
from tests.web.seed import add_run, add_sample_set

XSS = "<script>alert(1)</script>"


def embedded(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="trajectories">(.*?)</script>', html)
    assert match, "no trajectory data on the page"
    return match.group(1)


def replay(data: dict, upto: int) -> list[str | None]:
    """What static/trajectory.js shows after pass `upto` (its td.replay, in Python)."""
    tokens: list[str | None] = [None] * data["length"]
    for changes in data["changes"][: upto + 1]:
        for position, piece in changes:
            tokens[position] = piece
    return tokens


def sample_order(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr data-sample="(\d+)">', html)]


def test_the_list_shows_sets_with_run_settings_and_metrics_and_filters_by_run(client):
    a = add_run("alpha <b>")
    b = add_run("beta")
    set_a = add_sample_set(a, ["In the beginning one"])
    set_b = add_sample_set(
        b,
        ["In the beginning two"],
        settings={"schedule": "cosine", "sampling": "nucleus", "top_p": 0.8, "temperature": 1.0,
                  "steps": 12, "strategy": "margin", "seed": 3},
    )  # fmt: skip
    r = client.get("/sample-sets")
    assert r.status_code == 200
    assert [int(x) for x in re.findall(r'<tr data-set="(\d+)">', r.text)] == [set_b, set_a]
    row_b = r.text.split(f'<tr data-set="{set_b}">', 1)[1].split("</tr>", 1)[0]
    assert "cosine · nucleus p=0.8 · T=1.0 · steps=12 · margin · seed 3" in row_b
    assert f'href="/runs/{b}">beta</a>' in row_b
    assert '<td class="num" data-metric="distinct_2">0.6</td>' in row_b
    assert "alpha &lt;b&gt;" in r.text and "alpha <b>" not in r.text
    only_a = client.get(f"/sample-sets?run_id={a}").text
    assert re.findall(r'<tr data-set="(\d+)">', only_a) == [str(set_a)]
    assert f'<option value="{a}" selected>' in only_a
    assert "No sample sets for this run" in client.get("/sample-sets?run_id=999").text
    assert client.get("/sample-sets?run_id=abc").status_code == 400


def test_a_set_escapes_its_samples_and_highlights_the_prompt(client):
    run_id = add_run("r")
    set_id = add_sample_set(
        run_id, [f"{XSS} and then & more", f"{XSS} again"], prompt=XSS, trajectory=True
    )
    r = client.get(f"/sample-sets/{set_id}")
    assert r.status_code == 200
    html = r.text
    assert XSS not in html  # neither in the table nor in the embedded JSON
    assert (
        '<td class="text"><span class="prefix">&lt;script&gt;alert(1)&lt;/script&gt;</span>'
        " and then &amp; more</td>"
    ) in html
    raw = embedded(html)
    assert "\\u003cscript\\u003e" in raw and "<" not in raw
    data = json.loads(raw)
    assert len(data) == 2
    assert "linear · topk · T=0.7 · steps=3 · entropy · seed 0" in html
    assert '<tr><th>distinct_2</th><td class="num">0.6</td></tr>' in html
    assert "trajectory.js" in html


def test_the_prompt_is_highlighted_only_where_the_text_starts_with_it(client):
    run_id = add_run("r")
    set_id = add_sample_set(run_id, [" In the beginning", "Something else"], prompt="In the")
    html = client.get(f"/sample-sets/{set_id}").text
    assert '<td class="text"><span class="prefix"> In the</span> beginning</td>' in html
    assert '<td class="text">Something else</td>' in html


def test_the_viewer_data_replays_every_stored_pass(client):
    run_id = add_run("r")
    set_id = add_sample_set(run_id, ["In the beginning was the word", "In the beginning God"])
    html = client.get(f"/sample-sets/{set_id}").text
    data = json.loads(embedded(html))
    with session_scope() as s:
        stored = {x.id: x.trajectory for x in s.scalars(select(Sample))}
    assert set(data) == {str(i) for i in stored}
    for sample_id, traj in stored.items():
        view = data[str(sample_id)]
        assert view["given"] == traj["given"] and view["committed_at"] == traj["committed_at"]
        assert view["steps"] == [st["step"] for st in traj["steps"]]
        for i, st in enumerate(traj["steps"]):
            assert replay(view, i) == st["tokens"], (sample_id, i)
        # a toggle and a viewer row per sample
        assert f'class="secondary traj-toggle" data-sample="{sample_id}"' in html
        assert f'<div class="traj-view" data-sample="{sample_id}">' in html


def test_a_set_without_trajectories_says_so(client):
    run_id = add_run("r")
    set_id = add_sample_set(run_id, ["In the beginning"], trajectory=False)
    html = client.get(f"/sample-sets/{set_id}").text
    assert json.loads(embedded(html)) == {}
    assert "traj-toggle" not in html and "No trajectories were recorded" in html


def test_samples_sort_on_the_server(client):
    run_id = add_run("r")
    set_id = add_sample_set(run_id, ["In the beginning bb", "In the beginning a", "In the c"])
    with session_scope() as s:
        ids = [x.id for x in s.scalars(select(Sample).order_by(Sample.position))]
        for sample_id, score in zip(ids, [0.5, None, 0.9], strict=True):
            metrics = {"forward_passes": 3} if score is None else {"forward_passes": 3, "q": score}
            s.execute(update(Sample).where(Sample.id == sample_id).values(metrics=metrics))
    url = f"/sample-sets/{set_id}"
    assert sample_order(client.get(url).text) == ids
    assert sample_order(client.get(f"{url}?sort=length&order=desc").text) == ids
    assert sample_order(client.get(f"{url}?sort=length").text) == [ids[2], ids[1], ids[0]]
    assert sample_order(client.get(f"{url}?sort=seed&order=desc").text) == ids[::-1]
    by_q = client.get(f"{url}?sort=q&order=desc").text
    assert sample_order(by_q) == [ids[2], ids[0], ids[1]]  # no value: last
    assert 'data-sort="q">q ▼</a>' in by_q and "?sort=q&amp;order=asc" in by_q
    bad = client.get(f"{url}?sort=drop+table")
    assert bad.status_code == 200 and sample_order(bad.text) == ids
    assert "sort: choose one of position, seed, length, forward_passes, q" in bad.text


def test_an_unknown_set_is_a_404_page(client):
    r = client.get("/sample-sets/12345")
    assert r.status_code == 404
    assert "no sample set with id 12345" in r.text and "<html" in r.text
    assert client.get(f"/sample-sets/{2**40}").status_code == 404


def test_the_trajectory_viewer_replays_passes_in_a_browser(browser):
    page, base, errors = browser
    run_id = add_run("r")
    set_id = add_sample_set(run_id, [f"{XSS} was the word", "In the beginning God"], prompt=XSS)
    with session_scope() as s:
        first = s.scalars(select(Sample).order_by(Sample.position)).first().id
    page.goto(f"{base}/sample-sets/{set_id}")
    view = page.locator(f'.traj-view[data-sample="{first}"]')
    assert not view.is_visible()
    page.click(f'button.traj-toggle[data-sample="{first}"]')
    assert view.is_visible()
    # pass 0: the prompt given, one word committed (committed_at = position % 3), two masked
    assert view.locator(".traj-label").text_content() == "pass 0 (1 of 3) · 2 masked"
    assert view.locator(".traj-tokens .tok.prefix").all_text_contents() == [f" {XSS}"]
    assert view.locator(".traj-tokens .tok.mask").count() == 2
    colored = view.locator(".traj-tokens .tok:not(.prefix):not(.mask)")
    assert colored.all_text_contents() == [" word"]
    slider = view.locator("input[type=range]")
    slider.fill("2")
    assert view.locator(".traj-label").text_content() == "pass 2 (3 of 3) · 0 masked"
    assert view.locator(".traj-tokens").text_content() == f" {XSS} was the word"
    # each token's colour is its pass's: pass 0 for " word", 1 for " was", 2 for " the"
    styles = [colored.nth(i).get_attribute("style") for i in range(3)]
    assert len(set(styles)) == 3
    assert view.locator(".traj-legend .swatch").all_text_contents() == ["0", "1", "2"]
    # play runs to the end and stops
    slider.fill("0")
    view.locator("button.play").click()
    page.wait_for_function(
        "el => el.textContent.startsWith('pass 2')",
        arg=view.locator(".traj-label").element_handle(),
        timeout=5000,
    )
    assert view.locator("button.play").text_content() == "▶ play"
    assert page.evaluate("typeof window.xss") == "undefined" and errors == []


def test_an_ar_runs_sets_carry_no_unmasking_labels(client, api):
    ar = add_run("ar-run", spec_overrides={"objective": "ar"})
    settings = {"schedule": "linear", "sampling": "topk", "temperature": 0.7, "steps": 10}
    settings |= {"strategy": "entropy", "threshold": 0.9, "block_length": None, "seed": 0}
    set_id = add_sample_set(ar, ["In the beginning God"], settings=settings)
    page = client.get(f"/sample-sets/{set_id}").text
    header = page.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert "AR, token by token · topk · T=0.7 · seed 0" in header
    table = page.split('id="settings"', 1)[1].split("</table>", 1)[0]
    listing = client.get(f"/sample-sets?run_id={ar}").text
    run_page = client.get(f"/runs/{ar}").text.split('id="lineage"', 1)[1].split("</table>")[0]
    for text in (header, table, listing, run_page):
        for label in ("steps", "strategy", "schedule", "threshold", "block_length", "entropy ·"):
            assert label not in text, (label, text)
    assert "sampling" in table and "temperature" in table
    assert "steps" not in api.get(f"/api/sample-sets/{set_id}").json["settings"]
