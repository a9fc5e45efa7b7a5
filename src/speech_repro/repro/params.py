"""Refuse parameter keys that nothing reads: a typo in conf/ must not silently become a default.

A schema maps each key to what may sit below it: a dataclass (its fields, recursing into
dataclass-typed fields), a nested mapping, a set of leaf names, or ``None`` for a free-form value.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from typing import Any


class UnknownParameterError(ValueError):
    """Parameters hold keys the project does not declare; the message names every one."""


def _children(spec: Any) -> Mapping[str, Any] | None:
    if dataclasses.is_dataclass(spec):
        hints = typing.get_type_hints(spec)
        return {
            f.name: hints[f.name] if dataclasses.is_dataclass(hints.get(f.name)) else None
            for f in dataclasses.fields(spec)
        }
    if isinstance(spec, Mapping):
        return spec
    if isinstance(spec, set | frozenset):
        return dict.fromkeys(spec)
    return None  # free-form


def unknown_keys(params: Mapping[str, Any], schema: Any, prefix: str = "") -> list[str]:
    """Dotted paths of keys in ``params`` that ``schema`` does not declare, with suggestions."""
    allowed = _children(schema)
    if allowed is None:
        return []
    problems = []
    for key, value in params.items():
        path = f"{prefix}{key}"
        if key not in allowed:
            close = difflib.get_close_matches(str(key), [str(k) for k in allowed], n=1)
            problems.append(path + (f" (did you mean {prefix}{close[0]}?)" if close else ""))
        elif isinstance(value, Mapping):
            problems.extend(unknown_keys(value, allowed[key], f"{path}."))
    return problems


def check_parameters(params: Mapping[str, Any], schema: Any) -> None:
    """Raise :class:`UnknownParameterError` naming every undeclared key."""
    if problems := unknown_keys(params, schema):
        raise UnknownParameterError(
            f"{len(problems)} unknown parameter key(s) in conf/ (nothing was run): "
            + ", ".join(problems)
        )
