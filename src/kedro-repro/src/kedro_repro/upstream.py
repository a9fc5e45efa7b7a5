"""Which run's version a partial run loads for each input that another run produced.

Every versioned output is saved under the producing run's id, and Kedro's default for a free
input is the newest version on disk, whatever configuration wrote it. When two configurations
(environments, or parameters such as another corpus) share catalog paths, a partial run
(``--pipelines``, ``--from-nodes``) would read the other configuration's data. Here the run
records decide instead: for each such input, the newest run whose ledger holds it, with the same
environment and the same values of every parameter the nodes upstream of that input read, is
the version to load. When no recorded run matches but another configuration's does, the run
stops before any node, naming the dataset, that run, and the first parameter (or the
environment) that differs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from kedro_repro.record import RunRecord
from kedro_repro.redaction import redact_value

__all__ = [
    "UpstreamChoice",
    "UpstreamMismatchError",
    "choose_upstream",
    "comparable_parameters",
    "first_difference",
    "upstream_parameters",
]

WHOLE = ""
"""The reference of the ``parameters`` input: every parameter at once."""

_MISSING = object()


class UpstreamMismatchError(RuntimeError):
    """No recorded run saved an input under this run's configuration; another one did."""


class UpstreamChoice(BaseModel):
    """The version a run loads for one input another run produced."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    run_id: str
    version: str


def upstream_parameters(nodes: Iterable[Any], dataset: str) -> set[str]:
    """The parameters read by the nodes that produce ``dataset`` and by all their ancestors.

    ``nodes`` are the project's nodes (every registered pipeline's, so an input produced in
    another pipeline still counts). References are dotted (``corpus``, ``corpus.seed``); the
    ``parameters`` input reads everything and is :data:`WHOLE`.
    """
    producers: dict[str, list[Any]] = {}
    for node in nodes:
        for output in node.outputs:
            producers.setdefault(output, []).append(node)
    found: set[str] = set()
    seen: set[str] = set()
    pending = [dataset]
    while pending:
        name = pending.pop()
        for node in producers.get(name, []):
            if node.name in seen:
                continue
            seen.add(node.name)
            for source in node.inputs:
                if source.startswith("params:"):
                    found.add(source.removeprefix("params:"))
                elif source == "parameters":
                    found.add(WHOLE)
                else:
                    pending.append(source)
    return found


def comparable_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as a run record stores them: secrets redacted, plain JSON values (tuples as
    lists), so the current run's values compare like with like with recorded ones."""
    return json.loads(json.dumps(redact_value(dict(params)), default=str))


def _value_at(params: Any, reference: str) -> Any:
    if reference == WHOLE:
        return params
    value = params
    for key in reference.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _first_leaf_difference(reference: str, ours: Any, theirs: Any) -> str | None:
    """The dotted path of the first value that differs between ``ours`` and ``theirs``."""
    if ours == theirs:
        return None
    if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        for key in sorted(set(ours) | set(theirs), key=str):
            path = f"{reference}.{key}" if reference else str(key)
            found = _first_leaf_difference(path, ours.get(key, _MISSING), theirs.get(key, _MISSING))
            if found:
                return found
    return reference or "parameters"


def _shown(value: Any) -> str:
    return "(absent)" if value is _MISSING else json.dumps(value, default=str)


def first_difference(
    record: RunRecord, env: str | None, params: Mapping[str, Any], references: Iterable[str]
) -> str | None:
    """How ``record``'s configuration differs from this run's for ``references``, or None.

    ``params`` are the current run's :func:`comparable_parameters`. The environment comes
    first: another environment may point the same datasets at other sources.
    """
    if record.env != env:
        return f"environment {record.env or '(default)'!r} (this run: {env or '(default)'!r})"
    recorded = {**record.parameters.design, **record.parameters.tunable}
    for reference in sorted(references):
        theirs = _value_at(recorded, reference)
        ours = _value_at(params, reference)
        path = _first_leaf_difference(reference, ours, theirs)
        if path is not None:
            return (
                f"parameter {path} = {_shown(_value_at(recorded, path))} "
                f"(this run: {_shown(_value_at(params, path))})"
            )
    return None


def choose_upstream(
    records: list[RunRecord],
    inputs: Mapping[str, set[str]],
    env: str | None,
    params: Mapping[str, Any],
    exists: Callable[[str, str], bool] = lambda dataset, version: True,
) -> dict[str, UpstreamChoice]:
    """For each of ``inputs`` (dataset -> the parameters upstream of it), the newest recorded
    version saved under this run's environment and parameter values.

    ``records`` are oldest first (:func:`~kedro_repro.record.list_records`); ``params`` are
    :func:`comparable_parameters`; ``exists(dataset, version)`` says whether that version is
    still stored. An input no record saved is left out: Kedro then loads as it always does.

    Raises :class:`UpstreamMismatchError` for an input that only other configurations saved,
    naming the newest such run and how its configuration differs.
    """
    chosen: dict[str, UpstreamChoice] = {}
    for dataset, references in sorted(inputs.items()):
        mismatch: tuple[RunRecord, str] | None = None
        for record in reversed(records):
            entry = record.ledger.get(dataset)
            if entry is None or entry.version is None or not exists(dataset, entry.version):
                continue
            difference = first_difference(record, env, params, references)
            if difference is None:
                chosen[dataset] = UpstreamChoice(
                    dataset=dataset, run_id=record.run_id, version=entry.version
                )
                break
            mismatch = mismatch or (record, difference)
        else:
            if mismatch is not None:
                record, difference = mismatch
                raise UpstreamMismatchError(
                    f"input {dataset!r}: its newest version ({record.run_id}) was saved by run "
                    f"{record.run_id} with another configuration ({difference}), and no "
                    "recorded run saved it with this run's configuration. Run the nodes that "
                    f"produce {dataset!r} with this configuration first (e.g. without "
                    f"--pipelines/--from-nodes), or pin a version with --load-versions "
                    f"{dataset}:<run id>."
                )
    return chosen
