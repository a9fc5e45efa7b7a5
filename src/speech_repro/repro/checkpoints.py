"""A directory of step-numbered training checkpoints, written atomically, loaded without pickle."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from speech_repro.repro.state import load_state, save_state

_NAME = re.compile(r"^step-(\d{9})\.safetensors$")


class CheckpointStore:
    """Saves and finds checkpoints named ``step-000000123.safetensors`` in one directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def save(self, step: int, state: Any) -> Path:
        """Write the full training state reached after ``step`` optimizer steps."""
        path = self.directory / f"step-{step:09d}.safetensors"
        save_state(path, state, metadata={"step": str(step)})
        return path

    def steps(self) -> list[int]:
        """Steps that have a complete checkpoint, ascending."""
        if not self.directory.is_dir():
            return []
        return sorted(
            int(m.group(1)) for p in self.directory.iterdir() if (m := _NAME.match(p.name))
        )

    def load(self, step: int) -> Any:
        """The state saved at ``step``."""
        return load_state(self.directory / f"step-{step:09d}.safetensors")

    def latest(self) -> tuple[int, Any] | None:
        """The newest checkpoint as ``(step, state)``, or None when there is none."""
        steps = self.steps()
        return (steps[-1], self.load(steps[-1])) if steps else None
