"""Kedro datasets for tensors and training state, stored as safetensors (never pickled)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractVersionedDataset, DatasetError, Version

from speech_repro.repro.checkpoints import CheckpointStore
from speech_repro.repro.state import load_state, save_state


class SafetensorsDataset(AbstractVersionedDataset[Any, Any]):
    """Nested state (dicts/lists of tensors and scalars) in one safetensors file, optionally versioned.

    Example::

        model_weights:
          type: speech_repro.repro.datasets.SafetensorsDataset
          filepath: data/06_models/model.safetensors
          versioned: true
    """

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        super().__init__(filepath=PurePosixPath(filepath), version=version)
        self.metadata = metadata

    def load(self) -> Any:
        return load_state(Path(self._get_load_path()))

    def save(self, data: Any) -> None:
        save_state(Path(self._get_save_path()), data)

    def _exists(self) -> bool:
        try:
            return Path(self._get_load_path()).exists()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}


class CheckpointStoreDataset(AbstractVersionedDataset[Any, CheckpointStore]):
    """Hands a node the :class:`CheckpointStore` of the current run (the run's save version).

    Training writes checkpoints *during* the node, so the store is an input: loading it returns a
    handle on ``<filepath>/<run id>/<name>/``, which the run fills and later runs never touch.
    """

    def __init__(
        self, *, filepath: str, version: Version | None = None, metadata: dict | None = None
    ):
        super().__init__(filepath=PurePosixPath(filepath), version=version)
        self.metadata = metadata

    def load(self) -> CheckpointStore:
        if self._version is None:
            return CheckpointStore(Path(self._filepath))
        return CheckpointStore(Path(self._get_versioned_path(self.resolve_save_version())))

    def save(self, data: CheckpointStore) -> None:
        raise DatasetError("checkpoints are written through the store that load() returns")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}
