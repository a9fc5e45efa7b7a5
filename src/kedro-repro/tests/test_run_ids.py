"""Run ids people can type: latest, latest~N, prefixes, tags, and the errors for the rest."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from kedro_repro.record import RECORD_FILE, RecordError
from kedro_repro.run_ids import (
    TAGS_FILE,
    RunIdError,
    delete_tag,
    read_tags,
    recorded_run_ids,
    resolve_run_id,
    set_tag,
    tags_by_run,
)

IDS = [
    "2026-12-03T09.41.07.118Z",
    "2026-12-03T09.48.30.002Z",
    "2026-12-03T10.02.11.540Z",
]


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    """Three bundles with a record file each (resolution reads folders, not records), plus a
    bundle without a record and a stray file."""
    runs = tmp_path / "data" / "09_runs"
    for run_id in IDS:
        (runs / run_id).mkdir(parents=True)
        (runs / run_id / RECORD_FILE).write_text("{}")
    (runs / "2026-12-03T10.05.00.000Z").mkdir()  # claimed, no record yet
    (runs / "RUNS.log").write_text("")
    return runs


def test_latest_and_latest_n_count_back_from_the_newest_record(runs_dir):
    assert recorded_run_ids(runs_dir) == IDS
    assert resolve_run_id(runs_dir, "latest") == IDS[-1]
    assert resolve_run_id(runs_dir, "latest~0") == IDS[-1]
    assert resolve_run_id(runs_dir, "latest~2") == IDS[0]
    with pytest.raises(RunIdError, match=r"there are 3 recorded run\(s\).*latest~2"):
        resolve_run_id(runs_dir, "latest~3")


def test_a_unique_prefix_is_its_run_and_an_ambiguous_one_names_candidates(runs_dir):
    assert resolve_run_id(runs_dir, "2026-12-03T10") == IDS[2]
    assert resolve_run_id(runs_dir, "2026-12-03T09.48") == IDS[1]
    with pytest.raises(RunIdError) as error:
        resolve_run_id(runs_dir, "2026-12-03T09.4")
    message = str(error.value)
    assert "start of 2 run ids" in message and IDS[0] in message and IDS[1] in message
    assert "\n" not in message


def test_a_full_id_is_itself_and_an_unknown_name_names_the_closest(runs_dir):
    assert resolve_run_id(runs_dir, IDS[1]) == IDS[1]
    with pytest.raises(RunIdError, match="closest: latest"):
        resolve_run_id(runs_dir, "latets")
    with pytest.raises(RunIdError) as error:
        resolve_run_id(runs_dir, "nope")
    assert f"latest: {IDS[2]}, {IDS[1]}, {IDS[0]}" in str(error.value)
    with pytest.raises(RunIdError, match=f"closest: {IDS[1]}"):
        resolve_run_id(runs_dir, "2026-12-03T09.48.30.003Z")  # the form of an id, no bundle
    with pytest.raises(RunIdError, match="no run is recorded yet"):
        resolve_run_id(runs_dir.parent / "empty", "latest~1x")


def test_tags_point_to_recorded_runs_and_move_only_when_forced(runs_dir):
    assert set_tag(runs_dir, "best", IDS[0]) is None
    assert resolve_run_id(runs_dir, "best") == IDS[0]
    with pytest.raises(RunIdError, match=f"already points to run {IDS[0]}.*--force"):
        set_tag(runs_dir, "best", IDS[1])
    assert set_tag(runs_dir, "best", IDS[1], move=True) == IDS[0]
    set_tag(runs_dir, "baseline", IDS[1])
    assert tags_by_run(runs_dir) == {IDS[1]: ["baseline", "best"]}
    assert delete_tag(runs_dir, "best") == IDS[1]
    with pytest.raises(RunIdError, match=r"no tag 'baselin' \(closest: baseline\)"):
        delete_tag(runs_dir, "baselin")
    with pytest.raises(RunIdError, match="has no record"):
        set_tag(runs_dir, "later", "2026-12-03T10.05.00.000Z")
    for bad in ("latest", "latest~1", "2026", "../x", "a b", ""):
        with pytest.raises(RunIdError, match="cannot be a tag"):
            set_tag(runs_dir, bad, IDS[0])
    assert read_tags(runs_dir) == {"baseline": IDS[1]}


def test_a_tag_is_no_way_to_name_a_path_or_a_deleted_run(runs_dir):
    (runs_dir / TAGS_FILE).write_text(json.dumps({"tags": {"best": "../../etc"}}))
    with pytest.raises(RecordError, match="is not a tags file"):
        resolve_run_id(runs_dir, "best")
    (runs_dir / TAGS_FILE).write_text(json.dumps({"tags": {"gone": "2026-01-01T00.00.00.000Z"}}))
    with pytest.raises(RunIdError, match=r"tag .gone. points to run 2026-01-01T00\.00\.00\.000Z"):
        resolve_run_id(runs_dir, "gone")


def _tag(runs_dir: Path, index: int) -> None:
    set_tag(runs_dir, f"t{index}", IDS[index % len(IDS)])


def test_concurrent_taggers_lose_no_tag(runs_dir):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.starmap(_tag, [(runs_dir, i) for i in range(16)])
    assert read_tags(runs_dir) == {f"t{i}": IDS[i % len(IDS)] for i in range(16)}
