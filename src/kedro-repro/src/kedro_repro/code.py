"""The code a run executed, stored in its bundle so a replay can rebuild it exactly.

At the start of a run, :func:`capture_code` writes into ``<bundle>/code/``:

- ``patch.diff``: when the working tree differs from ``HEAD``, a binary patch of every tracked
  change and every untracked, not-ignored file (``git diff`` with ``--no-index`` for new files,
  so nothing is written to the repository's object store or index);
- copies of ``uv.lock``, ``flake.lock`` and ``pyproject.toml`` as they were.

:func:`restore_code` rebuilds the tree in another folder: ``git archive`` of the recorded commit
(the project's folder inside the repository), then ``git apply`` of the stored patch after its
digest has been checked. ``git apply`` refuses paths outside the folder (no ``--unsafe-paths``).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from kedro_repro.atomic import atomic_write_bytes
from kedro_repro.hashing import bytes_digest, file_digest
from kedro_repro.record import CODE_DIR, CodeSnapshot

SNAPSHOT_FILES = ("uv.lock", "flake.lock", "pyproject.toml")
PATCH_FILE = f"{CODE_DIR}/patch.diff"
MAX_PATCH_BYTES = 32 << 20
"""A larger patch (e.g. untracked data files that .gitignore misses) is not stored; say so."""
_GIT_TIMEOUT_S = 60.0


class CodeRestoreError(RuntimeError):
    """The recorded code cannot be rebuilt (commit absent, patch missing or altered)."""


def _git(cwd: Path, *args: str, ok: tuple[int, ...] = (0,)) -> bytes | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_OPTIONAL_LOCKS"] = "0"
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=_GIT_TIMEOUT_S, env=env
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode in ok else None


def working_tree_patch(project: Path) -> bytes | None:
    """Binary patch from ``HEAD`` to the working tree of ``project``'s folder, new files included.

    ``None`` when ``project`` is not in a git checkout. Paths are relative to ``project``.
    """
    tracked = _git(project, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--relative")
    if tracked is None:
        return None
    untracked = _git(project, "ls-files", "--others", "--exclude-standard", "-z", ".")
    parts = [tracked]
    for name in sorted(n for n in (untracked or b"").decode().split("\0") if n):
        # exit 1 means "differs", which a new file always does
        diff = _git(
            project, "diff", "--no-index", "--binary", "--no-color", "--", "/dev/null", name,
            ok=(0, 1),
        )  # fmt: skip
        if diff is None:
            return None
        parts.append(diff)
    return b"".join(parts)


def capture_code(project: Path, bundle: Path) -> CodeSnapshot:
    """Store the code snapshot of ``project`` under ``bundle/code``; returns the record section."""
    project = Path(project)
    files: dict[str, str] = {}
    for name in SNAPSHOT_FILES:
        if (project / name).is_file():
            target = bundle / CODE_DIR / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(project / name, target)
            files[f"{CODE_DIR}/{name}"] = file_digest(target)
    commit = _git(project, "rev-parse", "--verify", "HEAD")
    section: dict[str, Any] = {
        "commit": commit.decode().strip() if commit else None,
        "prefix": "",
        "dirty": False,
        "patch": None,
        "patch_missing_reason": None,
        "files": files,
    }
    if commit is None:
        section["patch_missing_reason"] = "not a git checkout: the code cannot be restored"
        return CodeSnapshot.model_validate(section)
    prefix = _git(project, "rev-parse", "--show-prefix")
    section["prefix"] = (prefix or b"").decode().strip().rstrip("/")
    patch = working_tree_patch(project)
    if patch is None:
        section["patch_missing_reason"] = "git could not produce the working-tree patch"
        section["dirty"] = True
    elif patch:
        section["dirty"] = True
        if len(patch) > MAX_PATCH_BYTES:
            section["patch_missing_reason"] = (
                f"the working-tree patch has {len(patch)} bytes, over {MAX_PATCH_BYTES}: "
                "commit or ignore large files"
            )
        else:
            atomic_write_bytes(bundle / PATCH_FILE, patch)
            section["patch"] = PATCH_FILE
            files[PATCH_FILE] = bytes_digest(patch)
    return CodeSnapshot.model_validate(section)


def restore_code(project: Path, bundle: Path, code: CodeSnapshot, workdir: Path) -> None:
    """Rebuild the recorded code of a run in ``workdir`` (which must be empty or absent).

    Raises :class:`CodeRestoreError` when the commit is not in ``project``'s repository, or the
    tree was dirty and its patch is missing or no longer has its recorded digest.
    """
    if code.commit is None:
        raise CodeRestoreError("the run recorded no commit (it did not run from a git checkout)")
    if code.dirty and code.patch is None:
        raise CodeRestoreError(
            f"the run's tree was dirty and its patch was not stored: {code.patch_missing_reason}"
        )
    treeish = f"{code.commit}:{code.prefix}" if code.prefix else code.commit
    archive = _git(project, "archive", "--format=tar", treeish)
    if archive is None:
        raise CodeRestoreError(
            f"commit {code.commit[:12]} is not in the repository of {project}: fetch it first"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(workdir, filter="data")  # 'data' refuses links and paths leaving workdir
    if code.patch is not None:
        patch = bundle / code.patch
        expected = code.files.get(code.patch)
        actual = file_digest(patch) if patch.is_file() else None
        if actual is None or actual != expected:
            raise CodeRestoreError(
                f"{patch}: the stored patch {'is missing' if actual is None else 'was altered'} "
                f"(recorded {expected}, found {actual})"
            )
        result = subprocess.run(
            ["git", "apply", "--binary", "--whitespace=nowarn", str(patch.resolve())],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
        )
        if result.returncode != 0:
            raise CodeRestoreError(f"{patch} does not apply to {code.commit[:12]}: {result.stderr}")
