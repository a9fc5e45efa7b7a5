"""Refuse parameters that nothing reads or that have the wrong type, before the first node.

A schema is either a pydantic model of all parameter sections (one :class:`ParameterSection` per
section, unknown keys forbidden): parameters are then validated into it, and every unknown key and
every value of the wrong type is named with where it was set; or, the older form, a mapping of
each key to what may sit below it: a dataclass (its fields, recursing into dataclass-typed
fields), a nested mapping, a set of leaf names, or ``None`` for a free-form value (unknown keys
only).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Mapping, Sequence, Set
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError


class InvalidParameterError(ValueError):
    """Parameters do not fit the project's schema; the message names every problem."""


class UnknownParameterError(InvalidParameterError):
    """Parameters hold keys the project does not declare; the message names every one."""


class ParameterSection(BaseModel):
    """A typed parameter section: unknown keys are errors, and a node cannot change its copy.

    Nodes receive sections as these objects (see
    :class:`~kedro_repro.parameter_hooks.TypedParametersHook`); what a run records stays the raw
    parameters.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def of(cls, value: Any) -> typing.Self:
        """``value`` as this section: itself when it is one, else validated from its mapping
        (for callers outside a Kedro run, e.g. a script handing a node the raw section)."""
        return as_type(cls, value)

    def content_digest(self) -> str:
        """The digest of the section's values, as of the same mapping read from YAML, so a
        section passed between nodes is recorded as the mapping it replaces."""
        from kedro_repro.ledger import content_digest  # the ledger imports much; only if used

        return content_digest(self.model_dump(mode="json"))


T = typing.TypeVar("T")


def as_type(kind: type[T], value: Any) -> T:
    """``value`` when it already is a ``kind``; otherwise validated into one (a pydantic model
    or pydantic dataclass, from its mapping). Raises pydantic's ``ValidationError``."""
    return value if isinstance(value, kind) else _adapter(kind).validate_python(value)


@functools.cache
def _adapter(kind: type) -> TypeAdapter:
    """One validator per type (models and pydantic dataclasses alike)."""
    return TypeAdapter(kind)


def is_model_schema(schema: Any) -> bool:
    """Whether ``schema`` is a pydantic model class (rather than the older mapping form)."""
    return isinstance(schema, type) and issubclass(schema, BaseModel)


def _unwrap(annotation: Any) -> Any:
    """``X`` for ``X | None`` / ``Optional[X]`` / ``Annotated[X, ...]``; others unchanged."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def model_fields(annotation: Any) -> dict[str, Any] | None:
    """The fields (name -> annotation) of a pydantic model, pydantic dataclass or dataclass
    ``annotation``; None when it is none of those."""
    kind = _unwrap(annotation)
    fields = getattr(kind, "__pydantic_fields__", None)
    if isinstance(kind, type) and isinstance(fields, dict):
        return {name: info.annotation for name, info in fields.items()}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(kind)}
    return None


def annotation_at(schema: Any, path: tuple[str | int, ...]) -> Any:
    """The annotation of the value at ``path`` below ``schema`` (``Any`` when it cannot tell):
    into model fields by name, mapping values by key, sequence items by index."""
    annotation = schema
    for key in path:
        kind = _unwrap(annotation)
        fields = model_fields(kind)
        if fields is not None:
            if key not in fields:
                return Any
            annotation = fields[key]
            continue
        arguments = typing.get_args(kind)
        origin = typing.get_origin(kind)
        if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
            annotation = arguments[1] if len(arguments) == 2 else Any
        elif isinstance(origin, type) and issubclass(origin, Sequence | Set):
            annotation = arguments[0] if arguments else Any
        else:
            return Any
    return annotation


def section_type(schema: Any, dotted: str) -> Any | None:
    """The model type of the parameter section ``dotted`` (``training``, ``training.distributed``)
    in ``schema``; None when that section is not a model (a free-form value, a plain mapping)."""
    annotation = annotation_at(schema, tuple(dotted.split(".")))
    kind = _unwrap(annotation)
    return kind if model_fields(kind) is not None else None


def describe_type(annotation: Any) -> str:
    """``int``, ``list[str]``, ``one of 'strict', 'warn'``, ``a TrainingParams mapping``."""
    kind = _unwrap(annotation)
    if typing.get_origin(kind) is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(kind))
    if model_fields(kind) is not None:
        return f"a {kind.__name__} mapping"
    if isinstance(kind, type) and not typing.get_args(kind):
        return kind.__name__
    text = repr(annotation)
    return text.replace("typing.", "").replace("NoneType", "None")


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
) -> BaseModel | None:
    """Raise naming every undeclared key (and, with a model schema, every mistyped value) and
    where it was set; with a pydantic model schema, return the validated parameters."""
    if is_model_schema(schema):
        return validate_parameters(params, schema, sources)
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


_UNKNOWN_KEY_ERRORS = {"extra_forbidden", "unexpected_keyword_argument"}


def validate_parameters(
    params: Mapping[str, Any], schema: type[BaseModel], sources: ParameterSources | None = None
) -> BaseModel:
    """``params`` validated into ``schema``; otherwise raise naming every problem at once.

    An unknown key is named by its dotted path, with the accepted keys of its section (and the
    closest one, as ``did you mean``); a value of the wrong type by its path, the expected type,
    the value given and pydantic's reason. Each says where it was set: which configuration
    file(s), or ``--params``. Raises :class:`UnknownParameterError` when every problem is an
    unknown key, :class:`InvalidParameterError` otherwise.
    """
    try:
        return schema.model_validate(dict(params))
    except ValidationError as error:
        unknown, invalid = [], []
        for problem in error.errors():
            path = _given_path(params, problem["loc"])
            where = sources.of(tuple(str(k) for k in path)) if sources else []
            if problem["type"] in _UNKNOWN_KEY_ERRORS:
                set_in = f", set in {' and '.join(where)}" if where else ""
                unknown.append(set_in.join(_unknown_key(schema, path)))
            else:  # the value is the last source's: each overrides those before it
                set_in = f", set in {where[-1]}" if where else ""
                invalid.append(set_in.join(_invalid_value(schema, path, problem)))
        counts = [f"{len(unknown)} unknown parameter key(s)"] if unknown else []
        counts += [f"{len(invalid)} invalid parameter value(s)"] if invalid else []
        kind = UnknownParameterError if not invalid else InvalidParameterError
        raise kind(
            f"{' and '.join(counts)}; nothing was run:\n"
            + "\n".join(f"  {line}" for line in unknown + invalid)
        ) from None


def _given_path(params: Mapping[str, Any], loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """The part of pydantic's error location that names keys of ``params``: it may end in the
    member type of a union (``('corpus', 'seed', 'int')``), which is no key."""
    path: list[str | int] = []
    tree: Any = params
    for key in loc:
        if isinstance(tree, Mapping):
            path.append(key)
            if key not in tree:  # an unknown or a missing key: nothing lies below
                break
            tree = tree[key]
        elif isinstance(tree, list | tuple) and isinstance(key, int) and 0 <= key < len(tree):
            path.append(key)
            tree = tree[key]
        else:
            break
    return tuple(path)


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(k) for k in path) or "(the parameters)"


def _unknown_key(schema: type[BaseModel], path: tuple[str | int, ...]) -> tuple[str, str]:
    """``training.learning_rat (did you mean training.learning_rate?)`` and
    ``; training accepts: batch_size, ...``: where the key was set goes between them."""
    parent = path[:-1]
    accepted = model_fields(annotation_at(schema, parent)) or {}
    close = difflib.get_close_matches(str(path[-1]), list(accepted), n=1)
    problem = UnknownKey(
        tuple(str(k) for k in path), ".".join((*map(str, parent), close[0])) if close else None
    )
    section = f"section {_dotted(parent)}" if parent else "the parameters"
    return problem.describe(), f"; {section} accepts: {', '.join(sorted(accepted))}"


def _invalid_value(
    schema: type[BaseModel], path: tuple[str | int, ...], problem: Mapping[str, Any]
) -> tuple[str, str]:
    """``training.epochs: expected int, got 'ten' (str)`` and ``: Input should be a valid
    integer``: where the value was set goes between them."""
    value = problem.get("input")
    reason = str(problem.get("msg", "")).removeprefix("Value error, ")
    expected = describe_type(annotation_at(schema, path))
    if problem["type"] == "value_error":  # the type's own check (e.g. an unknown mode) says it
        return f"{_dotted(path)}: invalid", f": {reason}"
    if problem["type"] == "missing":
        return f"{_dotted(path)}: missing, expected {expected}", ""
    return f"{_dotted(path)}: expected {expected}, got {value!r} ({type(value).__name__})", (
        f": {reason}"
    )
