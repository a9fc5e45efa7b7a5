"""Keyed seeds, RNG capture/restore and the process-wide determinism policy."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from kedro_repro.determinism import (
    DeterminismPolicy,
    apply_policy,
    capture_rng_state,
    derive_seed,
    make_generator,
    restore_rng_state,
    seed_globals,
)
from kedro_repro.hooks import RunRecordHook
from kedro_repro.record import RunRecord
from kedro_repro.state import load_state, save_state


def test_derive_seed_is_stable_across_versions_and_processes():
    # Hard-coded: a change here silently changes every random stream of every run.
    assert derive_seed(1234, "shuffle", 0) == 6550927552984741519
    assert derive_seed(0) == 2033344993903900207


def test_derive_seed_depends_on_every_key_and_fits_63_bits():
    seeds = {
        derive_seed(1234, "shuffle", 0),
        derive_seed(1234, "shuffle", 1),
        derive_seed(1234, "init"),
        derive_seed(1235, "shuffle", 0),
        derive_seed(1234, "shuffle"),
    }
    assert len(seeds) == 5
    assert all(0 <= s < 2**63 for s in seeds)


def test_make_generator_is_keyed():
    a = torch.rand(5, generator=make_generator(7, "x"))
    assert torch.equal(a, torch.rand(5, generator=make_generator(7, "x")))
    assert not torch.equal(a, torch.rand(5, generator=make_generator(7, "y")))


def _draws():
    return (
        [*(random.random() for _ in range(3)), random.gauss(0, 1)],
        [*np.random.rand(3).tolist(), np.random.standard_normal()],
        torch.rand(3),
    )


def _assert_draws_equal(a, b):
    assert a[0] == b[0]
    assert a[1] == b[1]
    assert torch.equal(a[2], b[2])


def test_capture_restore_repeats_all_global_streams():
    seed_globals(42)
    random.gauss(0, 1)  # leave a cached gaussian in random and numpy
    np.random.standard_normal()
    state = capture_rng_state()
    first = _draws()
    restore_rng_state(state)
    _assert_draws_equal(first, _draws())


def test_rng_state_survives_save_and_load(tmp_path):
    seed_globals(3)
    random.gauss(0, 1)
    save_state(tmp_path / "rng.safetensors", capture_rng_state())
    first = _draws()
    seed_globals(999)  # scramble
    restore_rng_state(load_state(tmp_path / "rng.safetensors"))
    _assert_draws_equal(first, _draws())


def test_seed_globals_is_reproducible():
    seed_globals(5)
    a = _draws()
    seed_globals(5)
    _assert_draws_equal(a, _draws())
    seed_globals(6)
    assert _draws()[1] != a[1]


@pytest.fixture
def restore_torch_settings(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # restored at teardown
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    yield
    threads, det, warn_only, bench, cudnn_det, tf32_mm, tf32_cudnn = saved
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    torch.backends.cudnn.benchmark = bench
    torch.backends.cudnn.deterministic = cudnn_det
    torch.backends.cuda.matmul.allow_tf32 = tf32_mm
    torch.backends.cudnn.allow_tf32 = tf32_cudnn


def test_apply_policy_sets_process_settings(restore_torch_settings):
    apply_policy(DeterminismPolicy(threads=1, allow_tf32=True, cudnn_benchmark=True))
    assert torch.get_num_threads() == 1
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic
    assert torch.backends.cudnn.benchmark
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"

    apply_policy(DeterminismPolicy(threads=1, deterministic_algorithms=False))
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic
    assert not torch.backends.cudnn.benchmark
    assert not torch.backends.cuda.matmul.allow_tf32


def test_apply_policy_keeps_an_explicit_cublas_config(restore_torch_settings, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    apply_policy(DeterminismPolicy(threads=1))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_warn_mode_operations_are_recorded_by_the_run_record_hook():
    hook = RunRecordHook()
    # Only the list the hook appends to matters here; the rest of a record is not built.
    hook.record = RunRecord.model_construct(nondeterministic_operations=[])
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    hook._capture_warnings()
    try:
        apply_policy(DeterminismPolicy(threads=torch.get_num_threads(), mode="warn"))
        # put_ without accumulation has no deterministic implementation, on the CPU too.
        torch.zeros(4).put_(torch.tensor([1, 1]), torch.tensor([1.0, 2.0]), accumulate=False)
    finally:
        warnings.showwarning = hook._showwarning
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    (operation,) = hook.record.nondeterministic_operations
    assert "put_" in operation and "deterministic" in operation


def test_strict_mode_fails_on_such_an_operation():
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        apply_policy(DeterminismPolicy(threads=torch.get_num_threads(), mode="strict"))
        with pytest.raises(RuntimeError, match="deterministic"):
            torch.zeros(4).put_(torch.tensor([1, 1]), torch.tensor([1.0, 2.0]), accumulate=False)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    with pytest.raises(ValueError, match="strict or warn"):
        DeterminismPolicy(mode="sometimes")


_POLICY_PROBE = """
import sys, torch
from kedro_repro.determinism import DeterminismPolicy, apply_policy
apply_policy(DeterminismPolicy(threads=1, mode={mode!r}))
compiler = sorted(m for m in ("torch._inductor", "torch._dynamo") if m in sys.modules)
kernels = (torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
import torch._inductor.config as inductor_config  # as torch.compile would, later
print(compiler, kernels, inductor_config.deterministic)
"""


@pytest.mark.parametrize(("mode", "warn_only"), [("strict", False), ("warn", True)])
def test_the_determinism_switch_imports_no_compiler_and_still_reaches_inductor(mode, warn_only):
    """torch.use_deterministic_algorithms imports torch._inductor (1.2 s); the policy does not,
    and inductor, imported afterwards, still runs deterministically."""
    environment = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_DETERMINISTIC"}
    result = subprocess.run(
        [sys.executable, "-c", _POLICY_PROBE.format(mode=mode)],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    assert result.stdout.split("\n")[-2] == f"[] (True, {warn_only}) True", result.stdout
