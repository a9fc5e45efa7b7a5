"""Kedro datasets for corpora: the embedded one synthesized from a plan, and yours on disk.

``SynthesizedCorpusDataset`` renders a plan table to WAV files plus a digest manifest. Every plan
renders into its own folder under ``path``, named by its plan id (a digest of its rows and the
renderer version): ``<path>/<plan id>/`` holds ``wav/<speaker>/<utt_id>.wav``, ``plan.csv`` (plan
rows + fingerprint + digest) and ``B3SUMS`` (checkable with ``b3sum --check`` or
``python -m kedro_repro.hashing check``). Identical plans share a folder, and no plan ever
deletes or rewrites another plan's files: runs on other corpus parameters, earlier or concurrent,
keep their corpus.

``save(plan)`` renders only what is missing, holding an exclusive lock (``fcntl.flock`` on
``<plan id>/.lock``), and writes ``plan.csv`` last, atomically: a folder with a ``plan.csv`` is
complete, so a reader never sees half a corpus. An utterance whose file exists with the digest
recorded for the same plan row is kept; one that another plan folder holds intact is hard-linked,
not synthesized again. A re-rendered utterance whose bytes differ from the digest recorded for the
same plan row means synthesis is not reproducible: that fails, naming every such file.

``load()`` reads the folder this dataset saved to in this process. Without a save (a run starting
after ``plan_corpus``, ``kedro repro verify``'s data check) it reads the folder of the plan that
the run's parameters describe, which
:class:`~speech_repro.pipelines.embedded_corpus.hooks.EmbeddedCorpusHook` hands it; ``path``
itself when it holds a ``plan.csv`` (the single-folder layout of earlier versions, read as it is,
never migrated). It verifies every file against ``plan.csv`` and returns the plan with audio paths
and digests. Both corpus datasets return audio paths relative to the corpus root, with the root in
``DataFrame.attrs`` (:mod:`speech_repro.corpora.paths`).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import soundfile as sf
from kedro.io import AbstractDataset, DatasetError
from tqdm.auto import tqdm

from kedro_repro.atomic import atomic_open, atomic_path
from kedro_repro.digest_cache import DigestCache
from kedro_repro.hashing import (
    SUMS_FILE,
    bytes_digest,
    file_digest,
    format_sums,
    json_digest,
)
from speech_repro.asr.audio import span_frames
from speech_repro.corpora.formats import read_corpus
from speech_repro.corpora.paths import CORPUS_ROOT, audio_files, corpus_root
from speech_repro.corpora.problems import PROBLEMS, CorpusProblem
from speech_repro.corpora.render import render_plan

logger = logging.getLogger(__name__)

RENDERER_VERSION = "espeak-ng-fork-v1"  # bump when rendering changes on purpose
RENDER_CHUNK = 512  # utterances synthesized and written per batch
PLAN_FILE = "plan.csv"  # written last: a plan folder with it is complete
LOCK_FILE = ".lock"  # flock'ed while a plan folder is rendered
PLAN_ID_LENGTH = 16  # hex digits of the plan digest that name its folder


class CorpusDigestError(DatasetError):
    """Audio bytes differ from the digests recorded for them."""


def _stored_path(speaker: str, utt_id: str) -> str:
    """Where an utterance's WAV lies, relative to the corpus root (POSIX)."""
    return f"wav/{speaker}/{utt_id}.wav"


def plan_id(fingerprints: Iterable[str]) -> str:
    """The name of a plan's folder: a digest of its rows' fingerprints, in any order."""
    return json_digest(sorted(fingerprints)).split(":", 1)[1][:PLAN_ID_LENGTH]


def _fingerprints(plan: pd.DataFrame) -> list[str]:
    """One digest per plan row: what the row says plus the renderer that turns it into audio."""
    return [json_digest({**row, "renderer": RENDERER_VERSION}) for row in plan.to_dict("records")]


def _recorded(folder: Path) -> pd.DataFrame | None:
    """The rendered plan of ``folder`` (rows, fingerprints, digests); None while incomplete."""
    plan_file = folder / PLAN_FILE
    if not plan_file.is_file():
        return None
    return pd.read_csv(plan_file, dtype={"transcript": str}, keep_default_na=False)


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file``: one process renders a plan folder at a time."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _link_into_place(source: Path, target: Path) -> None:
    """Make ``target`` the same bytes as ``source`` (a hard link where possible), atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # the folder lock is held
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # another file system, or links not supported
        shutil.copy2(source, tmp)
    os.replace(tmp, target)


class SynthesizedCorpusDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """Corpora rendered from plan tables, one folder per plan under ``path``; see the module docstring."""

    def __init__(self, *, path: str, workers: int = 2, metadata: dict | None = None):
        self._root = Path(path)
        self._workers = workers
        self.metadata = metadata
        self._saved: Path | None = None  # the folder this object saved to, in this process
        self._expected_plan: Callable[[], pd.DataFrame] | None = None

    def expect(self, plan: Callable[[], pd.DataFrame]) -> None:
        """Without a save in this process, ``load()`` reads the corpus of ``plan()``.

        Set by :class:`~speech_repro.pipelines.embedded_corpus.hooks.EmbeddedCorpusHook` from the
        run's parameters; called only when a load needs it.
        """
        self._expected_plan = plan

    @property
    def folder(self) -> Path:
        """The folder ``load()`` reads: see the module docstring."""
        return self._resolve()

    def save(self, plan: pd.DataFrame) -> None:
        plan = plan.reset_index(drop=True)
        fingerprints = _fingerprints(plan)
        folder = self._root / plan_id(fingerprints)
        folder.mkdir(parents=True, exist_ok=True)
        with _exclusive(folder / LOCK_FILE):  # a concurrent run on the same plan waits here
            self._render(folder, plan, fingerprints)
        self._saved = folder

    def _render(self, folder: Path, plan: pd.DataFrame, fingerprints: list[str]) -> None:
        """Render what ``folder`` lacks of ``plan``; ``plan.csv`` last, so a reader never sees half."""
        rows = plan.to_dict("records")
        paths = [folder / _stored_path(row["speaker"], row["utt_id"]) for row in rows]
        previous = _recorded(folder)
        recorded = (
            {} if previous is None
            else dict(zip(previous["fingerprint"], previous["digest"], strict=True))
        )  # fmt: skip
        # Keep a file only if its bytes still match what was recorded for the same plan row.
        digests = [
            recorded.get(fp) if path.exists() and file_digest(path) == recorded.get(fp) else None
            for fp, path in zip(fingerprints, paths, strict=True)
        ]
        stale = [i for i, digest in enumerate(digests) if digest is None]
        if not stale and recorded.keys() == set(fingerprints):
            logger.info("Corpus %s: 0 of %d utterances to render", folder, len(rows))
            return  # complete: nothing is written
        # An utterance another plan folder already holds (same plan row) is linked, not rendered.
        elsewhere = self._rendered_elsewhere(folder, {fingerprints[i] for i in stale})
        to_render = []
        for i in stale:
            source, digest = elsewhere.get(fingerprints[i], (None, None))
            if source is not None and recorded.get(fingerprints[i], digest) == digest:
                _link_into_place(source, paths[i])
                digests[i] = digest
            else:
                to_render.append(i)
        logger.info(
            "Corpus %s: %d of %d utterances to render (%d linked from other corpora)",
            folder, len(to_render), len(rows), len(stale) - len(to_render),
        )  # fmt: skip
        changed: list[str] = []
        # As training's bar: on a terminal only (disable=None), quiet in logs and pipes.
        progress = tqdm(
            total=len(to_render), desc="synthesize", unit="utt", mininterval=1.0, disable=None
        )
        for chunk in range(0, len(to_render), RENDER_CHUNK):  # bounded memory for any corpus size
            rows_to_render = to_render[chunk : chunk + RENDER_CHUNK]
            waves = render_plan(plan.iloc[rows_to_render], self._workers, progress.update)
            for i, wave in zip(rows_to_render, waves, strict=True):
                with atomic_path(paths[i]) as tmp:
                    sf.write(tmp, wave, int(rows[i]["sample_rate"]), subtype="PCM_16", format="WAV")
                digests[i] = file_digest(paths[i])
                first = recorded.get(fingerprints[i])
                if first is not None and first != digests[i]:
                    changed.append(str(paths[i]))
                    digests[i] = first  # the manifest keeps the first recorded truth
        progress.close()
        self._write_manifest(folder, plan.assign(fingerprint=fingerprints, digest=digests), paths)
        if changed:
            raise CorpusDigestError(
                f"Re-synthesis produced different bytes for {len(changed)} file(s) whose plan did "
                f"not change (synthesis is not reproducible here): {', '.join(changed)}"
            )

    def _rendered_folders(self) -> list[Path]:
        """Every complete corpus under ``path``: the plan folders, and ``path`` itself if it is one."""
        folders = [self._root] if (self._root / PLAN_FILE).is_file() else []
        if self._root.is_dir():
            folders += sorted(
                d for d in self._root.iterdir() if d.is_dir() and (d / PLAN_FILE).is_file()
            )
        return folders

    def _rendered_elsewhere(self, folder: Path, wanted: set[str]) -> dict[str, tuple[Path, str]]:
        """fingerprint -> (file, digest) of the ``wanted`` rows that other corpora hold intact."""
        found: dict[str, tuple[Path, str]] = {}
        for other in self._rendered_folders():
            if other == folder or not wanted - found.keys():
                continue
            plan = _recorded(other)
            for row in plan.itertuples() if plan is not None else ():
                path = other / _stored_path(row.speaker, row.utt_id)
                if (
                    row.fingerprint in wanted
                    and row.fingerprint not in found
                    and path.is_file()
                    and file_digest(path) == row.digest
                ):
                    found[row.fingerprint] = (path, row.digest)
        return found

    def _resolve(self) -> Path:
        """The folder to load: the one saved to, else the expected plan's, else the only one."""
        if self._saved is not None:
            return self._saved
        rendered = self._rendered_folders()
        names = ", ".join(str(f) for f in rendered) or "none"
        if self._expected_plan is not None:
            wanted = plan_id(_fingerprints(self._expected_plan().reset_index(drop=True)))
            for candidate in (self._root / wanted, self._root):  # the root: the older layout
                plan = _recorded(candidate)
                if plan is not None and plan_id(plan["fingerprint"]) == wanted:
                    return candidate
            raise DatasetError(
                f"No corpus rendered for these corpus parameters under {self._root} (plan "
                f"{wanted}; rendered: {names}). Render it first: `kedro run --pipelines "
                "embedded_corpus` with the same --env and --params"
            )
        if len(rendered) == 1:
            return rendered[0]
        if not rendered:
            raise DatasetError(f"No corpus at {self._root}: run the embedded_corpus pipeline")
        raise DatasetError(
            f"{len(rendered)} corpora under {self._root} ({names}) and no plan to choose one: "
            "load it in a Kedro session, whose corpus parameters name the plan"
        )

    def load(self) -> pd.DataFrame:
        folder = self._resolve()
        plan = _recorded(folder)
        # Stored relative to the corpus root, so the manifest is the same wherever the project is.
        plan["audio_path"] = [
            _stored_path(s, u) for s, u in zip(plan["speaker"], plan["utt_id"], strict=True)
        ]
        plan["start"], plan["end"] = 0.0, float("nan")  # whole files
        plan.attrs[CORPUS_ROOT] = str(folder.resolve())
        files = audio_files(folder, plan["audio_path"])
        missing = [p for p in files if not Path(p).exists()]
        if missing:
            raise CorpusDigestError(f"{len(missing)} audio file(s) missing: {', '.join(missing)}")
        modified = [p for p, d in zip(files, plan["digest"], strict=True) if file_digest(p) != d]
        if modified:
            raise CorpusDigestError(
                f"{len(modified)} audio file(s) differ from {folder / SUMS_FILE}: "
                f"{', '.join(modified)}"
            )
        return plan

    @staticmethod
    def _write_manifest(folder: Path, plan: pd.DataFrame, paths: list[Path]) -> None:
        relative = [str(p.relative_to(folder)) for p in paths]
        with atomic_open(folder / SUMS_FILE) as handle:
            handle.write(format_sums(dict(zip(relative, plan["digest"], strict=True))))
        with atomic_open(folder / PLAN_FILE) as handle:  # last: it marks the folder complete
            plan.to_csv(handle, index=False)

    def _exists(self) -> bool:
        try:
            self._resolve()
        except DatasetError:
            return False
        return True

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._root), "workers": self._workers}


def _span_digests(
    files: list[str], file_digests: list[str], starts: pd.Series, ends: pd.Series
) -> list[str]:
    """An utterance's identity: its audio content and span, whatever manifest declared it.

    Times are resolved to sample frames with the file's header, so a span covering the whole
    file (``end`` NaN, or ``offset + duration`` equal to the file's length in frames) is named by
    the file's digest, and a proper segment by ``digest(file digest, first frame, last frame)``.
    A file whose header cannot be read keeps its times in seconds (build_manifest refuses it).
    """
    headers: dict[str, tuple[int, int] | None] = {}  # recordings shared by segments: read once
    digests = []
    for path, digest, start, end in zip(files, file_digests, starts, ends, strict=True):
        start, end = float(start), float(end)
        if start == 0 and math.isnan(end):
            digests.append(digest)
            continue
        if path not in headers:
            try:
                info = sf.info(path)
                headers[path] = (info.samplerate, info.frames)
            except Exception:  # libsndfile raises several types; inspect_audio names the error
                headers[path] = None
        header = headers[path]
        try:
            span = None if header is None else span_frames(*header, start, end)
        except (ValueError, OverflowError):  # bad times: the reader already reported them
            span = None
        if span is None:
            digests.append(bytes_digest(f"{digest}|{start}|{end}".encode()))
        elif header is not None and span == (0, header[1]):
            digests.append(digest)  # the whole file, however its span was written
        else:
            digests.append(bytes_digest(f"{digest}|{span[0]}|{span[1]}".encode()))
    return digests


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
        problems: list[CorpusProblem] = []
        index = read_corpus(self._format, self._path, self._root, problems=problems)
        files = audio_files(corpus_root(index), index["audio_path"])
        with DigestCache(self._cache) as cache:
            file_digests = cache.digests(files, workers=self._workers)
        index["digest"] = _span_digests(files, file_digests, index["start"], index["end"])
        # Per-utterance problems travel with the index: build_manifest reports them together
        # with what decoding the audio finds, in one error.
        index.attrs[PROBLEMS] = problems
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
