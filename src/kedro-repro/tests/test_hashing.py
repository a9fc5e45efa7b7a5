"""Content digests: stable, canonical, and sensitive to every byte that matters."""

from __future__ import annotations

import torch
from blake3 import blake3

from kedro_repro.hashing import (
    bytes_digest,
    check_sums,
    combined_digest,
    file_digest,
    format_sums,
    json_digest,
    tensors_digest,
)


def test_bytes_and_file_digest_match_the_reference_blake3(tmp_path):
    data = bytes(range(256)) * 5000  # > 1 MiB, so chunked reading matters
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    expected = "blake3:" + blake3(data).hexdigest()
    assert bytes_digest(data) == expected
    assert file_digest(path) == expected
    assert file_digest(str(path)) == expected


def test_known_empty_digest():
    # The BLAKE3 test vector for empty input.
    assert bytes_digest(b"") == (
        "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
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
    assert tensors_digest({}) == "blake3:" + blake3(b"").hexdigest()


def test_sums_listing_round_trip_and_check(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.wav").write_bytes(b"one")
    (tmp_path / "y.wav").write_bytes(b"two")
    listing = tmp_path / "B3SUMS"
    listing.write_text(
        format_sums({name: file_digest(tmp_path / name) for name in ["y.wav", "a/x.wav"]})
    )
    assert listing.read_text().splitlines()[0].endswith("  a/x.wav")  # sorted by path
    assert check_sums(listing) == []
    (tmp_path / "y.wav").write_bytes(b"tow")
    (tmp_path / "a" / "x.wav").unlink()
    assert check_sums(listing) == ["a/x.wav", "y.wav"]


def test_json_digest_has_explicit_rules_for_values_json_lacks():
    import datetime as dt
    from pathlib import Path, PurePosixPath

    import numpy as np
    import pandas as pd

    # numpy scalars and arrays hash as the Python numbers they hold
    assert json_digest({"n": np.int64(3), "x": np.float32(0.5)}) == json_digest({"n": 3, "x": 0.5})
    assert json_digest(np.bool_(True)) == json_digest(True)
    assert json_digest({"a": np.arange(3)}) == json_digest({"a": [0, 1, 2]})
    # paths hash as their POSIX text
    assert json_digest([Path("a/b"), PurePosixPath("c")]) == json_digest(["a/b", "c"])
    # dates and times hash as ISO 8601 text
    moment = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    assert json_digest(moment) == json_digest("2024-05-01T12:30:00+00:00")
    assert json_digest(pd.Timestamp(moment)) == json_digest(moment)
    assert json_digest(dt.date(2024, 5, 1)) == json_digest("2024-05-01")


def test_json_digest_refuses_objects_it_has_no_rule_for():
    import pytest

    class Opaque:
        pass

    with pytest.raises(TypeError, match="Opaque"):
        json_digest({"a": [Opaque()]})
    with pytest.raises(TypeError, match="set"):
        json_digest({1, 2})
