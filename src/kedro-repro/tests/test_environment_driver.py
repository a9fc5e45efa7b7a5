"""The NVIDIA driver floor: compared as dotted numbers, recorded in every run, never a CPU failure."""

from __future__ import annotations

import pytest

from kedro_repro import environment
from kedro_repro.environment import (
    capture_environment,
    check_driver,
    require_cuda_driver,
)

# NVIDIA's CUDA 13.0 release notes: the CUDA 13.0 GA toolkit's Linux x86_64 driver. Written out
# here, not imported: the table below and the record must show this floor, not whatever it is.
CUDA_13_0_DRIVER = "580.65.06"


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        ("580.65.06", True),  # exactly the floor (the default minimum)
        ("580.65.6", True),  # a leading zero is not a different version
        ("580.65.07", True),
        ("580.82.07", True),  # CUDA 13.0 Update 1's driver
        ("580.100.1", True),  # 100 > 65 as numbers, though "100" < "65" as text
        ("595.45.04", True),
        ("1000.1", True),  # more digits in the major, and fewer fields
        ("580.65.05", False),
        ("580.9.99", False),  # 9 < 65 as numbers, though "9" > "65" as text
        ("575.57.08", False),  # CUDA 12.9 Update 1's driver
        ("535.247.01", False),
        ("580", False),  # 580.0.0 < 580.65.06
        (" 580.95.05\n", True),  # nvidia-smi output, untrimmed
    ],
)
def test_check_driver_compares_numbers_not_text(found, expected):
    assert check_driver(found) is expected


@pytest.mark.parametrize(
    "found", [None, "", "N/A", "580.65.x", "580..65", "580.65.", "５８０.65.06", "5²0.1"]
)
def test_check_driver_does_not_judge_what_it_cannot_read(found):
    assert check_driver(found) is None


def test_check_driver_takes_another_floor():
    assert check_driver("525.60.13", minimum="525.60.13") is True
    assert check_driver("525.60.12", minimum="525.60.13") is False
    assert check_driver("580.65.06", minimum="580.65.06.1") is False  # missing field counts as 0
    assert check_driver("580.65.06", minimum="not a version") is None


def test_record_holds_driver_floor_and_verdict(monkeypatch):
    monkeypatch.setattr(environment, "_nvidia_driver_version", lambda: "575.57.08")
    hardware = capture_environment()["hardware"]
    assert hardware["driver_version"] == "575.57.08"
    assert hardware["driver_minimum"] == CUDA_13_0_DRIVER
    assert hardware["driver_ok"] is False

    monkeypatch.setattr(environment, "_nvidia_driver_version", lambda: "580.95.05")
    assert capture_environment()["hardware"]["driver_ok"] is True


def test_cpu_machine_records_no_verdict_and_does_not_fail(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi on the PATH: a CPU machine
    hardware = capture_environment()["hardware"]
    assert hardware["driver_version"] is None
    assert hardware["driver_minimum"] == CUDA_13_0_DRIVER
    assert hardware["driver_ok"] is None
    assert require_cuda_driver() is None  # unknown is left to torch, not refused


def test_driver_fields_follow_the_version_in_the_hardware_section():
    keys = list(capture_environment()["hardware"])
    at = keys.index("driver_version")
    assert keys[at : at + 3] == ["driver_version", "driver_minimum", "driver_ok"]


def test_require_cuda_driver_refuses_an_old_driver_with_the_fix(monkeypatch):
    monkeypatch.setattr(environment, "_nvidia_driver_version", lambda: "570.133.20")
    with pytest.raises(RuntimeError) as raised:
        require_cuda_driver(cpu_option="training.device: cpu")  # the caller's own switch
    message = str(raised.value)
    assert "570.133.20" in message
    assert CUDA_13_0_DRIVER in message
    assert "training.device: cpu" in message


def test_require_cuda_driver_returns_a_good_driver(monkeypatch):
    monkeypatch.setattr(environment, "_nvidia_driver_version", lambda: "580.65.06")
    assert require_cuda_driver() == "580.65.06"
    with pytest.raises(RuntimeError):
        require_cuda_driver(minimum="590")  # the floor is a parameter, not baked in
