"""Running again from a recorded run: its pipelines, the dataset versions to load, what is left
to resume, and datasets loaded as the run saved them.

Users think in runs, not datasets: a record's ledger names every version a run saved or read,
and these functions turn that into Kedro's ``load_versions``.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedro_repro.integrity import require_intact
from kedro_repro.record import RUNS_DIR, RunRecord, load_run, run_liveness
from kedro_repro.redaction import redacted_keys


class RunRefused(RuntimeError):
    """A run is not continued or re-run: the message says why and what to do."""


def compose_pipelines(names: Sequence[str]) -> Any:
    """The project's registered pipelines ``names`` as one pipeline (KeyError: one is unknown)."""
    from kedro.framework.project import pipelines as registry

    return functools.reduce(operator.add, (registry[name] for name in names))


def recorded_parameters(record: RunRecord) -> dict[str, Any]:
    """Every parameter section ``record`` ran with, design choices and tunable ones together."""
    return {**record.parameters.design, **record.parameters.tunable}


def load_versions_of(record: RunRecord, datasets: Iterable[str]) -> dict[str, str]:
    """The version of each of ``datasets`` that the recorded run saved or, failing that, loaded."""
    wanted = set(datasets)
    versions = {n: e.version for n, e in record.ledger.items() if e.version}
    versions |= {n: i.version for n, i in record.inputs.items() if i.version and n not in versions}
    return {n: v for n, v in versions.items() if n in wanted}


@dataclass(frozen=True)
class ResumePlan:
    """What resuming a run does: the nodes still to run and the versions they load."""

    pending: list[str]
    """Nodes not complete, in pipeline order (a node killed between two saves runs again)."""
    load_versions: dict[str, str]


def resume_plan(record: RunRecord, pipeline: Any, resume_dataset: str | None) -> ResumePlan:
    """Pending nodes of ``pipeline`` and the versions to load: the outputs of completed nodes and
    the pipeline's inputs as the run had them, and ``resume_dataset`` (a checkpoint store) at
    the resumed run's own version, so training continues from its newest checkpoint."""
    done = record.completed_nodes()
    # A node counts as done only once every output was saved: one killed between two saves runs
    # again, so nothing downstream loads a half-written node's missing output from another run.
    pending = [n.name for n in pipeline.nodes if n.name not in done]
    completed_outputs = {o for n in pipeline.nodes if n.name in done for o in n.outputs}
    versions = load_versions_of(record, completed_outputs | (pipeline.inputs() - {"parameters"}))
    if resume_dataset:
        versions[resume_dataset] = record.run_id
    return ResumePlan(pending, versions)


def refuse_a_live_run(record: RunRecord, force: bool) -> None:
    """Raise :class:`RunRefused` unless the process that ran ``record`` is gone (or it ended);
    ``force`` accepts a run recorded on another host, whose process this host cannot see."""
    if record.status != "running":
        return
    process = record.process_identity()
    where = f"host {process.host}, pid {process.pid}"
    state = run_liveness(record)
    if state == "alive":
        raise RunRefused(
            f"run {record.run_id} is still running ({where}, started {record.started_at}); "
            "resuming it would train a second copy beside it. Wait for it to finish, or stop it "
            f"(kill {process.pid}) and resume then"
        )
    if state == "unknown" and not force:
        raise RunRefused(
            f"run {record.run_id} is recorded as running on another host ({where}); this "
            "host cannot tell whether it still runs. If it does not, resume with --force"
        )


def run_with_recorded_parameters(
    project: Path,
    record: RunRecord,
    env: str | None = None,
    recorded_inputs: Iterable[str] = (),
    **run_kwargs: Any,
) -> None:
    """A Kedro run in ``record``'s configuration environment with exactly its parameters.

    Refused when the record holds redacted parameters: it does not know what the run used; and
    when a versioned dataset of ``recorded_inputs`` has no version in the record (the run neither
    saved nor loaded it): Kedro would load another run's newest one in its place.
    """
    from kedro.framework.project import settings
    from kedro.framework.startup import bootstrap_project

    recorded = recorded_parameters(record)
    if redacted := redacted_keys(recorded):
        raise RunRefused(
            f"run {record.run_id} recorded parameter(s) {', '.join(redacted)} redacted (they "
            "held a secret): its bundle does not hold the values it ran with, so it is not "
            "continued with other ones"
        )
    bootstrap_project(project)
    # The project's session class: it claims the run id and pins what the run saves itself.
    with settings.SESSION_CLASS.create(
        project_path=project, env=env or record.env, runtime_params=recorded
    ) as session:
        if missing := _unrecorded(session, record, recorded_inputs):
            raise RunRefused(
                f"run {record.run_id} recorded no version of {', '.join(missing)} (it ran "
                f"{', '.join(record.pipelines)}): re-running from it would read another run's "
                "in their place. Choose a run that made them, or run the pipelines that make "
                "them from this one"
            )
        session.run(**run_kwargs)


def _unrecorded(session: Any, record: RunRecord, datasets: Iterable[str]) -> list[str]:
    from kedro_repro.hooks import is_versioned

    catalog = session.load_context().catalog
    versions = load_versions_of(record, datasets)
    return sorted(
        n for n in datasets if n not in versions and n in catalog and is_versioned(catalog.get(n))
    )


def load_recorded_many(project: Path, run_id: str, datasets: list[str]) -> list[Any]:
    """Each of ``datasets`` as run ``run_id`` of ``project`` saved it, through one session,
    after checking that their stored bytes are what the run recorded."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    record = load_run(project / RUNS_DIR, run_id)
    require_intact(project, run_id, datasets, what="to load")  # bytes first, then the catalog
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=record.env) as session:
        catalog = session.load_context().catalog
        # version= applies to versioned datasets only; an unversioned one is what it is
        return [catalog.load(name, version=run_id) for name in datasets]


def load_recorded(project: Path, run_id: str, dataset: str) -> Any:
    """``dataset`` as run ``run_id`` of ``project`` saved it."""
    return load_recorded_many(project, run_id, [dataset])[0]
