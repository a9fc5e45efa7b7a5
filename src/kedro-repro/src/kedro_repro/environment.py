"""The environment of a run, captured for a per-run record, with secrets redacted.

:func:`capture_environment` returns a JSON-serialisable dict with a stable key order: the Python
interpreter, every installed distribution, the torch build and its determinism switches, the
hardware, the environment variables that can change numerics or behaviour, the git state of the
project, lock-file digests, and the command line. What is the project's own (its variable
prefixes and switches, its lock files, the torch libraries it uses beside torch) comes in as an
:class:`~kedro_repro.config.EnvironmentSpec`: nothing here names a project.

Secrets never reach the record, by design rather than by guessing: environment variables are
recorded by allowlist (:data:`VALUE_VARIABLES`, :data:`VALUE_FAMILIES` and the project's
``value_variables``: the ones known to change numerics or behaviour keep their values); every other
variable under :data:`SELECTED_PREFIXES` or the project's ``variable_prefixes`` is recorded by name
only, its value :data:`REDACTED`. The command line goes through
:func:`~kedro_repro.redaction.redact_command`, and a final pass applies
:func:`~kedro_repro.redaction.redact_text` to every string in the result. Capture never
fails on a missing tool (git, nvidia-smi, torch): the affected fields are ``None``.

The NVIDIA driver is the one part of the environment no lock file pins, so the hardware section
also records the floor the locked CUDA libraries need (:data:`MIN_NVIDIA_DRIVER`) and whether the
driver meets it (:func:`check_driver`); :func:`require_cuda_driver` stops a CUDA run that cannot.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kedro_repro.config import EnvironmentSpec
from kedro_repro.hashing import bytes_digest, file_digest
from kedro_repro.redaction import (
    REDACTED,
    SECRET_NAME_PARTS,  # noqa: F401  (re-exported for callers)
    is_secret_name,
    redact_command,
    redact_text,
    redact_value,
)

# ``redact`` stays importable from here for existing callers; the one implementation is
# :func:`kedro_repro.redaction.redact_text`.
redact = redact_text

SELECTED_PREFIXES = (
    "KEDRO",
    "CUDA",
    "NVIDIA",
    "TORCH",
    "PYTORCH_",
    "OMP",
    "KMP_",
    "GOMP_",
    "MKL",
    "OPENBLAS",
    "ONEDNN_",
    "DNNL_",
    "ATEN_",
    "CUBLAS",
    "CUDNN",
    "NCCL_",
    "PYTHON",
    "UV_",
    "LD_LIBRARY_PATH",
    "HF_",
)
"""Environment variables whose names start with one of these are recorded: by name only, unless
:func:`is_recorded_with_value` allows the value."""

DETERMINISM_VARIABLES = (
    "CUBLAS_WORKSPACE_CONFIG",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_CBWR",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "PYTHONHASHSEED",
    "OPENBLAS_CORETYPE",
)
"""Variables that can change numerical results; always recorded, ``None`` when unset."""

VALUE_VARIABLES = frozenset(
    {
        *DETERMINISM_VARIABLES,
        # threads and instruction sets of the CPU math libraries (results depend on them)
        "MKL_DYNAMIC", "MKL_ENABLE_INSTRUCTIONS", "MKL_THREADING_LAYER", "MKL_INTERFACE_LAYER",
        "MKL_DEBUG_CPU_TYPE", "MKL_SERVICE_FORCE_INTEL", "OPENBLAS_VERBOSE", "GOTO_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS",
        "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE", "DNNL_DEFAULT_FPMATH_MODE",
        "ONEDNN_VERBOSE", "ONEDNN_PRIMITIVE_CACHE_CAPACITY",
        # which GPUs, and how CUDA, cuBLAS and cuDNN compute
        "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_LAUNCH_BLOCKING",
        "CUDA_MODULE_LOADING", "CUDA_CACHE_DISABLE", "CUBLASLT_WORKSPACE_SIZE",
        "NVIDIA_TF32_OVERRIDE", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
        "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
        # torch switches read from the environment
        "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "TORCH_CUDNN_V8_API_DISABLED",
        "TORCH_CUDNN_V8_API_LRU_CACHE_LIMIT", "TORCH_CUDNN_SDPA_ENABLED",
        "TORCH_BLAS_PREFER_CUBLASLT", "TORCH_BLAS_PREFER_HIPBLASLT",
        "TORCH_LINALG_PREFER_CUSOLVER", "TORCH_USE_CUDA_DSA", "TORCH_SHOW_CPP_STACKTRACES",
        "TORCH_DISTRIBUTED_DEBUG", "TORCH_NCCL_BLOCKING_WAIT", "TORCH_NCCL_ASYNC_ERROR_HANDLING",
        "TORCH_NCCL_USE_COMM_NONBLOCKING", "TORCH_COMPILE_DISABLE", "TORCHDYNAMO_DISABLE",
        "TORCH_HOME", "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_NO_CUDA_MEMORY_CACHING",
        "PYTORCH_NVML_BASED_CUDA_CHECK", "PYTORCH_JIT", "PYTORCH_ENABLE_MPS_FALLBACK",
        # collectives: algorithm and protocol change the order of floating-point reductions
        "NCCL_ALGO", "NCCL_PROTO", "NCCL_DEBUG", "NCCL_P2P_DISABLE", "NCCL_IB_DISABLE",
        "NCCL_SHM_DISABLE", "NCCL_NET", "NCCL_NTHREADS", "NCCL_MIN_NCHANNELS",
        "NCCL_MAX_NCHANNELS", "NCCL_BUFFSIZE", "NCCL_LAUNCH_MODE", "NCCL_CUMEM_ENABLE",
        "NCCL_NVLS_ENABLE", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME",
        "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
        # which code and libraries the interpreter loads, and how it behaves
        "PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONSAFEPATH", "PYTHONOPTIMIZE",
        "PYTHONDONTWRITEBYTECODE", "PYTHONWARNINGS", "PYTHONUTF8", "PYTHONIOENCODING",
        "PYTHONDEVMODE", "PYTHONFAULTHANDLER", "PYTHONINTMAXSTRDIGITS", "PYTHONMALLOC",
        "PYTHONUNBUFFERED", "LD_LIBRARY_PATH", "LD_PRELOAD",
        # Kedro, uv and Hugging Face: configuration, offline mode, caches
        "KEDRO_ENV", "KEDRO_LOGGING_CONFIG", "KEDRO_DISABLE_TELEMETRY",
        "UV_FROZEN", "UV_LOCKED", "UV_NO_SYNC", "UV_OFFLINE", "UV_PYTHON",
        "UV_PROJECT_ENVIRONMENT", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
        "HF_HOME", "HF_HUB_CACHE", "HF_HUB_DISABLE_TELEMETRY",
    }
)  # fmt: skip
"""Variables known to change numerics or behaviour: recorded with their values (redacted by
shape all the same). Every other selected variable is recorded by name only."""

VALUE_FAMILIES = ("OMP_", "KMP_", "GOMP_")
"""OpenMP runtime settings (GNU and Intel): recorded with values unless the name looks secret."""

MIN_NVIDIA_DRIVER = "580.65.06"
"""The oldest NVIDIA Linux driver for the locked CUDA user space (torch 2.11's CUDA 13.0 wheels).

NVIDIA's CUDA 13.0 release notes list 580.65.06 as the Linux x86_64 driver of the CUDA 13.0 GA
toolkit, and minor-version compatibility lets any CUDA 13.x runtime run on a 580-branch driver.
``flake.nix`` declares the same floor (``minNvidiaDriver``); ``tests/test_flake.py`` keeps them
equal. The driver is the one thing no lock file can pin: it belongs to the host's kernel.
"""

_GIT_TIMEOUT_S = 10.0
_NVIDIA_SMI_TIMEOUT_S = 5.0
# [0-9], not \d: str.isdigit and \d accept digits such as "²" that int() rejects
_DOTTED_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def is_recorded_with_value(name: str, spec: EnvironmentSpec | None = None) -> bool:
    """Whether variable ``name``'s value is recorded (:data:`VALUE_VARIABLES`,
    :data:`VALUE_FAMILIES`, the project's ``value_variables``); any other selected variable is
    recorded by name only."""
    if name in VALUE_VARIABLES or (spec is not None and name in spec.value_variables):
        return True
    return name.startswith(VALUE_FAMILIES) and not is_secret_name(name)


def selected_environment_variables(
    environ: Mapping[str, str] | None = None, spec: EnvironmentSpec | None = None
) -> dict[str, str]:
    """The variables of ``environ`` (default ``os.environ``) the run record names, sorted.

    A name is selected when it starts with one of :data:`SELECTED_PREFIXES` or the project's
    ``variable_prefixes`` (``spec``), or its value is recorded. Values are recorded by allowlist, never by guessing which are secret: a variable
    for which :func:`is_recorded_with_value` holds keeps its value (passed through
    :func:`redact_text` all the same); every other one is named, with :data:`REDACTED` as value.
    """
    environ = os.environ if environ is None else environ
    prefixes = SELECTED_PREFIXES + (spec.variable_prefixes if spec is not None else ())
    selected = {}
    for name in sorted(environ):
        if is_recorded_with_value(name, spec):
            selected[name] = redact_text(environ[name])
        elif name.startswith(prefixes):
            selected[name] = REDACTED
    return selected


def _python_section() -> dict[str, Any]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
    }


def installed_packages() -> dict[str, str]:
    """``{lower-case name: version}`` of every installed distribution; the first on the path wins."""
    packages: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        packages.setdefault(name.lower(), dist.version)
    return dict(sorted(packages.items()))


def _call(function: Any, *args: Any) -> Any:
    """``function(*args)``, or ``None`` if it is missing or raises."""
    try:
        return function(*args)
    except Exception:
        return None


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch_section(companions: Mapping[str, str]) -> dict[str, Any] | None:
    """Build and runtime switches of torch, or ``None`` when torch is not installed.

    ``companions`` (record field -> distribution) adds the versions of the torch libraries the
    project uses, right after torch's own.
    """
    try:
        import torch
    except ImportError:
        return None
    backends = torch.backends
    return {
        "version": str(torch.__version__),
        # from metadata, so that recording them imports nothing more
        **{key: _distribution_version(name) for key, name in companions.items()},
        "cuda_version": torch.version.cuda,
        "cudnn_version": _call(backends.cudnn.version),
        "cpu_capability": _call(lambda: backends.cpu.get_cpu_capability()),
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_algorithms_warn_only": _call(
            lambda: torch.is_deterministic_algorithms_warn_only_enabled()
        ),
        "cudnn_benchmark": bool(backends.cudnn.benchmark),
        "cudnn_deterministic": bool(backends.cudnn.deterministic),
        "cuda_matmul_allow_tf32": bool(backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(backends.cudnn.allow_tf32),
        "mkldnn_available": _call(backends.mkldnn.is_available),
        "parallel_info": _call(torch.__config__.parallel_info),
    }


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _cpu_info() -> tuple[str | None, list[str]]:
    """Model name and sorted flags of the first processor in ``/proc/cpuinfo``."""
    text = _read_text("/proc/cpuinfo")
    if text is None:
        return platform.processor() or None, []
    model: str | None = None
    flags: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            if model is not None or flags:
                break  # end of the first processor's block
            continue
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:  # "Features" on ARM
            flags = sorted(set(value.split()))
    return model, flags


def _total_memory_bytes() -> int | None:
    text = _read_text("/proc/meminfo")
    for line in (text or "").splitlines():
        if line.startswith("MemTotal:"):
            fields = line.split()
            try:
                factor = 1024 if fields[-1].lower() == "kb" else 1
                return int(fields[1]) * factor
            except (IndexError, ValueError):
                return None
    return None


def _gpus() -> list[dict[str, Any]]:
    """Name, compute capability and memory of each visible CUDA device (none without torch)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        gpus = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(
                {
                    "name": props.name,
                    "compute_capability": f"{props.major}.{props.minor}",
                    "total_memory_bytes": int(props.total_memory),
                }
            )
        return gpus
    except Exception:
        return []


def _nvidia_driver_version() -> str | None:
    """The driver version reported by ``nvidia-smi`` (first GPU), or ``None``; never raises."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None
    try:
        result = subprocess.run(
            [binary, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=_NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return lines[0] if result.returncode == 0 and lines else None


def _version_key(version: str) -> tuple[int, ...] | None:
    """``"580.65.06"`` -> ``(580, 65, 6)``; ``None`` unless it is ASCII digits joined by dots."""
    text = version.strip()
    if _DOTTED_VERSION.fullmatch(text) is None:
        return None
    return tuple(int(field) for field in text.split("."))


def check_driver(found: str | None, minimum: str = MIN_NVIDIA_DRIVER) -> bool | None:
    """Whether driver version ``found`` is at least ``minimum``, comparing dotted numbers.

    Fields compare as integers, so ``"580.100.1"`` is newer than ``"580.65.06"``; a missing
    trailing field counts as zero. Returns ``None`` when there is nothing to judge: no driver
    found (a CPU machine, or no ``nvidia-smi``) or a version that is not dotted numbers. Never
    raises, so recording the result can never break a run.
    """
    if found is None:
        return None
    have, need = _version_key(found), _version_key(minimum)
    if have is None or need is None:
        return None
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


def require_cuda_driver(
    minimum: str = MIN_NVIDIA_DRIVER, cpu_option: str | None = None
) -> str | None:
    """Stop a CUDA run early, with the fix in the message, when the host driver is too old.

    For callers that are about to use CUDA: an older driver would otherwise surface later as an
    opaque "CUDA driver version is insufficient" from torch. ``cpu_option`` names the caller's
    own switch to the CPU (shown in the message, e.g. a parameter and its value).
    Returns the driver version ``nvidia-smi`` reports, or ``None`` when it reports none; an
    unknown driver is not refused here, since torch then reports what is actually missing.
    """
    found = _nvidia_driver_version()
    if check_driver(found, minimum) is False:
        raise RuntimeError(
            f"NVIDIA driver {found} is older than {minimum}, the minimum for the CUDA 13.0 "
            "libraries locked in uv.lock (torch 2.11). Upgrade the host driver to the 580 branch "
            "or newer, or run on the CPU"
            + (f" ({cpu_option})" if cpu_option else "")
            + ". See docs/nix.md."
        )
    return found


def _hardware_section() -> dict[str, Any]:
    model, flags = _cpu_info()
    driver = _nvidia_driver_version()
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "os": platform.platform(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": model,
        "cpu_flags": flags,
        "logical_cpus": os.cpu_count(),
        "affinity_cpus": _call(lambda: len(affinity(0))) if affinity else None,
        "total_memory_bytes": _total_memory_bytes(),
        "gpus": _gpus(),
        "driver_version": driver,
        # The floor this environment needs, and whether the driver meets it (None: no driver).
        "driver_minimum": MIN_NVIDIA_DRIVER,
        "driver_ok": check_driver(driver),
    }


def _git_env() -> dict[str, str]:
    """The process environment for git: no repository redirection, no optional index locks."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR")
    }
    env["GIT_OPTIONAL_LOCKS"] = "0"  # `git status` must not take the index lock of a live checkout
    return env


def _git(project_path: Path, *args: str) -> bytes | None:
    """stdout of ``git <args>`` run in ``project_path``, or ``None`` on any failure."""
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=project_path,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            env=_git_env(),
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def _git_section(project_path: Path) -> dict[str, Any] | None:
    """Commit, branch and working-tree state of a checkout; ``None`` when it is not one.

    ``dirty`` means tracked files differ from ``HEAD`` (staged or not); ``diff_digest`` is the
    digest of ``git diff HEAD`` then, else ``None``. Untracked files are only counted.
    """
    inside = _git(project_path, "rev-parse", "--is-inside-work-tree")
    if inside is None or inside.strip() != b"true":
        return None
    commit = _git(project_path, "rev-parse", "--verify", "HEAD")
    branch = _git(project_path, "symbolic-ref", "--short", "-q", "HEAD")  # None when detached
    status = _git(project_path, "status", "--porcelain", "--untracked-files=no")
    dirty = None if status is None else bool(status.strip())
    diff_digest = None
    if dirty:
        diff = _git(project_path, "diff", "HEAD", "--no-color", "--no-ext-diff", "--binary")
        diff_digest = None if diff is None else bytes_digest(diff)
    untracked = _git(project_path, "ls-files", "--others", "--exclude-standard", "-z")
    return {
        "commit": commit.decode().strip() if commit else None,
        "branch": redact_text(branch.decode().strip()) if branch else None,
        "dirty": dirty,
        "diff_digest": diff_digest,
        "untracked_count": None if untracked is None else untracked.count(b"\0"),
    }


def _lock_files_section(
    project_path: Path | None, lock_files: tuple[str, ...]
) -> dict[str, str | None]:
    digests: dict[str, str | None] = {}
    for name in lock_files:
        path = None if project_path is None else project_path / name
        digests[name] = _call(file_digest, path) if path is not None and path.is_file() else None
    return digests


def capture_environment(
    project_path: Path | None = None, spec: EnvironmentSpec | None = None
) -> dict[str, Any]:
    """The environment of this process, JSON-serialisable, in a stable key order, secrets redacted.

    ``spec`` is the project's part (its variables, lock files, torch libraries); without it
    only what every project shares is recorded.

    Sections: ``python``, ``packages``, ``torch``, ``hardware``, ``determinism_env``,
    ``environment_variables``, ``git``, ``lock_files``, ``command`` and ``hostname``. ``git`` is
    ``None`` and the lock-file digests are ``None`` when ``project_path`` is not given (or is not
    a git checkout / lacks the file).
    """
    project = None if project_path is None else Path(project_path)
    spec = EnvironmentSpec() if spec is None else spec
    record = {
        "python": _python_section(),
        "packages": installed_packages(),
        "torch": _torch_section(spec.torch_companions),
        "hardware": _hardware_section(),
        "determinism_env": {
            name: None if (value := os.environ.get(name)) is None else redact_text(value)
            for name in DETERMINISM_VARIABLES
        },
        "environment_variables": selected_environment_variables(spec=spec),
        "git": None if project is None else _git_section(project),
        "lock_files": _lock_files_section(project, spec.lock_files),
        "command": redact_command(sys.argv),
        "hostname": socket.gethostname(),
    }
    # Every string by shape once more: the git branch, paths, the parallel info text.
    return redact_value(record, by_name=False)
