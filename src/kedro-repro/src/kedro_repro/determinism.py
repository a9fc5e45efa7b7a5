"""Seeds, RNG state capture and the process-wide determinism policy.

Randomness in this project is *keyed*: every stream (init, shuffling, augmentation, workers) gets
its own seed derived from the master seed and a purpose label, so adding a random draw in one
place never shifts the numbers another place sees.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as pydantic_dataclass

if TYPE_CHECKING:
    import torch

# numpy and torch are imported in the functions that use them: project settings import the
# policy (parameter schema), and a kedro command that only reads records must not pay for torch.


def derive_seed(master_seed: int, *keys: object) -> int:
    """A 63-bit seed that is a pure function of the master seed and the keys (e.g. purpose, epoch)."""
    material = "/".join(str(k) for k in (master_seed, *keys)).encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "little") >> 1


def make_generator(master_seed: int, *keys: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from :func:`derive_seed`."""
    import torch

    return torch.Generator().manual_seed(derive_seed(master_seed, *keys))


def seed_globals(seed: int) -> None:
    """Seed the global RNGs of ``random``, NumPy and torch (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed ``random`` and NumPy from the worker's torch seed.

    torch already gives each worker ``base_seed + worker_id``, with ``base_seed`` drawn from the
    loader's own generator, so this stays a pure function of the loader seed and worker id.
    """
    import numpy as np
    import torch

    worker_seed = torch.initial_seed() % 2**63
    random.seed(worker_seed)
    np.random.seed(derive_seed(worker_seed, "numpy", worker_id) % 2**32)


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG state needed to continue a run bit-exactly."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


@contextlib.contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Run a block without leaving a trace on the global RNGs (random, NumPy, torch, CUDA)."""
    saved = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(saved)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run a block with ``threads`` intra-op threads, then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# A pydantic dataclass: validated when built, unknown fields refused (parameters).
@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class DeterminismPolicy:
    """Process-wide numerical settings that decide whether two runs produce the same bits.

    ``threads`` matters on CPU: intra-op reductions split work by thread count, so 1 and 2
    threads give different (equally valid) floating-point results. ``mode`` decides what an
    operation without a deterministic implementation does: ``strict`` fails, ``warn`` runs it
    and the run record lists it.
    """

    threads: int = 2
    interop_threads: int = 1
    deterministic_algorithms: bool = True
    mode: str = "strict"
    cudnn_benchmark: bool = False
    allow_tf32: bool = False
    cublas_workspace_config: str = ":4096:8"

    def __post_init__(self) -> None:
        if self.mode not in {"strict", "warn"}:
            raise ValueError(f"determinism.mode must be strict or warn, not {self.mode!r}")


def apply_policy(policy: DeterminismPolicy) -> None:
    """Apply ``policy`` to this process (torch threads, deterministic kernels, cuDNN, TF32)."""
    import torch

    # cuBLAS reads this when CUDA initialises, so set it before any CUDA call.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", policy.cublas_workspace_config)
    torch.set_num_threads(policy.threads)
    # May only be set once per process, before any inter-op work started.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(policy.interop_threads)
    warn_only = policy.mode == "warn"
    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(policy.deterministic_algorithms, warn_only=warn_only)
    else:
        # torch.use_deterministic_algorithms also sets torch._inductor.config.deterministic, and
        # importing that config imports the whole compiler stack (1.2 s per run, measured in
        # docs/benchmarks.md) that nothing here uses. The same two effects without it: the kernel
        # switch, and the variable inductor's config reads when something imports it later.
        os.environ["TORCHINDUCTOR_DETERMINISTIC"] = "1" if policy.deterministic_algorithms else "0"
        torch._C._set_deterministic_algorithms(policy.deterministic_algorithms, warn_only=warn_only)
    torch.backends.cudnn.benchmark = policy.cudnn_benchmark
    torch.backends.cudnn.deterministic = policy.deterministic_algorithms
    torch.backends.cuda.matmul.allow_tf32 = policy.allow_tf32
    torch.backends.cudnn.allow_tf32 = policy.allow_tf32
