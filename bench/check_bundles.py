"""Benchmark: `kedro repro check` of every run bundle of the default run, cold and warm.

A fresh clone runs the default `kedro run` once, then `kedro repro check` (all runs) is timed:
cold (no digest cache; the OS page cache is dropped where the machine allows it) and warm (the
digest cache holds every file, so each unchanged file costs a stat call). The in-process time of
the check itself is measured too, apart from the `kedro` start-up. Results go between the
`bench:check_bundles` markers of docs/benchmarks.md.

    uv run python bench/check_bundles.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import write_section

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from kedro_repro.integrity import DIGEST_CACHE, check_run, open_cache  # noqa: E402
from kedro_repro.record import RUNS_DIR, list_records  # noqa: E402

ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "300"}


def drop_page_cache() -> bool:
    """Ask the kernel to drop clean page-cache pages (root only, and not in every sandbox)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def in_process(project: Path) -> tuple[float, int]:
    """Seconds to check every run in this process, and the number of files checked."""
    runs = [r.run_id for r in list_records(project / RUNS_DIR)]
    start = time.perf_counter()
    with open_cache(project) as cache:
        results = [check_run(project, run, cache=cache) for run in runs]
    seconds = time.perf_counter() - start
    assert all(r.verdict == "intact" for r in results), [r.to_dict() for r in results]
    files = sum(r.files_checked for r in results)
    return seconds, files


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "speech-repro"
        subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
        subprocess.run(
            [sys.executable, "-m", "kedro", "run"], cwd=project, env=ENV, check=True,
            capture_output=True,
        )  # fmt: skip
        stored = sum(
            p.stat().st_size
            for p in (project / "data").rglob("*")
            if p.is_file() and "01_raw" not in p.parts
        )
        check = [sys.executable, "-m", "kedro", "repro", "check"]
        startup = timed([sys.executable, "-m", "kedro", "repro", "--help"], project)
        rows = []
        for label, cold in (("cold", True), ("warm", False), ("warm", False)):
            if cold:
                shutil.rmtree(project / Path(DIGEST_CACHE).parent, ignore_errors=True)
                dropped = drop_page_cache()
            seconds = timed(check, project)
            rows.append((label, seconds))
        shutil.rmtree(project / Path(DIGEST_CACHE).parent, ignore_errors=True)
        drop_page_cache()
        cold_inner, files = in_process(project)
        warm_inner, _ = in_process(project)

    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores by "
        "`uv run python bench/check_bundles.py`: a fresh clone, the default `kedro run`, then "
        f"`kedro repro check` of every run ({files} stored files, {stored / 2**20:.1f} MiB outside "
        "data/01_raw). Cold: no digest cache"
        + (", page cache dropped" if dropped else " (the page cache could not be dropped here)")
        + ".",
        "",
        "| check | `kedro repro check` wall time (s) | of which the check itself (s) |",
        "|---|---|---|",
        f"| cold | {rows[0][1]:.2f} | {cold_inner:.3f} |",
        f"| warm | {min(rows[1][1], rows[2][1]):.2f} | {warm_inner:.3f} |",
        "",
        f"`kedro repro --help` alone takes {startup:.2f} s here: the rest of the wall time is the "
        "CLI's start-up (project settings import torch; issue 16 removes that), not the check.",
    ]
    write_section("check_bundles", lines)


if __name__ == "__main__":
    main()
