"""The environment of a run, captured for a per-run record, with secrets redacted.

:func:`capture_environment` returns a JSON-serialisable dict with a stable key order: the Python
interpreter, every installed distribution, the torch build and its determinism switches, the
hardware, the environment variables that can change numerics or behaviour, the git state of the
project, lock-file digests, and the command line.

Secrets never reach the record: a selected variable whose *name* contains one of
:data:`SECRET_NAME_PARTS` has its value replaced by :data:`REDACTED`, credentials embedded in URLs
(``scheme://user:pass@host``) are masked by :func:`redact`, and a final pass applies :func:`redact`
to every string in the result. Capture never fails on a missing tool (git, nvidia-smi, torch): the
affected fields are ``None``.

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speech_repro.repro.hashing import bytes_digest, file_digest

SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")
"""A variable (or ``--option``) whose name contains one of these, case-insensitively, is secret."""

SELECTED_PREFIXES = (
    "KEDRO",
    "CUDA",
    "NVIDIA",
    "TORCH",
    "OMP",
    "MKL",
    "OPENBLAS",
    "PYTHON",
    "UV_",
    "LD_LIBRARY_PATH",
    "HF_",
    "SPEECH_REPRO",
)
"""Environment variables whose names start with one of these are recorded."""

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

REDACTED = "***redacted***"
LOCK_FILES = ("uv.lock", "flake.lock")

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
# scheme://user:password@  -> scheme://user:***@   (the password stops at the first "@")
_URL_CREDENTIALS = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):[^@\s]*@")


def redact(value: str) -> str:
    """``value`` with the password of every ``scheme://user:pass@`` URL replaced by ``***``.

    ``https://user:pass@host/x`` becomes ``https://user:***@host/x``; anything else is returned
    unchanged.
    """
    return _URL_CREDENTIALS.sub(r"\g<prefix>:***@", value)


def is_secret_name(name: str) -> bool:
    """Whether a variable or option name marks its value as secret (see :data:`SECRET_NAME_PARTS`)."""
    upper = name.upper()
    return any(part in upper for part in SECRET_NAME_PARTS)


def selected_environment_variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of ``environ`` (default ``os.environ``) with a :data:`SELECTED_PREFIXES` name.

    Sorted by name. Values of secret-named variables are replaced by :data:`REDACTED`; every other
    value goes through :func:`redact`.
    """
    environ = os.environ if environ is None else environ
    selected = {}
    for name in sorted(environ):
        if not name.startswith(SELECTED_PREFIXES):
            continue
        selected[name] = REDACTED if is_secret_name(name) else redact(environ[name])
    return selected


def redact_command(argv: Sequence[str]) -> list[str]:
    """A command line with every argument passed through :func:`redact`.

    In addition, the value of a secret-named option is replaced by :data:`REDACTED`, whether it is
    written ``--api-key=VALUE`` / ``API_KEY=VALUE`` or ``--api-key VALUE``.
    """
    redacted: list[str] = []
    secret_flag_before = False
    for arg in argv:
        if secret_flag_before:
            redacted.append(REDACTED)
            secret_flag_before = False
            continue
        name, sep, _ = arg.partition("=")
        if sep and is_secret_name(name):
            redacted.append(f"{redact(name)}={REDACTED}")
        else:
            redacted.append(redact(arg))
            secret_flag_before = arg.startswith("-") and not sep and is_secret_name(arg)
    return redacted


def _redact_tree(value: Any) -> Any:
    """``value`` with :func:`redact` applied to every string in it, keys included."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(str(k)): _redact_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_tree(v) for v in value]
    return value


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


def _torch_section() -> dict[str, Any] | None:
    """Build and runtime switches of torch, or ``None`` when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    backends = torch.backends
    return {
        "version": str(torch.__version__),
        # from metadata, so that recording it does not import the audio stack
        "torchaudio_version": _distribution_version("torchaudio"),
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


def require_cuda_driver(minimum: str = MIN_NVIDIA_DRIVER) -> str | None:
    """Stop a CUDA run early, with the fix in the message, when the host driver is too old.

    For callers that are about to use CUDA (``training.device: cuda``): an older driver would
    otherwise surface later as an opaque "CUDA driver version is insufficient" from torch.
    Returns the driver version ``nvidia-smi`` reports, or ``None`` when it reports none; an
    unknown driver is not refused here, since torch then reports what is actually missing.
    """
    found = _nvidia_driver_version()
    if check_driver(found, minimum) is False:
        raise RuntimeError(
            f"NVIDIA driver {found} is older than {minimum}, the minimum for the CUDA 13.0 "
            "libraries locked in uv.lock (torch 2.11). Upgrade the host driver to the 580 branch "
            "or newer, or run on the CPU (training.device: cpu). See docs/nix.md."
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
        "branch": redact(branch.decode().strip()) if branch else None,
        "dirty": dirty,
        "diff_digest": diff_digest,
        "untracked_count": None if untracked is None else untracked.count(b"\0"),
    }


def _lock_files_section(project_path: Path | None) -> dict[str, str | None]:
    digests: dict[str, str | None] = {}
    for name in LOCK_FILES:
        path = None if project_path is None else project_path / name
        digests[name] = _call(file_digest, path) if path is not None and path.is_file() else None
    return digests


def capture_environment(project_path: Path | None = None) -> dict[str, Any]:
    """The environment of this process, JSON-serialisable, in a stable key order, secrets redacted.

    Sections: ``python``, ``packages``, ``torch``, ``hardware``, ``determinism_env``,
    ``environment_variables``, ``git``, ``lock_files``, ``command`` and ``hostname``. ``git`` is
    ``None`` and the lock-file digests are ``None`` when ``project_path`` is not given (or is not
    a git checkout / lacks the file).
    """
    project = None if project_path is None else Path(project_path)
    record = {
        "python": _python_section(),
        "packages": installed_packages(),
        "torch": _torch_section(),
        "hardware": _hardware_section(),
        "determinism_env": {name: os.environ.get(name) for name in DETERMINISM_VARIABLES},
        "environment_variables": selected_environment_variables(),
        "git": None if project is None else _git_section(project),
        "lock_files": _lock_files_section(project),
        "command": redact_command(sys.argv),
        "hostname": socket.gethostname(),
    }
    return _redact_tree(record)
