"""What a finished run tells the person who started it: its last lines.

``kedro run`` would otherwise end with Kedro's ``Pipeline execution completed successfully``
and leave the run id, the headline numbers and the report's path to be dug out of ``data/``.
:func:`outcome_lines` builds those lines from the record and the datasets the run saved, as the
project's :class:`~kedro_repro.config.Presentation` asks; :class:`~kedro_repro.hooks.RunRecordHook`
prints them to standard error once the record is sealed. A partial run prints what it has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kedro_repro.config import Headline, Presentation
from kedro_repro.record import RunRecord

SHOWN_ITEMS = 10
"""Attention items printed; ``kedro repro show`` prints them all."""


def outcome_lines(
    record: RunRecord, presentation: Presentation, load: Callable[[str], Any]
) -> list[str]:
    """The lines that end a run: id and status, headline numbers with intervals, review items,
    report paths and the command that shows the rest.

    ``load(name)`` returns a dataset as this run saved it; a dataset that fails to load is left
    out (the summary never fails a run that succeeded).
    """
    run_id = record.run_id
    duration = f" in {record.duration_seconds:.1f} s" if record.duration_seconds else ""
    rows: list[tuple[str, str]] = []
    for headline in presentation.headlines:
        for name in _saved(record, headline.dataset):
            data = _load(load, name)
            if data is not None and (text := headline_text(headline, data)) is not None:
                namespace = name.removesuffix(headline.dataset).rstrip(".")
                rows.append((f"{namespace} {headline.label}".strip(), text))
    if presentation.headlines and not rows:
        datasets = sorted({h.dataset for h in presentation.headlines})
        rows.append(("results", f"none: this run saved no {' or '.join(datasets)}"))
    review = presentation.review_dataset
    if review is not None:
        for name in _saved(record, review):
            attention = (_load(load, name) or {}).get("attention")
            if isinstance(attention, list):
                rows += _review_rows(name, attention)
    for report in presentation.report_datasets:
        for name in _saved(record, report):
            files = sorted(record.ledger[name].files)
            folders = sorted({f.rsplit("/", 1)[0] for f in files})
            if len(folders) == 1:
                names = ", ".join(f.rsplit("/", 1)[-1] for f in files)
                rows.append(("report", f"{folders[0]}/ ({names})"))
            elif files:
                rows.append(("report", "  ".join(files)))
    rows.append(("details", f"kedro repro show {run_id}"))
    width = max(len(key) for key, _ in rows)
    return [f"Run {run_id} {record.status}{duration}"] + [
        f"  {key:<{width}}  {value}" if key else f"  {' ' * width}  {value}" for key, value in rows
    ]


def headline_text(headline: Headline, data: Any) -> str | None:
    """``4.84 % (95 % CI 3.10-6.90 %)``: the value of ``headline`` in ``data`` with its interval;
    None when the value is not there."""
    value = value_at(data, headline.value)
    if not isinstance(value, int | float):
        return None
    low, high = (value_at(data, p) if p else None for p in (headline.low, headline.high))
    level = value_at(data, headline.level) if headline.level else None
    what = f"{round(100 * level)} % CI" if isinstance(level, int | float) else "CI"
    if isinstance(low, int | float) and isinstance(high, int | float):
        unit = " %" if headline.percent else ""
        interval = f" ({what} {_bare(low, headline)}-{_bare(high, headline)}{unit})"
    elif headline.low:
        why = value_at(data, headline.undefined) if headline.undefined else None
        interval = f" (no {what}{f': {why}' if why else ''})"
    else:
        interval = ""
    return f"{_bare(value, headline)}{' %' if headline.percent else ''}{interval}"


def _bare(value: float, headline: Headline) -> str:
    return f"{100 * value:.2f}" if headline.percent else f"{value:.4g}"


def _review_rows(name: str, attention: list[Any]) -> list[tuple[str, str]]:
    """``review`` and one row per attention item (``key`` empty: a continuation)."""
    if not attention:
        return [("review", f"nothing flagged ({name})")]
    rows = [("review", f"{len(attention)} item(s) need attention ({name}):")]
    rows += [("", f"- {item}") for item in attention[:SHOWN_ITEMS]]
    if len(attention) > SHOWN_ITEMS:
        rows.append(("", f"... {len(attention) - SHOWN_ITEMS} more (kedro repro show)"))
    return rows


def _saved(record: RunRecord, dataset: str) -> list[str]:
    """``dataset`` and its namespaced copies (``ns.dataset``) that the run saved, sorted."""
    return sorted(n for n in record.ledger if n == dataset or n.endswith(f".{dataset}"))


def _load(load: Callable[[str], Any], name: str) -> Any:
    try:
        return load(name)
    except Exception:  # a summary line is not worth failing a finished run for
        return None


def value_at(data: Any, path: str) -> Any:
    """The value at dotted ``path`` in nested mappings, or None."""
    for key in path.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data
