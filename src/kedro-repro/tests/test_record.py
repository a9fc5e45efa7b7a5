"""The run record end to end: built by the hook, written and read by one module, schema versions.

A real two-node Kedro pipeline runs in this process under :class:`RunRecordHook`, so the
``record.json`` these tests read (and edit) is one the hook wrote.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset

from kedro_repro.hooks import RunRecordHook
from kedro_repro.record import (
    READABLE_VERSIONS,
    RECORD_FILE,
    RUNS_DIR,
    SCHEMA_VERSION,
    RecordError,
    RunRecord,
    Unreadable,
    list_records,
    load_run,
    record_document,
    record_json,
    scan_records,
    status,
)

RUN_ID = "2026-01-02T03.04.05.678Z"


def _keep(words: list[str], parameters: dict) -> list[str]:
    return [w for w in words if len(w) >= parameters["selection"]["min_length"]]


def _count(words: list[str]) -> dict[str, int]:
    return {w: len(w) for w in words}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder holding one run's bundle, written by the hook during a real Kedro run."""
    root = tmp_path_factory.mktemp("project")
    (root / "words.json").write_text(json.dumps(["the", "quick", "brown", "fox", "jumps"]))
    catalog = DataCatalog(
        datasets={
            "words": JSONDataset(filepath=str(root / "words.json")),
            "kept": JSONDataset(filepath=str(root / "kept.json")),
            "counts": JSONDataset(filepath=str(root / "counts.json")),
            "parameters": MemoryDataset({"selection": {"min_length": 4, "seed": 7}}),
        }
    )
    pipeline = Pipeline(
        [
            node(_keep, ["words", "parameters"], "kept", name="keep"),
            node(_count, "kept", "counts", name="count"),
        ]
    )
    hook = RunRecordHook()
    manager = _create_hook_manager()
    manager.register(hook)
    hook.after_context_created(context=SimpleNamespace(project_path=root))
    run_params = {"run_id": RUN_ID, "pipeline_names": ["__default__"], "load_versions": {}}
    hook.before_pipeline_run(run_params=run_params, pipeline=pipeline, catalog=catalog)
    SequentialRunner().run(pipeline, catalog, manager, run_id=RUN_ID)
    hook.after_pipeline_run()
    return root


def _path(project: Path) -> Path:
    return project / RUNS_DIR / RUN_ID / RECORD_FILE


def _rewrite(project: Path, document: dict) -> None:
    _path(project).write_text(json.dumps(document, indent=1))


@pytest.fixture
def original(project):
    """The hook's record.json; restored after a test edits it."""
    text = _path(project).read_text()
    yield json.loads(text)
    _path(project).write_text(text)


def test_the_hook_builds_a_record_that_is_read_back_by_attribute(project, original):
    record = load_run(project / RUNS_DIR, RUN_ID)
    assert isinstance(record, RunRecord)
    assert record.schema_version == SCHEMA_VERSION and status(record) == "complete"
    assert set(record.ledger) == {"kept", "counts"}
    assert record.ledger["counts"].node == "count"
    assert record.ledger["counts"].files == {
        "counts.json": original["ledger"]["counts"]["files"]["counts.json"]
    }
    assert record.inputs["words"].digest.startswith("blake3:")
    assert record.completed_nodes() == {"keep", "count"}
    assert record.seeds == {"selection.seed": 7}
    assert record.parameters.tunable == {"selection": {"min_length": 4, "seed": 7}}
    assert record.code is not None and record.code.commit is None  # no git checkout here
    assert record.process is not None and record.process.pid == record.pid
    # What is read back is what was written: the document, key for key and in order.
    assert record_json(record) == original
    assert list(record_json(record)) == list(original)
    assert record_document(project / RUNS_DIR, RUN_ID) == original
    assert [r.run_id for r in list_records(project / RUNS_DIR)] == [RUN_ID]


@pytest.mark.parametrize("version", [3, 0, "2", None])
def test_a_record_of_an_unknown_schema_version_is_refused_naming_it(project, original, version):
    _rewrite(project, {**original, "schema_version": version})
    readable = ", ".join(str(v) for v in READABLE_VERSIONS)
    expected = f"record schema version {version!r} is not one this kedro-repro reads ({readable})"
    with pytest.raises(RecordError) as raised:
        load_run(project / RUNS_DIR, RUN_ID)
    assert expected in str(raised.value) and str(_path(project)) in str(raised.value)
    if version == 3:
        assert "newer kedro-repro" in str(raised.value)
    (unreadable,) = scan_records(project / RUNS_DIR)
    assert isinstance(unreadable, Unreadable) and unreadable.path == str(_path(project))
    assert unreadable.reason.startswith("record schema version"), unreadable.reason


def test_a_version_1_record_is_migrated_on_read(project, original):
    """Version 1 had no stored-file digests, node completion, code snapshot, checkpoints,
    runner or process section: read back, those say "not recorded"."""
    old = {
        k: v for k, v in original.items() if k not in ("code", "checkpoints", "runner", "process")
    }
    old["schema_version"] = 1
    old["ledger"] = {
        name: {k: v for k, v in entry.items() if k != "files"}
        for name, entry in original["ledger"].items()
    }
    old["nodes"] = {
        name: {k: v for k, v in entry.items() if k != "complete"}
        for name, entry in original["nodes"].items()
    }
    _rewrite(project, old)
    record = load_run(project / RUNS_DIR, RUN_ID)
    assert record.schema_version == 1  # kept: readers know which claims it cannot make
    assert all(entry.files == {} for entry in record.ledger.values())
    assert record.completed_nodes() == set(original["nodes"])
    assert record.code is None and record.checkpoints == {} and record.process is None
    assert record.ledger["counts"].digest == original["ledger"]["counts"]["digest"]
    assert status(record) == "complete"


def test_a_malformed_version_2_record_is_refused_with_the_field_named(project, original):
    """Migration fills in version 1 records only: a version 2 record keeps its strict shape."""
    broken = {**original, "ledger": {"counts": {"node": "count", "version": None}}}
    _rewrite(project, broken)
    with pytest.raises(RecordError, match=re.escape("valid run record: ledger.counts.digest")):
        load_run(project / RUNS_DIR, RUN_ID)


@pytest.mark.parametrize("text", ["[1, 2]", '"record"', "null"])
def test_a_document_that_is_no_object_is_refused_as_no_record(project, original, text):
    _path(project).write_text(text)
    with pytest.raises(RecordError, match="is not a valid run record: <root>"):
        load_run(project / RUNS_DIR, RUN_ID)
