"""A boolean is not a number: the check every spec and API body applies before pydantic's.

pydantic's lax mode reads `true` as 1 for an int field and 1.0 for a float one, so
`"max_steps": true` would be stored as one step. Strict mode would also refuse the
numeric strings the forms send, so instead every field is checked here, before
validation, for a boolean where its type wants a number (in a list too):

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value, info):
        return no_boolean_numbers(value, cls.model_fields[info.field_name].annotation)
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin


def _members(annotation: Any) -> list[Any]:
    """The members of a union (`int | None` -> [int, NoneType]), Annotated unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _item_types(annotation: Any) -> list[Any]:
    """The element types of the list members of `annotation`."""
    return [get_args(m)[0] for m in _members(annotation) if get_origin(m) is list and get_args(m)]


def no_boolean_numbers(value: Any, annotation: Any) -> Any:
    """`value` unchanged, or a ValueError if it (or an item of it) is a boolean where
    `annotation` wants a number."""
    members = _members(annotation)
    if isinstance(value, bool) and bool not in members and {int, float} & set(members):
        raise ValueError("a boolean is not a number")
    if isinstance(value, list):
        for item_type in _item_types(annotation):
            item_members = _members(item_type)
            if bool in item_members or not {int, float} & set(item_members):
                continue
            if any(isinstance(v, bool) for v in value):
                raise ValueError("a boolean is not a number (in the list)")
    return value
