"""Corpus format adapters on real layouts built from the synthesized test corpus's real audio."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from speech_repro.corpora.formats import (
    INDEX_COLUMNS,
    MALFORMED,
    MISSING_FILE,
    READERS,
    CorpusFormatError,
    read_common_voice,
    read_corpus,
    read_kaldi_dir,
    read_librispeech,
    read_nemo_jsonl,
)
from speech_repro.corpora.paths import CORPUS_ROOT, audio_file

# Common Voice ships MP3 clips. libsndfile >= 1.1 can write MP3 (this environment's 1.2.2 can), so
# the clips are real .mp3 files; with an older libsndfile they fall back to .flac.
CV_EXTENSION = ".mp3" if "MP3" in sf.available_formats() else ".flac"
CV_HEADER = [
    "client_id",
    "path",
    "sentence_id",
    "sentence",
    "sentence_domain",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "variant",
    "locale",
    "segment",
]


@pytest.fixture(scope="module")
def utterances(corpus_dir) -> list[dict]:
    """Six utterances of three speakers: id, speaker, transcript, samples, sample rate."""
    plan = pd.read_csv(corpus_dir / "plan.csv", dtype=str, keep_default_na=False)
    chosen = []
    for _, group in plan.groupby("speaker", sort=True):
        chosen.extend(group.sort_values("utt_id").head(2).to_dict("records"))
        if len(chosen) == 6:
            break
    for row in chosen:
        row["audio"], row["sr"] = sf.read(
            corpus_dir / "wav" / row["speaker"] / f"{row['utt_id']}.wav", dtype="int16"
        )
    return chosen


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_audio(path: Path, utt: dict, format: str = "WAV") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, utt["audio"], utt["sr"], format=format)
    return path


def resolved(path: Path) -> str:
    return str(path.resolve())


def stored(path: Path, root: Path) -> str:
    """What ``read_corpus`` stores for ``path``: its resolved file relative to the resolved root."""
    return path.resolve().relative_to(root.resolve()).as_posix()


def assert_index(index: pd.DataFrame, expected: list[tuple], root: Path | None = None) -> None:
    """``expected``: (utt_id, speaker, audio path, transcript, start, end) rows in any order.

    Without ``root`` (a reader's own output) audio paths are absolute and resolved; with it (the
    index ``read_corpus`` returns) they are relative to ``root``, which the index carries.
    """
    assert list(index.columns) == INDEX_COLUMNS
    assert list(index.index) == list(range(len(index)))
    assert list(index["utt_id"]) == sorted(index["utt_id"])
    expected = sorted(expected)
    assert len(index) == len(expected)
    for row, want in zip(index.itertuples(index=False), expected, strict=True):
        utt_id, speaker, audio, transcript, start, end = want
        assert (row.utt_id, row.speaker, row.transcript) == (utt_id, speaker, transcript)
        if root is None:
            assert row.audio_path == resolved(audio) and os.path.isabs(row.audio_path)
        else:
            assert row.audio_path == stored(audio, root)
            assert audio_file(index.attrs[CORPUS_ROOT], row.audio_path).samefile(audio)
        assert row.start == pytest.approx(start)
        assert math.isnan(row.end) if math.isnan(end) else row.end == pytest.approx(end)
    if root is not None:
        assert index.attrs[CORPUS_ROOT] == resolved(root)


def problems_of(excinfo) -> str:
    return str(excinfo.value)


# --------------------------------------------------------------------------- LibriSpeech


@pytest.fixture(scope="module")
def librispeech(tmp_path_factory, utterances) -> tuple[Path, list[tuple]]:
    root = tmp_path_factory.mktemp("librispeech") / "train-clean-5"
    speakers = {}
    expected, lines = [], {}
    for utt in utterances:
        spk = speakers.setdefault(utt["speaker"], str(19 + 7 * len(speakers)))
        chapter = "198"
        utt_id = f"{spk}-{chapter}-{len(lines.get(spk, [])):04d}"
        flac = write_audio(root / spk / chapter / f"{utt_id}.flac", utt, "FLAC")
        lines.setdefault(spk, []).append(f"{utt_id} {utt['transcript'].upper()}")
        expected.append((utt_id, spk, flac, utt["transcript"].upper(), 0.0, math.nan))
    for spk, spk_lines in lines.items():
        write(root / spk / "198" / f"{spk}-198.trans.txt", "\n".join(spk_lines) + "\n")
    return root, expected


def test_librispeech_index(librispeech, utterances):
    root, expected = librispeech
    index = read_corpus("librispeech", root)
    assert_index(index, expected, root)
    assert index["audio_path"].iloc[0] == "19/198/19-198-0000.flac"
    assert index["utt_id"].iloc[0] == "19-198-0000"
    # The FLAC files are real audio: lossless copies of the synthesized WAVs.
    decoded, rate = sf.read(audio_file(root, index["audio_path"].iloc[0]), dtype="int16")
    assert rate == utterances[0]["sr"] and np.array_equal(decoded, utterances[0]["audio"])
    assert_index(read_librispeech(root), expected)


def test_librispeech_malformed_lines_are_all_named(tmp_path):
    trans = write(
        tmp_path / "19" / "198" / "19-198.trans.txt",
        "19-198-0000 ONE\n19-198-0001\n19-198-0002 TWO\n26-198-0003 THREE\n",
    )
    with pytest.raises(CorpusFormatError) as excinfo:
        read_corpus("librispeech", tmp_path)
    message = problems_of(excinfo)
    assert f"{trans}:2:" in message and f"{trans}:4 '26-198-0003':" in message
    # Reported together with the audio files the well-formed lines name but that do not exist.
    assert [p.kind for p in excinfo.value.problems].count(MALFORMED) == 2
    assert [p.kind for p in excinfo.value.problems].count(MISSING_FILE) == 2


def test_librispeech_missing_audio_named(tmp_path, utterances):
    root = tmp_path / "ls"
    write(root / "19" / "198" / "19-198.trans.txt", "19-198-0000 A\n19-198-0001 B\n19-198-0002 C\n")
    write_audio(root / "19" / "198" / "19-198-0001.flac", utterances[0], "FLAC")
    with pytest.raises(CorpusFormatError) as excinfo:
        read_corpus("librispeech", root)
    message = problems_of(excinfo)
    for utt in ("19-198-0000", "19-198-0002"):
        assert f"'{utt}'" in message and resolved(root / "19" / "198" / f"{utt}.flac") in message
    assert "19-198-0001" not in message
    assert len(excinfo.value.problems) == 2


# --------------------------------------------------------------------------- Kaldi


@pytest.fixture(scope="module")
def kaldi_corpus(tmp_path_factory, utterances) -> tuple[Path, list[tuple]]:
    """A Kaldi dir at the corpus root; odd utterances by absolute path, even ones relative."""
    root = tmp_path_factory.mktemp("kaldi")
    wav_scp, text, utt2spk, expected = [], [], [], []
    for i, utt in enumerate(utterances):
        wav = write_audio(root / "audio" / utt["speaker"] / f"{utt['utt_id']}.wav", utt)
        entry = str(wav) if i % 2 else f"audio/{utt['speaker']}/{utt['utt_id']}.wav"
        wav_scp.append(f"{utt['utt_id']} {entry}")
        # Kept verbatim (no normalisation), apart from the separator after the id.
        transcript = f"{utt['transcript']}  <noise>" if i == 0 else utt["transcript"]
        text.append(f"{utt['utt_id']} {transcript}")
        utt2spk.append(f"{utt['utt_id']} {utt['speaker']}")
        expected.append((utt["utt_id"], utt["speaker"], wav, transcript, 0.0, math.nan))
    write(root / "wav.scp", "\n".join(wav_scp) + "\n")
    write(root / "text", "\r\n".join(text) + "\r\n")  # CRLF: only the line ending is dropped
    write(root / "utt2spk", "\n".join(utt2spk) + "\n")
    return root, expected


def test_kaldi_index_relative_and_absolute_paths(kaldi_corpus):
    root, expected = kaldi_corpus
    assert_index(read_corpus("kaldi", root), expected, root)
    assert_index(read_kaldi_dir(root), expected)


def test_kaldi_nested_data_dir_with_explicit_root(tmp_path, utterances):
    """ESPnet-style data/train with audio two levels up: inside root only when root says so."""
    data = tmp_path / "data" / "train"
    utt = utterances[0]
    wav = write_audio(tmp_path / "audio" / "a.wav", utt)
    write(data / "wav.scp", "u1 ../../audio/a.wav\n")
    write(data / "text", f"u1 {utt['transcript']}\n")
    write(data / "utt2spk", "u1 spk\n")
    expected = [("u1", "spk", wav, utt["transcript"], 0.0, math.nan)]
    assert_index(read_corpus("kaldi", data, root=tmp_path), expected, tmp_path)
    assert read_corpus("kaldi", data, root=tmp_path)["audio_path"].tolist() == ["audio/a.wav"]
    with pytest.raises(CorpusFormatError, match="outside the corpus root"):
        read_corpus("kaldi", data)


def test_kaldi_segments(tmp_path, utterances):
    """Recordings concatenating two utterances each; wav.scp maps recording ids."""
    root = tmp_path / "kaldi"
    wav_scp, text, utt2spk, segments, expected = [], [], [], [], []
    for r in range(3):
        first, second = utterances[2 * r], utterances[2 * r + 1]
        audio = np.concatenate([first["audio"], second["audio"]])
        rec = f"rec{r}"
        wav = root / "recordings" / f"{rec}.flac"
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(wav, audio, first["sr"], format="FLAC")
        wav_scp.append(f"{rec} {wav if r == 0 else f'recordings/{rec}.flac'}")
        boundary = round(len(first["audio"]) / first["sr"], 2)
        # The last segment of a recording runs to its end, written -1 as in Kaldi.
        for utt, start, end, written_end in (
            (first, 0.0, boundary, f"{boundary:.2f}"),
            (second, boundary, math.nan, "-1"),
        ):
            segments.append(f"{utt['utt_id']} {rec} {start:.2f} {written_end}")
            text.append(f"{utt['utt_id']} {utt['transcript']}")
            utt2spk.append(f"{utt['utt_id']} {utt['speaker']}")
            expected.append((utt["utt_id"], utt["speaker"], wav, utt["transcript"], start, end))
    for name, lines in (("wav.scp", wav_scp), ("text", text), ("utt2spk", utt2spk)):
        write(root / name, "\n".join(lines) + "\n")
    write(root / "segments", "\n".join(segments) + "\n")
    index = read_corpus("kaldi", root)
    assert_index(index, expected, root)
    assert index["end"].isna().sum() == 3 and (index["start"] > 0).sum() == 3


def test_kaldi_piped_entries_are_rejected_by_name(tmp_path, utterances):
    write_audio(tmp_path / "ok.wav", utterances[0])
    scp = write(
        tmp_path / "wav.scp",
        "a ok.wav\nb sox /data/b.sph -t wav -r 16000 - |\nc flac -c -d -s /data/c.flac |\n",
    )
    write(tmp_path / "text", "a one\nb two\nc three\n")
    write(tmp_path / "utt2spk", "a s\nb s\nc s\n")
    with pytest.raises(CorpusFormatError, match="piped command") as excinfo:
        read_corpus("kaldi", tmp_path)
    message = problems_of(excinfo)
    assert f"{scp}:2: recording 'b'" in message and f"{scp}:3: recording 'c'" in message
    assert len(excinfo.value.problems) == 2


def test_kaldi_malformed_and_inconsistent_files(tmp_path, utterances):
    write_audio(tmp_path / "a.wav", utterances[0])
    write(tmp_path / "wav.scp", "a a.wav\nb a.wav\nc a.wav\n")
    write(tmp_path / "text", "a one\nb two\nc three\n")
    utt2spk = write(tmp_path / "utt2spk", "a s\nb\nc s extra\n")
    segments = write(tmp_path / "segments", "a a 0.0 1.0\nb a zero 1.0\nc a 0.5\n")
    with pytest.raises(CorpusFormatError) as excinfo:
        read_kaldi_dir(tmp_path)
    message = problems_of(excinfo)
    for where in (f"{utt2spk}:2:", f"{utt2spk}:3 'c':", f"{segments}:2 'b':", f"{segments}:3 'c':"):
        assert where in message


def test_kaldi_missing_required_files_all_named(tmp_path):
    write(tmp_path / "text", "a one\n")
    with pytest.raises(CorpusFormatError) as excinfo:
        read_corpus("kaldi", tmp_path)
    assert str(tmp_path / "wav.scp") in str(excinfo.value)
    assert str(tmp_path / "utt2spk") in str(excinfo.value)


# --------------------------------------------------------------------------- NeMo JSONL


@pytest.fixture(scope="module")
def nemo(tmp_path_factory, utterances) -> tuple[Path, list[tuple]]:
    root = tmp_path_factory.mktemp("nemo")
    lines, expected = [], []
    for i, utt in enumerate(utterances):
        wav = write_audio(root / "audio" / utt["speaker"] / f"{utt['utt_id']}.wav", utt)
        entry = {"audio_filepath": f"audio/{utt['speaker']}/{utt['utt_id']}.wav"}
        entry["text"] = utt["transcript"]
        duration = len(utt["audio"]) / utt["sr"]
        end = math.nan
        if i % 2 == 0:  # duration given: NeMo reads [offset, offset + duration)
            entry["duration"] = duration
            end = duration
        speaker = utt["speaker"]  # without 'speaker': the parent directory name
        if i % 3 == 0:
            speaker = entry["speaker"] = f"spk{i}"
        utt_id = f"audio__{utt['speaker']}__{utt['utt_id']}"
        lines.append(json.dumps(entry))
        expected.append((utt_id, speaker, wav, utt["transcript"], 0.0, end))
    write(root / "train_manifest.json", "\n".join(lines) + "\n")
    return root / "train_manifest.json", expected


def test_nemo_jsonl_index(nemo):
    manifest, expected = nemo
    assert_index(read_corpus("jsonl", manifest), expected, manifest.parent)
    assert_index(read_nemo_jsonl(manifest), expected)


def test_nemo_offset_segment(tmp_path, utterances):
    wav = write_audio(tmp_path / "long" / "x.wav", utterances[0])
    manifest = write(
        tmp_path / "m.jsonl",
        json.dumps({"audio_filepath": str(wav), "text": "t", "offset": 0.25, "duration": 0.5}),
    )
    assert_index(
        read_corpus("jsonl", manifest), [("long__x", "long", wav, "t", 0.25, 0.75)], tmp_path
    )


def test_nemo_malformed_lines_are_all_named(tmp_path):
    manifest = write(
        tmp_path / "m.jsonl",
        '{"audio_filepath": "a.wav", "text": "one"}\n'
        '{"audio_filepath": "b.wav", "text": "two"\n'
        "\n"
        '{"audio_filepath": "c.wav", "duration": -1}\n',
    )
    with pytest.raises(CorpusFormatError) as excinfo:
        read_corpus("jsonl", manifest)
    message = problems_of(excinfo)
    assert f"{manifest}:2: invalid JSON" in message
    assert f"{manifest}:4 'c':" in message and "'text'" in message and "'duration'" in message
    assert [p.kind for p in excinfo.value.problems].count(MALFORMED) == 2
    assert [p.kind for p in excinfo.value.problems].count(MISSING_FILE) == 1  # a.wav


def test_nemo_duplicate_audio_paths_are_duplicate_ids(tmp_path, utterances):
    for name in ("a", "b", "c"):
        write_audio(tmp_path / "s" / f"{name}.wav", utterances[0])
    entries = ["s/a.wav", "s/b.wav", "s/./a.wav", "s/c.wav", "s/b.wav"]
    manifest = write(
        tmp_path / "m.jsonl",
        "\n".join(json.dumps({"audio_filepath": p, "text": "x"}) for p in entries),
    )
    with pytest.raises(CorpusFormatError, match="occurs 2 times") as excinfo:
        read_corpus("jsonl", manifest)
    message = problems_of(excinfo)
    assert "'s__a'" in message and "'s__b'" in message and "s__c" not in message
    assert len(excinfo.value.problems) == 2


def test_paths_escaping_the_root_are_all_rejected(tmp_path, utterances):
    """`../outside.wav` and a symlink to a file outside: both named; both fine with a wider root."""
    corpus = tmp_path / "corpus"
    outside = write_audio(tmp_path / "outside.wav", utterances[0])
    elsewhere = write_audio(tmp_path / "elsewhere" / "target.wav", utterances[1])
    inside = write_audio(corpus / "spk" / "inside.wav", utterances[2])
    link = corpus / "spk" / "link.wav"
    link.symlink_to(elsewhere)
    manifest = write(
        corpus / "m.jsonl",
        "\n".join(
            json.dumps({"audio_filepath": p, "text": "x"})
            for p in ("../outside.wav", "spk/link.wav", "spk/inside.wav")
        ),
    )
    with pytest.raises(CorpusFormatError, match="outside the corpus root") as excinfo:
        read_corpus("jsonl", manifest)
    message = problems_of(excinfo)
    assert f"'..__outside': {resolved(outside)}" in message
    assert f"'spk__link': {resolved(elsewhere)}" in message
    assert "inside" not in message.replace("outside", "")
    assert len(excinfo.value.problems) == 2

    index = read_corpus("jsonl", manifest, root=tmp_path)
    assert list(index["utt_id"]) == ["..__outside", "spk__inside", "spk__link"]
    # Stored as the files the wider root holds (the link's target), never with `..`.
    assert list(index["audio_path"]) == [
        "outside.wav",
        "corpus/spk/inside.wav",
        "elsewhere/target.wav",
    ]
    assert list(index["audio_path"]) == [stored(p, tmp_path) for p in (outside, inside, elsewhere)]


def test_violations_of_every_kind_in_one_error(tmp_path, utterances):
    write_audio(tmp_path / "s" / "a.wav", utterances[0])
    manifest = write(
        tmp_path / "m.jsonl",
        "\n".join(
            json.dumps({"audio_filepath": p, "text": "x"})
            for p in ("s/a.wav", "s/a.wav", "s/missing1.wav", "s/missing2.wav", "../gone.wav")
        ),
    )
    with pytest.raises(CorpusFormatError) as excinfo:
        read_corpus("jsonl", manifest)
    message = problems_of(excinfo)
    assert "'s__a' occurs 2 times" in message
    assert "'s__missing1'" in message and "'s__missing2'" in message
    assert "'..__gone'" in message and "outside the corpus root" in message


# --------------------------------------------------------------------------- Common Voice


@pytest.fixture(scope="module")
def common_voice(tmp_path_factory, utterances) -> tuple[Path, list[tuple]]:
    root = tmp_path_factory.mktemp("cv") / "en"
    rows, expected = ["\t".join(CV_HEADER)], []
    for i, utt in enumerate(utterances):
        clip = f"common_voice_en_{40000 + i}{CV_EXTENSION}"
        audio = write_audio(root / "clips" / clip, utt, CV_EXTENSION[1:].upper())
        client = f"{utt['speaker']}-client-hash"
        # A quote in a sentence must survive: Common Voice TSVs are not CSV-quoted.
        sentence = f'"{utt["transcript"].capitalize()}," she said.' if i == 1 else utt["transcript"]
        fields = dict.fromkeys(CV_HEADER, "")
        fields.update(client_id=client, path=clip, sentence=sentence, locale="en", up_votes="2")
        rows.append("\t".join(fields[c] for c in CV_HEADER))
        expected.append((clip.rsplit(".", 1)[0], client, audio, sentence, 0.0, math.nan))
    write(root / "validated.tsv", "\n".join(rows) + "\n")
    return root / "validated.tsv", expected


def test_common_voice_index(common_voice):
    tsv, expected = common_voice
    index = read_corpus("common_voice", tsv)
    assert_index(index, expected, tsv.parent)
    assert all(p.startswith("clips/") and p.endswith(CV_EXTENSION) for p in index["audio_path"])
    clip = audio_file(tsv.parent, index["audio_path"].iloc[0])
    assert sf.info(clip).duration > 0  # a real, readable clip
    assert_index(read_common_voice(tsv), expected)


def test_common_voice_malformed_rows_and_missing_columns(tmp_path):
    tsv = write(
        tmp_path / "train.tsv",
        "client_id\tpath\tsentence\tup_votes\n"
        "c1\ta.mp3\tone\t2\n"
        "c2\tb.mp3\ttwo\twith a stray tab\t2\n"
        "c3\tc.mp3\n",
    )
    with pytest.raises(CorpusFormatError) as excinfo:
        read_common_voice(tsv)
    assert f"{tsv}:3:" in str(excinfo.value) and f"{tsv}:4:" in str(excinfo.value)
    assert len(excinfo.value.problems) == 2

    bad_header = write(tmp_path / "other.tsv", "client\tfile\tsentence\nc1\ta.mp3\tone\n")
    with pytest.raises(CorpusFormatError, match=r"lacks column\(s\) path, client_id"):
        read_common_voice(bad_header)


# --------------------------------------------------------------------------- read_corpus


def test_unknown_format_lists_the_known_ones(tmp_path):
    with pytest.raises(CorpusFormatError) as excinfo:
        read_corpus("timit", tmp_path)
    message = str(excinfo.value)
    assert "'timit'" in message
    assert all(name in message for name in READERS)
    assert set(READERS) == {"librispeech", "kaldi", "jsonl", "common_voice"}


def test_missing_corpus_path(tmp_path):
    with pytest.raises(CorpusFormatError, match="does not exist"):
        read_corpus("jsonl", tmp_path / "nope.jsonl")
    with pytest.raises(CorpusFormatError, match="not a directory"):
        read_kaldi_dir(tmp_path / "nope")
