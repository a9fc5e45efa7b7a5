"""The verification notes beside the bundles: appended, read back per run, bad lines named."""

from __future__ import annotations

import json

from kedro_repro.verifications import (
    VERIFICATIONS_FILE,
    latest_verification,
    note_verification,
    verifications_of,
)

RUN = "2026-12-03T09.41.07.118Z"
OTHER = "2026-12-03T09.42.00.000Z"


def test_notes_are_read_back_per_run_newest_last(tmp_path):
    assert latest_verification(tmp_path, RUN) is None
    note_verification(tmp_path, RUN, "diverged", "r1", "recorded code", "this env")
    note_verification(tmp_path, OTHER, "bitwise", "r2", "recorded code", "this env")
    note_verification(tmp_path, RUN, "bitwise", "r3", "current tree", "this env")
    assert [n.replay_id for n in verifications_of(tmp_path, RUN)] == ["r1", "r3"]
    latest = latest_verification(tmp_path, RUN)
    assert latest is not None and latest.overall == "bitwise"
    assert latest.describe().startswith("bitwise (") and "current tree" in latest.describe()


def test_a_line_that_is_not_a_verification_is_named_and_not_believed(tmp_path, capsys):
    note_verification(tmp_path, RUN, "diverged", "r1", "recorded code", "this env")
    with (tmp_path / VERIFICATIONS_FILE).open("a") as log:
        hand_written = json.dumps({"run_id": RUN, "overall": "proven beyond doubt"})
        log.write(hand_written + "\n")
    latest = latest_verification(tmp_path, RUN)
    assert latest is not None and latest.overall == "diverged"
    assert "verifications.jsonl line 2 is not a verification" in capsys.readouterr().err
