"""save_state / load_state: pickle-free round trip of nested training state."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from safetensors.torch import load_file

from kedro_repro.datasets import SafetensorsDataset
from kedro_repro.determinism import capture_rng_state
from kedro_repro.state import _SKELETON_KEY, load_state, read_metadata, save_state


def _assert_same(a, b, where="root"):
    """Structural equality: same container and scalar types, same keys (and key types), bitwise tensors."""
    if isinstance(a, dict):  # OrderedDict (module state_dict) comes back as a plain dict
        assert isinstance(b, dict), where
        assert {(type(k), k) for k in a} == {(type(k), k) for k in b}, where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k!r}")
        return
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def _train_state():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()
        sched.step()
    return model, opt, sched


def test_round_trip_of_real_training_state(tmp_path):
    model, opt, sched = _train_state()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": capture_rng_state(),
        "step": 2,
    }
    path = tmp_path / "state.safetensors"
    save_state(path, state)
    loaded = load_state(path)

    _assert_same(state, loaded)
    # Integer parameter ids and tuples (AdamW betas) survive the JSON skeleton.
    assert set(loaded["optimizer"]["state"]) == {0, 1}
    assert isinstance(loaded["optimizer"]["param_groups"][0]["betas"], tuple)
    assert loaded["scheduler"]["_schedule_phases"][0]["end_step"] == 2.0


def test_loaded_state_drives_optimizer_and_scheduler_identically(tmp_path):
    model, opt, sched = _train_state()
    save_state(
        tmp_path / "s.safetensors",
        {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()},
    )
    loaded = load_state(tmp_path / "s.safetensors")

    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.1)
    sched2 = torch.optim.lr_scheduler.OneCycleLR(opt2, max_lr=0.1, total_steps=10)
    model2.load_state_dict(loaded["model"])
    opt2.load_state_dict(loaded["opt"])
    sched2.load_state_dict(loaded["sched"])

    x = torch.randn(4, 3)
    for m, o, s in ((model, opt, sched), (model2, opt2, sched2)):
        o.zero_grad()
        m(x).pow(2).sum().backward()
        o.step()
        s.step()
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)
    assert sched.get_last_lr() == sched2.get_last_lr()


def test_file_is_plain_safetensors_with_metadata(tmp_path):
    path = tmp_path / "s.safetensors"
    save_state(path, {"w": torch.arange(4.0), "n": 3}, metadata={"step": "7"})
    tensors = load_file(str(path))  # plain loader, no pickle involved
    assert list(tensors) == ["/w"]
    assert torch.equal(tensors["/w"], torch.arange(4.0))
    meta = read_metadata(path)
    assert meta["step"] == "7"
    assert json.loads(meta[_SKELETON_KEY])["__map__"]["n"] == 3


def test_scalars_nesting_and_special_keys(tmp_path):
    state = {
        "none": None,
        "flag": True,
        "f": 0.1,
        "s": "x",
        "nested": [1, (2, [3.5, {"k": torch.tensor([1, 2], dtype=torch.int16)}])],
        "ints": {0: "a", 10: torch.zeros(2, 2, dtype=torch.bfloat16)},
        "looks_like_node": {"__tensor__": "not a tensor"},
    }
    save_state(tmp_path / "s.safetensors", state)
    _assert_same(state, load_state(tmp_path / "s.safetensors"))


def test_non_contiguous_and_shared_tensors(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    state = {"t": base.t(), "a": base, "b": base}  # non-contiguous view, shared storage
    save_state(tmp_path / "s.safetensors", state)
    loaded = load_state(tmp_path / "s.safetensors")
    assert torch.equal(loaded["t"], base.t())
    assert torch.equal(loaded["a"], base) and torch.equal(loaded["b"], base)


def test_top_level_tensor(tmp_path):
    save_state(tmp_path / "s.safetensors", torch.ones(3))
    assert torch.equal(load_state(tmp_path / "s.safetensors"), torch.ones(3))


@pytest.mark.parametrize("bad", [lambda: 0, {1, 2}, object(), b"bytes"])
def test_unsupported_objects_raise_type_error(tmp_path, bad):
    path = tmp_path / "s.safetensors"
    with pytest.raises(TypeError, match="without pickling"):
        save_state(path, {"ok": 1, "bad": bad})
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_previous_state(tmp_path):
    path = tmp_path / "s.safetensors"
    save_state(path, {"a": torch.zeros(2)})
    save_state(path, {"b": torch.ones(2)})
    loaded = load_state(path)
    assert list(loaded) == ["b"] and torch.equal(loaded["b"], torch.ones(2))


@pytest.mark.parametrize(
    "state",
    [
        {"a/b": torch.ones(1), "a": {"b": torch.zeros(1)}},
        {1: torch.ones(1), "1": torch.zeros(1)},
    ],
    ids=["slash-in-key", "int-vs-str-key"],
)
def test_colliding_key_paths_are_not_silently_merged(tmp_path, state):
    path = tmp_path / "s.safetensors"
    try:
        save_state(path, state)
    except (ValueError, TypeError):
        return  # refusing to save is an acceptable fix
    _assert_same(state, load_state(path))


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_file_mode_follows_the_umask_like_every_other_output(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        save_state(tmp_path / "state.safetensors", {"w": torch.ones(2)})
        SafetensorsDataset(filepath=str(tmp_path / "model.safetensors")).save({"w": torch.ones(2)})
    finally:
        os.umask(old)
    for name in ("state.safetensors", "model.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "state.safetensors"]


def test_the_same_state_is_written_as_the_same_bytes_in_every_process(tmp_path):
    """safetensors writes its metadata map in hash order, which changes from one map to the
    next: a checkpoint with two metadata keys (step, skeleton) got other bytes, and so another
    file digest, for the same state in about half the writes."""
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "from kedro_repro.state import save_state\n"
        "for i in range(6):\n"
        "    save_state(f'{sys.argv[1]}-{i}.safetensors', {'w': torch.arange(6.0), 'step': 5},\n"
        "               metadata={'step': '5', 'run': 'x', 'more': 'y'})\n"
    )
    for process in range(3):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / f"p{process}")], check=True)
    written = {p.read_bytes() for p in tmp_path.glob("*.safetensors")}
    assert len(list(tmp_path.glob("*.safetensors"))) == 18
    assert len(written) == 1
