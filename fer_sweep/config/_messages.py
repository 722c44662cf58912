"""A pydantic validation error as one line a user can act on.

``<key path>: <problem>; <what is allowed>``, the key path spelled as the file spells it and
what is allowed read from the schema itself (field descriptions, a model's keys, a union's
tags, a literal's values). Both validated inputs use it: the training config and the sweep
file.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Hashable, Mapping
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError
from pydantic.fields import FieldInfo


def validation_message(
    err: ValidationError,
    model: Any,
    data: Any = None,
    *,
    where: Callable[[str], str] = str,
) -> str:
    """The first error of ``err``, from validating ``data`` as ``model``, as one line:
    ``<key path>: <problem>; <what is allowed>`` (``where`` words the key path).

    What is allowed comes from the schema: the description of the innermost field (or of an
    ``Annotated`` type), a model's keys, a union's tags, a literal's values. A model names
    its keys with a ``noun`` class attribute (TrainConfig's are "config" keys); a model
    with a ``type`` literal is "a <type> <noun>" (a tpe sampler).
    """
    first = err.errors()[0]
    kind, got, loc = first["type"], first.get("input"), first["loc"]
    msg = first["msg"].removeprefix("Value error, ")
    if kind == "invalid_key" or loc[-1:] == ("[key]",):
        # A model's key is the last part, a dict's is followed by "[key]"; pydantic writes it
        # as an int or as text (True as 1, None as "None"), so the key shown is the input.
        up = loc[:-1] if kind == "invalid_key" else loc[:-2]
        parent = _locate(model, data, up, keep_last=False).path
        path = f"{parent}.{quote_key(got)}" if parent else quote_key(got)
        return f"{where(path)}: key {got!r} is not text; quote it in the YAML"
    at = _locate(model, data, loc, keep_last=kind == "missing")
    if not at.path:
        return f"invalid {getattr(at.owner, 'noun', 'config')}: {msg}"
    path, said = where(at.path), f"; {at.said}" if at.said else ""
    if kind == "extra_forbidden":
        allowed = ", ".join(_keys(at.owner))
        return f"{path}: unknown {_key_noun(at.owner)}; allowed: {allowed}"
    if kind == "missing" and _tags_of(at.owner):
        return f"{path}: missing; a {_kind_noun(at.owner)} needs {loc[-1]}"
    if kind in ("missing", "too_short"):
        return f"{path}: {'missing or empty' if kind == 'missing' else 'empty'}{said}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        noun = getattr(get_args(at.leaf)[0], "noun", "")
        tag = first.get("ctx", {}).get("tag")
        problem = "missing" if tag is None else f"unknown {noun} type {tag!r}"
        return f"{path}.type: {problem}; known: {', '.join(_tags(at.leaf))}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "list_type"):
        if _is_model(at.leaf):
            said = "; allowed: " + ", ".join(_keys(at.leaf))
        elif _is_union(at.leaf):
            said = "; known: " + ", ".join(_tags(at.leaf))
        shape = "a list" if kind == "list_type" else "a mapping"
        return f"{path}: expected {shape}, got {type(got).__name__}{said}"
    if kind == "value_error":  # a validator's own words: "is not a duration; ..."
        return f"{path}: {got!r} {msg}"
    if kind == "literal_error" and get_origin(at.leaf) is Literal:
        known = ", ".join(str(v) for v in get_args(at.leaf))
        return f"{path}: {got!r} is not {at.said or 'allowed'}; known: {known}"
    what = at.said or _TYPE_WORDS.get(kind.removesuffix("_type").split("_")[0], "")
    if what:
        return f"{path}: {got!r} is not {what}"
    return f"{path}: {msg} (got {got!r})"


# What a plain type is called, by the first word of pydantic's error type (int_from_float).
_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "text"}


class _At(NamedTuple):
    path: str  # the key path as the file spells it: space.lr.low, trials[0].lr
    owner: Any  # the innermost model on the way
    said: str  # the innermost description on the way
    leaf: Any  # the type expected there


def _locate(model: Any, data: Any, loc: tuple[Any, ...], *, keep_last: bool) -> _At:
    """Follow pydantic's error location through ``model``'s annotations and ``data``.

    At a union pydantic adds a part naming the member (a tag such as ``tpe``, or a type
    such as ``int``): the key path leaves it out and the walk follows that member.
    """
    path, owner, said, tp = "", model, "", model
    for i, part in enumerate(loc):
        tp, said = _unwrap(tp, said)
        if _is_union(tp):
            tp = next((m for m in get_args(tp) if _member_named(m, part)), Any)
            continue
        if not (_indexes(data, part) or (keep_last and i == len(loc) - 1)):
            continue  # "[key]", or a member part past the end of the annotations
        index = isinstance(data, list)
        path += f"[{part}]" if index else ("." if path else "") + quote_key(part)
        data = data[part] if _indexes(data, part) else None
        said = ""
        if _is_model(tp):
            owner, field = tp, tp.model_fields.get(part)
            tp, said = (field.annotation, field.description or "") if field else (Any, "")
        elif get_origin(tp) in (dict, Mapping, list, tuple):
            tp = get_args(tp)[-1 if get_origin(tp) in (dict, Mapping) else 0]
        else:
            tp = Any
    tp, said = _unwrap(tp, said)
    return _At(path, owner, said, tp)


def _unwrap(tp: Any, said: str) -> tuple[Any, str]:
    """``tp`` without ``Annotated`` and ``| None``, and the description found on the way."""
    while True:
        if get_origin(tp) is Annotated:
            for meta in tp.__metadata__:
                if isinstance(meta, FieldInfo) and meta.description:
                    said = meta.description
            tp = get_args(tp)[0]
        elif _is_union(tp) and type(None) in get_args(tp):
            rest = tuple(a for a in get_args(tp) if a is not type(None))
            tp = rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007
        else:
            return tp, said


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _tags(union: Any) -> list[str]:
    return [t for m in get_args(union) for t in _tags_of(m)]


def _tags_of(member: Any) -> list[str]:
    """A union member's tags: its ``type`` literal (a model), or its ``Tag``."""
    if get_origin(member) is Annotated:
        return [m.tag for m in member.__metadata__ if isinstance(m, Tag)]
    if _is_model(member) and "type" in member.model_fields:
        return list(get_args(member.model_fields["type"].annotation))
    return []


def _member_named(member: Any, part: Any) -> bool:
    plain = get_args(member)[0] if get_origin(member) is Annotated else member
    return part in _tags_of(member) or part == getattr(plain, "__name__", None)


def _indexes(data: Any, part: Any) -> bool:
    if isinstance(data, dict):
        return isinstance(part, Hashable) and part in data
    return isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)


def _keys(model: Any) -> list[str]:
    """A model's keys as a file lists them: ``type`` first, then its own before inherited."""
    own = [k for cls in model.__mro__ for k in vars(cls).get("__annotations__", {})]
    keys = [k for k in dict.fromkeys(own) if k in model.model_fields]
    return sorted(keys, key=lambda k: k != "type")


def _key_noun(model: Any) -> str:
    """How a model's keys are called: option for a tpe sampler, budget key, config key."""
    if _is_model(model) and "type" in model.model_fields:
        return f"option for a {_kind_noun(model)}"
    return f"{getattr(model, 'noun', 'config')} key"


def _kind_noun(model: Any) -> str:
    tags = _tags_of(model)
    noun = getattr(model, "noun", "config")
    return f"{tags[0]} {noun}" if tags else noun


def quote_key(part: Any) -> str:
    text = str(part)
    return text if re.fullmatch(r"[A-Za-z0-9_]+", text) else f'"{text}"'
