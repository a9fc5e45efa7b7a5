"""PROV-JSON export of a real run: well-formed, faithful to the record, readable by a PROV library."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import prov.model
import pytest

from kedro_repro.hashing import file_digest, json_digest
from kedro_repro.provenance import PREFIXES, dumps, to_prov_json
from kedro_repro.record import RunOptions, RunRecord, list_records
from kedro_repro.session import RUNS_DIR
from speech_repro.pipeline_registry import register_pipelines
from speech_repro.settings import REPRO
from tests.conftest import copy_project, run_kedro

# For each PROV-JSON relation: which of its fields name which kind of element.
REFERENCES = {
    "used": {"prov:activity": "activity", "prov:entity": "entity"},
    "wasGeneratedBy": {"prov:entity": "entity", "prov:activity": "activity"},
    "wasDerivedFrom": {
        "prov:generatedEntity": "entity",
        "prov:usedEntity": "entity",
        "prov:activity": "activity",
    },
    "wasInformedBy": {"prov:informed": "activity", "prov:informant": "activity"},
    "wasStartedBy": {"prov:activity": "activity", "prov:starter": "activity"},
    "wasAssociatedWith": {"prov:activity": "activity", "prov:agent": "agent"},
}
ELEMENTS = ("entity", "activity", "agent")
# xsd:dateTime (XML Schema 1.1 part 2, 3.3.7), with the offset required: records are in UTC.
XSD_DATETIME = re.compile(r"^-?\d{4,}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
# PROV-JSON leaves these prefixes implicit, and prov does not write them
IMPLICIT_PREFIXES = {"prov", "xsd"}
XSD_INTEGERS = {"xsd:int", "xsd:long", "xsd:integer"}


def _number(value: dict) -> int | float:
    """A PROV-JSON typed numeric literal (prov writes numbers as ``{"$": text, "type": ...}``)."""
    return int(value["$"]) if value["type"] in XSD_INTEGERS else float(value["$"])


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project copy after one real ``kedro run --env test`` (the only run this module makes)."""
    project = copy_project(tmp_path_factory.mktemp("provenance") / "speech-repro")
    run_kedro(project, "run", "--env", "test")
    return project


@pytest.fixture(scope="module")
def record(project) -> RunRecord:
    return list_records(project / RUNS_DIR)[-1]


@pytest.fixture(scope="module")
def node_io(record) -> list:
    pipeline = register_pipelines()[record.pipelines[0]]
    return [(n.name, n.inputs, n.outputs) for n in pipeline.nodes]


@pytest.fixture(scope="module")
def document(project, record, node_io) -> dict:
    return to_prov_json(
        record, project / RUNS_DIR / record.run_id, node_io=node_io, namespace=REPRO.namespace
    )


def _relations(document: dict, kind: str) -> list[dict]:
    return list(document.get(kind, {}).values())


def _dangling(document: dict) -> list[str]:
    """Every reference in a relation to an element the document does not declare."""
    declared = {kind: set(document.get(kind, {})) for kind in ELEMENTS}
    problems = []
    for kind in set(document) - {"prefix", *ELEMENTS}:
        assert kind in REFERENCES, f"relation {kind} is not checked by this test"
        for relation_id, relation in document[kind].items():
            assert relation_id.startswith("_:")
            for field, element in REFERENCES[kind].items():
                if field in relation and relation[field] not in declared[element]:
                    problems.append(f"{kind} {relation_id}: {field} {relation[field]}")
    return problems


def _datasets(document: dict) -> dict[str, dict]:
    return {
        attributes["srepro:dataset"]: {"id": identifier, **attributes}
        for identifier, attributes in document["entity"].items()
        if attributes.get("prov:type", {}).get("$") == "srepro:Dataset"
    }


def test_every_relation_refers_to_a_declared_element(document):
    assert _dangling(document) == []
    prefixes = set(document["prefix"]) | IMPLICIT_PREFIXES
    assert prefixes == set(PREFIXES)
    assert document["prefix"]["srepro"] == REPRO.namespace == "urn:speech-repro:"
    for kind in ELEMENTS:
        for identifier in document[kind]:
            assert identifier.split(":", 1)[0] in prefixes, identifier
    for kind, fields in REFERENCES.items():  # each relation names all its required fields
        for relation in _relations(document, kind):
            required = [
                f for f in fields if not (kind == "wasDerivedFrom" and f == "prov:activity")
            ]
            assert set(required) <= set(relation), (kind, relation)


def test_run_times_are_the_recorded_xsd_datetimes(document, record):
    run = document["activity"][f"srepro:run/{record.run_id}"]
    # the same instants; prov writes xsd:dateTime with microseconds (".143000+00:00")
    for key, recorded in (("prov:startTime", "started_at"), ("prov:endTime", "finished_at")):
        assert datetime.fromisoformat(run[key]) == datetime.fromisoformat(getattr(record, recorded))
    for attributes in document["activity"].values():
        for key in ("prov:startTime", "prov:endTime"):
            if key in attributes:
                assert XSD_DATETIME.match(attributes[key]), attributes[key]
    assert datetime.fromisoformat(run["prov:startTime"]) <= datetime.fromisoformat(
        run["prov:endTime"]
    )


def test_dataset_digests_and_versions_are_the_recorded_ones(document, record):
    datasets = _datasets(document)
    recorded = {**record.inputs, **record.ledger}
    assert set(datasets) == set(recorded)
    for name, entry in recorded.items():
        assert datasets[name]["srepro:contentDigest"] == entry.digest, name
        assert datasets[name].get("srepro:version") == entry.version, name
    parameters = document["entity"][f"srepro:parameters/{record.parameters.digest.split(':')[1]}"]
    assert parameters["srepro:contentDigest"] == record.parameters.digest
    # the exported parameters hash to the recorded digest: a reader can check them
    assert json_digest(json.loads(parameters["prov:value"])) == record.parameters.digest
    assert record.data_snapshot is not None
    snapshot = document["entity"][f"srepro:run/{record.run_id}/data_snapshot"]
    assert snapshot["srepro:contentDigest"] == record.data_snapshot.digest


def test_the_record_file_is_named_with_its_digest(document, project, record):
    entity = document["entity"][f"srepro:run/{record.run_id}/record"]
    path = project / entity["prov:atLocation"]
    assert entity["srepro:fileDigest"] == file_digest(path)


def test_lineage_follows_the_ledger_and_the_pipeline(document, record, node_io):
    run = f"srepro:run/{record.run_id}"
    datasets = {name: d["id"] for name, d in _datasets(document).items()}
    node = {name: f"{run}/node/{name}" for name in record.nodes}
    generation = {
        (g["prov:entity"], g["prov:activity"]) for g in _relations(document, "wasGeneratedBy")
    }
    usage = {(u["prov:activity"], u["prov:entity"]) for u in _relations(document, "used")}
    derivation = {
        (d["prov:generatedEntity"], d["prov:usedEntity"], d["prov:activity"])
        for d in _relations(document, "wasDerivedFrom")
    }
    informed = {
        (i["prov:informed"], i["prov:informant"]) for i in _relations(document, "wasInformedBy")
    }
    started = {
        (s["prov:activity"], s["prov:starter"]) for s in _relations(document, "wasStartedBy")
    }

    for name, entry in record.ledger.items():
        assert (datasets[name], node[entry.node]) in generation
    for name in record.inputs:
        assert (run, datasets[name]) in usage
    assert started == {(activity, run) for activity in node.values()}
    for name, inputs, outputs in node_io:
        data_inputs = [i for i in inputs if i in datasets]
        for i in data_inputs:
            assert (node[name], datasets[i]) in usage
            producer = record.ledger[i].node if i in record.ledger else None
            if producer:
                assert (node[name], node[producer]) in informed
        for output in outputs:
            for i in data_inputs:
                assert (datasets[output], datasets[i], node[name]) in derivation
    order = [_number(document["activity"][node[n]]["srepro:executionIndex"]) for n in record.nodes]
    assert order == list(range(len(record.nodes)))


def test_code_runtime_and_host_are_associated_agents(document, record):
    run = f"srepro:run/{record.run_id}"
    roles = {
        a["prov:role"]["$"]: a["prov:agent"] for a in _relations(document, "wasAssociatedWith")
    }
    assert set(roles) == {"srepro:code", "srepro:runtime", "srepro:host"}
    runtime = document["agent"][roles["srepro:runtime"]]
    environment = record.environment
    assert environment.torch is not None
    assert runtime["srepro:pythonVersion"] == environment.python["version"]
    assert runtime["srepro:torch.version"] == environment.torch["version"]
    assert f"torch=={environment.packages['torch']}" in runtime["srepro:package"]
    assert all(a["prov:activity"] == run for a in _relations(document, "wasAssociatedWith"))


def test_git_state_and_lock_files_are_exported(project, record, node_io):
    """The test copy is no git checkout; a record from one names its commit and lock digests."""
    changed = record.model_copy(deep=True)
    changed.environment.git = {
        "commit": "0" * 40,
        "branch": "main",
        "dirty": True,
        "diff_digest": "blake3:" + "1" * 64,
        "untracked_count": 2,
    }
    changed.environment.lock_files = {"uv.lock": "blake3:" + "2" * 64, "flake.lock": None}
    document = to_prov_json(changed, node_io=node_io)
    assert _dangling(document) == []
    code = document["agent"][f"srepro:run/{record.run_id}/code"]
    assert code["srepro:gitCommit"] == "0" * 40
    assert code["srepro:gitDirty"] is True
    assert code["srepro:gitDiffDigest"] == "blake3:" + "1" * 64
    lock = document["entity"]["srepro:file/uv.lock/" + "2" * 64]
    assert lock["srepro:contentDigest"] == "blake3:" + "2" * 64
    assert {
        "prov:activity": f"srepro:run/{record.run_id}",
        "prov:entity": "srepro:file/uv.lock/" + "2" * 64,
    } in _relations(document, "used")
    assert not any("flake.lock" in e for e in document["entity"])  # absent, not invented


def test_a_prov_library_reads_the_document(document, record):
    parsed = prov.model.ProvDocument.deserialize(content=dumps(document), format="json")
    records = parsed.get_records()
    assert len(list(parsed.get_records(prov.model.ProvEntity))) == len(document["entity"])
    assert len(list(parsed.get_records(prov.model.ProvActivity))) == len(document["activity"])
    assert len(list(parsed.get_records(prov.model.ProvAgent))) == len(document["agent"])
    relations = sum(len(document[k]) for k in REFERENCES if k in document)
    assert (
        len(records)
        == len(document["entity"]) + len(document["activity"]) + len(document["agent"]) + relations
    )
    run = parsed.get_record(f"srepro:run/{record.run_id}")[0]
    assert run.get_startTime() == datetime.fromisoformat(record.started_at)
    assert run.identifier.uri == f"urn:speech-repro:run/{record.run_id}"


def test_the_export_is_deterministic(project, record, node_io):
    shuffled = record.model_copy(deep=True)
    # Key order must not matter (nodes' does); the environment's sections have the model's order.
    shuffled.ledger = dict(reversed(list(shuffled.ledger.items())))
    shuffled.inputs = dict(reversed(list(shuffled.inputs.items())))
    shuffled.environment.lock_files = dict(reversed(list(shuffled.environment.lock_files.items())))
    run_dir = project / RUNS_DIR / record.run_id
    text = dumps(to_prov_json(record, run_dir, node_io=node_io))
    assert text == dumps(to_prov_json(record, run_dir, node_io=node_io))
    assert text == dumps(to_prov_json(shuffled, run_dir, node_io=list(reversed(node_io))))


def test_without_the_pipeline_only_recorded_facts_are_stated(record):
    document = to_prov_json(record)
    assert _dangling(document) == []
    assert "wasDerivedFrom" not in document and "wasInformedBy" not in document
    assert len(_relations(document, "wasGeneratedBy")) == len(record.ledger) + 1  # + snapshot


def test_a_pipeline_that_no_longer_matches_the_record_is_not_trusted(record, node_io):
    producer = next(iter(record.ledger.values())).node
    # as if the code had changed since the run: the node no longer declares what it saved
    stale = [(n, i, [] if n == producer else o) for n, i, o in node_io]
    document = to_prov_json(record, node_io=stale)
    node = f"srepro:run/{record.run_id}/node/{producer}"
    assert _dangling(document) == []
    assert not any(u["prov:activity"] == node for u in _relations(document, "used"))
    assert not any(d["prov:activity"] == node for d in _relations(document, "wasDerivedFrom"))


def test_a_resumed_run_is_informed_by_the_run_it_continues(record):
    resumed = record.model_copy(update={"resumed_from": "2000-01-01T00.00.00.000Z"})
    document = to_prov_json(resumed)
    assert _dangling(document) == []
    assert {
        "prov:informed": f"srepro:run/{record.run_id}",
        "prov:informant": "srepro:run/2000-01-01T00.00.00.000Z",
    } in _relations(document, "wasInformedBy")


def test_an_old_record_with_secrets_exports_none_of_them(record):
    """A record written before redaction existed (planted here) is exported redacted."""
    old = record.model_copy(deep=True)
    old.command = ["kedro", "run", "--params", "db.password=pw-prov-1"]
    old.error = "RuntimeError: https://u:p@ss-prov-2@host/x refused"
    old.parameters.tunable["relock"] = {"token": "tok-prov-3"}
    old.environment.environment_variables["HF_HUB_AUTH"] = "auth-prov-4"
    old.run_options = RunOptions(runtime_params={"hub_pat": "ghp_" + "P" * 36})
    text = dumps(to_prov_json(old))
    for secret in ("pw-prov-1", "ss-prov-2", "tok-prov-3", "auth-prov-4", "P" * 36):
        assert secret not in text
    assert old.parameters.tunable["relock"] == {"token": "tok-prov-3"}  # input unchanged


def _export(project: Path, *args: str, hash_seed: str = "0") -> subprocess.CompletedProcess:
    environ = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "PYTHONHASHSEED": hash_seed}
    return subprocess.run(
        [sys.executable, "-m", "kedro", "repro", "export", *args],
        cwd=project, env=environ, capture_output=True, text=True,
    )  # fmt: skip


def test_cli_exports_to_stdout_or_atomically_to_a_file_never_into_the_bundle(
    project, record, tmp_path
):
    run_id = record.run_id
    shown = _export(project, run_id)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)  # standard output holds the document alone
    assert _dangling(document) == []
    assert document["prefix"]["srepro"] == "urn:speech-repro:"  # the project's, from settings
    prov.model.ProvDocument.deserialize(content=shown.stdout, format="json")
    for name, dataset in _datasets(document).items():  # locations are real paths in the project
        if dataset.get("srepro:version"):
            assert (project / dataset["prov:atLocation"]).exists(), name
    assert len(document.get("wasDerivedFrom", {})) > 0  # the CLI supplies the pipeline structure

    output = tmp_path / "exports" / "prov.json"
    # another process with other string hashes: prov's sets must not change the bytes
    written = _export(
        project, run_id, "--format", "prov-json", "--output", str(output), hash_seed="12345"
    )
    assert written.returncode == 0, written.stderr
    assert output.read_text() == shown.stdout
    assert [p.name for p in output.parent.iterdir()] == ["prov.json"]  # no temporary file left

    bundle = project / RUNS_DIR / run_id
    before = sorted(p.name for p in bundle.iterdir())
    refused = _export(project, run_id, "--output", str(bundle / "prov.json"))
    assert refused.returncode != 0
    assert "run bundles are never modified" in refused.stderr  # the message of cli.py export
    assert sorted(p.name for p in bundle.iterdir()) == before
