"""Step-level bisection of a diverged replay: the interval, the optimizer step, the module.

After ``kedro repro verify`` found that a replay does not reproduce a run, :func:`bisect` narrows
it down in three stages:

1. **Checkpoint interval.** The replay's checkpoints are compared with the recorded ones by
   digest; where the run pruned its checkpoints, the project's per-step trace (a dataset with one
   row per optimizer step, e.g. a training log) dates the first divergent step instead.
2. **Optimizer step.** The training is replayed from the recorded checkpoint at the interval's
   start (or from scratch) up to the first step whose logged values differ (the interval's end
   without a trace) twice, in two fresh processes: once under the run's recorded parameters
   (the *reference*) and once with the replay's overrides (the *candidate*). Each records, per
   step, the logged values, a digest of every parameter after the step, and a digest of every
   module's forward output, of the gradient reaching that output and of every parameter's
   gradient, in execution order (:class:`StepProbe`). The reference must reproduce the recorded
   trace (and checkpoint, where it ends on one), which shows that the probe changes nothing;
   the first step where the two processes differ is the first divergent step.
3. **Module.** The tensors of that step, dumped by both processes (by the same replays when
   they span at most :data:`DUMP_ALL_STEPS` steps, otherwise by a second pair), compared in
   execution order, the first module whose output or gradient differs is named, with the
   largest absolute difference of each.

Nothing here knows the project: :class:`~kedro_repro.config.StepReplay` in its
:class:`~kedro_repro.config.ReproConfig` says which datasets a training reads and how to run it
from a checkpoint store with a probe, and the hooks work on any ``torch.nn.Module``.
:func:`replay_segment` is the one boundary to the replay of a checkpoint interval in a fresh
process (``python -m kedro_repro.bisect REQUEST``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kedro_repro.record import RUNS_DIR, RunRecord, load_run

_CHECKPOINT = re.compile(r"^step-(\d{9})\.safetensors$")

DUMP_ALL_STEPS = 8
"""Step replays this short keep every step's tensors: the module comes without replaying again."""


# --- in the replaying process: the probe the training loop calls ---------------------------------


class StepProbe:
    """What a training loop calls around each optimizer step of a bisection replay.

    ``with probe.step(n, module): <one optimizer step>`` hooks ``module`` and all its submodules
    for that step: forward outputs, the gradients reaching them and every parameter's gradient
    (when accumulated, before any clipping) are digested in the order they happen, and the
    parameters after the step. At each of ``dump_steps`` the tensors themselves are kept too.
    :meth:`finished` tells the loop to stop after ``stop`` steps. Hooks only read tensors, so a
    step computes the same bits with or without the probe.
    """

    def __init__(self, stop: int, dump_steps: tuple[int, ...] = (), watch: bool = True):
        self.stop = stop
        self.dump_steps = set(dump_steps)
        self.watch = watch
        """False: no hooks, the probe only stops the loop (to measure what the hooks cost)."""
        self.trace: dict[int, dict[str, Any]] = {}
        self.dumped: dict[str, Any] = {}

    def finished(self, step: int) -> bool:
        """Whether the loop should stop after ``step`` optimizer steps."""
        return step >= self.stop

    @contextlib.contextmanager
    def step(self, number: int, module: Any) -> Iterator[None]:
        """Hook ``module`` for the optimizer step ``number`` (1-based) run inside the block."""
        from kedro_repro.hashing import tensors_digest

        if not self.watch:
            yield
            return
        events: list[tuple[str, str, str]] = []
        dump = number in self.dump_steps
        handles: list[Any] = []
        names = {id(m): name or "(root)" for name, m in module.named_modules()}

        def keep(kind: str, name: str, tensors: dict[str, Any]) -> None:
            if dump:
                for key, tensor in tensors.items():
                    label = f"{number:09d}|{len(events):05d}|{kind}|{name}|{key}"
                    self.dumped[label] = tensor.detach().clone().contiguous().cpu()
            events.append((kind, name, tensors_digest(tensors)))

        def on_forward(mod: Any, args: Any, output: Any) -> None:
            name = names[id(mod)]
            tensors = _tensors(output)
            keep("output", name, tensors)
            for key, tensor in tensors.items():
                if tensor.requires_grad:
                    tensor.register_hook(
                        lambda grad, key=key, name=name: keep("output_grad", name, {key: grad})
                    )

        for _, submodule in module.named_modules():
            handles.append(submodule.register_forward_hook(on_forward))
        for pname, parameter in module.named_parameters():
            if parameter.requires_grad:
                owner, _, leaf = pname.rpartition(".")
                handles.append(
                    parameter.register_post_accumulate_grad_hook(
                        lambda p, owner=owner or "(root)", leaf=leaf: keep(
                            "param_grad", owner, {leaf: p.grad}
                        )
                    )
                )
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        self.trace[number] = {
            "parameters": tensors_digest(dict(module.named_parameters())),
            "events": [list(e) for e in events],
        }


def _tensors(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every tensor in a module's output (tuples, lists, packed sequences, dicts), by position."""
    import torch

    if isinstance(value, torch.Tensor):
        return {prefix or "0": value}
    found: dict[str, Any] = {}
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, tuple | list):
        items = list(enumerate(value))
    else:
        return found
    for key, item in items:
        found |= _tensors(item, f"{prefix}.{key}" if prefix else str(key))
    return found


# --- the boundary: replay one checkpoint interval in a fresh process -----------------------------


@dataclass(frozen=True)
class SegmentRequest:
    """One replay of a run's training from its checkpoint at ``start`` (0: from scratch) to
    step ``stop``, in a fresh process (:func:`replay_segment`)."""

    project: str
    run_id: str
    start: int
    stop: int
    out: str
    """A folder the process writes ``trace.json`` (and ``dump.safetensors``) into."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Dotted parameter overrides on top of the recorded values (``determinism.threads``)."""
    dump_steps: list[int] = field(default_factory=list)
    """Steps whose tensors are written to ``dump.safetensors``."""
    watch: bool = True
    """False: replay without hooks (only to measure what they cost)."""


def replay_segment(
    request: SegmentRequest, python: str = sys.executable, import_paths: list[str] = ()
) -> subprocess.Popen:
    """Start ``request`` in a fresh process; ``import_paths`` go first on its ``PYTHONPATH`` (the
    replayed code's own packages, :func:`~kedro_repro.verify.restored_import_paths`)."""
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "request.json").write_text(json.dumps(asdict(request)))
    variables = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    variables["PYTHONPATH"] = os.pathsep.join(
        [*import_paths, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return subprocess.Popen(
        [python, "-m", "kedro_repro.bisect", str(out / "request.json")],
        cwd=request.project,
        env=variables,
        stdin=subprocess.DEVNULL,
        stdout=open(out / "output.log", "w"),  # the child owns it
        stderr=subprocess.STDOUT,
    )


def _run_request(request: SegmentRequest) -> None:
    """The body of the fresh process: load the run's inputs, apply its determinism policy (with
    the overrides), continue from the checkpoint, train to ``stop`` with a probe, write the trace.
    """
    from kedro.framework.startup import bootstrap_project

    from kedro_repro.checkpoints import CheckpointStore
    from kedro_repro.config import project_config
    from kedro_repro.determinism import DeterminismPolicy, apply_policy
    from kedro_repro.rerun import load_recorded_many, recorded_parameters

    project = Path(request.project)
    bootstrap_project(project)
    config = project_config()
    spec = config.step_replay
    if spec is None or config.resume_dataset is None:
        raise BisectRefused("the project declares no step replay (ReproConfig.step_replay)")
    record = load_run(project / RUNS_DIR, request.run_id)
    parameters = copy.deepcopy(recorded_parameters(record))
    for dotted, value in request.overrides.items():
        _set(parameters, dotted.split("."), value)
    section = config.determinism_section
    if section and section in parameters:
        apply_policy(DeterminismPolicy(**parameters[section]))
    datasets = load_recorded_many(project, request.run_id, list(spec.inputs))
    loaded = dict(zip(spec.inputs, datasets, strict=True))
    out = Path(request.out)
    begin = out / "from"
    begin.mkdir(parents=True, exist_ok=True)
    if request.start:
        source = recorded_checkpoint(project, record, config.resume_dataset, request.start)
        os.link(source, begin / source.name)
        (begin / "CHECKPOINTS.json").write_bytes((source.parent / "CHECKPOINTS.json").read_bytes())
    store = CheckpointStore(out / "checkpoints", resume_from=begin)
    probe = StepProbe(request.stop, tuple(request.dump_steps), request.watch)
    import torch

    started = time.perf_counter()
    rows = spec.run(loaded, parameters, store, probe)
    seconds = time.perf_counter() - started
    (out / "trace.json").write_text(
        json.dumps(
            {
                "threads": torch.get_num_threads(),
                "seconds": seconds,
                "log": {
                    str(row[spec.step_column]): {k: _plain(row[k]) for k in spec.trace_columns}
                    for row in rows
                    if request.start < row[spec.step_column] <= request.stop
                },
                "steps": {str(k): v for k, v in probe.trace.items()},
                "checkpoints": store.digests(),
            }
        )
    )
    if probe.dumped:
        from safetensors.torch import save_file

        save_file(probe.dumped, str(out / "dump.safetensors"))


def recorded_checkpoint(project: Path, record: RunRecord, dataset: str, step: int) -> Path:
    """The file of ``record``'s checkpoint at ``step``, checked against the record's digest."""
    from kedro_repro.hashing import file_digest

    section = record.checkpoints.get(dataset)
    name = f"step-{step:09d}.safetensors"
    if section is None or name not in section.files:
        raise BisectRefused(f"run {record.run_id} kept no checkpoint at step {step}")
    path = project / section.directory / name
    if not path.is_file() or file_digest(path) != section.files[name]:
        raise BisectRefused(
            f"checkpoint {path} is missing or not the one run {record.run_id} saved"
        )
    return path


def _plain(value: Any) -> Any:
    """A logged value as JSON that keeps its bits (floats by their repr; NaN as a string)."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if hasattr(value, "item"):
        return _plain(value.item())
    return value


def _set(tree: dict, path: list[str], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


# --- in the verifying process: the search --------------------------------------------------------


class BisectRefused(RuntimeError):
    """The bisection cannot run (no step replay declared, checkpoints not kept, a replay failed)."""


@dataclass
class ModuleDiff:
    """One tensor of the divergent step, as the two replays computed it."""

    order: int
    kind: str
    """``output`` (forward), ``output_grad`` (gradient reaching the output), ``param_grad``."""
    module: str
    """The module, dotted from the root module (``(root)``: the root itself)."""
    tensor: str
    """Which tensor: the output's position, or for ``param_grad`` the parameter's name."""
    max_abs_diff: float
    equal: bool


@dataclass
class Bisection:
    """Where a replay first departs from the run, and what differs in the environment."""

    interval: list[int] | None = None
    """``[start, end]``: the first checkpoint interval that does not reproduce (steps)."""
    interval_evidence: str = ""
    logged_difference_step: int | None = None
    """The first step whose logged values differ between the run and the replay, if logged."""
    replayed_to: int | None = None
    """The step replays ran from the interval's start to this step."""
    first_divergent_step: int | None = None
    """The first optimizer step whose logged values, parameters or module tensors differ."""
    step_differences: list[str] = field(default_factory=list)
    """What differs at that step (logged values, parameters, module tensors)."""
    first_module_step: int | None = None
    """The first step at which a module's output or gradient differs (often the same step)."""
    first_divergent_module: str | None = None
    first_divergent_kind: str | None = None
    modules: list[ModuleDiff] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict)
    """The reference replay (recorded parameters): does it reproduce the recorded run?"""
    candidate: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    """The differences that explain the divergence (``verify``'s explanation)."""
    seconds: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def explaining_differences(explanation: dict[str, Any]) -> list[str]:
    """``group/key: recorded -> replayed`` for every difference in ``verify``'s explanation."""
    lines = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, list) and len(value) == 2:
            lines.append(f"{prefix}: {value[0]} -> {value[1]}")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}/{key}" if prefix else str(key), item)

    walk("", explanation)
    return lines


def checkpoint_steps(files: dict[str, str]) -> dict[int, str]:
    """``step -> digest`` of a record's checkpoint listing."""
    return {int(m.group(1)): d for n, d in files.items() if (m := _CHECKPOINT.match(n))}


def first_logged_difference(
    recorded_trace: dict[int, dict[str, Any]], replayed_trace: dict[int, dict[str, Any]]
) -> int | None:
    """The first step whose logged values differ between two per-step traces."""
    return next(
        (s for s in sorted(recorded_trace) if replayed_trace.get(s) != recorded_trace[s]), None
    )


def first_divergent_interval(
    recorded: dict[int, str],
    replayed: dict[int, str],
    recorded_trace: dict[int, dict[str, Any]] | None = None,
    replayed_trace: dict[int, dict[str, Any]] | None = None,
) -> tuple[list[int] | None, str]:
    """The first checkpoint interval ``[start, end]`` whose end does not reproduce, and why.

    Checkpoint digests decide where both runs kept the checkpoint; a per-step trace (``step ->
    logged values``) dates a divergence that happened before the oldest kept checkpoint.
    ``start`` is always a recorded checkpoint (or 0, the start of training) to replay from.
    """
    kept = sorted(recorded)
    first_step = None
    if recorded_trace is not None and replayed_trace is not None:
        first_step = first_logged_difference(recorded_trace, replayed_trace)
    by_digest = next(
        (s for s in kept if s in replayed and replayed[s] != recorded[s]),
        None,
    )
    if first_step is not None:
        end = next((s for s in kept if s >= first_step), max(recorded_trace))
        start = max((s for s in kept if s < first_step), default=0)
        why = f"the logged values first differ at step {first_step}"
        if end in replayed and end in recorded:
            same = replayed[end] == recorded[end]
            why += f"; checkpoint {end} {'matches' if same else 'differs'} by digest"
        return [start, end], why
    if by_digest is not None:
        start = max((s for s in kept if s < by_digest), default=0)
        return [start, by_digest], f"checkpoint {by_digest} differs by digest"
    return None, "every kept checkpoint and logged step matches"


def _read_trace(path: Path) -> dict[str, Any]:
    return json.loads((path / "trace.json").read_text())


def _run_pair(
    requests: list[SegmentRequest], python: str, import_paths: list[str]
) -> list[dict[str, Any]]:
    """Run the requests concurrently in fresh processes; their traces, or BisectRefused."""
    processes = [replay_segment(r, python, import_paths) for r in requests]
    for process in processes:
        process.wait()
    traces = []
    for request, process in zip(requests, processes, strict=True):
        if process.returncode != 0:
            tail = (Path(request.out) / "output.log").read_text()[-3000:]
            raise BisectRefused(f"the step replay in {request.out} failed:\n{tail}")
        traces.append(_read_trace(Path(request.out)))
    return traces


def step_differences(reference: dict[str, Any], candidate: dict[str, Any], step: int) -> list[str]:
    """What differs at ``step`` between two replays' traces, in a few words each."""
    found = []
    a_log, b_log = reference["log"].get(str(step), {}), candidate["log"].get(str(step), {})
    for key in a_log:
        if a_log[key] != b_log.get(key):
            found.append(f"logged {key} {a_log[key]} vs {b_log.get(key)}")
    a, b = reference["steps"].get(str(step)), candidate["steps"].get(str(step))
    if a is None or b is None:
        return found
    for ea, eb in zip(a["events"], b["events"], strict=False):
        if ea != eb:
            found.append(f"{ea[0]} of {ea[1]}")
    if a["parameters"] != b["parameters"]:
        found.append("parameters after the step")
    return found


def first_step(
    reference: dict[str, Any], candidate: dict[str, Any], *, modules_only: bool = False
) -> int | None:
    """The first step at which two replays' traces differ (``modules_only``: module tensors)."""
    for step in sorted(int(s) for s in reference["steps"]):
        a, b = reference["steps"][str(step)], candidate["steps"].get(str(step))
        if b is None:
            return step
        if a["events"] != b["events"]:
            return step
        if not modules_only and (
            a["parameters"] != b["parameters"]
            or reference["log"].get(str(step)) != candidate["log"].get(str(step))
        ):
            return step
    return None


def compare_dumps(reference: Path, candidate: Path, step: int) -> list[ModuleDiff]:
    """Every tensor two replays dumped at ``step``, in execution order, with its max |diff|."""
    import torch
    from safetensors.torch import load_file

    a, b = load_file(str(reference)), load_file(str(candidate))
    diffs = []
    for label in sorted(a):
        at, order, kind, module, tensor = label.split("|", 4)
        if int(at) != step:
            continue
        x, y = a[label], b.get(label)
        if y is None or x.shape != y.shape:
            diffs.append(ModuleDiff(int(order), kind, module, tensor, math.inf, False))
            continue
        if not x.numel():
            worst = 0.0
        elif x.is_floating_point():
            worst = float((x.double() - y.double()).abs().max())
        else:
            worst = float((x != y).sum())
        # Bit for bit (NaN included), not by value.
        equal = x.dtype == y.dtype and torch.equal(_as_bytes(x), _as_bytes(y))
        diffs.append(ModuleDiff(int(order), kind, module, tensor, worst, equal))
    return diffs


def _as_bytes(tensor: Any) -> Any:
    import torch

    return tensor.contiguous().view(-1).view(torch.uint8)


def bisect(
    project: Path,
    run_id: str,
    replay_workdir: Path,
    replay_id: str,
    *,
    overrides: dict[str, Any],
    explanation: dict[str, Any],
    checkpoints: str,
    trace_dataset: str | None,
    step_column: str,
    trace_columns: tuple[str, ...],
    load_recorded: Callable[[Path, str, str], Any],
    import_paths: list[str],
    python: str = sys.executable,
    scratch: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Bisection:
    """Find where the replay ``replay_id`` (in ``replay_workdir``) of ``run_id`` first departs.

    ``checkpoints`` is the checkpoint store dataset, ``trace_dataset`` the per-step table
    (``step_column`` and the ``trace_columns`` compared bit for bit), ``overrides`` the replay's
    parameter overrides (the candidate's settings; the reference runs the recorded ones),
    ``explanation`` the environment and parameter differences ``verify`` found.
    """
    say = progress or (lambda line: None)
    record = load_run(project / RUNS_DIR, run_id)
    replayed_record = load_run(replay_workdir / RUNS_DIR, replay_id)
    began_all = time.perf_counter()
    result = Bisection(environment=explanation)
    recorded_section = record.checkpoints.get(checkpoints)
    replayed_section = replayed_record.checkpoints.get(checkpoints)
    recorded_digests = checkpoint_steps(recorded_section.files) if recorded_section else {}
    replayed_digests = checkpoint_steps(replayed_section.files) if replayed_section else {}
    if replayed_section is None:
        result.note = f"the replay saved no {checkpoints} (it did not train): nothing to bisect"
        return result
    traces = None
    if trace_dataset is not None and trace_dataset in replayed_record.ledger:
        traces = [
            _table_trace(load_recorded(where, rid, trace_dataset), step_column, trace_columns)
            for where, rid in ((project, run_id), (replay_workdir, replay_id))
        ]
    interval, why = first_divergent_interval(
        recorded_digests, replayed_digests, *(traces or (None, None))
    )
    result.interval, result.interval_evidence = interval, why
    if interval is None:
        result.note = "the replay's training reproduces the run: nothing to bisect"
        return result
    start, end = interval
    # The logged values differ by that step, so the computation differed at it or before: the
    # step replays need not go further than that (nor to a checkpoint the run did not keep).
    logged = first_logged_difference(*traces) if traces else None
    result.logged_difference_step = logged
    stop = min(end, logged) if logged else end
    say(f"bisect: first divergent interval: steps {start} -> {end} ({why})")
    return bisect_steps(
        result,
        project,
        run_id,
        start,
        stop,
        overrides=overrides,
        recorded_log=traces[0] if traces else {},
        recorded_digests=recorded_digests,
        import_paths=import_paths,
        python=python,
        scratch=Path(scratch or tempfile.mkdtemp(prefix=f"bisect-{run_id}-")),
        say=say,
        began_all=began_all,
    )


def bisect_steps(
    result: Bisection,
    project: Path,
    run_id: str,
    start: int,
    stop: int,
    *,
    overrides: dict[str, Any],
    recorded_log: dict[int, dict[str, Any]],
    recorded_digests: dict[int, str],
    import_paths: list[str],
    python: str,
    scratch: Path,
    say: Callable[[str], None],
    began_all: float,
) -> Bisection:
    """Stages 2 and 3 (module docstring) on the interval from the recorded checkpoint at
    ``start`` to step ``stop``: the first divergent step and module, filled into ``result``."""
    result.replayed_to = stop

    def request(name: str, stop: int, settings: dict[str, Any], dump: list[int]) -> SegmentRequest:
        return SegmentRequest(
            str(project), run_id, start, stop, str(scratch / name), settings, dump
        )

    # A short replay keeps every step's tensors, so the module needs no second pair of replays.
    dump_all = list(range(start + 1, stop + 1)) if stop - start <= DUMP_ALL_STEPS else []
    began = time.perf_counter()
    reference, candidate = _run_pair(
        [
            request("reference", stop, {}, dump_all),
            request("candidate", stop, overrides, dump_all),
        ],
        python,
        import_paths,
    )
    result.seconds["steps"] = time.perf_counter() - began
    result.reference = _describe(reference, recorded_log, recorded_digests, stop, start)
    result.candidate = _describe(candidate, recorded_log, recorded_digests, stop, start)
    step = first_step(reference, candidate)
    if step is None:
        result.note = (
            "replayed from the checkpoint at step "
            f"{start}, the interval is the same under the recorded and the replay's settings: "
            "the divergence does not come from the settings that differ here"
        )
        if not result.reference["reproduces"]:
            result.note += (
                "; neither reproduces the recorded run, so its cause is an environment "
                "difference this machine cannot undo"
            )
        return result
    result.first_divergent_step = step
    result.step_differences = step_differences(reference, candidate, step)
    module_step = first_step(reference, candidate, modules_only=True)
    result.first_module_step = module_step
    say(f"bisect: first divergent step {step}; module tensors first differ at step {module_step}")
    if module_step is None:
        result.note = "no module output or gradient differs in the interval"
        return result
    dumps = "reference", "candidate"
    if module_step not in dump_all:
        dumps = "reference-dump", "candidate-dump"
        began = time.perf_counter()
        _run_pair(
            [
                request(dumps[0], module_step, {}, [module_step]),
                request(dumps[1], module_step, overrides, [module_step]),
            ],
            python,
            import_paths,
        )
        result.seconds["modules"] = time.perf_counter() - began
    result.modules = compare_dumps(
        scratch / dumps[0] / "dump.safetensors",
        scratch / dumps[1] / "dump.safetensors",
        module_step,
    )
    first = next((m for m in result.modules if not m.equal), None)
    if first is not None:
        result.first_divergent_module = first.module
        result.first_divergent_kind = first.kind
    result.seconds["total"] = time.perf_counter() - began_all
    return result


def _step_replay(config: Any) -> Any:
    """The project's :class:`~kedro_repro.config.StepReplay`, or BisectRefused saying it has none."""
    if config.step_replay is None or config.resume_dataset is None:
        raise BisectRefused(
            "this project declares no step replay (ReproConfig.step_replay and resume_dataset): "
            "--bisect cannot replay its training from a checkpoint"
        )
    return config.step_replay


def bisect_verification(
    project: Path,
    verification: Any,
    *,
    config: Any,
    overrides: dict[str, Any],
    load_recorded: Callable[[Path, str, str], Any],
    progress: Callable[[str], None] | None = None,
) -> Bisection:
    """:func:`bisect` of a :class:`~kedro_repro.verify.Verification` with the project's
    :class:`~kedro_repro.config.ReproConfig`; the step replays import the replayed code."""
    from kedro_repro.verify import restored_import_paths

    spec = _step_replay(config)
    if verification.overall == "bitwise":
        return Bisection(note="the replay reproduced the run bitwise: nothing to bisect")
    workdir = Path(verification.workdir)
    return bisect(
        project,
        verification.run_id,
        workdir,
        verification.replay_id,
        overrides=overrides,
        explanation=verification.explanation,
        checkpoints=config.resume_dataset,
        trace_dataset=spec.trace_dataset,
        step_column=spec.step_column,
        trace_columns=spec.trace_columns,
        load_recorded=load_recorded,
        import_paths=restored_import_paths(project, workdir, sys.path),
        scratch=workdir / "bisect",
        progress=progress,
    )


def bisect_segments(
    project: Path,
    verification: Any,
    *,
    config: Any,
    overrides: dict[str, Any],
    load_recorded: Callable[[Path, str, str], Any],
    progress: Callable[[str], None] | None = None,
) -> Bisection:
    """Stages 2 and 3 on the first diverged segment of a
    :class:`~kedro_repro.segments.SegmentVerification`: that segment is the interval (it starts
    at a recorded checkpoint), so nothing before it is replayed again."""
    from kedro_repro.rerun import recorded_parameters
    from kedro_repro.verify import restored_import_paths

    spec = _step_replay(config)
    diverged = next((s for s in verification.segments if s.verdict == "diverged"), None)
    if diverged is None:
        if verification.overall == "bitwise":
            return Bisection(note="the segments reproduced the run bitwise: nothing to bisect")
        return Bisection(
            note=f"no replayed segment diverged (verdict {verification.overall}): only a "
            "training interval that replays to another state is bisected"
        )
    began_all = time.perf_counter()
    record = load_run(project / RUNS_DIR, verification.run_id)
    recorded = recorded_parameters(record)
    changed = {
        dotted: [_get(recorded, dotted.split(".")), value]
        for dotted, value in overrides.items()
        if _get(recorded, dotted.split(".")) != value
    }
    result = Bisection(
        interval=[diverged.start_step, diverged.end_step],
        interval_evidence=f"segment {diverged.index} ({diverged.label()}) "
        f"diverged: {diverged.detail}",
        environment={"parameters": changed} if changed else {},
    )
    say = progress or (lambda line: None)
    say(f"bisect: first divergent interval: {result.interval_evidence}")
    section = record.checkpoints[config.resume_dataset]
    recorded_log: dict[int, dict[str, Any]] = {}
    if spec.trace_dataset is not None and spec.trace_dataset in record.ledger:
        table = load_recorded(project, verification.run_id, spec.trace_dataset)
        recorded_log = _table_trace(table, spec.step_column, spec.trace_columns)
    workdir = Path(verification.workdir)
    return bisect_steps(
        result,
        project,
        verification.run_id,
        diverged.start_step,
        diverged.end_step,
        overrides=overrides,
        recorded_log=recorded_log,
        recorded_digests=checkpoint_steps(section.files),
        import_paths=restored_import_paths(project, workdir, sys.path),
        python=sys.executable,
        scratch=workdir / "bisect",
        say=say,
        began_all=began_all,
    )


def _get(tree: dict, path: list[str]) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _table_trace(
    table: Any, step_column: str, columns: tuple[str, ...]
) -> dict[int, dict[str, Any]]:
    """``step -> {column: value}`` of a per-step table, values as :func:`_plain` writes them."""
    return {
        int(row[step_column]): {c: _plain(row[c]) for c in columns}
        for row in table.to_dict("records")
    }


def _describe(
    trace: dict[str, Any],
    recorded_log: dict[int, dict[str, Any]],
    recorded_digests: dict[int, str],
    end: int,
    start: int,
) -> dict[str, Any]:
    """Does one step replay reproduce the recorded run's logged steps and end checkpoint?"""
    log = {int(s): v for s, v in trace["log"].items()}
    wanted = {s: v for s, v in recorded_log.items() if start < s <= end}
    same_log = bool(wanted) and all(log.get(s) == v for s, v in wanted.items())
    ends = checkpoint_steps(trace["checkpoints"])
    same_end = end in recorded_digests and ends.get(end) == recorded_digests[end]
    return {
        "threads": trace["threads"],
        "seconds": trace["seconds"],
        "logged_steps_match": same_log,
        "end_checkpoint_matches": same_end if end in recorded_digests else None,
        "reproduces": same_log and (same_end or end not in recorded_digests),
    }


def main(argv: list[str]) -> int:
    """``python -m kedro_repro.bisect REQUEST.json``: one step replay (see :func:`replay_segment`)."""
    request = SegmentRequest(**json.loads(Path(argv[0]).read_text()))
    try:
        _run_request(request)
    except BisectRefused as error:
        print(error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
