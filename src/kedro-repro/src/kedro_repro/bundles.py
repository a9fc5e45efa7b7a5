"""Where a project's datasets live, and whether a path belongs to a run bundle.

Commands that write files (an export, a replay folder) ask :func:`bundle_owner` first: a run's
digests would no longer describe its bundle if one of its files changed.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedro_repro.record import RUNS_DIR, list_records


@dataclass(frozen=True)
class DatasetLocation:
    """A catalog entry's local file or folder, relative to the project when inside it."""

    path: str
    """POSIX path; a dataset factory's placeholders (``{seed}``) are kept."""
    versioned: bool

    @property
    def is_factory(self) -> bool:
        """Whether the entry is a pattern (``{seed}.model``) standing for many datasets."""
        return "{" in self.path

    @property
    def glob(self) -> str:
        """The path with each placeholder made ``*``: matches every dataset of a factory."""
        return re.sub(r"\{[^}]*\}", "*", self.path)


def catalog_config(project: Path, env: str | None) -> dict[str, Any]:
    """The catalog configuration of ``env`` (default ``local``) over ``base``, as Kedro merges it."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        conf_source=str(project / "conf"), base_env="base", default_run_env=env or "local"
    )
    return dict(loader["catalog"])


def dataset_locations(project: Path, catalog: dict[str, Any]) -> dict[str, DatasetLocation]:
    """Catalog entry (name or factory pattern) -> its local location; remote entries are left out."""
    root = project.resolve()
    locations = {}
    for name, entry in catalog.items():
        path = (entry.get("filepath") or entry.get("path")) if isinstance(entry, dict) else None
        if isinstance(path, str) and "://" not in path:
            location = Path(path)
            if location.is_absolute() and location.is_relative_to(root):
                location = location.relative_to(root)
            locations[name] = DatasetLocation(location.as_posix(), bool(entry.get("versioned")))
    return locations


def bundle_owner(project: Path, path: Path, env: str | None) -> str | None:
    """What makes ``path`` part of a run bundle, or None: a path under ``data/09_runs/``, a file
    a run's ledger or checkpoints list, a path inside a versioned dataset's folder, or inside an
    unversioned dataset (a split lock, a corpus) that a run's ledger lists."""
    target = path.resolve()
    root = project.resolve()
    if target.is_relative_to(root / RUNS_DIR):
        return f"inside the run bundles folder {RUNS_DIR}"
    if not target.is_relative_to(root):
        return None
    relative = target.relative_to(root).as_posix()
    saved: dict[str, str] = {}  # dataset -> a run that saved it
    for record in list_records(root / RUNS_DIR):
        for dataset, entry in record.ledger.items():
            saved.setdefault(dataset, record.run_id)
            if relative in entry.files:
                return f"dataset {dataset} of run {record.run_id}"
        for dataset, section in record.checkpoints.items():
            if relative in {f"{section.directory}/{name}" for name in section.files}:
                return f"a checkpoint ({dataset}) of run {record.run_id}"
    prefixes = [Path(relative), *Path(relative).parents][:-1]  # never '.' (the project)
    for dataset, location in dataset_locations(root, catalog_config(root, env)).items():
        # A dataset factory's location has placeholders ({seed}): any value matches.
        if not any(fnmatch.fnmatchcase(p.as_posix(), location.glob) for p in prefixes):
            continue
        if location.versioned:
            return f"inside the folder of versioned dataset {dataset} ({location.glob})"
        if dataset in saved:
            return f"dataset {dataset} ({location.glob}), which run {saved[dataset]} saved"
    return None
