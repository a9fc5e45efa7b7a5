"""The tamper-evident runs log: sealing, detecting edits, torn lines and concurrent appends."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from kedro_repro.hashing import bytes_digest, file_digest
from kedro_repro.runlog import (
    GENESIS,
    LOG_NAME,
    append,
    check_record,
    head,
    latest_entries,
    read_log,
    verify_chain,
)


def _record(runs_dir: Path, run_id: str, wer: float = 1.0) -> Path:
    path = runs_dir / run_id / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "status": "complete", "test_wer": wer}))
    return path


def _sealed(runs_dir: Path, run_ids: list[str]) -> None:
    for run_id in run_ids:
        append(runs_dir, run_id, _record(runs_dir, run_id))


def test_missing_log_is_empty(tmp_path):
    assert read_log(tmp_path) == []
    assert verify_chain(tmp_path) == []
    assert head(tmp_path) is None
    assert check_record(tmp_path, "r1").status == "unsealed"


def test_append_then_sealed(tmp_path):
    record = _record(tmp_path, "r1")
    entry = append(tmp_path, "r1", record)
    assert (entry.seq, entry.run_id, entry.prev, entry.line) == (1, "r1", GENESIS, 1)
    assert entry.record_digest == file_digest(record)
    assert entry.at.endswith("Z")
    assert read_log(tmp_path) == [entry]
    line = (tmp_path / LOG_NAME).read_bytes()
    assert line == entry.to_line() + b"\n"
    assert list(json.loads(line)) == ["seq", "run_id", "record_digest", "prev", "at"]
    assert head(tmp_path) == bytes_digest(entry.to_line())

    seal = check_record(tmp_path, "r1")
    assert seal.status == "sealed" and seal.ok
    assert seal.expected == seal.actual == entry.record_digest
    assert seal.entry == entry

    second = append(tmp_path, "r2", _record(tmp_path, "r2"))
    assert second.seq == 2 and second.line == 2
    assert second.prev == bytes_digest(entry.to_line())
    assert verify_chain(tmp_path) == []
    assert check_record(tmp_path, "r2").status == "sealed"


def test_unsealed_run(tmp_path):
    _sealed(tmp_path, ["r1"])
    _record(tmp_path, "running")
    seal = check_record(tmp_path, "running")
    assert seal.status == "unsealed" and seal.entry is None and seal.expected is None
    assert seal.actual is not None


def test_edited_record_is_modified(tmp_path):
    record = _record(tmp_path, "r1", wer=1.0)
    sealed_digest = append(tmp_path, "r1", record).record_digest
    record.write_text(record.read_text().replace("1.0", "0.0123"))
    seal = check_record(tmp_path, "r1")
    assert seal.status == "modified" and not seal.ok
    assert seal.expected == sealed_digest
    assert seal.actual == file_digest(record) != sealed_digest
    assert sealed_digest in seal.describe() and seal.actual in seal.describe()


def test_missing_record(tmp_path):
    record = _record(tmp_path, "r1")
    append(tmp_path, "r1", record)
    record.unlink()
    seal = check_record(tmp_path, "r1")
    assert seal.status == "missing" and seal.actual is None and seal.expected


def test_resealing_latest_entry_wins(tmp_path):
    record = _record(tmp_path, "r1", wer=1.0)
    append(tmp_path, "r1", record)
    _sealed(tmp_path, ["r2"])
    record.write_text(record.read_text().replace("1.0", "0.5"))
    assert check_record(tmp_path, "r1").status == "modified"
    latest = append(tmp_path, "r1", record)
    seal = check_record(tmp_path, "r1")
    assert seal.status == "sealed" and seal.entry == latest and latest.seq == 3
    assert latest_entries(tmp_path)["r1"] == latest
    assert verify_chain(tmp_path) == []


def test_edited_log_line_breaks_chain_naming_seq(tmp_path):
    _sealed(tmp_path, ["r1", "r2", "r3"])
    record = tmp_path / "r2" / "record.json"
    record.write_text(record.read_text().replace("1.0", "0.0123"))
    # cover the edit: put the edited record's digest into its log entry
    log = tmp_path / LOG_NAME
    lines = log.read_text().splitlines(keepends=True)
    entry = json.loads(lines[1])
    entry["record_digest"] = file_digest(record)
    lines[1] = json.dumps(entry, separators=(",", ":")) + "\n"
    log.write_text("".join(lines))

    problems = verify_chain(tmp_path)
    assert len(problems) == 1
    assert "line 3 (seq 3)" in problems[0] and "line 2 (seq 2)" in problems[0]
    assert "broken link" in problems[0]
    assert check_record(tmp_path, "r2").status == "log-broken"
    assert check_record(tmp_path, "r3").status == "log-broken"
    assert check_record(tmp_path, "r1").status == "sealed"  # before the break
    assert check_record(tmp_path, "r-unknown").status == "log-broken"  # removed entry?


def test_removed_entry_breaks_chain(tmp_path):
    _sealed(tmp_path, ["r1", "r2", "r3"])
    log = tmp_path / LOG_NAME
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[2])
    problems = verify_chain(tmp_path)
    assert any("line 2 (seq 3)" in p and "broken link" in p for p in problems)
    assert any("expected seq 2" in p for p in problems)


def test_rewritten_tail_detected_only_by_anchor(tmp_path):
    _sealed(tmp_path, ["r1", "r2"])
    anchor = head(tmp_path)
    assert verify_chain(tmp_path, anchor=anchor) == []
    # an attacker who rewrites the log from entry 2 on recomputes a valid chain ...
    log = tmp_path / LOG_NAME
    log.write_text(log.read_text().splitlines(keepends=True)[0])
    record = tmp_path / "r2" / "record.json"
    record.write_text(record.read_text().replace("1.0", "0.0123"))
    append(tmp_path, "r2", record)
    assert verify_chain(tmp_path) == []
    # ... which only the anchor kept elsewhere exposes
    problems = verify_chain(tmp_path, anchor=anchor)
    assert len(problems) == 1 and anchor in problems[0]


def test_unparsable_line_is_named(tmp_path):
    _sealed(tmp_path, ["r1", "r2"])
    log = tmp_path / LOG_NAME
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + "this is not json\n" + lines[1])
    problems = verify_chain(tmp_path)
    assert any(p.startswith("line 2: unparsable") for p in problems)
    assert [e.run_id for e in read_log(tmp_path)] == ["r1", "r2"]


def test_truncated_last_line_reported_and_next_append_works(tmp_path):
    _sealed(tmp_path, ["r1", "r2"])
    log = tmp_path / LOG_NAME
    good = log.read_bytes()
    torn = b'{"seq":3,"run_id":"r3","record_dig'  # a crash mid-append
    log.write_bytes(good + torn)

    problems = verify_chain(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("line 3: unparsable")
    assert "truncated" in problems[0]
    assert [e.seq for e in read_log(tmp_path)] == [1, 2]
    assert check_record(tmp_path, "r2").status == "sealed"

    entry = append(tmp_path, "r3", _record(tmp_path, "r3"))
    assert entry.seq == 3 and entry.line == 4
    assert log.read_bytes() == good + torn + b"\n" + entry.to_line() + b"\n"
    assert [e.seq for e in read_log(tmp_path)] == [1, 2, 3]
    assert read_log(tmp_path)[-1] == entry
    problems = verify_chain(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("line 3: unparsable")  # still named
    assert check_record(tmp_path, "r3").status == "sealed"  # a torn line is not a broken link


def test_invalid_run_id(tmp_path):
    with pytest.raises(ValueError):
        append(tmp_path, "a\nb", _record(tmp_path, "x"))


def _append_many(runs_dir: str, worker: int, count: int, barrier) -> None:
    record = _record(Path(runs_dir), f"w{worker}")
    barrier.wait()  # start together, to make the appends contend for the lock
    for i in range(count):
        record.write_text(json.dumps({"worker": worker, "i": i}))
        append(runs_dir, f"w{worker}", record)


def test_concurrent_appends_from_processes(tmp_path):
    workers, count = 8, 5
    ctx = multiprocessing.get_context("spawn")  # no fork of a possibly threaded test process
    barrier = ctx.Barrier(workers)
    processes = [
        ctx.Process(target=_append_many, args=(str(tmp_path), w, count, barrier))
        for w in range(workers)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * workers

    entries = read_log(tmp_path)
    assert len(entries) == workers * count
    assert [e.seq for e in entries] == list(range(1, workers * count + 1))
    assert verify_chain(tmp_path) == []
    assert len((tmp_path / LOG_NAME).read_text().splitlines()) == workers * count
    for w in range(workers):
        assert sum(e.run_id == f"w{w}" for e in entries) == count
        assert check_record(tmp_path, f"w{w}").status == "sealed"  # the last append wins
