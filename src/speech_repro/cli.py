"""Project commands: ``kedro repro runs|show|diff|compare|run|resume|verify|export``.

Users think in runs, not datasets: every command takes a run id (see ``kedro repro runs``).
Human-readable output by default, ``--json`` for machines.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from speech_repro.asr.stats import format_interval, paired_speaker_bootstrap
from speech_repro.repro import runlog
from speech_repro.repro.atomic import atomic_write_bytes
from speech_repro.repro.integrity import (
    ArtifactTamperedError,
    check_run,
    open_cache,
    require_intact,
)
from speech_repro.repro.provenance import NodeIO, dumps, to_prov_json
from speech_repro.repro.record import (
    RECORD_FILE,
    RUNS_DIR,
    SNAPSHOT_FILE,
    RecordError,
    Unreadable,
    list_records,
    load_run,
    read_record,
    run_liveness,
    scan_records,
    status,
)
from speech_repro.repro.redaction import redact_record, redact_text, redacted_keys
from speech_repro.repro.signing import SigningError, default_allowed_signers, sign_file
from speech_repro.repro.verify import (
    GRADES,
    ReplayRefused,
    Verification,
    check_data,
    to_json,
    verify,
)

SUMMARY_SPLIT = "test"


class TrustGroup(click.Group):
    """Turns the refusals of the trust checks into one-paragraph errors, never tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ArtifactTamperedError, RecordError, ReplayRefused, SigningError) as error:
            raise click.ClickException(str(error)) from None
        except FileNotFoundError as error:
            if "no record for run" in str(error):
                raise click.ClickException(str(error)) from None
            raise


@click.group(name="speech-repro")
def cli() -> None:
    """speech-repro project commands."""


@cli.group(cls=TrustGroup)
def repro() -> None:
    """Run records: list, show, check and compare runs; re-run from, resume or verify a past run."""


def _runs_dir(project: Path) -> Path:
    return project / RUNS_DIR


def _project(metadata: Any) -> Path:
    return Path(metadata.project_path) if metadata is not None else Path.cwd()


def _short(digest: str | None, n: int = 12) -> str:
    return digest.split(":", 1)[-1][:n] if digest else "-"


def _metric(record: dict, name: str) -> float | None:
    return ((record.get("metrics") or {}).get("splits", {}).get(SUMMARY_SPLIT) or {}).get(name)


def run_summary(record: dict) -> dict[str, Any]:
    """One row of ``kedro repro runs``."""
    git = record["environment"].get("git") or {}
    return {
        "run_id": record["run_id"],
        "started": record["started_at"],
        "pipelines": ",".join(record.get("pipelines") or []),
        "git_commit": (git.get("commit") or "")[:10] + ("+dirty" if git.get("dirty") else ""),
        "params_digest": _short(record["parameters"]["digest"]),
        "data_digest": _short((record.get("data_snapshot") or {}).get("digest")),
        "seed": record["seeds"].get("training.seed"),
        "wer": _metric(record, "wer"),
        "cer": _metric(record, "cer"),
        "duration_s": record.get("duration_seconds"),
        "status": status(record),
    }


@repro.command("runs")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def runs(metadata: Any, as_json: bool) -> None:
    """One row per run: id, date, pipelines, commit, parameter/data digests, seed, WER, CER, status."""
    runs_dir = _runs_dir(_project(metadata))
    rows, unreadable = [], []
    for record in scan_records(runs_dir):
        if isinstance(record, Unreadable):
            unreadable.append(record)
            continue
        row = run_summary(record)
        seal = runlog.check_record(runs_dir, record["run_id"])
        if seal.status in ("modified", "log-broken"):
            row["status"] = f"{row['status']} (RECORD {seal.status.upper()})"
        rows.append(row)
    for bad in unreadable:
        click.echo(f"unreadable: {bad.path}: {bad.reason}", err=True)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    header = [
        "run_id",
        "started",
        "pipelines",
        "git_commit",
        "params_digest",
        "data_digest",
        "seed",
        "wer",
        "cer",
        "duration_s",
        "status",
    ]
    table = [[_cell(row[h]) for h in header] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in table)) if table else len(h) for i, h in enumerate(header)
    ]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


@repro.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@click.pass_obj
def show(metadata: Any, run_id: str, as_json: bool) -> None:
    """The record of RUN_ID, readable, after checking its bytes (exit 1 when they changed)."""
    project = _project(metadata)
    checked = check_run(project, run_id, allowed_signers=default_allowed_signers(project))
    if checked.problems:
        click.echo(f"run {run_id} is TAMPERED: its stored bytes are not what it recorded", err=True)
        for problem in checked.problems:
            click.echo(f"  {redact_text(problem.describe())}", err=True)
    # Redacted on output too: a record written before redaction existed may hold secrets.
    record = redact_record(read_record(_runs_dir(project), run_id))
    if as_json:
        click.echo(json.dumps(record, indent=1))
    else:
        click.echo(_show_text(record, checked))
        if not checked.problems:  # the flags file is read only once its bytes are checked
            click.echo(_review_text(project, record))
    if checked.problems:
        raise SystemExit(1)


REVIEW_DATASET = "review_flags"  # the data review's output: leakage, drift, split sizes, bandwidth


def _review_text(project: Path, record: dict) -> str:
    """The run's review flags (what needs attention), read from the bundle's own file."""
    entry = record["ledger"].get(REVIEW_DATASET)
    if entry is None or len(entry.get("files") or {}) != 1:
        return "review       not part of this run"
    (stored,) = entry["files"]
    attention = json.loads((project / stored).read_text())["attention"]
    if not attention:
        return "review       nothing flagged"
    return "review       needs attention\n" + "\n".join(f"  - {item}" for item in attention)


def _show_text(record: dict, checked: Any) -> str:
    env = record["environment"]
    torch_env = env.get("torch") or {}
    hardware = env.get("hardware") or {}
    git = env.get("git") or {}
    code = record.get("code") or {}
    lines = [
        f"integrity    {checked.verdict} ({checked.files_checked} files), record {checked.seal}, "
        f"{checked.signature.describe() if checked.signature else 'unsigned'}",
        f"run {record['run_id']}  [{status(record)}]  started {record['started_at']}  {record.get('duration_seconds')} s",
        f"command      {' '.join(record['command'])}",
        f"pipelines    {', '.join(record['pipelines'])}   env {record.get('env')}",
        f"code         {git.get('commit')} branch {git.get('branch')} dirty={git.get('dirty')} diff {_short(git.get('diff_digest'))}"
        + (f"  patch stored {code['patch']}" if code.get("patch") else ""),
        "locks        "
        + ", ".join(f"{k} {_short(v)}" for k, v in (env.get("lock_files") or {}).items()),
        f"parameters   {_short(record['parameters']['digest'])} (design {_short(record['parameters']['design_digest'])}, tunable {_short(record['parameters']['tunable_digest'])})",
        f"seeds        {record['seeds']}",
        f"python       {env['python']['version']}  torch {torch_env.get('version')}  cuda {torch_env.get('cuda_version')}  cudnn {torch_env.get('cudnn_version')}",
        f"hardware     {hardware.get('cpu_model')} x{hardware.get('logical_cpus')}  gpus {hardware.get('gpus')}  driver {hardware.get('driver_version')}",
        f"threads      intra {torch_env.get('num_threads')} inter {torch_env.get('num_interop_threads')}  deterministic {torch_env.get('deterministic_algorithms')}",
        f"data         {record.get('data_snapshot')}",
    ]
    if record.get("resumed_from"):
        lines.append(f"resumed from {record['resumed_from']}")
    if record.get("error"):
        lines.append(f"error        {record['error']}")
    lines.append("inputs")
    lines += [
        f"  {name:<22} version {i['version'] or '-'}  {_short(i['digest'])}"
        for name, i in record["inputs"].items()
    ]
    lines.append("ledger (dataset saved by node: content digest)")
    lines += [
        f"  {name:<22} {e['node']:<22} {_short(e['digest'])}"
        for name, e in record["ledger"].items()
    ]
    lines.append("nodes")
    lines += [f"  {name:<22} {n['seconds']:8.2f} s" for name, n in record["nodes"].items()]
    lines.append(
        f"non-deterministic operations: {record['nondeterministic_operations'] or 'none met'}"
    )
    for split, rates in ((record.get("metrics") or {}).get("splits") or {}).items():
        lines.append(
            f"metrics {split:<6} WER {rates['wer']:.4f}  CER {rates['cer']:.4f}  MER {rates['mer']:.4f}  WIL {rates['wil']:.4f}  ({rates['utterances']} utterances)"
        )
    lines += [f"note         {note}" for note in checked.notes]
    return "\n".join(lines)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _changes(a: dict, b: dict) -> dict[str, list]:
    fa, fb = _flatten(a), _flatten(b)
    return {
        k: [fa.get(k), fb.get(k)] for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)
    }


def _snapshot(project: Path, run_id: str) -> dict[str, str]:
    path = _runs_dir(project) / run_id / SNAPSHOT_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def diff_records(project: Path, a: dict, b: dict) -> dict[str, Any]:
    """Only what differs between two runs, grouped."""
    ea, eb = a["environment"], b["environment"]
    sa, sb = _snapshot(project, a["run_id"]), _snapshot(project, b["run_id"])
    metrics = {}
    for key, (x, y) in _changes(a.get("metrics") or {}, b.get("metrics") or {}).items():
        delta = y - x if isinstance(x, int | float) and isinstance(y, int | float) else None
        metrics[key] = {"a": x, "b": y, "delta": delta}
    thread_keys = (
        "num_threads",
        "num_interop_threads",
        "deterministic_algorithms",
        "cpu_capability",
    )
    return {
        "parameters": _changes(
            a["parameters"]["design"] | a["parameters"]["tunable"],
            b["parameters"]["design"] | b["parameters"]["tunable"],
        ),
        "code": _changes(
            {"git": ea.get("git"), "lock_files": ea.get("lock_files")},
            {"git": eb.get("git"), "lock_files": eb.get("lock_files")},
        ),
        "environment": {
            "packages": _changes(ea.get("packages", {}), eb.get("packages", {})),
            "hardware": _changes(ea.get("hardware", {}), eb.get("hardware", {})),
            "threads": _changes(
                {k: (ea.get("torch") or {}).get(k) for k in thread_keys}
                | (ea.get("determinism_env") or {}),
                {k: (eb.get("torch") or {}).get(k) for k in thread_keys}
                | (eb.get("determinism_env") or {}),
            ),
            "python": _changes(ea.get("python", {}), eb.get("python", {})),
        },
        "data": {
            "recorded": bool(sa) and bool(sb),  # a run that did not prepare data has no snapshot
            "added": sorted(sb.keys() - sa.keys()) if sa and sb else [],
            "removed": sorted(sa.keys() - sb.keys()) if sa and sb else [],
            "changed": sorted(k for k in sa.keys() & sb.keys() if sa[k] != sb[k]),
        },
        "ledger": {
            name: [a["ledger"][name]["digest"], b["ledger"][name]["digest"]]
            for name in sorted(a["ledger"].keys() & b["ledger"].keys())
            if a["ledger"][name]["digest"] != b["ledger"][name]["digest"]
        },
        "metrics": metrics,
    }


@repro.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def diff(metadata: Any, run_a: str, run_b: str, as_json: bool) -> None:
    """What differs between RUN_A and RUN_B: parameters, code, environment, data, metrics."""
    project = _project(metadata)
    runs_dir = _runs_dir(project)
    # Redacted on reading: a record written before redaction existed may hold secrets.
    result = diff_records(
        project,
        redact_record(read_record(runs_dir, run_a)),
        redact_record(read_record(runs_dir, run_b)),
    )
    if as_json:
        click.echo(json.dumps(result, indent=1, default=str))
        return
    click.echo(f"{run_a} -> {run_b}")
    for group in ("parameters", "code"):
        _print_changes(group, result[group])
    for part, changes in result["environment"].items():
        _print_changes(f"environment/{part}", changes)
    data = result["data"]
    if not data["recorded"]:
        click.echo("[data] not comparable: one of the runs did not prepare data")
    else:
        click.echo(
            f"[data] added {len(data['added'])}, removed {len(data['removed'])}, changed {len(data['changed'])}"
        )
    for kind in ("added", "removed", "changed"):
        for item in data[kind][:20]:
            click.echo(f"  {kind:<8} {item}")
    _print_changes("ledger", result["ledger"])
    click.echo("[metrics]" if result["metrics"] else "[metrics] identical")
    for key, m in result["metrics"].items():
        delta = f"  ({m['delta']:+.4f})" if m["delta"] is not None else ""
        click.echo(f"  {key}: {m['a']} -> {m['b']}{delta}")


def _print_changes(group: str, changes: dict[str, list]) -> None:
    click.echo(f"[{group}]" if changes else f"[{group}] identical")
    for key, (a, b) in changes.items():
        click.echo(f"  {key}: {a} -> {b}")


def load_versions_of(record: dict, datasets: set[str]) -> dict[str, str]:
    """The version of each of ``datasets`` that the recorded run saved or loaded."""
    versions = {n: e["version"] for n, e in record["ledger"].items() if e.get("version")}
    versions |= {
        n: i["version"]
        for n, i in record["inputs"].items()
        if i.get("version") and n not in versions
    }
    return {n: v for n, v in versions.items() if n in datasets}


def _run_session(project: Path, record: dict, env: str | None = None, **run_kwargs: Any) -> None:
    """Run in ``record``'s configuration environment with exactly ``record``'s parameters."""
    recorded = {**record["parameters"]["design"], **record["parameters"]["tunable"]}
    if redacted := redacted_keys(recorded):
        raise click.ClickException(
            f"run {record['run_id']} recorded parameter(s) {', '.join(redacted)} redacted (they "
            "held a secret): its bundle does not hold the values it ran with, so it is not "
            "continued with other ones"
        )
    bootstrap_project(project)
    with KedroSession.create(
        project_path=project, env=env or record.get("env"), runtime_params=recorded
    ) as session:
        session.run(**run_kwargs)


@repro.command("run")
@click.option(
    "--from-run", "from_run", required=True, help="Load every versioned input of this run."
)
@click.option(
    "--pipelines", default="evaluation", show_default=True, help="Comma-separated pipelines."
)
@click.option("--env", default=None, help="Configuration environment (default: the run's).")
@click.pass_obj
def run_from(metadata: Any, from_run: str, pipelines: str, env: str | None) -> None:
    """Run PIPELINES on the data, models and parameters of a past run (e.g. re-evaluate its model)."""
    from kedro.framework.project import pipelines as registry

    project = _project(metadata)
    record = read_record(_runs_dir(project), from_run)
    names = [p.strip() for p in pipelines.split(",") if p.strip()]
    inputs = set().union(*(registry[name].inputs() for name in names))
    versions = load_versions_of(record, inputs)
    click.echo(f"Loading from run {from_run}: {versions}")
    _run_session(project, record, env, pipeline_names=names, load_versions=versions)


@repro.command("resume")
@click.argument("run_id")
@click.option(
    "--force",
    is_flag=True,
    help="Resume a run recorded as running on another host, which this host cannot check.",
)
@click.pass_obj
def resume(metadata: Any, run_id: str, force: bool) -> None:
    """Continue a crashed or killed run from its last completed node and last checkpoint.

    The run continues with exactly the parameters it was started with, whatever conf/ says now.
    A run whose process still runs is refused: resuming it would train a second copy beside it.
    """
    from kedro.framework.project import pipelines as registry

    project = _project(metadata)
    record = read_record(_runs_dir(project), run_id)
    _refuse_a_live_run(record, force)
    pipeline = registry[record["pipelines"][0]]
    for name in record["pipelines"][1:]:
        pipeline = pipeline + registry[name]
    done = load_run(_runs_dir(project), run_id).completed_nodes()
    # A node counts as done only once every output was saved: one killed between two saves runs
    # again, so nothing downstream loads a half-written node's missing output from another run.
    pending = [n.name for n in pipeline.nodes if n.name not in done]
    if not pending:
        raise click.ClickException(f"run {run_id} completed every node; nothing to resume")
    completed_outputs = {o for n in pipeline.nodes if n.name in done for o in n.outputs}
    versions = load_versions_of(record, completed_outputs | (pipeline.inputs() - {"parameters"}))
    versions["training_checkpoints"] = run_id
    click.echo(f"Resuming run {run_id} from node {pending[0]}")
    _run_session(
        project,
        record,
        pipeline_names=record["pipelines"],
        from_nodes=pending,
        load_versions=versions,
    )


def _refuse_a_live_run(record: dict, force: bool) -> None:
    """Stop unless the process that ran ``record`` is gone (or the run ended)."""
    if record["status"] != "running":
        return
    process = record.get("process") or {"host": record["hostname"], "pid": record["pid"]}
    where = f"host {process['host']}, pid {process['pid']}"
    state = run_liveness(record)
    if state == "alive":
        raise click.ClickException(
            f"run {record['run_id']} is still running ({where}, started {record['started_at']}); "
            "resuming it would train a second copy beside it. Wait for it to finish, or stop it "
            f"(kill {process['pid']}) and resume then"
        )
    if state == "unknown" and not force:
        raise click.ClickException(
            f"run {record['run_id']} is recorded as running on another host ({where}); this "
            "host cannot tell whether it still runs. If it does not, resume with --force"
        )


def load_recorded(project: Path, run_id: str, dataset: str) -> Any:
    """``dataset`` as run ``run_id`` of ``project`` saved it."""
    return load_recorded_many(project, run_id, [dataset])[0]


def load_recorded_many(project: Path, run_id: str, datasets: list[str]) -> list[Any]:
    """Each of ``datasets`` as run ``run_id`` of ``project`` saved it, through one session."""
    record = read_record(_runs_dir(project), run_id)
    require_intact(project, run_id, datasets, what="to load")  # bytes first, then the catalog
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=record.get("env")) as session:
        catalog = session.load_context()._get_catalog(load_versions=dict.fromkeys(datasets, run_id))
        return [catalog.load(name) for name in datasets]


def recorded_hypotheses(project: Path, run_id: str, split: str) -> tuple[list[str], list[Any]]:
    """The ``split`` hypotheses of every model a run scored: one, or one per seed of a sweep."""
    ledger = read_record(_runs_dir(project), run_id)["ledger"]
    names = sorted(n for n in ledger if n == "hypotheses" or n.endswith(".hypotheses"))
    if not names:
        raise click.ClickException(f"run {run_id} scored no model (no hypotheses in its ledger)")
    frames = load_recorded_many(project, run_id, names)
    return names, [frame[frame["split"] == split] for frame in frames]


@repro.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--split", default=SUMMARY_SPLIT, show_default=True, help="Split to compare on.")
@click.option("--replicates", default=2000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def compare(
    metadata: Any, run_a: str, run_b: str, split: str, replicates: int, seed: int, as_json: bool
) -> None:
    """Is RUN_B's WER really lower than RUN_A's? A paired bootstrap over speakers.

    Both runs must have scored the same utterances. A seed sweep counts as one configuration:
    its seeds' errors are averaged per utterance, so two sweeps compare configurations.
    """
    project = _project(metadata)
    names_a, a = recorded_hypotheses(project, run_a, split)
    names_b, b = recorded_hypotheses(project, run_b, split)
    try:
        result = paired_speaker_bootstrap(a, b, replicates=replicates, seed=seed)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    result = {"run_a": run_a, "run_b": run_b, "split": split, "models_a": names_a,
              "models_b": names_b, **result}  # fmt: skip
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    level = round(100 * result["level"])
    click.echo(f"A {run_a}: {split} WER {result['wer_a']:.2%} ({len(names_a)} model(s))")
    click.echo(f"B {run_b}: {split} WER {result['wer_b']:.2%} ({len(names_b)} model(s))")
    click.echo(
        f"WER(B) - WER(A) = {result['delta']:+.2%}, {level} % CI "
        f"{format_interval(result, '+.2%')} "
        f"({result['method']}, {result['speakers']} speakers)"
    )
    if result["ci_low"] is None:
        click.echo(
            "no interval over speakers: whether B differs from A beyond speaker noise is unknown"
        )
        return
    verdict = (
        "the difference is within speaker noise (the interval contains 0)"
        if result["equivalent"]
        else f"B is {'better' if result['delta'] < 0 else 'worse'} beyond speaker noise"
    )
    click.echo(f"P(B better than A) = {result['p_improvement']:.3f}: {verdict}")


def _metric_test(
    project: Path, run_id: str, replay_project: Path, replay_id: str
) -> dict[str, Any]:
    """Speaker-level paired bootstrap of the test-split WER difference between run and replay."""
    old = load_recorded(project, run_id, "hypotheses")
    new = load_recorded(replay_project, replay_id, "hypotheses")
    return paired_speaker_bootstrap(
        old[old["split"] == SUMMARY_SPLIT], new[new["split"] == SUMMARY_SPLIT]
    )


def _explain(old: dict, new: dict) -> dict[str, Any]:
    """Differences that can explain a divergence; the code replayed is named by the verdict.

    A replay's copy is no git checkout, so git fields are not compared (they would all differ);
    the lock files it ran with are.
    """
    groups = diff_records(Path("."), old, new)
    groups["code"] = {k: v for k, v in groups["code"].items() if not k.startswith("git")}
    return {k: groups[k] for k in ("parameters", "code", "environment")}


def _current_data(project: Path, record: dict) -> dict[str, str] | None:
    """utterance id -> audio digest of the run's corpus as it is now; None when there is none yet.

    The corpus is looked up with the run's recorded parameters, so a run made with corpus
    overrides (``--params corpus.seed=7``) is checked against its own corpus.
    """
    recorded = {**record["parameters"]["design"], **record["parameters"]["tunable"]}
    bootstrap_project(project)
    with KedroSession.create(
        project_path=project, env=record.get("env"), runtime_params=recorded
    ) as session:
        catalog = session.load_context().catalog
        if not catalog.exists("raw_corpus"):
            return None
        corpus = catalog.load("raw_corpus")
    return dict(zip(corpus["utt_id"], corpus["digest"], strict=True))


@repro.command("verify")
@click.argument("run_id")
@click.option(
    "--require",
    type=click.Choice(GRADES[:-1]),
    default="bitwise",
    show_default=True,
    help="Exit 0 only for this grade or better.",
)
@click.option("--until", default=None, help="Replay only up to this node.")
@click.option(
    "--params",
    "overrides",
    default="",
    help="What-if overrides, e.g. determinism.threads=1 (comma-separated).",
)
@click.option("--rtol", default=1e-5, show_default=True, type=float)
@click.option("--atol", default=1e-6, show_default=True, type=float)
@click.option(
    "--workdir",
    default=None,
    type=click.Path(file_okay=False),
    help="Where to replay: a new or empty folder, kept afterwards (default: a temporary folder).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the temporary replay folder after a successful verify (a failed one is kept).",
)
@click.option(
    "--code",
    type=click.Choice(["recorded", "current"]),
    default="recorded",
    show_default=True,
    help="Replay the run's recorded commit and patch, or today's tree (regression check).",
)
@click.option(
    "--sync-env",
    is_flag=True,
    help="If packages differ from the run's, replay in an env built from its uv.lock (uv sync).",
)
@click.option(
    "--trust-patch",
    is_flag=True,
    help="Apply a dirty-tree patch stored in a bundle that no local seal or signature vouches for.",
)
@click.option("--quiet", is_flag=True, help="Do not show the replay's own output.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def verify_command(
    metadata: Any,
    run_id: str,
    require: str,
    until: str | None,
    overrides: str,
    rtol: float,
    atol: float,
    workdir: str | None,
    code: str,
    sync_env: bool,
    trust_patch: bool,
    keep: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Replay RUN_ID in isolation and grade it: bitwise, tolerance, metric or diverged.

    The run's stored bytes are checked first; the replay runs the recorded code in the recorded
    environment (or refuses, saying what differs) unless --code current is given. The temporary
    replay folder is removed when the verify succeeds (unless --keep) and kept, its path printed,
    when it fails.
    """
    from kedro.framework.project import pipelines as registry

    project = _project(metadata)
    require_intact(project, run_id, what="to verify")
    record = read_record(_runs_dir(project), run_id)
    snapshot = _snapshot(project, run_id)
    try:
        current = _current_data(project, record)
    except Exception as error:  # the corpus itself refuses to load: modified or missing files
        raise click.ClickException(
            f"the data of run {run_id} cannot be read as recorded; not replayed:\n{error}"
        ) from error
    if snapshot and current is not None:
        changes = check_data(snapshot, current)
        if any(changes.values()):
            lines = [
                f"  {kind} ({len(items)}): {', '.join(items[:20])}"
                for kind, items in changes.items()
                if items
            ]
            raise click.ClickException(
                f"the data differs from run {run_id}'s snapshot; not replayed:\n" + "\n".join(lines)
            )
    pipeline = registry[record["pipelines"][0]]
    for name in record["pipelines"][1:]:
        pipeline = pipeline + registry[name]
    if workdir is not None:
        _check_workdir(project, Path(workdir), record.get("env"))
    replay_dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"verify-{run_id}-"))
    try:
        result = _verify(
            project, run_id, pipeline, until, overrides, rtol, atol, replay_dir, code, sync_env,
            trust_patch, quiet,
        )  # fmt: skip
    except (ReplayRefused, ArtifactTamperedError, RecordError):  # refused: nothing was replayed
        if workdir is None:
            shutil.rmtree(replay_dir, ignore_errors=True)
        raise
    except BaseException:
        click.echo(f"replay workdir kept for inspection: {replay_dir}", err=True)
        raise
    if as_json:
        click.echo(to_json(result))
    else:
        _print_verification(result)
    passed = GRADES.index(result.overall) <= GRADES.index(require)
    if passed and workdir is None and not keep:
        shutil.rmtree(replay_dir)
        click.echo(f"replay workdir removed: {replay_dir} (--keep keeps it)", err=True)
    else:
        kept = "kept" if passed else "kept for inspection"
        click.echo(f"replay workdir {kept}: {replay_dir}", err=True)
    if not passed:
        raise SystemExit(1)


def _check_workdir(project: Path, workdir: Path, env: str | None) -> None:
    """A --workdir must be new or empty, and never part of a run bundle."""
    if reason := bundle_owner(project, workdir, env):
        raise click.ClickException(f"not replaying in {workdir}: it is {reason}")
    if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise click.ClickException(
            f"not replaying in {workdir}: it exists and is not an empty folder"
        )


def _verify(
    project: Path,
    run_id: str,
    pipeline: Any,
    until: str | None,
    overrides: str,
    rtol: float,
    atol: float,
    workdir: Path,
    code: str,
    sync_env: bool,
    trust_patch: bool,
    quiet: bool,
) -> Verification:
    """:func:`~speech_repro.repro.verify.verify` with this project's datasets and metric test."""
    return verify(
        project,
        run_id,
        load_recorded=load_recorded,
        node_order=[(n.name, list(n.inputs), list(n.outputs)) for n in pipeline.nodes],
        metric_dataset="metrics",
        metric_test=_metric_test,
        explain=_explain,
        until=until,
        overrides=dict(_parse_override(item) for item in overrides.split(",") if item.strip()),
        rtol=rtol,
        atol=atol,
        workdir=workdir,
        code=code,
        sync_env=sync_env,
        trust_patch=trust_patch,
        progress=None if quiet else (lambda line: click.echo(f"  replay | {line}", err=True)),
    )


def _parse_override(item: str) -> tuple[str, Any]:
    key, _, value = item.partition("=")
    return key.strip(), yaml.safe_load(value)


def _print_verification(result: Verification) -> None:
    click.echo(f"replayed run {result.run_id} as {result.replay_id} in {result.workdir}")
    click.echo(f"  code         {result.code}")
    click.echo(f"  environment  {result.environment}")
    integrity = result.integrity
    click.echo(
        f"  recorded run bytes intact ({integrity['files_checked']} files), record "
        f"{integrity['seal']}, {integrity['signature']}"
    )
    for d in result.datasets:
        diff = "" if d.max_abs_diff in (None, 0.0) else f"  max |diff| {d.max_abs_diff:.3g}"
        click.echo(f"  {d.grade:<10} {d.dataset:<20} ({d.node}){diff}")
    if result.first_divergent_node:
        click.echo(
            f"first divergent node: {result.first_divergent_node} (its inputs matched, its outputs did not)"
        )
    for group, changes in result.explanation.items():
        if group == "environment":
            for part, items in changes.items():
                _print_changes(f"explain/environment/{part}", items)
        elif isinstance(changes, dict):
            _print_changes(f"explain/{group}", changes)
        else:
            click.echo(f"[explain/{group}] {changes}")
    if result.metric_test:
        m = result.metric_test
        click.echo(
            f"test WER {m['wer_a']:.4f} -> {m['wer_b']:.4f} (delta {m['delta']:+.4f}, speaker-bootstrap "
            f"{100 * m['level']:.0f}% CI {format_interval(m, '+.4f')}, {m['speakers']} speakers)"
        )
    click.echo(f"verdict: {result.overall}")


@repro.command("check")
@click.argument("run_ids", nargs=-1)
@click.option(
    "--allowed-signers",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="ssh allowed-signers file (default: git config gpg.ssh.allowedSignersFile).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def check(
    metadata: Any, run_ids: tuple[str, ...], allowed_signers: str | None, as_json: bool
) -> None:
    """Re-hash every stored file of RUN_IDS (default: all runs) against their records.

    Checks each record against the runs log, its signature, every file of its ledger, its data
    snapshot, code snapshot and checkpoints. Exit 1 on any mismatch. Unchanged files cost a
    stat call (digest cache), not a read.
    """
    project = _project(metadata)
    runs_dir = _runs_dir(project)
    signers = Path(allowed_signers) if allowed_signers else default_allowed_signers(project)
    bad = False
    unreadable = []
    if not run_ids:
        found = scan_records(runs_dir)
        unreadable = [r for r in found if isinstance(r, Unreadable)]
        run_ids = tuple(r["run_id"] for r in found if not isinstance(r, Unreadable))
    results = []
    with open_cache(project) as cache:
        for run_id in run_ids:
            results.append(check_run(project, run_id, allowed_signers=signers, cache=cache))
    chain = runlog.verify_chain(runs_dir)
    bad = bool(unreadable or chain or any(r.problems for r in results))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "runs": [r.to_dict() for r in results],
                    "unreadable": [u.model_dump() for u in unreadable],
                    "log_problems": chain,
                },
                indent=1,
            )
        )
    else:
        for r in results:
            signature = r.signature.describe() if r.signature else "unsigned"
            click.echo(
                f"{r.run_id}  {r.verdict.upper():<8} {r.files_checked} files, record {r.seal}, {signature}"
            )
            for problem in r.problems:
                click.echo(f"  {problem.describe()}")
            for note in r.notes:
                click.echo(f"  note: {note}")
        for u in unreadable:
            click.echo(f"unreadable: {u.path}: {u.reason}")
        for problem in chain:
            click.echo(f"runs log: {problem}")
    if bad:
        raise SystemExit(1)


@repro.command("sign")
@click.argument("run_id")
@click.option(
    "--key",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="SSH private key (default: git config user.signingkey).",
)
@click.pass_obj
def sign(metadata: Any, run_id: str, key: str | None) -> None:
    """Sign RUN_ID's record with your SSH key (ssh-keygen -Y sign), after checking its bytes."""
    project = _project(metadata)
    record = load_run(_runs_dir(project), run_id)
    if record.status == "running":
        raise click.ClickException(f"run {run_id} has not finished: its record is not final")
    require_intact(project, run_id, what="to sign")
    signature = sign_file(
        _runs_dir(project) / run_id / RECORD_FILE, Path(key) if key else None, cwd=project
    )
    click.echo(f"signed run {run_id}: {signature}")


def _check_output(project: Path, output: Path, force: bool, env: str | None) -> None:
    """Refuse to write ``output`` where it would change a run's artifacts, or replace a file
    unasked."""
    if reason := bundle_owner(project, output, env):
        # A run's digests would no longer describe its bundle, and it would not reproduce.
        raise click.ClickException(
            f"not writing {output}: it is {reason}; run bundles are never modified (not even "
            "with --force)"
        )
    if output.exists() and not force:
        raise click.ClickException(
            f"{output} exists; not overwriting it (pass --force to replace it)"
        )


def bundle_owner(project: Path, path: Path, env: str | None) -> str | None:
    """What makes ``path`` part of a run bundle, or None: a path under ``data/09_runs/``, a file
    a run's ledger or checkpoints list, a path inside a versioned dataset's folder, or inside an
    unversioned dataset (a split lock, a corpus) that a run's ledger lists."""
    target = path.resolve()
    root = project.resolve()
    if target.is_relative_to(_runs_dir(root)):
        return f"inside the run bundles folder {RUNS_DIR}"
    if not target.is_relative_to(root):
        return None
    relative = target.relative_to(root).as_posix()
    saved: dict[str, str] = {}  # dataset -> a run that saved it
    for record in list_records(_runs_dir(root)):
        for dataset, entry in record["ledger"].items():
            saved.setdefault(dataset, record["run_id"])
            if relative in entry.get("files", {}):
                return f"dataset {dataset} of run {record['run_id']}"
        for dataset, section in (record.get("checkpoints") or {}).items():
            if relative in {f"{section['directory']}/{name}" for name in section["files"]}:
                return f"a checkpoint ({dataset}) of run {record['run_id']}"
    prefixes = [Path(relative), *Path(relative).parents][:-1]  # never '.' (the project)
    for dataset, (location, versioned) in _dataset_locations(root, env).items():
        # A dataset factory's location has placeholders ({seed}): any value matches.
        if not any(fnmatch.fnmatchcase(p.as_posix(), location) for p in prefixes):
            continue
        if versioned:
            return f"inside the folder of versioned dataset {dataset} ({location})"
        if dataset in saved:
            return f"dataset {dataset} ({location}), which run {saved[dataset]} saved"
    return None


def _dataset_locations(project: Path, env: str | None) -> dict[str, tuple[str, bool]]:
    """Catalog entry -> (project-relative file or folder, versioned), ``{x}`` made ``*``."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        conf_source=str(project / "conf"), base_env="base", default_run_env=env or "local"
    )
    locations = {}
    for name, entry in loader["catalog"].items():
        path = (entry.get("filepath") or entry.get("path")) if isinstance(entry, dict) else None
        if isinstance(path, str) and "://" not in path:
            location = Path(path)
            if location.is_absolute() and location.is_relative_to(project):
                location = location.relative_to(project)
            pattern = re.sub(r"\{[^}]*\}", "*", location.as_posix())
            locations[name] = (pattern, bool(entry.get("versioned")))
    return locations


def _export_structure(project: Path, record: dict) -> tuple[NodeIO | None, dict[str, str]]:
    """The recorded pipelines' nodes (name, inputs, outputs) and each catalog entry's path.

    The record holds digests and versions but not which node read what, nor where a dataset is
    stored: both come from the project as it is now (the export checks nodes against the record).
    """
    from kedro.framework.project import pipelines as registry

    try:
        pipeline = registry[record["pipelines"][0]]
        for name in record["pipelines"][1:]:
            pipeline = pipeline + registry[name]
        node_io: NodeIO | None = [(n.name, n.inputs, n.outputs) for n in pipeline.nodes]
    except KeyError:  # a pipeline renamed or removed since the run: export without node inputs
        node_io = None
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=record.get("env")) as session:
        catalog = session.load_context().config_loader["catalog"]
    locations = {}
    for name, entry in catalog.items():
        path = (entry.get("filepath") or entry.get("path")) if isinstance(entry, dict) else None
        if isinstance(path, str) and "{" not in name:  # dataset factories have no single path
            location = Path(path)
            if location.is_absolute() and location.is_relative_to(project.resolve()):
                location = location.relative_to(project.resolve())
            locations[name] = location.as_posix()
    return node_io, locations


@repro.command("export")
@click.argument("run_id")
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["prov-json"]),
    default="prov-json",
    show_default=True,
    help="W3C PROV-JSON (docs/reproducing.md says why this format).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write to this file, atomically (default: standard output).",
)
@click.option(
    "--force", is_flag=True, help="Replace --output if it exists (never a file of a run bundle)."
)
@click.pass_obj
def export(metadata: Any, run_id: str, export_format: str, output: str | None, force: bool) -> None:
    """The provenance of RUN_ID in a standard format, readable without this project."""
    project = _project(metadata)
    runs_dir = _runs_dir(project)
    record = read_record(runs_dir, run_id)
    if output:
        _check_output(project, Path(output), force, record.get("env"))
    node_io, locations = _export_structure(project, record)
    text = dumps(to_prov_json(record, runs_dir / run_id, node_io=node_io, locations=locations))
    if output:
        atomic_write_bytes(output, text.encode())
        click.echo(f"wrote {export_format} provenance of run {run_id} to {output}", err=True)
    else:
        click.echo(text, nl=False)
