"""A directory of step-numbered training checkpoints, written atomically, loaded without pickle."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from speech_repro.repro.state import load_state, save_state

_NAME = re.compile(r"^step-(\d{9})\.safetensors$")


class CheckpointStore:
    """Saves and finds checkpoints named ``step-000000123.safetensors`` in one directory.

    ``resume_from`` is another run's checkpoint directory: until this store holds a checkpoint
    of its own, :meth:`latest` returns the newest one there, so a new run continues an old one
    without touching it. ``keep`` bounds how many of its own checkpoints the store keeps.
    """

    def __init__(
        self, directory: str | Path, resume_from: str | Path | None = None, keep: int | None = None
    ):
        self.directory = Path(directory)
        self.resume_from = Path(resume_from) if resume_from else None
        self.keep = keep

    def save(self, step: int, state: Any) -> Path:
        """Write the full training state reached after ``step`` optimizer steps."""
        path = self.directory / _name(step)
        save_state(path, state, metadata={"step": str(step)})
        if self.keep:
            for old in _steps(self.directory)[: -self.keep]:
                (self.directory / _name(old)).unlink(missing_ok=True)
        return path

    def steps(self) -> list[int]:
        """Steps with a complete checkpoint in this store's own directory, ascending."""
        return _steps(self.directory)

    def load(self, step: int) -> Any:
        """The state this store saved at ``step``."""
        return load_state(self.directory / _name(step))

    def latest(self) -> tuple[int, Any] | None:
        """The newest checkpoint as ``(step, state)``: this store's, else the resumed run's."""
        for directory in (self.directory, self.resume_from):
            if directory is not None and (steps := _steps(directory)):
                return steps[-1], load_state(directory / _name(steps[-1]))
        return None


def _name(step: int) -> str:
    return f"step-{step:09d}.safetensors"


def _steps(directory: Path) -> list[int]:
    """Steps with a complete checkpoint file (temporary files of an interrupted write never match)."""
    if not directory.is_dir():
        return []
    return sorted(
        int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name)) and p.is_file()
    )
