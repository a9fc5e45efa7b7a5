"""CheckpointStore and the Kedro datasets that store state as safetensors."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from kedro.io import DatasetError, Version

from kedro_repro import checkpoints as ckpt
from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.datasets import CheckpointStoreDataset, SafetensorsDataset
from kedro_repro.hashing import file_digest
from kedro_repro.processes import current_process
from kedro_repro.state import load_state, read_metadata, save_state

VERSION = "2026-01-01T00.00.00.000Z"


def test_empty_or_missing_store(tmp_path):
    assert CheckpointStore(tmp_path / "missing").steps() == []
    assert CheckpointStore(tmp_path / "missing").latest() is None
    assert CheckpointStore(tmp_path).latest() is None


def test_save_steps_latest(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")
    for step in (20, 3, 100):
        path = store.save(step, {"step": step, "w": torch.full((2,), float(step))})
        assert path.name == f"step-{step:09d}.safetensors"
        assert read_metadata(path)["step"] == str(step)
    assert store.steps() == [3, 20, 100]  # numeric, not save order
    step, state = store.latest()
    assert step == 100
    assert state["step"] == 100 and torch.equal(state["w"], torch.full((2,), 100.0))
    assert torch.equal(store.load(3)["w"], torch.full((2,), 3.0))


def test_steps_ignore_temporary_and_foreign_files(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(5, {"x": 1})
    for name in (
        ".step-000000009.safetensors.abc123.tmp",  # a save interrupted mid-write
        "step-000000010.safetensors.tmp",
        "step-11.safetensors",
        "step-000000012.pt",
        "notes.txt",
    ):
        (tmp_path / name).write_bytes(b"garbage")
    assert store.steps() == [5]
    assert store.latest()[0] == 5


def test_saving_same_step_overwrites(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(1, {"v": 1})
    store.save(1, {"v": 2})
    assert store.steps() == [1]
    assert store.load(1) == {"v": 2}


def test_safetensors_dataset_unversioned(tmp_path):
    ds = SafetensorsDataset(filepath=str(tmp_path / "m.safetensors"))
    assert not ds.exists()
    ds.save({"w": torch.arange(3.0), "cfg": {"n": 2}})
    assert ds.exists()
    loaded = ds.load()
    assert torch.equal(loaded["w"], torch.arange(3.0)) and loaded["cfg"] == {"n": 2}


def test_safetensors_dataset_versioned(tmp_path):
    filepath = tmp_path / "m.safetensors"
    ds = SafetensorsDataset(filepath=str(filepath), version=Version(None, VERSION))
    ds.save({"w": torch.ones(2)})
    assert (filepath / VERSION / "m.safetensors").is_file()
    assert torch.equal(ds.load()["w"], torch.ones(2))
    # A load-only dataset with no version finds the latest one.
    latest = SafetensorsDataset(filepath=str(filepath), version=Version(None, None))
    assert torch.equal(latest.load()["w"], torch.ones(2))
    with pytest.raises(DatasetError):
        ds.save({"w": torch.zeros(2)})
    assert torch.equal(ds.load()["w"], torch.ones(2))


def test_safetensors_dataset_missing_version_does_not_exist(tmp_path):
    ds = SafetensorsDataset(filepath=str(tmp_path / "m.safetensors"), version=Version(None, None))
    assert not ds.exists()


def test_checkpoint_store_dataset_points_into_save_version(tmp_path):
    filepath = tmp_path / "checkpoints"
    ds = CheckpointStoreDataset(filepath=str(filepath), version=Version(None, VERSION))
    store = ds.load()
    assert isinstance(store, CheckpointStore)
    assert Path(store.directory) == filepath / VERSION / "checkpoints"
    store.save(1, {"a": 1})
    assert (filepath / VERSION / "checkpoints" / "step-000000001.safetensors").is_file()
    with pytest.raises(DatasetError):
        ds.save(store)


def test_checkpoint_store_dataset_unversioned(tmp_path):
    ds = CheckpointStoreDataset(filepath=str(tmp_path / "ck"))
    assert Path(ds.load().directory) == tmp_path / "ck"
    assert ds.exists()


# --- integrity: digests recorded on save, verified on resume ------------------------------------


def _state(step: int) -> dict:
    return {"step": step, "w": torch.arange(64.0) + step}


def _flip_last_byte(path: Path) -> None:
    """Flip one bit of the tensor data (the end of the file): safetensors still parses it."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    load_state(path)  # the flip really is undetectable without a digest


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-40])


def _manifest(directory: Path) -> dict:
    return json.loads((directory / "CHECKPOINTS.json").read_text())["checkpoints"]


def _parts(path: Path) -> tuple[dict, bytes]:
    """A safetensors file's header (parsed) and tensor bytes."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def test_saved_content_is_what_save_state_writes(tmp_path):
    # The checkpoint content is part of the regression anchor: the manifest must not change it.
    # (Header, not raw bytes: safetensors writes metadata keys in a per-process random order.)
    path = CheckpointStore(tmp_path / "store").save(7, _state(7))
    save_state(tmp_path / "plain.safetensors", _state(7), metadata={"step": "7"})
    assert _parts(path) == _parts(tmp_path / "plain.safetensors")


def test_manifest_records_digest_and_is_pruned_with_keep(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for step in (1, 2, 3):
        store.save(step, _state(step))
    names = [f"step-{s:09d}.safetensors" for s in (2, 3)]
    manifest = _manifest(tmp_path)
    # The pruned checkpoint stays in the manifest as history (kept: false), its file is gone.
    assert sorted(n for n, e in manifest.items() if e["kept"]) == names
    assert manifest["step-000000001.safetensors"]["kept"] is False
    assert not (tmp_path / "step-000000001.safetensors").exists()
    for name, step in zip(names, (2, 3), strict=True):
        assert manifest[name]["step"] == step
        assert manifest[name]["digest"] == file_digest(tmp_path / name)
    assert store.digests() == {name: file_digest(tmp_path / name) for name in names}
    assert store.steps() == [2, 3]  # the manifest itself is never taken for a checkpoint


def test_retention_keeps_every_nth_epoch_end_plus_the_last_k(tmp_path):
    # Steps 1..8, two per epoch, with epoch ends at 2, 4, 6, 8: every 2nd epoch end (epochs 1
    # and 3, steps 4 and 8) plus the newest 2 (steps 7, 8) stay; the history keeps all eight.
    store = CheckpointStore(tmp_path, keep=2, keep_every_epochs=2)
    for step in range(1, 9):
        store.save(step, _state(step), epoch=step // 2 - 1 if step % 2 == 0 else None)
    assert store.steps() == [4, 7, 8]
    history = store.history()
    assert [e["step"] for e in history.values()] == list(range(1, 9))
    assert [e["step"] for e in history.values() if not e["kept"]] == [1, 2, 3, 5, 6]
    assert history["step-000000004.safetensors"]["epoch"] == 1
    assert "epoch" not in history["step-000000007.safetensors"]
    for name, entry in history.items():  # every digest of what existed, kept or not
        assert entry["digest"].startswith("blake3:") and entry["state"].startswith("blake3:")
        assert entry["kept"] == (tmp_path / name).is_file()


def test_state_digest_is_the_content_whichever_process_wrote_it(tmp_path):
    # safetensors orders metadata keys per process: the file digests of one state written by
    # two processes may differ, the content digest may not.
    script = (
        "import sys, torch; from kedro_repro.state import save_state; "
        "save_state(sys.argv[1], {'w': torch.arange(6.0), 'log': [1, 2]}, "
        "metadata={'step': '3', 'a': '1', 'b': '2', 'c': '3', 'd': '4'})"
    )
    digests = set()
    for i in range(4):
        path = tmp_path / f"s{i}.safetensors"
        subprocess.run([sys.executable, "-c", script, str(path)], check=True)
        digests.add(ckpt.state_digest(path))
    assert len(digests) == 1
    other = tmp_path / "other.safetensors"
    save_state(other, {"w": torch.arange(6.0) + 1, "log": [1, 2]}, metadata={"step": "3"})
    assert ckpt.state_digest(other) not in digests


def test_retention_refuses_a_non_positive_count(tmp_path):
    with pytest.raises(ValueError, match="keep_every_epochs"):
        CheckpointStore(tmp_path, keep_every_epochs=0)


def test_verify_names_each_kind_of_problem(tmp_path):
    store = CheckpointStore(tmp_path)
    good, flipped, cut, gone = (store.save(s, _state(s)) for s in (1, 2, 3, 4))
    expected = file_digest(flipped)
    _flip_last_byte(flipped)
    _truncate(cut)
    gone.unlink()
    assert store.verify(good).ok
    problem = store.verify(flipped)
    assert not problem.ok and problem.status == "mismatch"
    assert problem.expected == expected and problem.actual == file_digest(flipped)
    assert store.verify(cut).status == "truncated"
    assert store.verify(gone).status == "missing"
    with pytest.raises(ckpt.CorruptCheckpointError, match=r"step-000000002\.safetensors"):
        store.load(2)


def test_bit_flipped_last_checkpoint_falls_back_to_previous_with_warning(tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    store.save(5, _state(5))
    last = store.save(10, _state(10))
    expected = file_digest(last)
    _flip_last_byte(last)
    with caplog.at_level(logging.WARNING, logger="kedro_repro.checkpoints"):
        step, state = store.latest()
    assert step == 5 and torch.equal(state["w"], _state(5)["w"])
    text = caplog.text
    assert str(last) in text and expected in text and file_digest(last) in text
    assert "step 5" in text
    assert [path for path, _ in store.skipped] == [str(last)]


def test_truncated_last_checkpoint_falls_back_to_previous(tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    store.save(5, _state(5))
    last = store.save(10, _state(10))
    _truncate(last)
    with caplog.at_level(logging.WARNING, logger="kedro_repro.checkpoints"):
        step, _ = store.latest()
    assert step == 5
    assert str(last) in caplog.text and "truncated" in caplog.text
    assert store.skipped and store.skipped[0][0] == str(last)


def test_all_checkpoints_corrupt_is_an_error_naming_every_file(tmp_path):
    store = CheckpointStore(tmp_path)
    first = store.save(5, _state(5))
    last = store.save(10, _state(10))
    _flip_last_byte(first)
    _truncate(last)
    with pytest.raises(ckpt.CorruptCheckpointError) as raised:
        store.latest()  # never None: that would silently train from step 0
    message = str(raised.value)
    assert str(first) in message and str(last) in message
    assert "mismatch" in message and "truncated" in message


def test_resume_from_store_is_verified_too(tmp_path, caplog):
    old = CheckpointStore(tmp_path / "old")
    old.save(5, _state(5))
    last = old.save(10, _state(10))
    _flip_last_byte(last)
    new = CheckpointStore(tmp_path / "new", resume_from=tmp_path / "old")
    with caplog.at_level(logging.WARNING, logger="kedro_repro.checkpoints"):
        step, state = new.latest()
    assert step == 5 and torch.equal(state["w"], _state(5)["w"])
    assert str(last) in caplog.text


def test_corrupt_own_checkpoints_fall_back_to_the_resumed_run(tmp_path):
    old = CheckpointStore(tmp_path / "old")
    old.save(5, _state(5))
    new = CheckpointStore(tmp_path / "new", resume_from=tmp_path / "old")
    _truncate(new.save(10, _state(10)))
    assert new.latest()[0] == 5
    assert new.skipped[0][0] == str(tmp_path / "new" / "step-000000010.safetensors")


def test_checkpoint_without_manifest_entry_loads_only_if_it_parses(tmp_path, caplog):
    # A store written by code from before the manifest: no digests to check against.
    store = CheckpointStore(tmp_path)
    save_state(tmp_path / "step-000000005.safetensors", _state(5), metadata={"step": "5"})
    save_state(tmp_path / "step-000000010.safetensors", _state(10), metadata={"step": "10"})
    _truncate(tmp_path / "step-000000010.safetensors")
    with caplog.at_level(logging.WARNING, logger="kedro_repro.checkpoints"):
        step, _ = store.latest()
    assert step == 5
    assert "unverified" in caplog.text and "step-000000010.safetensors" in caplog.text
    assert store.verify(tmp_path / "step-000000005.safetensors").status == "unverified"


def test_interrupted_manifest_write_and_temp_files_are_ignored(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(5, _state(5))
    (tmp_path / ".CHECKPOINTS.json.abc.tmp").write_text("{")
    (tmp_path / ".step-000000010.safetensors.abc.tmp").write_bytes(b"partial")
    assert store.steps() == [5]
    assert store.latest()[0] == 5 and store.skipped == []
    store.save(10, _state(10))  # a later save still reads the committed manifest
    assert sorted(store.digests()) == ["step-000000005.safetensors", "step-000000010.safetensors"]


def _dead_writer_temp(directory: Path, name: str) -> Path:
    """A temp file named as an atomic write names it, by a writer process that has since died."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    temp = directory / f".{name}.{int(child.stdout)}-1.abcdefgh.tmp"
    temp.write_bytes(b"partial")
    os.utime(temp, (time.time() - 5, time.time() - 5))
    return temp


def test_opening_a_store_removes_dead_writers_temps_in_it_and_in_the_resumed_run(tmp_path):
    own, killed = tmp_path / "own", tmp_path / "killed"
    CheckpointStore(killed).save(5, _state(5))
    own.mkdir()
    leftovers = [
        _dead_writer_temp(killed, "step-000000010.safetensors"),
        _dead_writer_temp(killed, "CHECKPOINTS.json"),
        _dead_writer_temp(own, "step-000000011.safetensors"),
    ]
    me = current_process()
    live = killed / f".step-000000012.safetensors.{me.pid}-{me.start_time}.abcdefgh.tmp"
    live.write_bytes(b"a concurrent writer's partial file")
    store = CheckpointStore(own, resume_from=killed)
    assert not any(p.exists() for p in leftovers)
    assert live.exists()
    assert store.latest()[0] == 5
