"""Segment verification: replay a few checkpoint intervals of a training instead of all of it.

A run's checkpoint store records every checkpoint it wrote (step, epoch, file and content
digests, kept or pruned: :class:`~kedro_repro.record.CheckpointSection`). The intervals between
consecutive epoch-end checkpoints (from step 0 to the first) are the run's *segments*.
:func:`verify_segments` replays ``K`` of them, the first and the last always and the rest drawn
with a seed it reports, each in a fresh process from its recorded first checkpoint, and
requires the state written at its last step to be the recorded one bit for bit (content digest:
weights, optimizer, scheduler, RNG states, sampler position, log). Nothing upstream is
recomputed: the run's stored bytes are re-hashed against its record first, and the training
node reads the datasets the run saved. The evaluation is replayed from the recorded final
model and graded like :func:`kedro_repro.verify.verify` grades datasets.

How to train one interval is the project's: :attr:`ReproConfig.train_segment
<kedro_repro.config.ReproConfig.train_segment>`. Run as ``python -m kedro_repro.segments PLAN``
this module is the process that replays the segments (:func:`_host`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kedro_repro.checkpoints import single_checkpoint_store, state_digest
from kedro_repro.config import ReproConfig
from kedro_repro.integrity import ArtifactTamperedError, check_run, require_intact
from kedro_repro.record import RUNS_DIR, CheckpointEntry, RunOptions, RunRecord, load_run
from kedro_repro.rerun import compose_pipelines, load_versions_of
from kedro_repro.verify import (
    ReplayRefused,
    link_pinned_inputs,
    package_differences,
    prepare_workdir,
    recorded_environment,
    replay_command,
    replayed_run_id,
    restored_import_paths,
)

VERDICTS = ["bitwise", "uncheckable", "diverged", "failed", "tampered"]
"""Per segment, best first: reproduced; cannot be checked (a checkpoint was pruned); replayed
to another state; the replay itself failed; a recorded checkpoint's bytes are not the recorded
ones (not replayed)."""
EVALUATION_TASK = "evaluation"
"""The segment host's name for the evaluation replay in what it prints (segments: their index)."""
OVERALL = {"uncheckable": "incomplete"}
"""The overall verdict is the worst segment's, except that uncheckable segments make it
``incomplete``."""


@dataclass
class Segment:
    """One checkpoint interval: from the state after ``start_step`` to ``end_step``."""

    index: int
    start: str | None
    """The checkpoint file the replay starts from (None: the first segment, from step 0)."""
    start_step: int
    end: str
    end_step: int
    epoch: int | None
    """The epoch the segment's last checkpoint ends."""
    verdict: str = "not replayed"
    detail: str = ""
    seconds: float | None = None

    def label(self) -> str:
        """``steps 10-20`` as the table prints it."""
        return f"steps {self.start_step}-{self.end_step}"


@dataclass
class SegmentVerification:
    """The outcome of :func:`verify_segments`."""

    run_id: str
    seed: int
    segments_total: int
    chosen: list[int]
    segments: list[Segment]
    """The chosen segments, each with its verdict."""
    uncheckable: list[Segment]
    """Every segment of the run that cannot be checked, chosen or not."""
    checkpoint_problems: list[str]
    evaluation: list[dict[str, Any]] = field(default_factory=list)
    evaluation_verdict: str = "not replayed"
    overall: str = "bitwise"
    policy: dict[str, Any] | None = None
    workers: int = 1
    workdir: str = ""
    code: str = ""
    environment: str = ""
    integrity: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    """What-if parameter overrides the segments were replayed with (``--params``)."""
    bisection: Any = None
    """The :class:`~kedro_repro.bisect.Bisection` of the first diverged segment (``--bisect``)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class SegmentsUnavailable(RuntimeError):
    """The run cannot be verified by segments; the message says why."""


def plan_segments(record: RunRecord, dataset: str) -> list[Segment]:
    """The run's segments from its checkpoint history, in order, with what makes one uncheckable.

    Boundaries are the checkpoints that end an epoch, and the last checkpoint (a run that
    stopped early ends inside an epoch); without any epoch marks, every checkpoint. A retention
    policy that keeps every N-th epoch end makes those the boundaries (segments of N epochs);
    a segment whose first or last checkpoint was pruned is ``uncheckable``.
    """
    section = record.checkpoints.get(dataset)
    if section is None or not section.history:
        raise SegmentsUnavailable(
            f"run {record.run_id} recorded no checkpoint history for {dataset} (it ran no "
            "training, or was recorded before checkpoint histories were): nothing to segment"
        )
    history = sorted(section.history.items(), key=lambda item: item[1].step)
    marked = any(entry.epoch is not None for _, entry in history)
    every = (section.policy.keep_every_epochs if section.policy else None) or 1

    def boundary(entry: CheckpointEntry) -> bool:
        return not marked or (entry.epoch is not None and (entry.epoch + 1) % every == 0)

    boundaries = [
        (name, entry)
        for i, (name, entry) in enumerate(history)
        if boundary(entry) or i == len(history) - 1
    ]
    segments: list[Segment] = []
    previous: tuple[str, CheckpointEntry] | None = None
    for index, (name, entry) in enumerate(boundaries):
        segment = Segment(
            index=index,
            start=previous[0] if previous else None,
            start_step=previous[1].step if previous else 0,
            end=name,
            end_step=entry.step,
            epoch=entry.epoch,
        )
        pruned = [
            n
            for n, e in ((segment.start, previous and previous[1]), (name, entry))
            if e and not e.kept
        ]
        if pruned:
            segment.verdict = "uncheckable"
            segment.detail = f"{' and '.join(pruned)} pruned (retention {_policy(record, dataset)})"
        segments.append(segment)
        previous = (name, entry)
    return segments


def choose_segments(total: int, count: int, seed: int) -> list[int]:
    """``count`` segment indices of ``total``: the first and the last, the rest drawn uniformly
    with ``seed`` (the same seed and total always choose the same)."""
    if count < 1:
        raise ValueError("--segments must be at least 1")
    if count >= total:
        return list(range(total))
    if count == 1:
        return [total - 1]
    middle = random.Random(seed).sample(range(1, total - 1), count - 2)
    return sorted({0, total - 1, *middle})


def default_workers(
    record: RunRecord, config: ReproConfig, overrides: dict[str, Any] | None = None
) -> int:
    """Cores divided by the torch threads each replay uses (the run's determinism threads, or
    the ``overrides``' ones)."""
    section = {**record.parameters.design, **record.parameters.tunable}.get(
        config.determinism_section or "", {}
    )
    threads = section.get("threads", 1) if isinstance(section, dict) else 1
    threads = (overrides or {}).get(f"{config.determinism_section}.threads", threads)
    return max(1, (os.cpu_count() or 1) // max(1, int(threads)))


def verify_segments(
    project: Path,
    run_id: str,
    count: int,
    *,
    config: ReproConfig,
    workers: int | None = None,
    seed: int | None = None,
    workdir: Path | None = None,
    code: str = "recorded",
    sync_env: bool = False,
    trust_patch: bool = False,
    overrides: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> SegmentVerification:
    """Replay ``count`` segments of ``run_id`` and its evaluation; grade each (module docstring).

    Bytes first: a problem with any stored file of the run other than its checkpoints stops
    everything (:class:`~kedro_repro.integrity.ArtifactTamperedError`); a tampered checkpoint
    makes the segments that start or end at it ``tampered`` (named, not replayed).
    ``overrides`` (dotted parameter names) replay the segments and the evaluation under other
    settings: a what-if, as ``verify --params`` is for a full replay.
    """
    project = Path(project)
    if config.train_segment is None or config.resume_dataset is None:
        raise SegmentsUnavailable(
            "this project declares no train_segment (settings.REPRO): segments cannot be replayed"
        )
    record = load_run(project / RUNS_DIR, run_id)
    if record.status != "complete":
        raise SegmentsUnavailable(
            f"run {run_id} is {record.status}, not complete: it has no final checkpoint and model "
            f"to verify against (kedro repro resume {run_id} finishes it)"
        )
    dataset = config.resume_dataset
    segments = plan_segments(record, dataset)
    seed = secrets.randbelow(2**31) if seed is None else seed
    chosen = choose_segments(len(segments), count, seed)
    workers = workers or default_workers(record, config, overrides)
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"segments-{run_id}-"))
    code_described, catalog = prepare_workdir(
        project, record, workdir, config.data_dirs, dict(overrides or {}), code=code,
        trust_patch=trust_patch,
    )  # fmt: skip
    if code == "recorded":
        python, environment = recorded_environment(
            project, record, workdir, sync_env, cache_name=config.name
        )
    else:
        python = sys.executable
        differing = package_differences(record.environment.packages, _installed())
        environment = f"this interpreter ({sys.executable}), " + (
            f"{len(differing)} package(s) differ from the run's" if differing else "packages as recorded"
        )  # fmt: skip
    folder = workdir / "segments"
    folder.mkdir(parents=True, exist_ok=True)
    plan_file = folder / "plan.json"
    plan: dict[str, Any] = {
        "run_id": run_id,
        "env": record.env,
        "pipelines": record.pipelines,
        "evaluation_pipelines": list(config.rerun_pipelines),
        "dataset": dataset,
        "workers": workers,
    }
    plan_file.write_text(json.dumps(plan, indent=1))
    # The host starts now, in the replayed code, and reads the pipelines while this process
    # checks the run's bytes; it loads nothing of the run before the plan is complete ("go").
    with open(folder / "host.log", "w") as host_log:
        host = subprocess.Popen(
            [python, "-m", "kedro_repro.segments", str(plan_file)],
            cwd=workdir, env=_host_variables(project, workdir), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=host_log, text=True,
        )  # fmt: skip
    assert host.stdin is not None and host.stdout is not None
    try:
        check = check_run(project, run_id)
        own = f"checkpoints:{dataset}"
        if [p for p in check.problems if p.item != own]:
            require_intact(project, run_id, what="to verify")  # raises with every problem named
        for source in sorted({v for v in record.load_versions.values()}):
            require_intact(project, source, what="to verify a run that loaded")
        tampered = {Path(p.path).name: p.describe() for p in check.problems if p.item == own}
        for segment in segments:
            bad = [tampered[n] for n in (segment.start, segment.end) if n in tampered]
            if bad and segment.verdict != "uncheckable":
                segment.verdict, segment.detail = "tampered", "; ".join(bad)
        result = SegmentVerification(
            run_id=run_id,
            seed=seed,
            segments_total=len(segments),
            chosen=chosen,
            segments=[segments[i] for i in chosen],
            uncheckable=[s for s in segments if s.verdict == "uncheckable"],
            checkpoint_problems=sorted(tampered.values()),
            policy=_policy_dict(record, dataset),
            workers=workers,
            workdir=str(workdir),
            code=code_described,
            environment=environment,
            overrides=dict(overrides or {}),
            integrity={
                "seal": check.seal,
                "signature": check.signature.describe() if check.signature else "unsigned",
                "files_checked": check.files_checked,
            },
        )
        structure = _read_structure(host, folder / "host.log", run_id, dataset)
        evaluation_record = _complete_plan(
            plan, structure, project, record, workdir, catalog, result.segments, python
        )
        plan_file.write_text(json.dumps(plan, indent=1))  # also to rerun the replays by hand
        host.stdin.write("go\n")
        host.stdin.close()
    except BaseException:
        host.kill()
        host.wait()
        raise
    by_index = {
        segment.index: segment for segment in result.segments if segment.verdict == "not replayed"
    }
    section = record.checkpoints[dataset]

    def grade(segment: Segment, returncode: int, seconds: float, failure: str) -> None:
        segment_folder = folder / f"{segment.index:05d}"
        segment.seconds = round(seconds, 2)
        replayed = segment_folder / "replayed" / segment.end
        if returncode != 0 or not replayed.is_file():
            log = segment_folder / "worker.log"
            lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
            segment.verdict = "failed"
            segment.detail = f"the replay failed ({log}): {(lines[-1:] or [failure])[0][:300]}"
        else:
            _grade(segment, section.history[segment.end], replayed, project / section.directory)
        if progress is not None:
            progress(f"segment {segment.index} ({segment.label()}): {segment.verdict}")

    def grade_evaluation(returncode: int, failure: str) -> None:
        replay_id = replayed_run_id(workdir, evaluation_record)
        if replay_id is None:
            log = Path(plan["evaluation"]["log"])
            tail = log.read_text(errors="replace")[-600:] if log.is_file() else failure
            result.evaluation_verdict = "failed"
            result.evaluation = [
                {"dataset": "(replay)", "grade": "failed", "detail": f"exit {returncode}: {tail}"}
            ]
        else:
            _grade_evaluation(result, project, record, workdir, replay_id, config)
        if progress is not None:
            progress(f"evaluation from the recorded model: {result.evaluation_verdict}")

    evaluated = False
    for line in host.stdout:  # "<task> <returncode> <seconds>" as each one ends
        task, returncode, seconds = line.split()
        if task == EVALUATION_TASK:
            grade_evaluation(int(returncode), "")
            evaluated = True
        else:
            grade(by_index.pop(int(task)), int(returncode), float(seconds), "")
    host.wait()
    failure = f"segment host: {_last_line(folder / 'host.log') or f'exit {host.returncode}'}"
    for segment in list(by_index.values()):  # the host failed before replaying them
        grade(segment, host.returncode or 1, 0.0, failure)
    if not evaluated:
        grade_evaluation(host.returncode or 1, failure)
    verdicts = [s.verdict for s in result.segments]
    verdicts.append("bitwise" if result.evaluation_verdict == "bitwise" else "diverged")
    if result.checkpoint_problems:
        verdicts.append("tampered")
    worst = max(verdicts, key=VERDICTS.index)
    result.overall = OVERALL.get(worst, worst)
    return result


def _host_variables(project: Path, workdir: Path) -> dict[str, str]:
    """The segment host's environment: imports resolve to the replayed code in ``workdir``."""
    variables = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    variables.pop("KEDRO_REPRO_RUN", None)  # it chooses what notebooks show; runs refuse it
    variables["PYTHONPATH"] = os.pathsep.join(
        [*restored_import_paths(project, workdir, sys.path), *filter(None, [os.environ.get("PYTHONPATH")])]
    )  # fmt: skip
    return variables


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
    return lines[-1] if lines else ""


def _read_structure(host: subprocess.Popen, log: Path, run_id: str, dataset: str) -> dict[str, Any]:
    """The host's first line: the training node and evaluation inputs of the replayed code's
    pipelines (``structure {...}``)."""
    assert host.stdout is not None
    kind, _, payload = host.stdout.readline().partition(" ")
    if kind != "structure":
        host.wait()
        raise SegmentsUnavailable(
            f"the segment host stopped before reading run {run_id}'s pipelines (exit "
            f"{host.returncode}): {_last_line(log) or 'no output'}. A run whose recorded code "
            "predates the host reading the pipelines itself replays its segments with "
            "--code current"
        )
    structure = json.loads(payload)
    trainers = structure["trainers"]
    if len(trainers) != 1:
        raise SegmentsUnavailable(
            f"run {run_id}'s pipelines have {len(trainers)} nodes reading {dataset} "
            "(a sweep trains in namespaces): segment verification replays runs with one training "
            "node"
        )
    return structure


def _complete_plan(
    plan: dict[str, Any],
    structure: dict[str, Any],
    project: Path,
    record: RunRecord,
    workdir: Path,
    catalog: dict[str, Any],
    chosen: list[Segment],
    python: str,
) -> RunRecord:
    """Add to ``plan`` what the host needs to replay: the training node's input versions and
    digests, the evaluation's replay command, a checkpoint store per chosen segment; link the
    run's stored files into ``workdir``. Returns the record the evaluation replays."""
    (trainer,) = structure["trainers"]
    dataset = plan["dataset"]
    evaluation_inputs = set(structure["evaluation_inputs"])
    upstream = (set(trainer["inputs"]) | evaluation_inputs) - {dataset, "parameters"}
    upstream = {name for name in upstream if not name.startswith("params:")}
    versions = load_versions_of(record, upstream)
    pinned = {n: v for n, v in versions.items() if n in evaluation_inputs}
    evaluation_record = record.model_copy(
        update={
            "pipelines": plan["evaluation_pipelines"],
            "run_options": RunOptions(),
            "load_versions": {**record.load_versions, **pinned},
        }
    )
    extra = {n: v for n, v in pinned.items() if record.load_versions.get(n) != v}
    if extra:
        link_pinned_inputs(
            project, record.model_copy(update={"load_versions": extra, "inputs": {}}), workdir, catalog
        )  # fmt: skip
    _link_recorded_files(project, workdir, record, upstream, catalog)
    folder = workdir / "segments"
    plan["node"] = trainer["name"]
    plan["versions"] = {n: versions.get(n) for n in trainer["inputs"] if n in upstream}
    # Datasets without stored files to re-hash: checked by content once loaded.
    plan["digests"] = {
        n: record.ledger[n].digest
        for n in trainer["inputs"]
        if n in upstream and n in record.ledger and not record.ledger[n].files
    }
    # The recorded evaluation, as `kedro run` would replay it, run by the host first.
    plan["evaluation"] = {
        "args": replay_command(evaluation_record, None, python)[3:],
        "log": str(folder / "evaluation.log"),
    }
    section = record.checkpoints[dataset]
    plan["segments"] = []
    for segment in chosen:
        if segment.verdict != "not replayed":
            continue
        segment_folder = folder / f"{segment.index:05d}"
        segment_folder.mkdir(parents=True, exist_ok=True)
        start = None
        if segment.start is not None:
            entry = section.history[segment.start]
            start = single_checkpoint_store(
                segment_folder / "start",
                project / section.directory / segment.start,
                {"step": entry.step, "digest": entry.digest, "bytes": entry.bytes},
            )
        plan["segments"].append(
            {
                "index": segment.index,
                "start": str(start) if start else None,
                "stop_step": segment.end_step,
                "folder": str(segment_folder),
            }
        )
    return evaluation_record


def _installed() -> dict[str, str]:
    from kedro_repro.environment import installed_packages

    return installed_packages()


def _policy_dict(record: RunRecord, dataset: str) -> dict[str, Any] | None:
    policy = record.checkpoints[dataset].policy
    return policy.model_dump() if policy is not None else None


def _policy(record: RunRecord, dataset: str) -> str:
    policy = _policy_dict(record, dataset)
    if policy is None:
        return "not recorded"
    return ", ".join(f"{k} {v}" for k, v in policy.items())


def _link_recorded_files(
    project: Path, workdir: Path, record: RunRecord, datasets: set[str], catalog: dict[str, Any]
) -> None:
    """Hard-link every stored file of ``datasets`` (the run's own, by its ledger) into
    ``workdir`` where the replay's catalog finds it, unless it is there already. A dataset the
    ledger lists no files for (an unversioned table) is linked from its catalog ``filepath``;
    the worker checks its content digest against the ledger after loading it."""
    for name in sorted(datasets):
        entry = record.ledger.get(name)
        paths = list(entry.files) if entry is not None else []
        config = catalog.get(name)
        filepath = config.get("filepath") if isinstance(config, dict) else None
        if not paths and isinstance(filepath, str) and not Path(filepath).is_absolute():
            paths = [filepath] if (project / filepath).is_file() else []
        for path in paths:
            target = workdir / path
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(project / path, target)
            except OSError:
                shutil.copy2(project / path, target)


def _grade(segment: Segment, recorded: CheckpointEntry, replayed: Path, directory: Path) -> None:
    """Bitwise when the replayed state's content digest is the recorded one; else say which
    parts of the state differ."""
    actual = state_digest(replayed)
    if recorded.state is None:
        segment.verdict = "uncheckable"
        segment.detail = "the record holds no content digest for it (written before they were)"
    elif actual == recorded.state:
        segment.verdict, segment.detail = "bitwise", f"state {recorded.state[:19]}"
    else:
        segment.verdict = "diverged"
        parts = (
            _differing_parts(directory / segment.end, replayed)
            if (directory / segment.end).is_file()
            else []
        )
        segment.detail = (
            f"state {actual[:19]}, recorded {recorded.state[:19]}"
            + (f"; differs in {', '.join(parts)}" if parts else "")
        )  # fmt: skip


def _differing_parts(recorded: Path, replayed: Path) -> list[str]:
    """The top-level parts of two saved states that differ (``model (max |diff| 1e-07)``)."""
    import torch

    from kedro_repro.state import flatten_state, load_state

    a, b = load_state(recorded), load_state(replayed)
    if not isinstance(a, dict) or not isinstance(b, dict):
        return ["(whole state)"]
    parts = []
    for key in sorted(a.keys() | b.keys(), key=str):
        if key not in a or key not in b:
            parts.append(f"{key} (only in one)")
            continue
        (ta, sa), (tb, sb) = flatten_state(a[key]), flatten_state(b[key])
        if ta.keys() != tb.keys() or any(ta[k].shape != tb[k].shape for k in ta):
            parts.append(f"{key} (structure)")
            continue
        unequal = [k for k in ta if not torch.equal(ta[k], tb[k])]
        if unequal:
            worst = max(
                float((ta[k].double() - tb[k].double()).abs().max()) if ta[k].is_floating_point() else float("nan")
                for k in unequal
            )  # fmt: skip
            parts.append(f"{key} (max |diff| {worst:.3g})")
        elif sa != sb:
            parts.append(str(key))
    return parts


def _grade_evaluation(
    result: SegmentVerification,
    project: Path,
    record: RunRecord,
    workdir: Path,
    replay_id: str,
    config: ReproConfig,
) -> None:
    """Each dataset the evaluation replay saved, bitwise against the run's, as ``verify`` does;
    on a divergence of the metric dataset the project's metric test decides ``metric``."""
    new = load_run(workdir / RUNS_DIR, replay_id)
    if new.status != "complete":
        result.evaluation_verdict = "failed"
        result.evaluation = [{"dataset": "(replay)", "grade": "failed", "detail": new.error or ""}]
        return
    graded = []
    for name, entry in new.ledger.items():
        recorded = record.ledger.get(name)
        if recorded is not None:
            same = recorded.digest == entry.digest
            graded.append(
                {"dataset": name, "node": entry.node, "grade": "bitwise" if same else "diverged"}
            )
    result.evaluation = graded
    diverged = [g for g in graded if g["grade"] != "bitwise"]
    result.evaluation_verdict = "bitwise" if graded and not diverged else "diverged"
    test = config.metric_test
    if diverged and test is not None and config.metric_dataset in {g["dataset"] for g in diverged}:
        from kedro_repro.rerun import load_recorded

        verdict = test.equivalent(
            load_recorded(project, record.run_id, test.dataset),
            load_recorded(workdir, replay_id, test.dataset),
        )
        result.evaluation.append(
            {"dataset": test.dataset, "grade": "metric test", "detail": verdict}
        )
        if verdict.get("equivalent"):
            result.evaluation_verdict = "metric"


def to_json(verification: SegmentVerification) -> str:
    """The verification as JSON."""
    return json.dumps(verification.to_dict(), indent=1, default=str)


def _host(plan_file: Path) -> None:
    """Replay the plan's segments: load the training node's inputs once, as the run saved them,
    then fork one fresh child per segment (``workers`` at a time), each training from its own
    recorded checkpoint with the project's ``train_segment``.

    Why fork: importing torch, Kedro and the project and loading the inputs costs a new Python
    process several seconds, as much as a segment's training; the children start from a parent
    that has done only that, no training computation, so nothing passes from one segment to
    another but the bytes every one of them loads alike. Prints ``<index> <returncode>
    <seconds>`` as each child ends.

    A plan without ``segments`` is the verifier's first half: the host prints the structure of
    the replayed code's pipelines (:func:`_structure`), starts the session, and waits for
    ``go`` on stdin before it re-reads the completed plan and loads anything of the run. A
    complete plan (``segments/plan.json`` after a verify) replays at once, by hand.
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from kedro_repro.config import project_config
    from kedro_repro.ledger import content_digest
    from kedro_repro.params import as_type, section_type

    project = Path.cwd()
    bootstrap_project(project)
    config = project_config()
    assert config.train_segment is not None
    plan = json.loads(plan_file.read_text())
    handshake = "segments" not in plan
    if handshake:
        structure = _structure(plan)
        print("structure", json.dumps(structure), flush=True)
        if len(structure["trainers"]) != 1:
            return  # the verifier says why it stops
    with KedroSession.create(project_path=project, env=plan["env"]) as session:
        catalog = session.load_context().catalog
        if config.determinism_section:
            params = catalog.load("parameters")
            if config.determinism_section in params:
                from kedro_repro.determinism import DeterminismPolicy, apply_policy

                apply_policy(as_type(DeterminismPolicy, params[config.determinism_section]))
        if config.segment_warmup is not None:
            config.segment_warmup()
        if handshake:
            if sys.stdin.readline().strip() != "go":
                return  # the verifier stopped (a refusal, a tampered file): nothing to replay
            plan = json.loads(plan_file.read_text())
        node = next(n for n in compose_pipelines(plan["pipelines"]).nodes if n.name == plan["node"])
        inputs: dict[str, Any] = {}
        for name in node.inputs:
            if name == plan["dataset"]:
                continue
            if name.startswith("params:"):
                value = catalog.load(name)
                kind = section_type(config.parameter_schema, name.removeprefix("params:"))
                inputs[name] = as_type(kind, value) if kind is not None else value
            else:
                inputs[name] = catalog.load(name, version=plan["versions"].get(name))
                expected = plan["digests"].get(name)
                if expected and (actual := content_digest(inputs[name], project)) != expected:
                    raise ArtifactTamperedError(
                        f"{name} is not what run {plan['run_id']} recorded (content {actual}, "
                        f"recorded {expected}); not replayed"
                    )
    sys.stdout.flush()
    sys.stderr.flush()
    running: dict[int, tuple[str, float]] = {}  # pid -> (task, start time)
    # The evaluation first: it is one `kedro run`, the segments wait for nothing but a slot.
    pending: list[tuple[str, Callable[[], int]]] = []
    if plan.get("evaluation"):
        pending.append((EVALUATION_TASK, lambda: _evaluate(plan["evaluation"])))
    for task in plan["segments"]:
        pending.append(
            (
                str(task["index"]),
                lambda task=task: _replay_one(config, inputs, plan["dataset"], task),
            )
        )
    while pending or running:
        while pending and len(running) < plan["workers"]:
            name, work = pending.pop(0)
            pid = os.fork()
            if pid == 0:  # the child: one task, then exit without running the parent's cleanup
                os._exit(work())
            running[pid] = (name, time.perf_counter())
        pid, status = os.wait()
        name, started = running.pop(pid)
        print(name, os.waitstatus_to_exitcode(status), time.perf_counter() - started, flush=True)


def _structure(plan: dict[str, Any]) -> dict[str, Any]:
    """What the verifier needs of the replayed code's pipelines: the nodes that train (read
    the plan's checkpoint dataset), with their inputs, and the evaluation pipelines' inputs."""
    trainers = [
        {"name": n.name, "inputs": list(n.inputs)}
        for n in compose_pipelines(plan["pipelines"]).nodes
        if plan["dataset"] in n.inputs
    ]
    evaluation = compose_pipelines(plan["evaluation_pipelines"])
    return {"trainers": trainers, "evaluation_inputs": sorted(evaluation.inputs())}


def _evaluate(evaluation: dict[str, Any]) -> int:
    """In a forked child: ``kedro <args>`` (the recorded evaluation's replay), in this process,
    which has imported everything it needs; output to the plan's evaluation log; exit code."""
    from kedro.framework.cli import main as kedro

    _output_to(Path(evaluation["log"]))
    sys.argv = ["kedro", *evaluation["args"]]
    try:
        kedro()
    except SystemExit as stop:
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


def _output_to(log: Path) -> None:
    """Send this process's stdout and stderr to ``log``."""
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)


def _replay_one(
    config: ReproConfig, inputs: dict[str, Any], dataset: str, task: dict[str, Any]
) -> int:
    """In a forked child: train one segment, output to its folder's ``worker.log``; exit code."""
    import traceback

    from kedro_repro.checkpoints import CheckpointStore

    folder = Path(task["folder"])
    _output_to(folder / "worker.log")
    try:
        checkpoints = CheckpointStore(folder / "replayed", resume_from=task["start"])
        config.train_segment({**inputs, dataset: checkpoints}, task["stop_step"])
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    try:
        _host(Path(sys.argv[1]))
    except (ReplayRefused, ArtifactTamperedError) as error:
        sys.exit(str(error))
    # Every result is printed: ending here skips the interpreter's teardown of torch and Kedro
    # (about a second that the verifier, waiting for the host's exit, would pay).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
