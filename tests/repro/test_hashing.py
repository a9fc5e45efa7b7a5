"""Content digests: stable, canonical, and sensitive to every byte that matters."""

from __future__ import annotations

import hashlib

import torch

from speech_repro.repro.hashing import (
    bytes_digest,
    combined_digest,
    file_digest,
    json_digest,
    tensors_digest,
)


def test_bytes_and_file_digest_match_hashlib(tmp_path):
    data = bytes(range(256)) * 5000  # > 1 MiB, so chunked reading matters
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    assert bytes_digest(data) == expected
    assert file_digest(path) == expected
    assert file_digest(str(path)) == expected


def test_known_empty_digest():
    assert bytes_digest(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_json_digest_is_canonical():
    a = {"b": 1, "a": [1, 2, {"y": 2, "x": 1}]}
    b = {"a": [1, 2, {"x": 1, "y": 2}], "b": 1}
    assert json_digest(a) == json_digest(b)
    assert json_digest(a) == bytes_digest(b'{"a":[1,2,{"x":1,"y":2}],"b":1}')
    assert json_digest({"a": [1, 2]}) != json_digest({"a": [2, 1]})  # list order matters
    assert json_digest({"a": 1}) != json_digest({"a": "1"})


def test_combined_digest_order_independent_but_content_sensitive():
    d = [bytes_digest(bytes([i])) for i in range(3)]
    assert combined_digest(d) == combined_digest(reversed(d))
    assert combined_digest(d) != combined_digest(d[:2])
    assert combined_digest(d) != combined_digest([*d[:2], bytes_digest(b"x")])


def test_tensors_digest_independent_of_insertion_order_and_layout():
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    b = torch.ones(4, dtype=torch.int64)
    one = tensors_digest({"a": a, "b": b})
    assert one == tensors_digest({"b": b, "a": a})
    # Same values in a non-contiguous layout give the same digest.
    assert one == tensors_digest({"a": a.t().contiguous().t(), "b": b})
    assert one == tensors_digest({"a": a.clone().requires_grad_(), "b": b})


def test_tensors_digest_sensitive_to_values_dtype_shape_and_names():
    a = torch.zeros(4, dtype=torch.float32)
    base = tensors_digest({"a": a})
    changed = a.clone()
    changed[2] = 1e-30
    assert tensors_digest({"a": changed}) != base
    # Same raw bytes (all zero), different dtype / shape / name.
    assert tensors_digest({"a": torch.zeros(4, dtype=torch.int32)}) != base
    assert tensors_digest({"a": a.reshape(2, 2)}) != base
    assert tensors_digest({"b": a}) != base
    # -0.0 and 0.0 compare equal but are different bits.
    assert tensors_digest({"a": -a}) != base


def test_tensors_digest_handles_empty_and_scalar_tensors():
    assert tensors_digest({"e": torch.zeros(0)}) != tensors_digest({"e": torch.zeros(0, 2)})
    assert tensors_digest({"s": torch.tensor(1.0)}) != tensors_digest({"s": torch.tensor(2.0)})
    assert tensors_digest({"b": torch.tensor([True])}) != tensors_digest(
        {"b": torch.tensor([False])}
    )
    assert tensors_digest({}) == "sha256:" + hashlib.sha256(b"").hexdigest()
