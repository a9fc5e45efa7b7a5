"""Kedro dataset that materialises a synthesized corpus plan as WAV files plus a digest manifest.

``save(plan)`` renders only what is missing: an utterance whose file exists with the digest the
manifest recorded for the same plan row is kept as is. A re-rendered utterance whose bytes differ
from the digest recorded for the same plan row means synthesis is not reproducible: that fails,
naming every such file. ``load()`` verifies every file against the manifest and returns the plan
with audio paths and digests.

Layout under ``path``: ``wav/<speaker>/<utt_id>.wav``, ``plan.csv`` (plan rows + fingerprint +
digest) and ``B3SUMS`` (checkable with ``b3sum --check`` or
``python -m speech_repro.repro.hashing check``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import soundfile as sf
from kedro.io import AbstractDataset, DatasetError

from speech_repro.corpora.render import render_plan
from speech_repro.repro.atomic import atomic_open, atomic_path
from speech_repro.repro.hashing import SUMS_FILE, file_digest, format_sums, json_digest

logger = logging.getLogger(__name__)

RENDERER_VERSION = "espeak-ng-fork-v1"  # bump when rendering changes on purpose


class CorpusDigestError(DatasetError):
    """Audio bytes differ from the digests recorded for them."""


class SynthesizedCorpusDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """A corpus directory rendered from a plan table; see the module docstring."""

    def __init__(self, *, path: str, workers: int = 2, metadata: dict | None = None):
        self._root = Path(path)
        self._workers = workers
        self.metadata = metadata

    @property
    def _plan_file(self) -> Path:
        return self._root / "plan.csv"

    @property
    def _sums_file(self) -> Path:
        return self._root / SUMS_FILE

    def _audio_path(self, speaker: str, utt_id: str) -> Path:
        return self._root / "wav" / speaker / f"{utt_id}.wav"

    def save(self, plan: pd.DataFrame) -> None:
        plan = plan.reset_index(drop=True)
        rows = plan.to_dict("records")
        fingerprints = [json_digest({**row, "renderer": RENDERER_VERSION}) for row in rows]
        paths = [self._audio_path(row["speaker"], row["utt_id"]) for row in rows]
        recorded = self._recorded_digests()
        # Keep a file only if its bytes still match what was recorded for the same plan row.
        digests = [
            recorded.get(fp) if path.exists() and file_digest(path) == recorded.get(fp) else None
            for fp, path in zip(fingerprints, paths, strict=True)
        ]
        stale = [i for i, digest in enumerate(digests) if digest is None]
        logger.info("Corpus %s: %d of %d utterances to render", self._root, len(stale), len(rows))
        changed: list[str] = []
        if stale:
            waves = render_plan(plan.iloc[stale], self._workers)
            for i, wave in zip(stale, waves, strict=True):
                with atomic_path(paths[i]) as tmp:
                    sf.write(tmp, wave, int(rows[i]["sample_rate"]), subtype="PCM_16", format="WAV")
                digests[i] = file_digest(paths[i])
                previous = recorded.get(fingerprints[i])
                if previous is not None and previous != digests[i]:
                    changed.append(str(paths[i]))
                    digests[i] = previous  # the manifest keeps the first recorded truth
        self._remove_unplanned(set(paths))
        self._write_manifest(plan.assign(fingerprint=fingerprints, digest=digests), paths)
        if changed:
            raise CorpusDigestError(
                f"Re-synthesis produced different bytes for {len(changed)} file(s) whose plan did "
                f"not change (synthesis is not reproducible here): {', '.join(changed)}"
            )

    def load(self) -> pd.DataFrame:
        if not self._plan_file.exists():
            raise DatasetError(f"No corpus at {self._root}: run the data_processing pipeline")
        plan = pd.read_csv(self._plan_file, dtype={"transcript": str}, keep_default_na=False)
        plan["audio_path"] = [
            str(self._audio_path(s, u))
            for s, u in zip(plan["speaker"], plan["utt_id"], strict=True)
        ]
        plan["start"], plan["end"] = 0.0, float("nan")  # whole files
        missing = [p for p in plan["audio_path"] if not Path(p).exists()]
        if missing:
            raise CorpusDigestError(f"{len(missing)} audio file(s) missing: {', '.join(missing)}")
        modified = [
            p
            for p, d in zip(plan["audio_path"], plan["digest"], strict=True)
            if file_digest(p) != d
        ]
        if modified:
            raise CorpusDigestError(
                f"{len(modified)} audio file(s) differ from {self._sums_file}: {', '.join(modified)}"
            )
        return plan

    def _recorded_digests(self) -> dict[str, str]:
        if not self._plan_file.exists():
            return {}
        previous = pd.read_csv(self._plan_file, usecols=["fingerprint", "digest"])
        return dict(zip(previous["fingerprint"], previous["digest"], strict=True))

    def _remove_unplanned(self, planned: set[Path]) -> None:
        for path in sorted((self._root / "wav").glob("*/*.wav")):
            if path not in planned:
                path.unlink()

    def _write_manifest(self, plan: pd.DataFrame, paths: list[Path]) -> None:
        with atomic_open(self._plan_file) as handle:
            plan.to_csv(handle, index=False)
        relative = [str(p.relative_to(self._root)) for p in paths]
        with atomic_open(self._sums_file) as handle:
            handle.write(format_sums(dict(zip(relative, plan["digest"], strict=True))))

    def _exists(self) -> bool:
        return self._plan_file.exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._root), "workers": self._workers}
