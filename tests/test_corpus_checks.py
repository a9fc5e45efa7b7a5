"""Reading a corpus: bad numbers, look-alike identifiers, ambiguous entries, huge files, and one
report of every problem, printed once (issue 12, "Bad input").

Corpora are built from the synthesized test corpus's real audio; each test reads them through
``CorpusDataset`` and ``build_manifest`` as a run does, and one test runs ``kedro run``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from speech_repro.corpora.dataset import CorpusDataset
from speech_repro.corpora.problems import PROBLEMS
from speech_repro.pipelines.data_processing import nodes as dp
from speech_repro.schemas import CorpusValidationError

from . import test_bad_input
from .conftest import run_kedro
from .test_bad_input import _entries, _write_manifest

# The bad-input project (a JSONL corpus after one good run) and its restore-and-compare fixture.
project = test_bad_input.project
broken = test_bad_input.broken


@pytest.fixture(scope="module")
def waves(corpus_dir) -> list[Path]:
    """Four real WAV files of the synthesized corpus."""
    plan = pd.read_csv(corpus_dir / "plan.csv", keep_default_na=False).head(4)
    return [corpus_dir / "wav" / r.speaker / f"{r.utt_id}.wav" for r in plan.itertuples()]


def _copy(waves: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(wave, folder / wave.name)) for wave in waves]


def _kaldi(root: Path, entries: dict[str, str], segments: str = "", speaker: str = "s") -> Path:
    """A Kaldi dir with ``wav.scp`` ``entries`` (id -> value), text and utt2spk for the utterances."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in entries.items()))
    utts = [line.split()[0] for line in segments.splitlines()] if segments else list(entries)
    (root / "text").write_text("".join(f"{u} one two\n" for u in utts))
    (root / "utt2spk").write_text("".join(f"{u} {speaker}\n" for u in utts))
    if segments:
        (root / "segments").write_text(segments)
    return root


def _manifest_error(params: dict, dataset: CorpusDataset) -> CorpusValidationError:
    """What a run reports: the dataset loads (problems travel with it), build_manifest raises."""
    index = dataset.load()
    with pytest.raises(CorpusValidationError) as error:
        dp.build_manifest(index, params["audio"], params["text"])
    return error.value


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- 1. numbers


def test_infinite_nan_and_overflowing_times_are_named_by_line_and_utterance(
    tmp_path, waves, params
):
    wavs = _copy(waves, tmp_path / "kaldi" / "wav")
    kaldi = _kaldi(
        tmp_path / "kaldi",
        {"rec": f"wav/{wavs[0].name}"},
        "u1 rec 0.0 inf\nu2 rec 0.0 nan\nu3 rec 1e400 -1\nu4 rec 0.0 0.3\n",
    )
    error = _manifest_error(params, CorpusDataset(format="kaldi", path=str(kaldi)))
    message = str(error)
    segments = kaldi / "segments"
    assert f"{segments}:1 'u1': segment end 'inf' is not finite" in message
    assert f"{segments}:2 'u2': segment end 'nan' is not finite" in message
    assert f"{segments}:3 'u3': segment start '1e400' is not finite" in message
    assert "'u4'" not in message  # the good segment is fine

    jsonl_wavs = _copy(waves, tmp_path / "jsonl" / "spk")
    manifest = _jsonl(
        tmp_path / "jsonl" / "m.jsonl",
        [
            json.dumps(
                {"audio_filepath": f"spk/{jsonl_wavs[0].name}", "text": "one", "offset": 1e308}
            ),
            f'{{"audio_filepath": "spk/{jsonl_wavs[1].name}", "text": "one", "duration": NaN}}',
            json.dumps(
                {"audio_filepath": f"spk/{jsonl_wavs[2].name}", "text": "one", "duration": 10**400}
            ),
            json.dumps({"audio_filepath": f"spk/{jsonl_wavs[3].name}", "text": "one"}),
        ],
    )
    message = str(_manifest_error(params, CorpusDataset(format="jsonl", path=str(manifest))))
    ids = [f"spk__{w.stem}" for w in jsonl_wavs]
    assert f"{manifest}:1 '{ids[0]}': 'offset' 1e+308 is outside [0, 1e+07] s" in message
    assert f"{manifest}:2 '{ids[1]}': 'duration' nan is not finite" in message
    assert f"{manifest}:3 '{ids[2]}': 'duration' " in message and "is not a number" in message
    assert "invalid number (3):" in message  # all at once, grouped


# --------------------------------------------------------------------------- 2. look-alike ids


def test_look_alike_speaker_ids_and_file_names_are_one_identifier(tmp_path, waves, params):
    corpus = tmp_path / "corpus"
    wavs = _copy(waves, corpus / "a")
    nfc = unicodedata.normalize("NFC", "café.wav")
    nfd = unicodedata.normalize("NFD", "café.wav")
    shutil.copy(wavs[0], corpus / "a" / nfc)
    shutil.copy(wavs[1], corpus / "a" / nfd)  # a second file on Linux, the same name to a reader
    entries = [
        {"audio_filepath": f"a/{wavs[2].name}", "text": "one", "speaker": "ｅｎ-us_m1"},
        {"audio_filepath": f"a/{wavs[3].name}", "text": "one", "speaker": "en-us_m1"},
        {"audio_filepath": f"a/{nfc}", "text": "one", "speaker": "en-us_m3\u200b"},
        {"audio_filepath": f"a/{nfd}", "text": "one", "speaker": "en-us_m3"},
    ]
    manifest = _jsonl(corpus / "m.jsonl", [json.dumps(e, ensure_ascii=False) for e in entries])
    message = str(_manifest_error(params, CorpusDataset(format="jsonl", path=str(manifest))))
    assert "speaker ids 'ｅｎ-us_m1' and 'en-us_m1' are one identifier" in message
    assert "speaker ids 'en-us_m3\\u200b' and 'en-us_m3' are one identifier" in message
    assert f"file names {f'a/{nfc}'!r} and {f'a/{nfd}'!r} are one identifier" in message
    assert f"utterance ids {f'a__{nfc[:-4]}'!r} and {f'a__{nfd[:-4]}'!r}" in message


# --------------------------------------------------------------------------- 3. duplicate keys


def test_a_json_line_that_repeats_a_key_is_refused(tmp_path, waves, params):
    wavs = _copy(waves, tmp_path / "spk")
    manifest = _jsonl(
        tmp_path / "m.jsonl",
        [
            f'{{"audio_filepath": "spk/{wavs[0].name}", "text": "one", "text": "two"}}',
            json.dumps({"audio_filepath": f"spk/{wavs[1].name}", "text": "one"}),
        ],
    )
    message = str(_manifest_error(params, CorpusDataset(format="jsonl", path=str(manifest))))
    assert f"{manifest}:1: duplicate key(s) 'text' in one JSON object" in message


# --------------------------------------------------------------------------- 4. wav.scp paths


def test_an_existing_file_named_like_an_archive_offset_is_a_path(tmp_path, waves, params):
    root = tmp_path / "kaldi"
    (root / "wav").mkdir(parents=True)
    shutil.copy(waves[0], root / "wav" / "take:12")
    kaldi = _kaldi(root, {"u1": "wav/take:12", "u2": "data/feats.ark:1234", "u3": "gone.wav:77"})
    index = CorpusDataset(format="kaldi", path=str(kaldi)).load()
    assert index["utt_id"].tolist() == ["u1"]
    assert index["audio_path"].tolist() == ["wav/take:12"]
    problems = index.attrs[PROBLEMS]
    assert [(p.location, p.kind) for p in problems] == [
        (f"{kaldi / 'wav.scp'}:2", "unsupported wav.scp entry"),
        (f"{kaldi / 'wav.scp'}:3", "unsupported wav.scp entry"),
    ]


# --------------------------------------------------------------------------- 5. huge files

RSS_SCRIPT = """
import json, resource, sys
from speech_repro.asr.audio import inspect_audio
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
start = peak()
refused = inspect_audio(sys.argv[1], max_seconds=30.0, min_seconds=0.1)
header = peak()
scanned = inspect_audio(sys.argv[1])  # no bounds: the whole file is scanned, block by block
print(json.dumps({"decoded": refused.decoded, "samples": refused.num_samples,
                  "scanned": scanned.num_samples, "error": scanned.error,
                  "header_kib": header - start, "scan_kib": peak() - start}))
"""


def test_a_two_hour_silent_flac_is_refused_from_its_header(tmp_path, params):
    corpus = tmp_path / "corpus"
    (corpus / "spk").mkdir(parents=True)
    flac = corpus / "spk" / "silence.flac"
    rate, seconds = 16000, 2 * 3600
    with sf.SoundFile(flac, "w", rate, 1, subtype="PCM_16", format="FLAC") as out:
        block = np.zeros(rate * 60, dtype=np.int16)
        for _ in range(seconds // 60):
            out.write(block)
    assert flac.stat().st_size < 2_000_000  # silence compresses: a small file, long audio
    manifest = _jsonl(
        corpus / "m.jsonl", [json.dumps({"audio_filepath": "spk/silence.flac", "text": "one"})]
    )
    message = str(_manifest_error(params, CorpusDataset(format="jsonl", path=str(manifest))))
    assert "duration (1):" in message
    assert "'spk__silence': duration 7200.000 s outside [0.1, 30.0] s" in message
    assert "audio.max_seconds" in message

    result = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(flac)], capture_output=True, text=True, check=True
    )
    measured = json.loads(result.stdout)
    print(
        f"peak RSS growth, 2 h FLAC: header {measured['header_kib']} KiB, "
        f"full scan {measured['scan_kib']} KiB"
    )
    assert measured["decoded"] is False and measured["samples"] == rate * seconds
    assert measured["scanned"] == rate * seconds and measured["error"] == ""
    # Decoding it whole as float32 takes 7200 s * 16000 * 4 B = 460 MB (+730 MB peak measured).
    assert measured["header_kib"] < 20_000 and measured["scan_kib"] < 50_000


# --------------------------------------------------------------------------- 6. outside the root


def test_many_paths_outside_a_kaldi_dir_are_one_grouped_problem_naming_root(
    tmp_path, waves, params
):
    audio = _copy(waves, tmp_path / "audio")
    entries = {f"u{i:04d}": str(audio[i % len(audio)]) for i in range(900)}
    kaldi = _kaldi(tmp_path / "data" / "train", entries)
    message = str(_manifest_error(params, CorpusDataset(format="kaldi", path=str(kaldi))))
    assert "audio outside the corpus root (900):" in message
    assert message.count("lies outside the corpus root") == 5
    assert "... and 895 more" in message
    assert f"fix: set `root: {tmp_path}` on the raw_corpus entry (CorpusDataset)" in message
    assert len(message) < 3000
    # The fix works: with that root the same directory reads cleanly.
    index = CorpusDataset(format="kaldi", path=str(kaldi), root=str(tmp_path)).load()
    assert len(index) == 900 and index.attrs[PROBLEMS] == []


# --------------------------------------------------------------------------- 8. digests


def test_the_same_audio_has_the_same_digest_through_every_format(tmp_path, waves):
    root = tmp_path / "corpus"
    wavs = _copy(waves, root / "spk")
    lengths = [sf.info(w).frames / sf.info(w).samplerate for w in wavs]  # seconds
    jsonl = _jsonl(
        root / "m.jsonl",
        [
            json.dumps({"audio_filepath": f"spk/{w.name}", "text": "one", "duration": n})
            for w, n in zip(wavs, lengths, strict=True)
        ],
    )
    by_jsonl = CorpusDataset(format="jsonl", path=str(jsonl)).load()
    kaldi = _kaldi(root, {w.stem: f"spk/{w.name}" for w in wavs})
    by_kaldi = CorpusDataset(format="kaldi", path=str(kaldi)).load()
    # Segments: the whole file written out, and a proper part of it.
    segments = "".join(
        f"{w.stem} {w.stem} 0.0 {n}\n{w.stem}-part {w.stem} 0.1 0.3\n"
        for w, n in zip(wavs, lengths, strict=True)
    )
    segmented = _kaldi(tmp_path / "seg", {w.stem: str(w) for w in wavs}, segments)
    by_segments = CorpusDataset(format="kaldi", path=str(segmented), root=str(root)).load()
    digest_of = {
        Path(p).stem: d for p, d in zip(by_jsonl["audio_path"], by_jsonl["digest"], strict=True)
    }
    assert dict(zip(by_kaldi["utt_id"], by_kaldi["digest"], strict=True)) == digest_of
    whole = by_segments[~by_segments["utt_id"].str.endswith("-part")]
    assert dict(zip(whole["utt_id"], whole["digest"], strict=True)) == digest_of
    parts = by_segments[by_segments["utt_id"].str.endswith("-part")]
    assert not set(parts["digest"]) & set(digest_of.values()) and parts["digest"].is_unique

    # LibriSpeech reads FLAC: the same FLAC files through LibriSpeech and Kaldi agree too.
    libri = tmp_path / "libri"
    flacs = []
    for i, w in enumerate(wavs):
        flac = libri / "19" / "198" / f"19-198-{i:04d}.flac"
        flac.parent.mkdir(parents=True, exist_ok=True)
        data, rate = sf.read(w, dtype="int16")
        sf.write(flac, data, rate, format="FLAC")
        flacs.append(flac)
    (libri / "19" / "198" / "19-198.trans.txt").write_text(
        "".join(f"{f.stem} ONE\n" for f in flacs)
    )
    by_libri = CorpusDataset(format="librispeech", path=str(libri)).load()
    kaldi_flac = _kaldi(tmp_path / "kflac", {f.stem: str(f) for f in flacs})
    by_kaldi_flac = CorpusDataset(format="kaldi", path=str(kaldi_flac), root=str(libri)).load()
    assert by_libri["digest"].tolist() == by_kaldi_flac["digest"].tolist()


# --------------------------------------------------------------------------- 7. one report, once


def test_four_faults_are_reported_in_one_run_once_without_a_retry_hint(broken):
    corpus = broken / "corpus"
    entries = _entries(broken)
    (corpus / entries[1]["audio_filepath"]).unlink()  # missing file
    entries[2]["text"] = " ?! "  # empty after normalisation
    wave, _ = sf.read(corpus / entries[3]["audio_filepath"])
    sf.write(corpus / entries[3]["audio_filepath"], wave[::2], 8000, subtype="PCM_16")
    _write_manifest(corpus, [*entries, entries[4]])  # duplicate id
    (broken / "conf/test/parameters_case.yml").write_text("audio:\n  resample: false\n")
    with pytest.raises(AssertionError) as failed:
        run_kedro(broken, "run", "--env", "test", "--pipelines", "experiment")
    output = str(failed.value)
    for section in (
        "missing audio file (1):",
        "duplicate utterance id (1):",
        "empty transcript (1):",
        "sample rate (1):",
        "fix: set audio.resample: true",
    ):
        assert output.count(section) == 1, f"{section!r} not printed exactly once:\n{output}"
    assert output.count("break the corpus rules") == 1
    assert "Repeat the previous command" not in output
    assert "nodes that have not run" not in output
    assert "failed with error" not in output
