"""Kedro dataset that materialises a synthesized corpus plan as WAV files plus a digest manifest.

``save(plan)`` renders only what is missing: an utterance whose file exists with the digest the
manifest recorded for the same plan row is kept as is. A re-rendered utterance whose bytes differ
from the digest recorded for the same plan row means synthesis is not reproducible: that fails,
naming every such file. ``load()`` verifies every file against the manifest and returns the plan
with audio paths and digests. Both corpus datasets return audio paths relative to the corpus root,
with the root in ``DataFrame.attrs`` (:mod:`speech_repro.corpora.paths`).

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

from speech_repro.corpora.formats import read_corpus
from speech_repro.corpora.paths import CORPUS_ROOT, audio_files, corpus_root
from speech_repro.corpora.render import render_plan
from speech_repro.repro.atomic import atomic_open, atomic_path
from speech_repro.repro.digest_cache import DigestCache
from speech_repro.repro.hashing import (
    SUMS_FILE,
    bytes_digest,
    file_digest,
    format_sums,
    json_digest,
)

logger = logging.getLogger(__name__)

RENDERER_VERSION = "espeak-ng-fork-v1"  # bump when rendering changes on purpose
RENDER_CHUNK = 512  # utterances synthesized and written per batch


class CorpusDigestError(DatasetError):
    """Audio bytes differ from the digests recorded for them."""


def _stored_path(speaker: str, utt_id: str) -> str:
    """Where an utterance's WAV lies, relative to the corpus root (POSIX)."""
    return f"wav/{speaker}/{utt_id}.wav"


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
        return self._root / _stored_path(speaker, utt_id)

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
        for chunk in range(0, len(stale), RENDER_CHUNK):  # bounded memory for any corpus size
            rows_to_render = stale[chunk : chunk + RENDER_CHUNK]
            waves = render_plan(plan.iloc[rows_to_render], self._workers)
            for i, wave in zip(rows_to_render, waves, strict=True):
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
        # Stored relative to the corpus root, so the manifest is the same wherever the project is.
        plan["audio_path"] = [
            _stored_path(s, u) for s, u in zip(plan["speaker"], plan["utt_id"], strict=True)
        ]
        plan["start"], plan["end"] = 0.0, float("nan")  # whole files
        plan.attrs[CORPUS_ROOT] = str(self._root.resolve())
        files = audio_files(self._root, plan["audio_path"])
        missing = [p for p in files if not Path(p).exists()]
        if missing:
            raise CorpusDigestError(f"{len(missing)} audio file(s) missing: {', '.join(missing)}")
        modified = [p for p, d in zip(files, plan["digest"], strict=True) if file_digest(p) != d]
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


class CorpusDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """Your corpus on disk, in a supported layout, indexed and content-hashed; never written.

    ``format`` is one of ``librispeech``, ``kaldi``, ``jsonl``, ``common_voice``
    (:mod:`speech_repro.corpora.formats`); ``path`` is the corpus folder or manifest file.
    ``root`` is the folder every audio file must lie in; relative to the corpus folder, default
    the corpus folder itself. ``load()`` returns ``audio_path`` relative to that root, which it
    attaches as ``attrs["corpus_root"]``, so the index is the same wherever the corpus lies (e.g.
    symlinked into ``data/01_raw/``). Digests of unchanged files come from the SQLite cache at
    ``digest_cache.filepath``, keyed on device, inode, size, mtime and ctime, so a second run
    does not read the audio again.

    Example::

        raw_corpus:
          type: speech_repro.corpora.dataset.CorpusDataset
          format: librispeech
          path: /data/LibriSpeech/dev-clean
          digest_cache: {filepath: data/.cache/digests.sqlite}  # Kedro makes it project-relative
    """

    def __init__(
        self,
        *,
        format: str,
        path: str,
        root: str | None = None,
        digest_cache: dict | None = None,
        workers: int = 2,
        metadata: dict | None = None,
    ):
        self._format, self._path = format, path
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        self._root = None if root is None else str(folder / root)
        self._cache = (digest_cache or {}).get("filepath")
        self._workers = workers
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        index = read_corpus(self._format, self._path, self._root)
        files = audio_files(corpus_root(index), index["audio_path"])
        with DigestCache(self._cache) as cache:
            file_digests = cache.digests(files, workers=self._workers)
        whole = (index["start"] == 0) & index["end"].isna()
        # A segment is named by its file's digest and its time span.
        index["digest"] = [
            digest if is_whole else bytes_digest(f"{digest}|{start}|{end}".encode())
            for digest, is_whole, start, end in zip(
                file_digests, whole, index["start"], index["end"], strict=True
            )
        ]
        return index

    def save(self, data: pd.DataFrame) -> None:
        raise DatasetError(
            f"raw_corpus is your {self._format} corpus at {self._path}, which this project never "
            "writes. Run the pipelines that read it: `kedro run --pipelines=experiment`."
        )

    def _exists(self) -> bool:
        return Path(self._path).exists()

    def _describe(self) -> dict[str, Any]:
        return {"format": self._format, "path": self._path, "root": self._root}
