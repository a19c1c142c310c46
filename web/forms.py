"""HTML forms built from a spec's JSON schema, and posted forms turned back into spec values.

    fields = schema_fields(TrainSpec.model_json_schema(), skip={"preset"})
    shown = display_values(fields, spec.model_dump(mode="json"))  # what the inputs show
    values, errors = parse_form(fields, request.form)  # nested dict, {dotted name: message}
    errors |= validation_errors(exc, names)             # pydantic `loc` -> dotted name

A field is named by its dotted path in the spec (`masking.grid`), which is also its input's
`name`, so an error found anywhere (parsing here, pydantic, `SpecError`) lands next to its
input. The schema decides the widget: numbers (with the schema's bounds), a checkbox for
booleans, a select for enums, checkboxes for lists of enums, comma-separated lists for
lists of numbers or words, text otherwise; `anyOf [X, null]` makes a field optional (empty
means None). No Flask here: a posted form is anything with `.get` and `.getlist`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import ValidationError

Kind = Literal["int", "float", "bool", "choice", "multi", "list", "lines", "text"]
NUMBER = {"integer": "int", "number": "float"}
_SPLIT = re.compile(r"[,\s]+")


class PostedForm(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...
    def getlist(self, key: str) -> list[Any]: ...


@dataclass(frozen=True)
class FormField:
    """One input of a form, named by its dotted path in the spec."""

    name: str
    label: str
    kind: Kind
    description: str = ""
    optional: bool = False  # empty input means None
    inside_optional: str | None = None  # the optional object this field belongs to
    item: Kind | None = None  # element kind of a "list"
    choices: tuple[tuple[str, str], ...] = ()  # (value, label)
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    default: Any = None
    empty_hint: str | None = None  # what an empty input means, where "none" is not it

    @property
    def id(self) -> str:
        return "f-" + self.name.replace(".", "-")

    @property
    def parent(self) -> str:
        """The nested object holding the field ('' at the top level)."""
        return self.name.rpartition(".")[0]

    def limits(self) -> str:
        """The schema's bounds in words: '1 to 4096', '> 0 and ≤ 1'."""
        if self.minimum is not None and self.maximum is not None:
            return f"{_fmt(self.minimum)} to {_fmt(self.maximum)}"
        bounds = (
            ("≥", self.minimum),
            (">", self.exclusive_minimum),
            ("≤", self.maximum),
            ("<", self.exclusive_maximum),
        )
        return " and ".join(f"{op} {_fmt(v)}" for op, v in bounds if v is not None)

    @property
    def help(self) -> str:
        """The schema's description, then the bounds and what an empty input means."""
        parts = [self.description] if self.description else []
        if self.limits():
            parts.append(f"({self.limits()})")
        if self.kind == "list":
            parts.append("Separate values with commas.")
        if self.kind == "lines":
            parts.append("One per line.")
        if self.empty_hint:
            parts.append(self.empty_hint)
        elif self.optional and self.kind != "choice":  # a select names its empty option
            parts.append("Leave empty for none.")
        elif self.inside_optional:
            parts.append(f"Empty: the default ({_fmt(self.default)}).")
        return " ".join(parts)

    @property
    def step(self) -> str:
        return "1" if self.kind == "int" else "any"


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return "" if value is None else str(value)


# ----------------------------------------------------------------------------- schema


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = {
            **defs[node["$ref"].rsplit("/", 1)[-1]],
            **{k: v for k, v in node.items() if k != "$ref"},
        }
    return node


def _optional(node: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the schema of X, True) for anyOf [X, null]; the node itself, False otherwise."""
    options = node.get("anyOf")
    if not options:
        return _resolve(node, defs), False
    kept = [o for o in options if o.get("type") != "null"]
    nullable = len(kept) < len(options)
    if len(kept) != 1:  # a union such as int | str: a free text field
        return {"type": "string", **_meta(node)}, nullable
    return {**_resolve(kept[0], defs), **_meta(node)}, nullable


def _meta(node: dict[str, Any]) -> dict[str, Any]:
    return {k: node[k] for k in ("description", "default", "title") if k in node}


def schema_fields(
    schema: dict[str, Any],
    *,
    skip: Iterable[str] = (),
    kinds: Mapping[str, Kind] | None = None,
) -> list[FormField]:
    """Every leaf field of a pydantic JSON schema, nested objects flattened to dotted names.

    `skip` leaves fields out (a page shows them its own way); `kinds` overrides the widget
    a field gets (`{"prompts": "lines"}`).
    """
    defs = schema.get("$defs", {})
    skip, kinds = set(skip), dict(kinds or {})
    out: list[FormField] = []

    def walk(node: dict[str, Any], prefix: str, inside: str | None) -> None:
        for key, raw in node.get("properties", {}).items():
            name = prefix + key
            if name in skip:
                continue
            prop, nullable = _optional(raw, defs)
            if prop.get("type") == "object" and "properties" in prop:
                walk(prop, name + ".", name if nullable else inside)
                continue
            out.append(_field(name, prop, nullable, inside, kinds.get(name)))

    walk(_resolve(schema, defs), "", None)
    return out


def _field(
    name: str, prop: dict[str, Any], nullable: bool, inside: str | None, kind: Kind | None
) -> FormField:
    item: Kind | None = None
    choices: tuple[tuple[str, str], ...] = ()
    items = prop.get("items", {})
    if "enum" in prop:
        kind = kind or "choice"
        choices = tuple((str(v), str(v)) for v in prop["enum"])
    elif prop.get("type") == "boolean":
        kind = kind or "bool"
    elif prop.get("type") in NUMBER:
        kind = kind or NUMBER[prop["type"]]  # type: ignore[assignment]
    elif prop.get("type") == "array" and "enum" in items:
        kind = kind or "multi"
        choices = tuple((str(v), str(v)) for v in items["enum"])
    elif prop.get("type") == "array":
        kind = kind or "list"
        item = NUMBER.get(items.get("type", ""), "text")  # type: ignore[assignment]
    else:
        kind = kind or "text"
    label = name.rpartition(".")[2].replace("_", " ")
    return FormField(
        name=name,
        label=label,
        kind=kind,
        description=prop.get("description", ""),
        optional=nullable,
        inside_optional=inside,
        item=item,
        choices=choices,
        minimum=prop.get("minimum"),
        maximum=prop.get("maximum"),
        exclusive_minimum=prop.get("exclusiveMinimum"),
        exclusive_maximum=prop.get("exclusiveMaximum"),
        default=prop.get("default"),
    )


# ----------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class Group:
    key: str  # errors naming this key (a nested object's validator) are shown on the group
    title: str
    fields: list[FormField] = field(default_factory=list)


def group_fields(
    fields: list[FormField], layout: list[tuple[str, str, list[str]]], other: str = "Other"
) -> list[Group]:
    """Fields in the layout's groups, in the layout's order: (key, title, names), where a
    name also takes the fields under it (`masking` takes `masking.mode`, ...). A field no
    group names goes to a last group, so a new spec field is never left off the form."""
    groups = [Group(key, title) for key, title, _ in layout]
    rest = Group("other", other)
    for f in fields:
        for g, (_, _, names) in zip(groups, layout, strict=True):
            if any(f.name == n or f.name.startswith(n + ".") for n in names):
                g.fields.append(f)
                break
        else:
            rest.fields.append(f)
    for g, (_, _, names) in zip(groups, layout, strict=True):
        order = {n: i for i, n in enumerate(names)}
        g.fields.sort(key=lambda f: order.get(f.name, order.get(f.name.split(".")[0], 0)))
    return [g for g in [*groups, rest] if g.fields]


# ----------------------------------------------------------------------------- values


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)  # type: ignore[assignment]
    return data


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def display_values(fields: list[FormField], data: Mapping[str, Any]) -> dict[str, Any]:
    """What each input shows for a spec's values: text for inputs, a bool for checkboxes,
    the picked values for checkbox groups."""
    out: dict[str, Any] = {}
    for f in fields:
        value = _get(data, f.name)
        if f.kind == "bool":
            out[f.name] = bool(value)
        elif f.kind == "multi":
            out[f.name] = [str(v) for v in value or []]
        elif f.kind == "lines":
            out[f.name] = "\n".join(str(v) for v in value or [])
        else:
            out[f.name] = _fmt(value)
    return out


def posted_values(fields: list[FormField], form: PostedForm) -> dict[str, Any]:
    """The inputs as the user left them, to show again beside the errors."""
    out: dict[str, Any] = {}
    for f in fields:
        if f.kind == "bool":
            out[f.name] = form.get(f.name) is not None
        elif f.kind == "multi":
            out[f.name] = [str(v) for v in form.getlist(f.name)]
        else:
            out[f.name] = str(form.get(f.name) or "")
    return out


def split_list(text: str) -> list[str]:
    """The entries of a list of numbers as typed: '0.1, 0.2 0.3' -> ['0.1', '0.2', '0.3']."""
    return [p for p in _SPLIT.split(text.strip()) if p]


def _number(text: str, kind: Kind | None) -> int | float:
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _parse(f: FormField, form: PostedForm) -> Any:
    """One field's value; raises ValueError with the message to show beside it."""
    if f.kind == "bool":
        return form.get(f.name) is not None
    if f.kind == "multi":
        return [str(v) for v in form.getlist(f.name)]
    raw = str(form.get(f.name) or "")
    if f.kind == "lines":
        return [line.rstrip("\r") for line in raw.split("\n") if line.strip()]
    if f.kind == "list":
        if f.item == "text":  # words: split at commas only, so a tag may hold a space
            return [p.strip() for p in raw.split(",") if p.strip()]
        return [_number(p, f.item) for p in split_list(raw)]
    text = raw.strip()
    if not text:
        if f.optional or f.inside_optional:
            return None
        raise ValueError("enter a value")
    if f.kind in ("int", "float"):
        return _number(text, f.kind)
    return text


def parse_form(fields: list[FormField], form: PostedForm) -> tuple[dict[str, Any], dict[str, str]]:
    """(nested values, {dotted name: error}) from a posted form.

    An empty optional field is None; an empty field of an optional object is left out
    (the object's default), and an object whose fields are all empty is None.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    filled: dict[str, bool] = {}
    for f in fields:
        try:
            value = _parse(f, form)
        except ValueError as exc:
            errors[f.name] = str(exc)
            continue
        if f.inside_optional:
            filled.setdefault(f.inside_optional, False)
            if value is None:
                continue
            filled[f.inside_optional] = True
        _set(values, f.name, value)
    for name, any_filled in filled.items():
        if not any_filled:
            _set(values, name, None)
    return values, errors


def validation_errors(
    exc: ValidationError, names: Iterable[str], prefix: str = ""
) -> dict[str, str]:
    """pydantic errors as {dotted name: message}, each on the nearest name in `names` (a
    field or a group) that holds its `loc`; '' for errors of the whole form. `prefix` is
    put before every loc (a spec validated inside a larger body)."""
    known = set(names)
    out: dict[str, str] = {}
    for err in exc.errors():
        parts = [p for p in prefix.split(".") if p] + [str(p) for p in err["loc"]]
        target = ""
        for n in range(len(parts), 0, -1):
            candidate = ".".join(parts[:n])
            if candidate in known:
                target = candidate
                break
        message = err["msg"].removeprefix("Value error, ")
        out[target] = f"{out[target]}; {message}" if target in out else message
    return out
