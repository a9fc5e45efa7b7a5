"""``kedro repro show RUN_ID``: a run's record, readable, after checking its bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from kedro_repro.cli.common import (
    config_of,
    echo_json,
    json_option,
    print_table,
    project_of,
    resolve_run,
    runs_dir_of,
    stderr_line,
)
from kedro_repro.hashing import digest_hex
from kedro_repro.integrity import RunCheck, check_run
from kedro_repro.record import (
    RunRecord,
    WorkerEntry,
    load_run,
    record_document,
    redacted,
    status,
)
from kedro_repro.redaction import redact_record, redact_text
from kedro_repro.signing import default_allowed_signers
from kedro_repro.summary import SHORT_DIGEST
from kedro_repro.verifications import latest_verification


def _short(digest: str | None) -> str:
    return digest_hex(digest, SHORT_DIGEST)


@click.command("show")
@click.argument("run_id")
@json_option("Print the whole record as JSON.")
@click.pass_obj
def show(metadata: Any, run_id: str, as_json: bool) -> None:
    """The record of RUN_ID, readable, after checking its bytes (exit 1 when they changed)."""
    project = project_of(metadata)
    run_id = resolve_run(metadata, run_id)
    checked = check_run(project, run_id, allowed_signers=default_allowed_signers(project))
    if checked.problems:
        stderr_line(f"run {run_id} is TAMPERED: its stored bytes are not what it recorded")
        for problem in checked.problems:
            stderr_line(f"  {redact_text(problem.describe())}")
    # Redacted on output too: a record written before redaction existed may hold secrets.
    if as_json:  # the document itself, as stored (redacted once more)
        echo_json(redact_record(record_document(runs_dir_of(project), run_id)))
    else:
        record = redacted(load_run(runs_dir_of(project), run_id))
        _print_record(record, checked)
        click.echo(_verified_text(project, run_id))
        if not checked.problems:  # the flags file is read only once its bytes are checked
            click.echo(_review_text(project, record))
    if checked.problems:
        raise SystemExit(1)


def _verified_text(project: Path, run_id: str) -> str:
    note = latest_verification(project, run_id)
    if note is None:
        return f"verified     not here (kedro repro verify {run_id})"
    return f"verified     {note.describe()} on {note.host} (a note: verify again to prove it)"


def _review_text(project: Path, record: RunRecord) -> str:
    """The run's review flags (what needs attention), read from the bundle's own file."""
    review = config_of().presentation.review_dataset
    entry = record.ledger.get(review) if review else None
    if entry is None or len(entry.files) != 1:
        return "review       not part of this run"
    (stored,) = entry.files
    attention = json.loads((project / stored).read_text())["attention"]
    if not attention:
        return "review       nothing flagged"
    return "review       needs attention\n" + "\n".join(f"  - {item}" for item in attention)


def _worker_row(record: RunRecord, worker: WorkerEntry) -> list[Any]:
    """One worker: where it ran, its interpreter, and whether its code (commit and uncommitted
    changes) and lock files are the run's."""
    env, own = worker.environment, record.environment
    git, own_git = env.git or {}, own.git or {}
    same = env.lock_files == own.lock_files and all(
        git.get(key) == own_git.get(key) for key in ("commit", "diff_digest")
    )
    return [
        worker.name,
        worker.process.host,
        worker.process.pid,
        env.python["version"],
        (env.torch or {}).get("version"),
        "same as the run" if same else "DIFFERENT from the run",
        " ".join(f"{k}={v}" for k, v in worker.details.items()),
    ]


def _print_record(record: RunRecord, checked: RunCheck) -> None:
    env = record.environment
    # Free-form sections, read by key: what torch, the hardware and git could tell.
    torch_env = env.torch or {}
    hardware = env.hardware
    git = env.git or {}
    patch = record.code.patch if record.code is not None else None
    parameters = record.parameters
    snapshot = record.data_snapshot
    lines = [
        f"integrity    {checked.verdict} ({checked.files_checked} files), record {checked.seal}, "
        f"{checked.signature.describe() if checked.signature else 'unsigned'}",
        f"run {record.run_id}  [{status(record)}]  started {record.started_at}  {record.duration_seconds} s",
        f"command      {' '.join(record.command)}",
        f"pipelines    {', '.join(record.pipelines)}   env {record.env}",
        f"code         {git.get('commit')} branch {git.get('branch')} dirty={git.get('dirty')} diff {_short(git.get('diff_digest'))}"
        + (f"  patch stored {patch}" if patch else ""),
        "locks        " + ", ".join(f"{k} {_short(v)}" for k, v in env.lock_files.items()),
        f"parameters   {_short(parameters.digest)} (design {_short(parameters.design_digest)}, tunable {_short(parameters.tunable_digest)})",
        f"seeds        {record.seeds}",
        f"python       {env.python['version']}  torch {torch_env.get('version')}  cuda {torch_env.get('cuda_version')}  cudnn {torch_env.get('cudnn_version')}",
        f"hardware     {hardware.get('cpu_model')} x{hardware.get('logical_cpus')}  gpus {hardware.get('gpus')}  driver {hardware.get('driver_version')}",
        f"threads      intra {torch_env.get('num_threads')} inter {torch_env.get('num_interop_threads')}  deterministic {torch_env.get('deterministic_algorithms')}",
        f"data         {snapshot.model_dump() if snapshot is not None else None}",
    ]
    if record.resumed_from:
        lines.append(f"resumed from {record.resumed_from}")
    if record.error:
        lines.append(f"error        {record.error}")
    click.echo("\n".join(lines))
    if record.workers:
        click.echo("workers (other processes that computed part of the run, each's environment)")
        print_table(
            ["name", "host", "pid", "python", "torch", "code, locks", "details"],
            (_worker_row(record, w) for w in record.workers),
            indent=2,
        )
    click.echo("inputs")
    print_table(
        ["dataset", "version", "digest"],
        ([name, i.version, _short(i.digest)] for name, i in record.inputs.items()),
        indent=2,
    )
    click.echo("ledger (dataset saved by node: content digest)")
    print_table(
        ["dataset", "node", "digest"],
        ([name, e.node, _short(e.digest)] for name, e in record.ledger.items()),
        indent=2,
    )
    click.echo("nodes")
    print_table(
        ["node", "seconds"],
        ([name, n.seconds] for name, n in record.nodes.items()),
        indent=2,
    )
    lines = [f"non-deterministic operations: {record.nondeterministic_operations or 'none met'}"]
    describe = config_of().presentation.describe_metrics
    if describe is not None and record.metrics is not None:
        lines += [f"metrics      {line}" for line in describe(record.metrics)]
    lines += [f"note         {note}" for note in checked.notes]
    click.echo("\n".join(lines))
