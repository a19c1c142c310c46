"""Every field of every spec reaches every surface that takes the spec, from its declaration:
the CLI commands (a flag that parses into the spec), the forms (an input), and the API's
OpenAPI document (a property). A field added to a spec and missing from a surface fails
here, naming both."""

from __future__ import annotations

import argparse
import functools
from typing import Any

import pytest
from pydantic import BaseModel

from shared.contracts.frontier import FrontierSpec
from shared.contracts.grid import SamplerSpec
from shared.contracts.specs import EvalSpec, GenerateSpec, TrainSpec
from text_diffusion.cli import build_parser
from text_diffusion.commands import diffusion
from text_diffusion.specflags import field_schemas, spec_values

# (command words, the spec it takes, fields it sets another way, and how)
COMMANDS: list[tuple[tuple[str, ...], type[BaseModel], dict[str, str]]] = [
    (("train",), TrainSpec, {"preset": "--preset"}),
    (("submit", "train"), TrainSpec, {"preset": "--preset"}),
    (("submit", "generate"), GenerateSpec, {"frontier": "set by `frontier submit`"}),
    (("submit", "evaluate"), EvalSpec, {}),
    (("frontier", "submit"), FrontierSpec, {}),
    (("generate",), SamplerSpec, {}),
    (("viz", "trajectory"), SamplerSpec, {}),
]
# Flags a command needs whatever field is tried.
REQUIRED = {GenerateSpec: ["--checkpoint", "5"], EvalSpec: ["--checkpoint", "5"]}
REQUIRED[FrontierSpec] = ["--checkpoints", "5"]
EXTRA_ARGS = {("generate",): ["--checkpoint", "x"], ("viz", "trajectory"): ["--checkpoint", "x"]}


def _other(flag: str, schema: dict[str, Any]) -> tuple[list[str], Any]:
    """(argv words, expected value) for a valid value of the field unlike its default."""
    words, value = _value(flag, schema)
    return (words if words[0].startswith("--") else [flag, *words]), value


def _value(flag: str, schema: dict[str, Any]) -> tuple[list[str], Any]:
    default = schema.get("default")
    if "anyOf" in schema:  # int | str: an id
        return ["7"], 7
    if "enum" in schema:
        value = [c for c in schema["enum"] if c != default][-1]
        return [str(value)], value
    kind = schema.get("type")
    if kind == "boolean":
        return ([f"--no-{flag[2:]}"] if default else [flag]), not default
    if kind == "array":
        item = schema.get("items", {})
        if "enum" in item:
            value = list(item["enum"][-2:])
        elif item.get("type") == "integer":
            value = [1, 2]
        elif item.get("type") == "number":
            value = [0.5, 1.0]
        elif item.get("type") == "string":
            value = ["one, with a comma", "two"]
            return [w for v in value for w in (flag, v)], value
        else:  # ids or URLs
            value = [3, "file:///tmp/x"]
        return [",".join(map(str, value))], value
    if kind == "integer":
        low = schema.get("minimum", 0)
        value = default * 2 if isinstance(default, int) and default else low + 1
        value = min(value, schema.get("maximum", value))
        return [str(value)], value
    if kind == "number":
        value = default / 2 if isinstance(default, float) and default else 0.5
        return [repr(value)], value
    return ["x-value"], "x-value"


def _flag_for(parser: argparse.ArgumentParser, field: str) -> str | None:
    for action in parser._actions:
        if action.dest == f"spec:{field}":
            return action.option_strings[0]
    return None


@functools.cache
def _parser() -> argparse.ArgumentParser:
    return build_parser()


def _subparser(words: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = _parser()
    for word in words:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


CASES = [
    pytest.param(words, model, field, other.get(field), id=f"{' '.join(words)}:{field}")
    for words, model, other in COMMANDS
    for field, _, _ in field_schemas(model)
]


@pytest.mark.parametrize(("words", "model", "field", "elsewhere"), CASES)
def test_every_field_parses_from_every_command(words, model, field, elsewhere):
    parser = _subparser(words)
    flag = _flag_for(parser, field)
    if elsewhere is not None:
        assert flag is None, f"{field} has a flag but is declared set by {elsewhere}"
        return
    assert flag is not None, f"`{' '.join(words)}` has no flag for {model.__name__}.{field}"
    schema = {f: s for f, s, _ in field_schemas(model)}[field]
    given, expected = _other(flag, schema)
    argv = [*words, *REQUIRED.get(model, []), *EXTRA_ARGS.get(words, []), *given]
    args = _parser().parse_args(argv)
    if model is TrainSpec:  # the preset first, then the flags
        value: Any = diffusion.spec_from_args(args)
    else:
        value = model.model_validate(spec_values(args, args.spec_flags))
    for part in field.split("."):
        value = getattr(value, part)
    assert value == expected, f"{given} gave {field}={value!r}"


def test_choices_are_the_declared_names():
    """An enum flag refuses a name the spec does not declare, and its help lists them all."""
    parser = _subparser(("submit", "generate"))
    with pytest.raises(SystemExit):
        parser.parse_args(["--checkpoint", "1", "--strategies", "entropy,nonesuch"])
    items = {f: s for f, s, _ in field_schemas(GenerateSpec)}["grid.strategies"]["items"]
    metavar = next(a.metavar for a in parser._actions if a.dest == "spec:grid.strategies")
    assert metavar == ",".join(items["enum"])


FORMS = [(TrainSpec, "web.pages.new_run", "SPEC_FIELDS", {"preset"})]
FORMS.append((GenerateSpec, "web.pages.generate", "FIELDS", {"frontier"}))


@pytest.mark.parametrize(("model", "module", "name", "skipped"), FORMS)
def test_every_field_has_a_form_input(model, module, name, skipped):
    import importlib

    inputs = {f.name for f in getattr(importlib.import_module(module), name)}
    fields = {f for f, _, _ in field_schemas(model)} - skipped
    assert fields <= inputs, f"no input for {sorted(fields - inputs)}"


@pytest.mark.parametrize("model", [TrainSpec, GenerateSpec, EvalSpec, FrontierSpec])
def test_every_field_is_in_the_openapi_document(model):
    from web.openapi import document

    schemas = document()["components"]["schemas"]

    def leaves(node: dict[str, Any], prefix: str = "") -> set[str]:
        out = set()
        for key, prop in node.get("properties", {}).items():
            options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
            target = options[0] if len(options) == 1 else prop
            if "$ref" in target:
                out |= leaves(schemas[target["$ref"].rsplit("/", 1)[-1]], f"{prefix}{key}.")
            else:
                out.add(prefix + key)
        return out

    assert {f for f, _, _ in field_schemas(model)} <= leaves(schemas[model.__name__])
