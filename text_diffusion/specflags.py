"""Command-line flags built from a spec model, as the forms are built from it.

    flags = add_spec_flags(parser, GenerateSpec, flatten={"grid"}, rename={"prompts": "prompt"})
    args = parser.parse_args(argv)
    spec = GenerateSpec.model_validate(spec_values(args, flags))

Every leaf field of the model's JSON schema becomes one flag: its name (`max_steps` ->
`--max-steps`; a nested model's fields are dotted, `--masking.prefix-length`, unless the
nested field is flattened), its type, its choices (a `Literal`), its default and bounds in
the help, and the help itself from the field's description. So a field added to a spec
reaches every command that takes that spec with no second declaration.

Flags default to "not given": `spec_values` returns only what was typed, and the spec's
defaults (or a preset's) fill the rest. Lists are comma-separated (`--steps 8,16`), free
text lists repeat the flag (`--prompt a --prompt b`); booleans have a `--no-` form; an
optional field takes `none` to clear it (`--head-lr none`). Only pydantic and our
contracts are imported, so parsing (and a parse error) never waits for torch.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel

NONE_WORD = "none"  # typed for an optional field: its value is None


class _Null:
    """Parsed `none` of an optional field (argparse's None means "not given")."""

    def __repr__(self) -> str:
        return NONE_WORD


NULL = _Null()


@dataclass(frozen=True)
class SpecFlag:
    """One flag: `field` is the dotted path in the spec, `dest` the namespace attribute."""

    field: str
    flag: str
    dest: str
    schema: dict[str, Any]
    optional: bool


@cache
def field_schemas(model: type[BaseModel]) -> list[tuple[str, dict[str, Any], bool]]:
    """(dotted name, schema, optional) of every leaf field of `model`'s JSON schema, nested
    objects flattened, in declaration order: the same fields `web.forms.schema_fields`
    makes inputs of. Cached: treat the schemas as read-only."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    out: list[tuple[str, dict[str, Any], bool]] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, raw in node.get("properties", {}).items():
            prop, optional = _unwrap(raw, defs)
            if prop.get("type") == "object" and "properties" in prop:
                walk(prop, f"{prefix}{key}.")
            else:
                out.append((prefix + key, prop, optional))

    walk(_resolve(schema, defs), "")
    return out


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = defs[node["$ref"].rsplit("/", 1)[-1]]
        node = {**ref, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _unwrap(node: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(schema of X, True) for `X | None`; a union of several types stays an `anyOf`."""
    meta = {k: node[k] for k in ("description", "default", "title") if k in node}
    options = node.get("anyOf")
    if not options:
        return _resolve(node, defs), False
    kept = [o for o in options if o.get("type") != "null"]
    optional = len(kept) < len(options)
    if len(kept) == 1:
        return {**_resolve(kept[0], defs), **meta}, optional
    return {"anyOf": kept, **meta}, optional


# ----------------------------------------------------------------------------- value types


def _ref(text: str) -> int | str:
    """`int | str` (a checkpoint's id or URL): digits are an id."""
    return int(text) if text.isascii() and text.isdigit() else text


def _number(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            word = "whole number" if kind is int else "number"
            raise argparse.ArgumentTypeError(f"{text!r} is not a {word}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        return value

    parse.__name__ = kind.__name__
    return parse


def _scalar(schema: dict[str, Any]) -> Callable[[str], Any]:
    if "anyOf" in schema:
        return _ref
    if "enum" in schema:
        choices = [str(c) for c in schema["enum"]]

        def choice(text: str) -> str:
            if text not in choices:
                raise argparse.ArgumentTypeError(
                    f"invalid choice {text!r} (choose from {', '.join(choices)})"
                )
            return text

        return choice
    kind = schema.get("type")
    if kind == "integer":
        return _number(int)
    if kind == "number":
        return _number(float)
    return str


def _csv(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        return [item(x.strip()) for x in text.split(",") if x.strip()]

    return parse


def _nullable(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_or_none(text: str) -> Any:
        return NULL if text.strip().lower() == NONE_WORD else parse(text)

    return parse_or_none


# ----------------------------------------------------------------------------- help


def bounds(schema: dict[str, Any]) -> str:
    """The schema's bounds as an interval: "[1, 4096]", "(0, 1]", "[0, inf)"."""
    low, low_open = schema.get("minimum"), False
    if "exclusiveMinimum" in schema:
        low, low_open = schema["exclusiveMinimum"], True
    high, high_open = schema.get("maximum"), False
    if "exclusiveMaximum" in schema:
        high, high_open = schema["exclusiveMaximum"], True
    if low is None and high is None:
        return ""
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    return f"{left}{lo}, {hi}{right}"


def _show(value: Any) -> str:
    if value == "":
        return "''"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(_show(v) for v in value)
    if value is None:
        return NONE_WORD
    return str(value)


def _help(schema: dict[str, Any], optional: bool, required: bool) -> str:
    parts = [schema.get("description", "").rstrip(".")] if schema.get("description") else []
    limit = bounds(schema.get("items", schema))
    if limit:
        parts.append(f"in {limit}" + (" each" if "items" in schema else ""))
    if required:
        parts.append("required")
    elif "default" in schema:
        parts.append(f"default {_show(schema['default'])}")
    if optional:
        parts.append(f"'{NONE_WORD}' for none")
    return "; ".join(p for p in parts if p).replace("%", "%%")  # argparse formats help


# ----------------------------------------------------------------------------- flags


def add_spec_flags(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    *,
    skip: Iterable[str] = (),
    flatten: Iterable[str] = (),
    rename: Mapping[str, str] | None = None,
    aliases: Mapping[str, Iterable[str]] | None = None,
    required: Iterable[str] | None = None,
) -> list[SpecFlag]:
    """Add a flag for every leaf field of `model` (but `skip`) to `parser`; returns them.

    `flatten` names nested models whose fields are flagged without their prefix (`grid`:
    `--steps`, not `--grid.steps`); `rename` gives a field another flag name (`prompts`:
    `--prompt`); `aliases` adds older names. A field without a default is required, unless
    `required` lists which are.
    """
    skip, flatten = set(skip), set(flatten)
    rename, aliases = dict(rename or {}), {k: list(v) for k, v in (aliases or {}).items()}
    schema_required = _required(model)
    out = []
    for field, schema, optional in field_schemas(model):
        if field in skip or field.split(".")[0] in skip:
            continue
        parent, _, leaf = field.rpartition(".")
        shown = leaf if parent in flatten else field
        name = rename.get(field, shown).replace("_", "-")
        dest = "spec:" + field
        needed = field in (required if required is not None else schema_required)
        kw: dict[str, Any] = {"dest": dest, "default": None, "required": needed}
        kw["help"] = _help(schema, optional, needed)
        if schema.get("type") == "boolean":
            kw["action"] = argparse.BooleanOptionalAction
        elif schema.get("type") == "array":
            item = schema.get("items", {})
            if item.get("type") == "string" and "enum" not in item:
                kw["action"] = "append"  # free text may hold commas: repeat the flag
                kw["metavar"] = "TEXT"
            else:
                kw["type"] = _csv(_scalar(item))
                kw["metavar"] = ",".join(map(str, item["enum"])) if "enum" in item else "A,B"
        else:
            kw["type"] = _scalar(schema)
            kw["metavar"] = (
                "{" + ",".join(map(str, schema["enum"])) + "}"
                if "enum" in schema
                else name.rpartition(".")[2].replace("-", "_").upper()
            )
        if optional and "type" in kw:
            kw["type"] = _nullable(kw["type"])
        flags = [f"--{name}", *(f"--{a}" for a in aliases.get(field, []))]
        parser.add_argument(*flags, **kw)
        out.append(SpecFlag(field, flags[0], dest, schema, optional))
    return out


def _required(model: type[BaseModel]) -> set[str]:
    return {name for name, info in model.model_fields.items() if info.is_required()}


def spec_values(args: argparse.Namespace, flags: Iterable[SpecFlag]) -> dict[str, Any]:
    """The values of `flags` that were given, nested by their dotted field names (`none`
    given for an optional field is None)."""
    out: dict[str, Any] = {}
    for f in flags:
        value = getattr(args, f.dest, None)
        if value is None:
            continue
        *parents, last = f.field.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = None if value is NULL else value
    return out


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated by `update`, nested mappings merged key by key."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
