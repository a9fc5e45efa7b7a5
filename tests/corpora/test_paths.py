"""Stored audio paths: relative to the corpus root, never able to point outside it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

from kedro_repro.ledger import content_digest
from speech_repro.corpora.dataset import CorpusDataset, SynthesizedCorpusDataset
from speech_repro.corpora.formats import CorpusFormatError, read_corpus
from speech_repro.corpora.paths import (
    CORPUS_ROOT,
    AudioPathError,
    audio_file,
    audio_files,
    corpus_root,
    is_stored_path,
)
from speech_repro.pipelines.data_processing import nodes as dp
from speech_repro.schemas import Manifest

ESCAPES = [
    "../outside.wav",
    "spk/../../outside.wav",
    "/etc/passwd",
    "//host/share.wav",
    "./spk/a.wav",
    "spk//a.wav",
    "spk/a.wav/",
    "..",
    "",
    "spk\\..\\..\\outside.wav",
]


@pytest.fixture(scope="module")
def jsonl_corpus(tmp_path_factory, corpus_dir) -> Path:
    """A NeMo JSONL corpus of four real utterances, with audio in nested folders."""
    root = tmp_path_factory.mktemp("jsonl") / "corpus"
    plan = pd.read_csv(corpus_dir / "plan.csv", keep_default_na=False).head(4)
    entries = []
    for row in plan.itertuples():
        wave, rate = sf.read(corpus_dir / "wav" / row.speaker / f"{row.utt_id}.wav")
        (root / "audio" / row.speaker).mkdir(parents=True, exist_ok=True)
        sf.write(root / "audio" / row.speaker / f"{row.utt_id}.wav", wave, rate)
        entries.append(
            {"audio_filepath": f"audio/{row.speaker}/{row.utt_id}.wav", "text": row.transcript}
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return root


@pytest.mark.parametrize("stored", ESCAPES)
def test_stored_paths_that_could_leave_the_root_are_refused(tmp_path, stored):
    assert not is_stored_path(stored)
    with pytest.raises(AudioPathError, match="not a plain path relative to the corpus root"):
        audio_file(tmp_path, stored)


def test_a_plain_relative_path_resolves_under_the_root(tmp_path):
    assert is_stored_path("spk/a b.wav") and is_stored_path("a..b.wav")
    assert audio_file(tmp_path, "spk/a b.wav") == tmp_path / "spk" / "a b.wav"
    assert audio_files(tmp_path, ["x.wav"]) == [str(tmp_path / "x.wav")]


def test_a_file_reached_through_a_symlink_inside_the_root_is_stored_as_itself(
    tmp_path, jsonl_corpus
):
    corpus = tmp_path / "corpus"
    shutil.copytree(jsonl_corpus, corpus)
    (corpus / "alias").symlink_to(corpus / "audio", target_is_directory=True)
    manifest = corpus / "manifest.jsonl"
    manifest.write_text(manifest.read_text().replace('"audio/', '"alias/'))
    index = read_corpus("jsonl", manifest)
    assert all(p.startswith("audio/") for p in index["audio_path"])  # one name per file


def test_an_index_without_its_root_is_refused():
    with pytest.raises(AudioPathError, match="corpus root"):
        corpus_root(pd.DataFrame({"audio_path": ["a.wav"]}))


def test_corpus_index_stores_root_relative_paths_through_a_symlinked_root(tmp_path, jsonl_corpus):
    """The README's layout: data/01_raw/<name> is a symlink to a corpus elsewhere."""
    link = tmp_path / "project" / "data" / "01_raw" / "jsonl"
    link.parent.mkdir(parents=True)
    link.symlink_to(jsonl_corpus, target_is_directory=True)
    index = CorpusDataset(format="jsonl", path=str(link / "manifest.jsonl")).load()
    assert all(p.startswith("audio/") and is_stored_path(p) for p in index["audio_path"])
    assert index.attrs[CORPUS_ROOT] == str(jsonl_corpus.resolve())
    for path in audio_files(corpus_root(index), index["audio_path"]):
        assert Path(path).is_file()
    # The same corpus elsewhere: the same stored table, the same digest, only the root differs.
    moved = tmp_path / "mnt" / "corpus"
    shutil.copytree(jsonl_corpus, moved)
    elsewhere = CorpusDataset(format="jsonl", path=str(moved / "manifest.jsonl")).load()
    pd.testing.assert_frame_equal(index, elsewhere, check_flags=False)
    assert content_digest(index, tmp_path / "project") == content_digest(elsewhere, tmp_path)
    assert elsewhere.attrs[CORPUS_ROOT] == str(moved.resolve())


def test_a_symlink_out_of_the_root_is_still_refused(tmp_path, jsonl_corpus):
    corpus = tmp_path / "corpus"
    shutil.copytree(jsonl_corpus, corpus)
    outside = tmp_path / "outside.wav"
    victim = next((corpus / "audio").glob("*/*.wav"))
    shutil.move(victim, outside)
    victim.symlink_to(outside)  # the manifest line is unchanged and has no `..`
    with pytest.raises(CorpusFormatError, match="outside the corpus root") as error:
        read_corpus("jsonl", corpus / "manifest.jsonl")
    assert str(outside) in str(error.value)  # the message names the real file


def test_the_manifest_stores_relative_paths_and_refuses_others(corpus_dir, params):
    raw = SynthesizedCorpusDataset(path=str(corpus_dir)).load()
    assert raw.attrs[CORPUS_ROOT] == str(corpus_dir.resolve())
    assert raw["audio_path"].str.fullmatch(r"wav/[^/]+/[^/]+\.wav").all()
    manifest = dp.build_manifest(raw.head(4), params["audio"], params["text"])
    assert manifest["audio_path"].tolist() == raw["audio_path"].head(4).tolist()
    assert not manifest.attrs  # nothing about the corpus's location reaches the stored table
    for bad in ("../outside.wav", str(corpus_dir / "wav" / "x.wav")):
        tampered = manifest.assign(audio_path=[bad, *manifest["audio_path"].iloc[1:]])
        with pytest.raises(Exception, match="audio_path_is_relative_to_the_corpus_root"):
            Manifest.validate(tampered)


def test_features_refuse_a_manifest_that_no_longer_matches_the_corpus(prepared, params):
    raw, manifest = prepared["raw_corpus"], prepared["manifest"].head(3).copy()
    manifest.loc[1, "digest"] = "blake3:" + "0" * 64
    with pytest.raises(ValueError, match=f"1 utterance.*{manifest.loc[1, 'utt_id']}"):
        dp.compute_features(manifest, raw, params["features"], params["audio"], params["sharding"])
