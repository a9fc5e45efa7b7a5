"""Bad input: every defect stops the run before training, names every offending file or row,
and leaves every existing artifact byte-identical.

The corpus is a NeMo JSONL manifest over real synthesized audio, read through the
``CorpusDataset`` adapter, with the corpus's own (given) splits.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from kedro_repro.hashing import file_digest

from .conftest import copy_project, kedro_unchecked

CATALOG = """
raw_corpus:
  type: speech_repro.corpora.dataset.CorpusDataset
  format: jsonl
  path: corpus/manifest.jsonl
  digest_cache: {filepath: data/.cache/digests.sqlite}
"""
PARAMETERS = """
split:
  method: given
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory, corpus_dir) -> Path:
    """A project copy reading a JSONL corpus, after one successful run of the experiment."""
    project = copy_project(tmp_path_factory.mktemp("bad-input") / "speech-repro")
    catalog = project / "conf/test/catalog.yml"  # swap the test env's corpus for the JSONL one
    catalog.write_text(CATALOG + catalog.read_text()[catalog.read_text().index("split_lock:") :])
    (project / "conf/test/parameters_corpus.yml").write_text(PARAMETERS)
    plan = pd.read_csv(corpus_dir / "plan.csv", keep_default_na=False)
    speakers = sorted(plan["speaker"].unique())
    split_of = {s: "dev" if i < 3 else "test" if i < 6 else "train" for i, s in enumerate(speakers)}
    corpus = project / "corpus"
    entries = []
    for row in plan.itertuples():
        (corpus / row.speaker).mkdir(parents=True, exist_ok=True)
        shutil.copy(
            corpus_dir / "wav" / row.speaker / f"{row.utt_id}.wav",
            corpus / row.speaker / f"{row.utt_id}.wav",
        )
        entries.append(
            {
                "audio_filepath": f"{row.speaker}/{row.utt_id}.wav",
                "text": row.transcript,
                "speaker": row.speaker,
                "split": split_of[row.speaker],
            }
        )
    _write_manifest(corpus, entries)
    shutil.copytree(corpus, project / "pristine-corpus")
    _run(project)
    return project


def _write_manifest(corpus: Path, entries: list[dict]) -> None:
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))


def _entries(project: Path) -> list[dict]:
    return [
        json.loads(line) for line in (project / "corpus/manifest.jsonl").read_text().splitlines()
    ]


def _run(project: Path) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="test") as session:
        session.run(pipeline_names=["experiment"])


RUNS_LOG = "data/09_runs/RUNS.log"  # append-only: a failed run adds its seal, changes nothing


def _artifacts(project: Path) -> dict[str, str]:
    return {
        str(p.relative_to(project)): file_digest(p)
        for p in sorted((project / "data").rglob("*"))
        if p.is_file() and ".cache" not in p.parts and not p.name.startswith("RUNS.log")
    }


@pytest.fixture
def broken(project):
    """Yields the project; afterwards checks no artifact changed and restores corpus and conf."""
    before = _artifacts(project)
    log = project / RUNS_LOG
    logged = log.read_bytes() if log.exists() else b""
    yield project
    assert (log.read_bytes() if log.exists() else b"").startswith(logged), "runs log rewritten"
    after = _artifacts(project)
    assert {k: v for k, v in after.items() if k in before} == before, "an existing artifact changed"
    assert not any("06_models/model.safetensors" in k for k in set(after) - set(before)), (
        "a model was trained"
    )
    shutil.rmtree(project / "corpus")
    shutil.copytree(project / "pristine-corpus", project / "corpus")
    for extra in (project / "conf/test").glob("parameters_case.yml"):
        extra.unlink()


def _expect_failure(project: Path, *names: str) -> str:
    with pytest.raises(Exception) as error:
        _run(project)
    message = "".join(str(e) for e in _chain(error.value))
    for name in names:
        assert name in message, f"{name!r} not named in:\n{message}"
    return message


def _chain(error: BaseException):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def _victims(project: Path, count: int = 2) -> list[Path]:
    return [project / "corpus" / e["audio_filepath"] for e in _entries(project)[1 : 1 + count]]


def _case_parameters(project: Path, text: str) -> None:
    (project / "conf/test/parameters_case.yml").write_text(text)


def test_baseline_run_trained_and_scored(project):
    assert list((project / "data/06_models/model.safetensors").iterdir())


def test_the_record_keeps_the_raw_parameters_though_nodes_got_models(project):
    """Kedro validates node-annotated sections into models in its catalog's ``parameters``; the
    record holds the configuration's own values, as before nodes were typed."""
    from kedro.config import OmegaConfigLoader

    (record_file,) = sorted((project / "data/09_runs").glob("*/record.json"))[:1]
    parameters = json.loads(record_file.read_text())["parameters"]
    loader = OmegaConfigLoader(
        conf_source=str(project / "conf"),
        base_env="base",
        default_run_env="test",
        merge_strategy={"parameters": "soft"},
    )
    assert {**parameters["design"], **parameters["tunable"]} == loader["parameters"]
    assert list((project / "data/08_reporting/metrics.json").iterdir())


def test_corrupt_audio(broken):
    victims = _victims(broken)
    for path in victims:
        path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    _expect_failure(broken, *(str(p.resolve()) for p in victims), "unreadable")


def test_a_crashed_cli_run_ends_naming_the_run_its_error_and_how_to_resume(broken):
    victims = _victims(broken, count=1)
    victims[0].write_bytes(np.random.default_rng(1).bytes(victims[0].stat().st_size))
    result = kedro_unchecked(broken, "run", "--env", "test", "--pipelines", "experiment")
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    (crashed,) = [i for i, line in enumerate(lines) if re.match(r"Run \S+ crashed after ", line)]
    match = re.fullmatch(
        r"Run (\S+) crashed after [0-9.]+ s \((\w+); the error follows\)", lines[crashed]
    )
    assert match, lines[crashed]
    run_id, kind = match.groups()
    assert kind == "CorpusValidationError"
    # Its message once, from Kedro, after the line (the summary does not repeat it).
    assert result.stderr.count("break the corpus rules") == 1
    assert str(victims[0].resolve()) in "\n".join(lines[crashed + 2 :])
    assert lines[crashed + 1].split() == ["resume", "kedro", "repro", "resume", run_id]
    record = json.loads((broken / "data/09_runs" / run_id / "record.json").read_text())
    assert record["status"] == "crashed"
    assert record["error"].startswith(
        "CorpusValidationError: 1 utterance(s) break the corpus rules"
    )


def test_truncated_audio(broken):
    victims = _victims(broken)
    for path in victims:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _expect_failure(broken, *(p.stem for p in victims), "truncated")


def test_empty_file(broken):
    victims = _victims(broken)
    for path in victims:
        path.write_bytes(b"")
    _expect_failure(broken, *(p.stem for p in victims), "unreadable")


def test_wrong_sample_rate_without_resampling(broken):
    victims = _victims(broken)
    for path in victims:
        wave, _ = sf.read(path)
        sf.write(path, wave[::2], 8000, subtype="PCM_16")
    _case_parameters(broken, "audio:\n  resample: false\n")
    _expect_failure(broken, *(p.stem for p in victims), "sample rate is not 16000 Hz")


def test_stereo_when_the_policy_refuses_it(broken):
    victims = _victims(broken)
    for path in victims:
        wave, rate = sf.read(path)
        sf.write(path, np.stack([wave, wave], axis=1), rate, subtype="PCM_16")
    _case_parameters(broken, "audio:\n  downmix: error\n")
    _expect_failure(broken, *(p.stem for p in victims), "several channels")


def test_empty_transcript(broken):
    entries = _entries(broken)
    for entry in entries[1:3]:
        entry["text"] = " ?! "
    _write_manifest(broken / "corpus", entries)
    _expect_failure(
        broken, *(Path(e["audio_filepath"]).stem for e in entries[1:3]), "empty after normalisation"
    )


def test_out_of_vocabulary_characters(broken):
    entries = _entries(broken)
    entries[1]["text"] += " 7"
    entries[2]["text"] += " café"
    _write_manifest(broken / "corpus", entries)
    _expect_failure(
        broken, *(Path(e["audio_filepath"]).stem for e in entries[1:3]), "outside the vocabulary"
    )


def test_duplicate_utterance_ids(broken):
    entries = _entries(broken)
    _write_manifest(broken / "corpus", [*entries, entries[1], entries[2]])
    ids = [e["audio_filepath"].removesuffix(".wav").replace("/", "__") for e in entries[1:3]]
    _expect_failure(broken, *(f"utterance id '{i}' occurs 2 times" for i in ids))


def test_speaker_in_two_splits(broken):
    entries = _entries(broken)
    moved = [e for e in entries if e["split"] == "train"][:1] + [
        e for e in entries if e["split"] == "test"
    ][:1]
    for entry in moved:
        entry["split"] = "dev"
    _write_manifest(broken / "corpus", entries)
    _expect_failure(broken, *(f"speaker {e['speaker']} is in several splits" for e in moved))


def test_identical_audio_in_two_splits(broken):
    entries = _entries(broken)
    train = next(e for e in entries if e["split"] == "train")
    test = next(e for e in entries if e["split"] == "test")
    shutil.copy(
        broken / "corpus" / train["audio_filepath"], broken / "corpus" / test["audio_filepath"]
    )
    _expect_failure(
        broken,
        "identical audio",
        Path(train["audio_filepath"]).stem,
        Path(test["audio_filepath"]).stem,
    )


def test_missing_file(broken):
    victims = _victims(broken)
    for path in victims:
        path.unlink()
    _expect_failure(broken, *(str(p) for p in victims), "does not exist")


def test_path_escaping_the_corpus_root(broken):
    entries = _entries(broken)
    outside = broken / "outside.wav"
    shutil.copy(broken / "corpus" / entries[1]["audio_filepath"], outside)
    entries[1]["audio_filepath"] = "../outside.wav"
    entries[2]["audio_filepath"] = "../" + entries[2]["audio_filepath"]  # exists? no, and outside
    _write_manifest(broken / "corpus", entries)
    _expect_failure(broken, str(outside), "outside the corpus root")


def test_audio_whose_features_would_be_non_finite(broken):
    victims = _victims(broken)
    for path in victims:
        wave, rate = sf.read(path)
        sf.write(
            path, (wave * 1e30).astype(np.float32), rate, subtype="FLOAT"
        )  # finite, power overflows
    _expect_failure(broken, *(p.stem for p in victims), "features would overflow")


def test_unknown_parameter_key(broken):
    _case_parameters(broken, "training:\n  learning_rat: 0.1\nfeatures:\n  n_mel: 80\n")
    _expect_failure(
        broken,
        "training.learning_rat (did you mean training.learning_rate?), set in "
        "conf/test/parameters_case.yml; section training accepts: batch_size, "
        "checkpoint_every_steps, device, distributed, epochs, grad_clip, learning_rate,",
        "features.n_mel (did you mean features.n_mels?), set in conf/test/parameters_case.yml; "
        "section features accepts: f_max, f_min, hop_length, log_floor, n_fft, n_mels,",
    )


def _refused_before_any_node(result) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "nothing was run" in output, output
    assert "Running node" not in output and "Completed node" not in output, output
    return output


def test_a_mistyped_runtime_parameter_stops_the_run_before_any_node(broken):
    result = kedro_unchecked(broken, "run", "--env", "test", "--params", "training.epochs=ten")
    output = _refused_before_any_node(result)
    assert (
        "training.epochs: expected int, got 'ten' (str), set in --params (runtime parameters): "
        "Input should be a valid integer"
    ) in output


def test_a_mistyped_value_in_a_conf_file_names_the_file(broken):
    _case_parameters(broken, "drift:\n  fail: sometimes\nsplit:\n  names: train\n")
    output = _refused_before_any_node(kedro_unchecked(broken, "run", "--env", "test"))
    assert "2 invalid parameter value(s)" in output
    assert (
        "drift.fail: expected bool, got 'sometimes' (str), set in conf/test/parameters_case.yml"
    ) in output
    assert "split.names: expected tuple[str, ...], got 'train' (str), set in conf/test/" in output


def test_an_unknown_key_in_a_conf_file_stops_the_cli_run_naming_file_and_accepted_keys(broken):
    _case_parameters(broken, "evaluation:\n  batchsize: 8\n")
    output = _refused_before_any_node(kedro_unchecked(broken, "run", "--env", "test"))
    assert (
        "evaluation.batchsize (did you mean evaluation.batch_size?), set in "
        "conf/test/parameters_case.yml; section evaluation accepts: batch_size, lexicon, splits"
    ) in output


def test_unknown_parameter_key_given_with_params_names_params(broken):
    bootstrap_project(broken)
    with (
        pytest.raises(Exception, match="unknown parameter") as error,
        KedroSession.create(
            project_path=broken, env="test", runtime_params={"training": {"learning_rat": 0.1}}
        ) as session,
    ):
        session.run(pipeline_names=["experiment"])
    message = "".join(str(e) for e in _chain(error.value))
    assert (
        "training.learning_rat (did you mean training.learning_rate?), set in --params "
        "(runtime parameters)" in message
    )
    assert "conf/" not in message


def test_data_that_no_longer_matches_the_split_lock(broken):
    entries = _entries(broken)
    removed = entries.pop(3)
    _write_manifest(broken / "corpus", entries)
    message = _expect_failure(
        broken, "split_lock.csv is locked", "removed (1)", Path(removed["audio_filepath"]).stem
    )
    assert "relock=true" in message
