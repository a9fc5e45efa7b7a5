"""``kedro repro mlflow-sync [RUN]...``: runs into an MLflow tracking server or local store."""

from __future__ import annotations

from typing import Any

import click

from kedro_repro.cli.common import config_of, echo_json, json_option, print_table, project_of
from kedro_repro.mlflow_sync import MlflowMissing, SyncRefused, sync_runs


@click.command("mlflow-sync")
@click.argument("run_ids", nargs=-1, metavar="[RUN]...")
@click.option(
    "--tracking-uri",
    default=None,
    help="MLflow server or store (default: $MLFLOW_TRACKING_URI, else ./mlruns).",
)
@click.option("--experiment", default=None, help="MLflow experiment (default: the project's).")
@json_option()
@click.pass_obj
def mlflow_sync(
    metadata: Any, run_ids: tuple[str, ...], tracking_uri: str | None, experiment: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Log each RUN (default: every finished run) to MLflow, its bytes checked first: parameters,
    metrics, tags, the record, reports and figures; one child run per namespace (seeds).
    Syncing again logs only what is missing."""
    try:
        results = sync_runs(
            project_of(metadata),
            run_ids or None,
            config_of(),
            tracking_uri=tracking_uri,
            experiment=experiment,
        )
    except (MlflowMissing, SyncRefused) as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        echo_json([result.to_dict() for result in results])
        return
    print_table(
        ["run_id", "part", "mlflow_run", "action"],
        ([r.run_id, r.namespace or "(run)", r.mlflow_run_id, r.action] for r in results),
    )
