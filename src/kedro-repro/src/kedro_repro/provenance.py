"""A run record as a W3C PROV-JSON document, so a run's provenance outlives this tool.

PROV-JSON (https://www.w3.org/submissions/prov-json/) serialises the W3C PROV data model; any
PROV tool (e.g. the ``prov`` Python package: PROV-N, PROV-O/RDF, graphs) can read it without
this project. It was chosen over an RO-Crate *Process/Workflow Run Crate* because a Kedro run is
a DAG of node executions, each reading and writing datasets, and PROV models exactly that (one
activity per node, ``used`` / ``wasGeneratedBy`` / ``wasDerivedFrom`` per dataset), whereas a Run
Crate centres on one action over files packaged *in* the crate; our datasets live outside the run
bundle, which holds only the record.

The document is built and serialised by the ``prov`` package (:func:`to_prov_document` gives
the :class:`prov.model.ProvDocument`, for PROV-N, PROV-O/RDF or graphs too).

Mapping (identifiers in the ``srepro:`` namespace, bound to the project's URN, ``urn:<project
name>:``, which the caller passes from its :class:`~kedro_repro.config.ReproConfig`):

- the run: activity ``run/<run id>`` with ``prov:startTime``/``prov:endTime``, status, command,
  pipelines, Kedro environment and the digest of the whole recorded environment;
- each node: activity ``run/<run id>/node/<node>`` started by the run (``wasStartedBy`` with the
  run as starter, and ``dcterms:isPartOf``), with its execution index and duration;
- each dataset version: entity ``dataset/<name>/<version>`` (versioned datasets: the version is
  the run id that saved it, so a later run that loads it names the same entity) or
  ``dataset/<name>/<digest hex>`` (unversioned), with its BLAKE3 content digest and location;
  ``wasGeneratedBy`` the node that saved it, ``used`` by the nodes that read it, and
  ``wasDerivedFrom`` every input of the node that produced it;
- node-to-node ``wasInformedBy`` where one node used what another generated (data flow, which is
  what ``wasInformedBy`` means in PROV, rather than mere succession in time);
- the parameters: entity ``parameters/<digest hex>`` whose ``prov:value`` is their canonical JSON,
  used by the run and by every node that reads ``params:``;
- the code (git commit, dirty flag, diff digest), the runtime (Python, torch, every package) and
  the host (OS, CPU, GPUs, driver): agents the run ``wasAssociatedWith``;
- lock files (``uv.lock``, ``flake.lock``): content-addressed entities the run used;
- the bundle's ``record.json`` and data snapshot: entities the run generated.

The record does not list each node's inputs; callers pass the pipeline's structure as
``node_io``. Without it, only the run's inputs and each node's outputs are known, and no
derivations are stated.

Every string of the record goes through :func:`kedro_repro.record.redacted`
first (credentials by shape everywhere; parameters, run options and environment variables by
name too), so an export never carries a secret, even from a record written before redaction.

Nothing here knows about the project; the document is deterministic (elements and relations are
added to the prov document in sorted order, so its blank relation ids ``_:id<n>`` are numbered in
that order, and the JSON has sorted keys), so it can itself be digested. Values are PROV-JSON
typed literals as ``prov`` writes them: strings and booleans plain, numbers as ``{"$": text,
"type": "xsd:int" | "xsd:long" | "xsd:double"}``, times as ``xsd:dateTime`` text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from prov.model import ProvDocument, QualifiedName

from kedro_repro.hashing import digest_hex, file_digest
from kedro_repro.record import (
    RECORD_FILE,
    Environment,
    InputEntry,
    LedgerEntry,
    RunRecord,
    redacted,
)
from kedro_repro.session import RUNS_DIR

PROJECT_PREFIX = "srepro"
DEFAULT_NAMESPACE = "urn:kedro-repro:"
"""URI of the ``srepro:`` prefix unless the caller names its project's (``ReproConfig.namespace``):
a URN, because a project has no web address to mint terms under."""

PREFIXES = {
    PROJECT_PREFIX: DEFAULT_NAMESPACE,
    "prov": "http://www.w3.org/ns/prov#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dcterms": "http://purl.org/dc/terms/",
}
"""The document's prefixes (the ``srepro:`` one bound to the caller's namespace)."""

NodeIO = Sequence[tuple[str, Sequence[str], Sequence[str]]]
"""``(node, inputs, outputs)`` per node, as a Kedro pipeline lists them."""

_ELEMENTS = ("entity", "activity", "agent")


@dataclass(frozen=True)
class _Name:
    """A value that is a qualified name (``prov:type``, ``prov:role``, ``dcterms:isPartOf``)."""

    text: str


def _qname(name: str) -> _Name:
    return _Name(name)


def _local(kind: str, *parts: str) -> str:
    return f"{PROJECT_PREFIX}:{kind}/" + "/".join(parts)


def _hex(digest: str) -> str:
    return digest_hex(digest)


def _canonical(value: Any) -> str:
    """Canonical JSON, the same form :func:`kedro_repro.hashing.json_digest` hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """PROV attributes: ``None`` dropped (PROV has no null), mappings as canonical JSON.

    Lists become multi-valued attributes, which PROV treats as sets, so they are sorted.
    """
    attributes: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or value == []:
            continue
        if isinstance(value, Mapping):  # no PROV literal holds a mapping: its canonical JSON
            value = _canonical(value)
        elif isinstance(value, list | tuple):
            value = sorted(str(v) for v in value)
        attributes[key] = value
    return attributes


# Relation kind -> how ``prov`` states it, from the relation's PROV-JSON fields.
_RELATIONS: dict[str, Callable[[ProvDocument, dict[str, Any], list], Any]] = {
    "used": lambda d, f, extra: d.used(f["activity"], f["entity"], other_attributes=extra),
    "wasGeneratedBy": lambda d, f, extra: d.wasGeneratedBy(
        f["entity"], f["activity"], other_attributes=extra
    ),
    "wasDerivedFrom": lambda d, f, extra: d.wasDerivedFrom(
        f["generatedEntity"], f["usedEntity"], f.get("activity"), other_attributes=extra
    ),
    "wasInformedBy": lambda d, f, extra: d.wasInformedBy(
        f["informed"], f["informant"], other_attributes=extra
    ),
    "wasStartedBy": lambda d, f, extra: d.wasStartedBy(
        f["activity"], starter=f["starter"], other_attributes=extra
    ),
    "wasAssociatedWith": lambda d, f, extra: d.wasAssociatedWith(
        f["activity"], f["agent"], other_attributes=extra
    ),
}
_RELATION_FIELDS = {
    "used": ("activity", "entity"),
    "wasGeneratedBy": ("entity", "activity"),
    "wasDerivedFrom": ("generatedEntity", "usedEntity", "activity"),
    "wasInformedBy": ("informed", "informant"),
    "wasStartedBy": ("activity", "starter"),
    "wasAssociatedWith": ("activity", "agent"),
}


class _Document:
    """Collects what the run states (an element's attributes may come from several places),
    then has ``prov`` build the document from it in a deterministic order."""

    def __init__(self) -> None:
        self.elements: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in _ELEMENTS}
        self.relations: dict[str, list[dict[str, Any]]] = {kind: [] for kind in _RELATIONS}

    def add(self, kind: str, identifier: str, values: Mapping[str, Any]) -> str:
        self.elements[kind].setdefault(identifier, {}).update(_attributes(values))
        return identifier

    def relate(self, kind: str, **fields: Any) -> None:
        self.relations[kind].append({k: v for k, v in fields.items() if v is not None})

    def build(self, namespace: str) -> ProvDocument:
        document = ProvDocument()
        for prefix, uri in PREFIXES.items():
            if prefix not in ("prov", "xsd"):  # prov and xsd are always bound
                document.add_namespace(prefix, namespace if prefix == PROJECT_PREFIX else uri)

        def value(v: Any) -> Any:
            return document.valid_qualified_name(v.text) if isinstance(v, _Name) else v

        def pairs(values: Mapping[str, Any]) -> list[tuple[QualifiedName | str, Any]]:
            return [
                (name, value(item))
                for name, v in values.items()
                for item in (v if isinstance(v, list) else [v])
            ]

        for kind in _ELEMENTS:
            for identifier, values in sorted(self.elements[kind].items()):
                values = dict(values)
                if kind == "activity":
                    times = {k: values.pop(f"prov:{k}Time", None) for k in ("start", "end")}
                    document.activity(
                        identifier,
                        *(None if t is None else datetime.fromisoformat(t) for t in times.values()),
                        other_attributes=pairs(values),
                    )
                else:
                    getattr(document, kind)(identifier, other_attributes=pairs(values))
        for kind, state in _RELATIONS.items():
            # Identical relations stated twice are one; the order (and so the blank ids prov
            # numbers) follows the sorted content, so the same record always yields the same ids.
            unique = sorted({_canonical(r): r for r in self.relations[kind]}.items())
            for _, fields in unique:
                extra = pairs({k: v for k, v in fields.items() if k not in _RELATION_FIELDS[kind]})
                state(document, fields, [(f"prov:{k}", v) for k, v in extra])
        return document


def to_prov_json(
    record: RunRecord,
    run_dir: str | Path | None = None,
    *,
    node_io: NodeIO | None = None,
    locations: Mapping[str, str] | None = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> dict[str, Any]:
    """The PROV-JSON document of a run ``record``, as ``prov`` serialises
    :func:`to_prov_document`'s document."""
    document = to_prov_document(
        record, run_dir, node_io=node_io, locations=locations, namespace=namespace
    )
    return json.loads(document.serialize(format="json"))


def to_prov_document(
    record: RunRecord,
    run_dir: str | Path | None = None,
    *,
    node_io: NodeIO | None = None,
    locations: Mapping[str, str] | None = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> ProvDocument:
    """The PROV document of a run ``record``.

    Secrets in ``record`` are redacted first (see the module docstring). ``run_dir`` is the
    run's bundle; when given, the digest of its ``record.json`` is included. ``node_io`` lists
    each node's inputs and outputs (see :data:`NodeIO`); ``locations`` maps a dataset name to
    its path relative to the project (versioned datasets then live at
    ``<path>/<version>/<file name>``, Kedro's layout). ``namespace`` is the URI the ``srepro:``
    identifiers live under (the project's ``ReproConfig.namespace``).
    """
    # Redacted here, so no caller can export a secret, even from a record older than redaction.
    record = redacted(record)
    doc = _Document()
    run_id = record.run_id
    run = _local("run", run_id)
    doc.add(
        "activity",
        run,
        {
            "prov:type": _qname(f"{PROJECT_PREFIX}:Run"),
            "prov:label": f"run {run_id}",
            # Record times are UTC ISO 8601 with an offset, which is xsd:dateTime as written.
            "prov:startTime": record.started_at,
            "prov:endTime": record.finished_at,
            "srepro:runId": run_id,
            "srepro:status": record.status,
            "srepro:error": record.error,
            "srepro:command": " ".join(record.command) or None,
            "srepro:pipeline": list(record.pipelines),
            "srepro:kedroEnvironment": record.env,
            "srepro:runOptions": record.run_options.model_dump(mode="json"),
            "srepro:loadVersions": record.load_versions or None,
            "srepro:durationSeconds": record.duration_seconds,
            "srepro:recordSchemaVersion": record.schema_version,
            "srepro:nondeterministicOperation": list(record.nondeterministic_operations),
        },
    )
    if record.resumed_from:
        previous = doc.add(
            "activity",
            _local("run", record.resumed_from),
            {
                "prov:type": _qname(f"{PROJECT_PREFIX}:Run"),
                "srepro:runId": record.resumed_from,
            },
        )
        # The resumed run continues from what the earlier one saved (checkpoints, outputs).
        doc.relate("wasInformedBy", informed=run, informant=previous)

    _agents(doc, run, run_id, record)
    parameters = _parameters(doc, run, record)
    _bundle_files(doc, run, run_id, record, run_dir)
    _datasets(doc, run, run_id, record, parameters, node_io, locations or {})
    return doc.build(namespace)


def _agents(
    doc: _Document,
    run: str,
    run_id: str,
    record: RunRecord,
) -> None:
    """The code, runtime and host the run was associated with, and the lock files it used."""
    environment: Environment = record.environment
    # Free-form sections (what git, Python, torch and the hardware could tell): read by key.
    git = environment.git or {}
    python = environment.python
    torch = environment.torch or {}
    hardware = environment.hardware
    packages = environment.packages
    # Agents are scoped to the run: the same commit may be dirty in one run and clean in another,
    # and the same host name may carry other hardware; the commit and host name stay queryable.
    agents = {
        "code": {
            "prov:type": _qname("prov:SoftwareAgent"),
            "prov:label": "project code",
            "srepro:gitCommit": git.get("commit"),
            "srepro:gitBranch": git.get("branch"),
            "srepro:gitDirty": git.get("dirty"),
            "srepro:gitDiffDigest": git.get("diff_digest"),
            "srepro:gitUntrackedCount": git.get("untracked_count"),
        },
        "runtime": {
            "prov:type": _qname("prov:SoftwareAgent"),
            "prov:label": f"{python.get('implementation', 'Python')} {python.get('version', '')}".strip(),
            "srepro:pythonVersion": python.get("version"),
            "srepro:pythonImplementation": python.get("implementation"),
            "srepro:pythonExecutable": python.get("executable"),
            "srepro:package": [f"{name}=={version}" for name, version in packages.items()],
            **{
                f"srepro:torch.{key}": value
                for key, value in torch.items()
                if isinstance(value, str | int | float | bool)
            },
            "srepro:determinismEnvironment": environment.determinism_env,
            "srepro:environmentVariables": environment.environment_variables,
        },
        "host": {
            "prov:type": _qname(f"{PROJECT_PREFIX}:Machine"),
            "prov:label": record.hostname or environment.hostname,
            "srepro:hostname": record.hostname or environment.hostname,
            "srepro:os": hardware.get("os"),
            "srepro:kernel": hardware.get("kernel"),
            "srepro:machine": hardware.get("machine"),
            "srepro:cpuModel": hardware.get("cpu_model"),
            "srepro:cpuFlag": list(hardware.get("cpu_flags") or []),
            "srepro:logicalCpus": hardware.get("logical_cpus"),
            "srepro:affinityCpus": hardware.get("affinity_cpus"),
            "srepro:totalMemoryBytes": hardware.get("total_memory_bytes"),
            "srepro:gpus": {"gpus": hardware["gpus"]} if hardware.get("gpus") else None,
            "srepro:driverVersion": hardware.get("driver_version"),
        },
    }
    for role, values in agents.items():
        agent = doc.add("agent", _local("run", run_id, role), values)
        doc.relate(
            "wasAssociatedWith",
            activity=run,
            agent=agent,
            role=_qname(f"{PROJECT_PREFIX}:{role}"),
        )
    for name, digest in sorted(environment.lock_files.items()):
        if not digest:
            continue
        # Content-addressed: runs with the same lock file name the same entity.
        lock = doc.add(
            "entity",
            _local("file", name, _hex(digest)),
            {
                "prov:type": _qname(f"{PROJECT_PREFIX}:LockFile"),
                "prov:label": name,
                "prov:atLocation": name,
                "srepro:contentDigest": digest,
            },
        )
        doc.relate("used", activity=run, entity=lock)


def _parameters(doc: _Document, run: str, record: RunRecord) -> str:
    """The parameters entity (content-addressed), used by the run; returns its id."""
    recorded = record.parameters
    values = {**recorded.design, **recorded.tunable}
    parameters = doc.add(
        "entity",
        _local("parameters", _hex(recorded.digest)),
        {
            "prov:type": _qname(f"{PROJECT_PREFIX}:Parameters"),
            "prov:label": "parameters",
            # The canonical JSON hashes to srepro:contentDigest, so a reader can check it.
            "prov:value": _canonical(values),
            "srepro:contentDigest": recorded.digest,
            "srepro:designDigest": recorded.design_digest,
            "srepro:tunableDigest": recorded.tunable_digest,
            "srepro:designSection": sorted(recorded.design),
            "srepro:seed": [f"{k}={v}" for k, v in record.seeds.items()],
        },
    )
    doc.relate("used", activity=run, entity=parameters)
    return parameters


def _bundle_files(
    doc: _Document,
    run: str,
    run_id: str,
    record: RunRecord,
    run_dir: str | Path | None,
) -> None:
    """The data snapshot and the record: files of the run's bundle, generated by the run."""
    snapshot = record.data_snapshot
    if snapshot is not None:
        entity = doc.add(
            "entity",
            _local("run", run_id, "data_snapshot"),
            {
                "prov:type": _qname(f"{PROJECT_PREFIX}:DataSnapshot"),
                "prov:label": "data snapshot",
                "prov:atLocation": f"{RUNS_DIR}/{run_id}/{snapshot.file}",
                "srepro:contentDigest": snapshot.digest,
                "srepro:items": snapshot.items,
            },
        )
        doc.relate("wasGeneratedBy", entity=entity, activity=run)
    record_path = Path(run_dir) / RECORD_FILE if run_dir is not None else None
    if record_path is not None and record_path.is_file():
        entity = doc.add(
            "entity",
            _local("run", run_id, "record"),
            {
                "prov:type": _qname(f"{PROJECT_PREFIX}:RunRecord"),
                "prov:label": "run record",
                "prov:atLocation": f"{RUNS_DIR}/{run_id}/{RECORD_FILE}",
                "srepro:fileDigest": file_digest(record_path),
            },
        )
        doc.relate("wasGeneratedBy", entity=entity, activity=run)


def _dataset_entity(
    doc: _Document, name: str, entry: LedgerEntry | InputEntry, locations: Mapping[str, str]
) -> str:
    version, digest = entry.version, entry.digest
    location = locations.get(name)
    if location and version:
        location = f"{location}/{version}/{Path(location).name}"
    return doc.add(
        "entity",
        _local("dataset", name, version or _hex(digest)),
        {
            "prov:type": _qname(f"{PROJECT_PREFIX}:Dataset"),
            "prov:label": name,
            "prov:atLocation": location,
            "srepro:dataset": name,
            "srepro:version": version,
            "srepro:contentDigest": digest,
        },
    )


def _datasets(
    doc: _Document,
    run: str,
    run_id: str,
    record: RunRecord,
    parameters: str,
    node_io: NodeIO | None,
    locations: Mapping[str, str],
) -> None:
    """Node activities, dataset entities, and usage, generation, derivation and data flow."""
    recorded_nodes = record.nodes
    ledger = record.ledger
    # A pipeline structure taken from code that has changed since the run could misstate what a
    # node read: a node's inputs are used only if it still declares every output it recorded.
    inputs_of = {
        name: list(inputs)
        for name, inputs, outputs in node_io or ()
        if {d for d, e in ledger.items() if e.node == name} <= set(outputs)
    }

    # Execution order is the order nodes finished in (the record is a JSON object written as
    # they complete); nodes only named by the ledger (a crash while saving) come last.
    order = list(recorded_nodes) + sorted({e.node for e in ledger.values()} - set(recorded_nodes))
    nodes: dict[str, str] = {}
    for index, name in enumerate(order):
        info = recorded_nodes.get(name)
        nodes[name] = doc.add(
            "activity",
            _local("run", run_id, "node", name),
            {
                "prov:type": _qname(f"{PROJECT_PREFIX}:Node"),
                "prov:label": name,
                "dcterms:isPartOf": _qname(run),
                "srepro:node": name,
                "srepro:executionIndex": index if name in recorded_nodes else None,
                "srepro:durationSeconds": info.seconds if info is not None else None,
            },
        )
        doc.relate("wasStartedBy", activity=nodes[name], starter=run)

    generated: dict[str, tuple[str, str]] = {}  # dataset -> (entity, generating node)
    for name, entry in ledger.items():
        entity = _dataset_entity(doc, name, entry, locations)
        generated[name] = (entity, entry.node)
        doc.relate("wasGeneratedBy", entity=entity, activity=nodes[entry.node])

    loaded: dict[str, str] = {}
    for name, input_entry in record.inputs.items():
        if name in generated:
            continue
        loaded[name] = _dataset_entity(doc, name, input_entry, locations)
        doc.relate("used", activity=run, entity=loaded[name])

    for node, activity in nodes.items():
        names = inputs_of.get(node)
        if names is None:
            continue
        used: set[str] = set()
        parameter_names = sorted(n for n in names if n == "parameters" or n.startswith("params:"))
        if parameter_names:
            used.add(parameters)
            doc.add("activity", activity, {"srepro:parameterInput": parameter_names})
        for name in names:
            if name in generated:
                entity, producer = generated[name]
                used.add(entity)
                if producer != node:
                    doc.relate("wasInformedBy", informed=activity, informant=nodes[producer])
            elif name in loaded:
                used.add(loaded[name])
            # Anything else was not recorded (no digest): stating it would be a guess.
        outputs = [entity for entity, producer in generated.values() if producer == node]
        for entity in sorted(used):
            doc.relate("used", activity=activity, entity=entity)
            for output in outputs:
                doc.relate(
                    "wasDerivedFrom", generatedEntity=output, usedEntity=entity, activity=activity
                )


def dumps(document: Mapping[str, Any]) -> str:
    """The document as deterministic JSON text (sorted keys, fixed indentation, final newline)."""
    return json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
