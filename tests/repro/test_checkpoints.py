"""CheckpointStore and the Kedro datasets that store state as safetensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from kedro.io import DatasetError, Version

from speech_repro.repro.checkpoints import CheckpointStore
from speech_repro.repro.datasets import CheckpointStoreDataset, SafetensorsDataset
from speech_repro.repro.state import read_metadata

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
