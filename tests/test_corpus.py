"""The embedded corpus: bit-reproducible synthesis, digest manifest, skip-when-present, loud failures,
one folder per plan that no other plan deletes, the older single-folder layout still read."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from kedro.io import DatasetError

from kedro_repro.hashing import SUMS_FILE, file_digest
from speech_repro.corpora import dataset as corpus_dataset
from speech_repro.corpora.dataset import CorpusDigestError, SynthesizedCorpusDataset
from speech_repro.corpora.digits import plan_digit_corpus

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


def _plan_folder(root: Path) -> Path:
    """The one plan folder a single save rendered under ``root``."""
    (folder,) = (p.parent for p in root.glob("*/plan.csv"))
    return folder


def test_synthesis_is_bit_identical_across_fresh_processes_orders_and_workers(tmp_path, params):
    corpus = _corpus_params(params)
    _render_in_fresh_process(corpus, tmp_path / "a", reverse=False, workers=2)
    _render_in_fresh_process(corpus, tmp_path / "b", reverse=True, workers=1)
    folder_a, folder_b = _plan_folder(tmp_path / "a"), _plan_folder(tmp_path / "b")
    assert folder_a.name == folder_b.name  # the plan's id does not depend on row order
    first, second = _digests(folder_a), _digests(folder_b)
    assert len(first) == 2 * 4 * 3
    assert first == second
    for name, digest in first.items():  # the manifest names real files with those digests
        assert file_digest(folder_a / name) == f"blake3:{digest}"


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
    before = (store.folder / "plan.csv").read_bytes()

    def refuse(*_args, **_kwargs):
        raise AssertionError("rendered although the corpus matched its digests")

    monkeypatch.setattr(corpus_dataset, "render_plan", refuse)
    store.save(plan)
    assert (store.folder / "plan.csv").read_bytes() == before


def test_missing_file_is_rendered_again_with_identical_bytes(tmp_path, params):
    plan = plan_digit_corpus(_corpus_params(params, variants=["f2"]))
    store = SynthesizedCorpusDataset(path=str(tmp_path), workers=1)
    store.save(plan)
    victim = store.folder / store.load()["audio_path"].iloc[1]
    digest = file_digest(victim)
    victim.unlink()
    store.save(plan)
    assert file_digest(victim) == digest


def test_regeneration_with_different_bytes_fails_naming_the_files(tmp_path, params):
    plan = plan_digit_corpus(_corpus_params(params, variants=["m3"]))
    store = SynthesizedCorpusDataset(path=str(tmp_path), workers=1)
    store.save(plan)
    # Pretend an earlier synthesis produced other bytes for two utterances, then regenerate them.
    manifest = pd.read_csv(store.folder / "plan.csv", keep_default_na=False)
    victims = manifest["utt_id"].iloc[[0, 2]].tolist()
    manifest.loc[manifest["utt_id"].isin(victims), "digest"] = "blake3:" + "0" * 64
    manifest.to_csv(store.folder / "plan.csv", index=False)
    for utt_id in victims:
        next(store.folder.glob(f"wav/*/{utt_id}.wav")).unlink()
    with pytest.raises(CorpusDigestError) as error:
        store.save(plan)
    assert all(utt_id in str(error.value) for utt_id in victims)
    assert "2 file(s)" in str(error.value)


def test_load_refuses_a_modified_file_and_names_it(tmp_path, params):
    plan = plan_digit_corpus(_corpus_params(params, variants=["m3"]))
    store = SynthesizedCorpusDataset(path=str(tmp_path), workers=1)
    store.save(plan)
    victim = store.folder / store.load()["audio_path"].iloc[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # same size, one sample changed
    victim.write_bytes(bytes(data))
    with pytest.raises(CorpusDigestError, match=victim.name):
        store.load()


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): file_digest(p) for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_another_plan_renders_beside_deleting_nothing_and_linking_shared_rows(
    tmp_path, params, monkeypatch
):
    large = plan_digit_corpus(_corpus_params(params, variants=["m3", "f2"]))
    small = plan_digit_corpus(_corpus_params(params, variants=["m3"]))
    first = SynthesizedCorpusDataset(path=str(tmp_path), workers=2)
    first.save(large)
    before = _files(tmp_path)

    def refuse(*_args, **_kwargs):
        raise AssertionError("synthesized an utterance another plan folder already holds")

    monkeypatch.setattr(corpus_dataset, "render_plan", refuse)
    second = SynthesizedCorpusDataset(path=str(tmp_path), workers=2)
    second.save(small)  # every row of the small plan is a row of the large one: linked
    assert second.folder != first.folder and second.folder.parent == first.folder.parent
    assert {k: v for k, v in _files(tmp_path).items() if k in before} == before
    assert len(first.load()) == 2 * 2 * 3 and len(second.load()) == 2 * 3
    assert sorted(second.load()["utt_id"]) == sorted(small["utt_id"])


def test_without_a_save_load_reads_the_expected_plan_or_names_what_is_rendered(tmp_path, params):
    plans = [plan_digit_corpus(_corpus_params(params, variants=[v])) for v in ("m3", "f2")]
    for plan in plans:
        SynthesizedCorpusDataset(path=str(tmp_path), workers=2).save(plan)
    reader = SynthesizedCorpusDataset(path=str(tmp_path))
    with pytest.raises(DatasetError, match="2 corpora under"):
        reader.load()  # two plans and nothing to choose one by
    reader.expect(lambda: plans[1])
    assert sorted(reader.load()["utt_id"]) == sorted(plans[1]["utt_id"])
    reader.expect(lambda: plan_digit_corpus(_corpus_params(params, variants=["m1"])))
    with pytest.raises(DatasetError, match="No corpus rendered for these corpus parameters"):
        reader.load()


def test_the_older_single_folder_layout_is_read_and_left_as_it_is(tmp_path, params):
    plan = plan_digit_corpus(_corpus_params(params, variants=["m3"]))
    rendered = SynthesizedCorpusDataset(path=str(tmp_path / "render"), workers=2)
    rendered.save(plan)
    legacy = tmp_path / "digits"  # earlier versions: wav/, plan.csv, B3SUMS right under path
    shutil.copytree(rendered.folder, legacy, ignore=shutil.ignore_patterns(".lock"))
    before = _files(legacy)
    store = SynthesizedCorpusDataset(path=str(legacy), workers=2)
    store.expect(lambda: plan)
    assert store.folder == legacy and len(store.load()) == len(plan)
    store.save(plan)  # renders into its own plan folder, from the older files
    assert store.folder.parent == legacy
    assert {k: v for k, v in _files(legacy).items() if k in before} == before
    assert store.load()["digest"].tolist() == rendered.load()["digest"].tolist()


def test_adding_speakers_keeps_existing_utterances(params):
    small = plan_digit_corpus(_corpus_params(params, variants=["m3"]))
    large = plan_digit_corpus(_corpus_params(params, variants=["m3", "f2", "m1"]))
    kept = large[large["utt_id"].isin(small["utt_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, small)
