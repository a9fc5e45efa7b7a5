"""Kedro datasets: tensors and training state as safetensors (never pickled), shards, locked tables."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, AbstractVersionedDataset, DatasetError, Version
from kedro_datasets._typing import HTMLPreview, JSONPreview, TablePreview

from kedro_repro.atomic import atomic_open, atomic_path, atomic_write_bytes
from kedro_repro.checkpoints import CheckpointStore
from kedro_repro.identity import current_run
from kedro_repro.report import Report, identity_header, markdown_to_html
from kedro_repro.shards import INDEX_FILE, ShardedTensors, write_shards
from kedro_repro.state import load_state, save_state


class VersionedFileDataset(AbstractVersionedDataset[Any, Any]):
    """Shared plumbing of this module's file datasets: a path, optional versioning, metadata."""

    def __init__(
        self, *, filepath: str, version: Version | None = None, metadata: dict | None = None
    ):
        super().__init__(filepath=PurePosixPath(filepath), version=version)
        self.metadata = metadata

    @property
    def load_path(self) -> Path:
        return Path(self._get_load_path())

    @property
    def save_path(self) -> Path:
        return Path(self._get_save_path())

    def _complete(self, path: Path) -> bool:
        """Whether ``path`` holds a completely written artifact."""
        return path.exists()

    def _exists(self) -> bool:
        try:
            return self._complete(self.load_path)
        except DatasetError:  # no version yet
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}


class SafetensorsDataset(VersionedFileDataset):
    """Nested state (dicts/lists of tensors and scalars) in one safetensors file, optionally versioned.

    Example::

        model_weights:
          type: kedro_repro.datasets.SafetensorsDataset
          filepath: data/06_models/model.safetensors
          versioned: true
    """

    def load(self) -> Any:
        return load_state(self.load_path)

    def save(self, data: Any) -> None:
        save_state(self.save_path, data)


class CheckpointStoreDataset(VersionedFileDataset):
    """Hands a node the :class:`CheckpointStore` of the current run (the run's save version).

    Training writes checkpoints *during* the node, so the store is an input: loading it returns a
    handle on ``<filepath>/<run id>/<name>/``, which the run fills and later runs never touch.
    With a pinned load version (``--load-versions training_checkpoints:<old run>``) the store
    continues from that run's newest checkpoint while writing its own under the new run id.
    ``keep`` (the newest N) and ``keep_every_epochs`` (every N-th epoch end) are the retention
    policy (:class:`~kedro_repro.checkpoints.RetentionPolicy`), recorded with the run.
    """

    def __init__(
        self,
        *,
        filepath: str,
        keep: int | None = None,
        keep_every_epochs: int | None = None,
        version: Version | None = None,
        metadata: dict | None = None,
    ):
        super().__init__(filepath=filepath, version=version, metadata=metadata)
        self.keep = keep
        self.keep_every_epochs = keep_every_epochs

    def load(self) -> CheckpointStore:
        policy = {"keep": self.keep, "keep_every_epochs": self.keep_every_epochs}
        if self._version is None:
            return CheckpointStore(Path(self._filepath), **policy)
        save_version = self.resolve_save_version()
        own = Path(self._get_versioned_path(save_version))
        resume = self._version.load
        previous = (
            Path(self._get_versioned_path(resume)) if resume and resume != save_version else None
        )
        return CheckpointStore(own, resume_from=previous, **policy)

    def save(self, data: CheckpointStore) -> None:
        raise DatasetError("checkpoints are written through the store that load() returns")

    def _exists(self) -> bool:
        return True  # the run creates its own store


class ShardedTensorsDataset(VersionedFileDataset):
    """A directory of tensor shards (see :mod:`kedro_repro.shards`), optionally versioned.

    ``save`` accepts any iterable of ``{item id: tensor}`` shards, including a generator, and
    writes each shard as it is produced; ``load`` returns a lazy :class:`ShardedTensors` reader.
    """

    def load(self) -> ShardedTensors:
        return ShardedTensors(self.load_path)

    def save(self, data: Iterable[dict]) -> None:
        write_shards(self.save_path, data)

    def _complete(self, path: Path) -> bool:
        return (path / INDEX_FILE).exists()  # the index is written last


class LockedTableError(DatasetError):
    """A new table disagrees with the locked one."""


class LockedTableDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """A CSV table that, once written, may only be written again with the same content.

    Saving a table that differs from the lock raises :class:`LockedTableError` with a report of
    the rows added, removed and changed (by ``key``), and leaves the lock untouched. Set
    ``relock: true`` (e.g. ``${runtime_params:relock, false}`` in the catalog) to accept a change
    deliberately.
    """

    def __init__(
        self,
        *,
        filepath: str,
        key: str,
        relock: bool = False,
        report_limit: int = 20,
        metadata: dict | None = None,
    ):
        self._path = Path(filepath)
        self._key = key
        self._relock = str(relock).lower() in {"1", "true", "yes"}
        self._limit = report_limit
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        return pd.read_csv(self._path, dtype=str, keep_default_na=False)

    def save(self, data: pd.DataFrame) -> None:
        table = data.astype(str).sort_values(self._key).reset_index(drop=True)
        if self._path.exists() and not self._relock:
            locked = self.load()
            if differences := self._differences(locked, table):
                raise LockedTableError(
                    f"{self._path} is locked and the new data differs from it:\n{differences}\n"
                    "Restore the data the lock describes, or accept the change deliberately with "
                    "`kedro run --params relock=true`."
                )
            return  # identical: leave the file (and its timestamps) alone
        with atomic_open(self._path) as handle:
            table.to_csv(handle, index=False)

    def _differences(self, locked: pd.DataFrame, table: pd.DataFrame) -> str:
        old = locked.set_index(self._key)
        new = table.set_index(self._key)
        added = sorted(set(new.index) - set(old.index))
        removed = sorted(set(old.index) - set(new.index))
        common = sorted(set(old.index) & set(new.index))
        columns = [c for c in new.columns if c in old.columns]
        changed = [
            f"{k} ({', '.join(f'{c}: {old.at[k, c]} -> {new.at[k, c]}' for c in columns if old.at[k, c] != new.at[k, c])})"
            for k in common
            if any(old.at[k, c] != new.at[k, c] for c in columns)
        ]
        if set(new.columns) != set(old.columns):
            changed.insert(0, f"columns {sorted(old.columns)} -> {sorted(new.columns)}")
        lines = []
        for label, items in (("added", added), ("removed", removed), ("changed", changed)):
            if items:
                shown = items[: self._limit]
                more = f" ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
                lines.append(f"  {label} ({len(items)}): {', '.join(shown)}{more}")
        return "\n".join(lines)

    def _exists(self) -> bool:
        return self._path.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path), "key": self._key, "relock": self._relock}


class TableDataset(VersionedFileDataset):
    """A pandas table as CSV or Parquet, optionally versioned, written atomically.

    Kedro's own file datasets write in place, so a run killed mid-write could leave a truncated
    file that a later load accepts; this one writes a temporary file, fsyncs it and renames it.
    """

    def __init__(
        self,
        *,
        filepath: str,
        file_format: str = "csv",
        load_args: dict | None = None,
        save_args: dict | None = None,
        version: Version | None = None,
        metadata: dict | None = None,
    ):
        if file_format not in {"csv", "parquet"}:
            raise ValueError(f"file_format must be csv or parquet, not {file_format!r}")
        super().__init__(filepath=filepath, version=version, metadata=metadata)
        self._format = file_format
        self._load_args = load_args or {}
        self._save_args = {"index": False, **(save_args or {})}

    def load(self) -> pd.DataFrame:
        read = pd.read_csv if self._format == "csv" else pd.read_parquet
        return read(self.load_path, **self._load_args)

    def save(self, data: pd.DataFrame) -> None:
        with atomic_path(self.save_path) as tmp:
            write = data.to_csv if self._format == "csv" else data.to_parquet
            write(tmp, **self._save_args)

    def preview(self, nrows: int = 5) -> TablePreview:
        """The first rows, for kedro-viz; ``None`` before any run saved the table."""
        if not self.exists():  # a pipeline that has not run yet: nothing to show, not an error
            return None  # type: ignore[return-value]
        return TablePreview(self.load().head(nrows).to_dict(orient="split"))


class JSONDataset(VersionedFileDataset):
    """A JSON document, optionally versioned, written atomically (see :class:`TableDataset`)."""

    def load(self) -> Any:
        return json.loads(self.load_path.read_text())

    def save(self, data: Any) -> None:
        with atomic_open(self.save_path) as handle:
            json.dump(data, handle, indent=2)

    def preview(self) -> JSONPreview:
        """The document, for kedro-viz; ``None`` before any run saved it."""
        if not self.exists():
            return None  # type: ignore[return-value]
        return JSONPreview(json.dumps(self.load(), indent=2))


class MarkdownReportDataset(VersionedFileDataset):
    """A Markdown report, written with its figures and its HTML page beside it.

    A node returns a :class:`~kedro_repro.report.Report` (Markdown and figures) or plain Markdown.
    ``save`` writes, in the version's folder, each figure as ``<name>.png`` (the Markdown links it
    by that name), the page ``<report>.html`` and last the Markdown. The page embeds the figures
    as ``data:`` URIs and shows the run's identity (:func:`~kedro_repro.report.identity_header`);
    the Markdown is the node's text, byte for byte, so a replay reproduces it. ``load`` returns
    the Markdown, ``preview`` the stored page.
    """

    def __init__(
        self,
        *,
        filepath: str,
        figure_dpi: int = 100,
        version: Version | None = None,
        metadata: dict | None = None,
    ):
        super().__init__(filepath=filepath, version=version, metadata=metadata)
        self.figure_dpi = figure_dpi

    def load(self) -> str:
        return self.load_path.read_text()

    def save(self, data: str | Report) -> None:
        report = data if isinstance(data, Report) else Report(data)
        path = self.save_path
        images = {}
        for name, figure in report.figures.items():
            if PurePosixPath(name).name != name or not name.endswith(".png") or name == path.name:
                raise DatasetError(f"report figure names are plain .png file names, not {name!r}")
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=self.figure_dpi)
            images[name] = buffer.getvalue()
            atomic_write_bytes(path.parent / name, images[name])
        header = identity_header(current_run(), self.resolve_save_version())
        with atomic_open(path.with_suffix(".html")) as handle:
            handle.write(markdown_to_html(report.markdown, images, header))
        with atomic_open(path) as handle:  # last: its presence marks the report complete
            handle.write(report.markdown)

    def preview(self) -> HTMLPreview:
        """The stored page (identity and figures included), or ``None`` before any run saved one."""
        if not self.exists():
            return None  # type: ignore[return-value]
        page = self.load_path.with_suffix(".html")
        return HTMLPreview(page.read_text() if page.exists() else markdown_to_html(self.load()))
