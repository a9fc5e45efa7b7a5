"""The embedded corpus: bit-reproducible synthesis, digest manifest, skip-when-present, loud failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

from speech_repro.corpora import dataset as corpus_dataset
from speech_repro.corpora.dataset import CorpusDigestError, SynthesizedCorpusDataset
from speech_repro.corpora.digits import plan_digit_corpus
from speech_repro.repro.hashing import SUMS_FILE, file_digest

# Breathy (f2) and whispered voices draw from espeak's noise generator, which the library seeds
# from the wall clock unless told otherwise: they are the ones that used to differ run to run.
HARD_VOICES = {"accents": ["en-US", "en-GB-scotland"], "variants": ["m3", "f2", "whisper", "klatt"]}

RENDER_SCRIPT = """
import json, sys
from speech_repro.corpora.dataset import SynthesizedCorpusDataset
from speech_repro.corpora.digits import plan_digit_corpus
params, root, reverse, workers = json.loads(sys.argv[1])
plan = plan_digit_corpus(params)
SynthesizedCorpusDataset(path=root, workers=workers).save(plan.iloc[::-1] if reverse else plan)
"""


def _corpus_params(params: dict, **overrides) -> dict:
    return {**params["corpus"], **HARD_VOICES, "utterances_per_speaker": 3, **overrides}


def _render_in_fresh_process(params: dict, root: Path, reverse: bool, workers: int) -> None:
    subprocess.run(
        [sys.executable, "-c", RENDER_SCRIPT, json.dumps([params, str(root), reverse, workers])],
        check=True,
        timeout=300,
    )


def _digests(root: Path) -> dict[str, str]:
    lines = (root / SUMS_FILE).read_text().splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines)}


def test_synthesis_is_bit_identical_across_fresh_processes_orders_and_workers(tmp_path, params):
    corpus = _corpus_params(params)
    _render_in_fresh_process(corpus, tmp_path / "a", reverse=False, workers=2)
    _render_in_fresh_process(corpus, tmp_path / "b", reverse=True, workers=1)
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(first) == 2 * 4 * 3
    assert first == second
    for name, digest in first.items():  # the manifest names real files with those digests
        assert file_digest(tmp_path / "a" / name) == f"blake3:{digest}"


def test_rendered_audio_is_16k_mono_pcm16_speech(corpus_dir):
    plan = SynthesizedCorpusDataset(path=str(corpus_dir)).load()
    for stored in plan["audio_path"]:  # relative to the corpus root
        path = corpus_dir / stored
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        wave, _ = sf.read(path)
        assert 0.2 < len(wave) / 16000 < 10
        assert abs(wave).max() > 0.05  # not silence


def test_existing_corpus_is_not_rendered_again(tmp_path, params, monkeypatch):
    plan = plan_digit_corpus(_corpus_params(params, variants=["m3"]))
    store = SynthesizedCorpusDataset(path=str(tmp_path), workers=1)
    store.save(plan)
    before = (tmp_path / "plan.csv").read_bytes()

    def refuse(*_args, **_kwargs):
        raise AssertionError("rendered although the corpus matched its digests")

    monkeypatch.setattr(corpus_dataset, "render_plan", refuse)
    store.save(plan)
    assert (tmp_path / "plan.csv").read_bytes() == before


def test_missing_file_is_rendered_again_with_identical_bytes(tmp_path, params):
    plan = plan_digit_corpus(_corpus_params(params, variants=["f2"]))
    store = SynthesizedCorpusDataset(path=str(tmp_path), workers=1)
    store.save(plan)
    victim = tmp_path / store.load()["audio_path"].iloc[1]
    digest = file_digest(victim)
    victim.unlink()
    store.save(plan)
    assert file_digest(victim) == digest


def test_regeneration_with_different_bytes_fails_naming_the_files(tmp_path, params):
    plan = plan_digit_corpus(_corpus_params(params, variants=["m3"]))
    store = SynthesizedCorpusDataset(path=str(tmp_path), workers=1)
    store.save(plan)
    # Pretend an earlier synthesis produced other bytes for two utterances, then regenerate them.
    manifest = pd.read_csv(tmp_path / "plan.csv", keep_default_na=False)
    victims = manifest["utt_id"].iloc[[0, 2]].tolist()
    manifest.loc[manifest["utt_id"].isin(victims), "digest"] = "blake3:" + "0" * 64
    manifest.to_csv(tmp_path / "plan.csv", index=False)
    for utt_id in victims:
        next(tmp_path.glob(f"wav/*/{utt_id}.wav")).unlink()
    with pytest.raises(CorpusDigestError) as error:
        store.save(plan)
    assert all(utt_id in str(error.value) for utt_id in victims)
    assert "2 file(s)" in str(error.value)


def test_load_refuses_a_modified_file_and_names_it(tmp_path, params):
    plan = plan_digit_corpus(_corpus_params(params, variants=["m3"]))
    store = SynthesizedCorpusDataset(path=str(tmp_path), workers=1)
    store.save(plan)
    victim = tmp_path / store.load()["audio_path"].iloc[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # same size, one sample changed
    victim.write_bytes(bytes(data))
    with pytest.raises(CorpusDigestError, match=victim.name):
        store.load()


def test_speakers_removed_from_the_plan_lose_their_files(tmp_path, params):
    store = SynthesizedCorpusDataset(path=str(tmp_path), workers=2)
    store.save(plan_digit_corpus(_corpus_params(params, variants=["m3", "f2"])))
    store.save(plan_digit_corpus(_corpus_params(params, variants=["m3"])))
    assert {p.parent.name for p in tmp_path.glob("wav/*/*.wav")} == {
        "en-us_m3",
        "en-gb-scotland_m3",
    }
    assert len(store.load()) == 2 * 3


def test_adding_speakers_keeps_existing_utterances(params):
    small = plan_digit_corpus(_corpus_params(params, variants=["m3"]))
    large = plan_digit_corpus(_corpus_params(params, variants=["m3", "f2", "m1"]))
    kept = large[large["utt_id"].isin(small["utt_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, small)
