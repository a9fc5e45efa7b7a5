"""Refuse parameter keys that nothing reads: a typo in conf/ must not silently become a default.

A schema maps each key to what may sit below it: a dataclass (its fields, recursing into
dataclass-typed fields), a nested mapping, a set of leaf names, or ``None`` for a free-form value.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from pathlib import Path
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


@dataclasses.dataclass(frozen=True)
class UnknownKey:
    """One undeclared key: its path from the top, and the declared key it most resembles."""

    path: tuple[str, ...]
    suggestion: str | None = None

    @property
    def dotted(self) -> str:
        """The path as ``training.learning_rat``."""
        return ".".join(self.path)

    def describe(self) -> str:
        """``training.learning_rat (did you mean training.learning_rate?)``."""
        return self.dotted + (f" (did you mean {self.suggestion}?)" if self.suggestion else "")


def find_unknown_keys(
    params: Mapping[str, Any], schema: Any, prefix: tuple[str, ...] = ()
) -> list[UnknownKey]:
    """Every key in ``params`` that ``schema`` does not declare, with a suggestion where one is close."""
    allowed = _children(schema)
    if allowed is None:
        return []
    problems = []
    for key, value in params.items():
        path = (*prefix, str(key))
        if key not in allowed:
            close = difflib.get_close_matches(str(key), [str(k) for k in allowed], n=1)
            problems.append(UnknownKey(path, ".".join((*prefix, close[0])) if close else None))
        elif isinstance(value, Mapping):
            problems.extend(find_unknown_keys(value, allowed[key], path))
    return problems


def unknown_keys(params: Mapping[str, Any], schema: Any, prefix: str = "") -> list[str]:
    """Dotted paths of keys in ``params`` that ``schema`` does not declare, with suggestions."""
    start = tuple(prefix.rstrip(".").split(".")) if prefix else ()
    return [problem.describe() for problem in find_unknown_keys(params, schema, start)]


RUNTIME_SOURCE = "--params (runtime parameters)"


@dataclasses.dataclass
class ParameterSources:
    """Where parameters come from: each configuration file's keys, then the runtime parameters."""

    files: list[tuple[str, Mapping[str, Any]]]
    """(file as shown to the user, its content), base environment first."""
    runtime: Mapping[str, Any]

    def of(self, path: tuple[str, ...]) -> list[str]:
        """Every source that sets the key at ``path``: files, then ``--params``."""
        found = [name for name, content in self.files if _holds(content, path)]
        return found + ([RUNTIME_SOURCE] if _holds(self.runtime, path) else [])


def _holds(tree: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(tree, Mapping) or key not in tree:
            return False
        tree = tree[key]
    return True


def parameter_sources(
    conf_source: str | Path,
    environments: list[str],
    patterns: list[str],
    runtime_params: Mapping[str, Any] | None,
    shown_relative_to: str | Path | None = None,
) -> ParameterSources:
    """The parameter files of ``environments`` (folders of ``conf_source``), found with the config
    loader's ``patterns`` as Kedro's OmegaConfigLoader finds them (YAML or JSON, not hidden), and
    the runtime parameters. Files are read without resolving interpolations."""
    from omegaconf import OmegaConf

    root = Path(conf_source)
    shown = Path(shown_relative_to) if shown_relative_to else None
    files = []
    for environment in dict.fromkeys(environments):
        folder = root / environment
        found = (
            {p for pattern in patterns for p in folder.glob(pattern)} if folder.is_dir() else set()
        )
        for path in sorted(found):
            hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
            if hidden or not path.is_file() or path.suffix not in (".yml", ".yaml", ".json"):
                continue
            try:
                content = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            except Exception:  # the config loader reports a broken file itself
                continue
            name = path.relative_to(shown) if shown and path.is_relative_to(shown) else path
            files.append((name.as_posix(), content if isinstance(content, Mapping) else {}))
    return ParameterSources(files, runtime_params or {})


def check_parameters(
    params: Mapping[str, Any], schema: Any, sources: ParameterSources | None = None
) -> None:
    """Raise :class:`UnknownParameterError` naming every undeclared key and where it was set."""
    if problems := find_unknown_keys(params, schema):
        lines = []
        for problem in problems:
            where = sources.of(problem.path) if sources else []
            lines.append(
                f"  {problem.describe()}" + (f", set in {' and '.join(where)}" if where else "")
            )
        raise UnknownParameterError(
            f"{len(problems)} unknown parameter key(s); nothing was run:\n" + "\n".join(lines)
        )
