"""Reports: a Markdown document with its figures, and the HTML page that shows it with its run.

The Markdown and the figures are what a node computes, so they are what the ledger hashes and
a replay must reproduce bit for bit. The page adds what no node can know and every replay
changes: the identity of the run that saved it (:mod:`kedro_repro.identity`). It is stored and
checked like any file, but never compared between runs.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt

from kedro_repro.hashing import combined_digest, json_digest
from kedro_repro.identity import RunIdentity

IDENTITY_MARKER = "<!-- run identity -->"
"""Where a report's page shows the run's identity; a report without it gets it at the top."""


@dataclass(frozen=True)
class Report:
    """A Markdown document and the figures it shows, by file name (``![Title](name.png)``).

    ``figures`` maps a plain file name ending in ``.png`` to a matplotlib ``Figure``; the report
    dataset writes each beside the Markdown and embeds it in the page.
    """

    markdown: str
    figures: Mapping[str, Any] = field(default_factory=dict)

    def content_digest(self) -> str:
        """The text and what each figure shows (see :func:`kedro_repro.ledger.figure_digest`)."""
        from kedro_repro.ledger import figure_digest  # matplotlib: only when there are figures

        return combined_digest(
            [
                json_digest(self.markdown),
                *(
                    combined_digest([json_digest(name), figure_digest(figure)])
                    for name, figure in sorted(self.figures.items())
                ),
            ]
        )


def markdown_to_html(
    markdown: str, images: Mapping[str, bytes] | None = None, header: str = ""
) -> str:
    """A standalone HTML page of CommonMark with tables.

    Images whose source is a key of ``images`` are embedded as ``data:`` URIs (PNG), so the page
    shows them wherever it is opened, kedro-viz's preview included. ``header`` (HTML) replaces
    :data:`IDENTITY_MARKER`, or opens the page when the Markdown has none.
    """
    parser = MarkdownIt("commonmark").enable("table")
    tokens = parser.parse(markdown)
    for token in tokens:
        for child in token.children or []:
            source = child.attrGet("src") if child.type == "image" else None
            if images and source in images:
                encoded = base64.b64encode(images[source]).decode("ascii")
                child.attrSet("src", f"data:image/png;base64,{encoded}")
    body = parser.renderer.render(tokens, parser.options, {})
    if header:
        body = (
            body.replace(IDENTITY_MARKER, header, 1) if IDENTITY_MARKER in body else header + body
        )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><style>'
        "body{font-family:sans-serif;max-width:60em;margin:1em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
        "th{text-align:left}img{max-width:100%}pre{background:#f6f6f6;padding:.4em}"
        f"</style></head><body>{body}</body></html>\n"
    )


def identity_header(identity: RunIdentity | None, version: str | None) -> str:
    """An HTML table naming the run, its commit, its data and its verification status.

    A page is written while its run is still going, so it cannot claim a replay: it says how to
    make one. Without a recorded run (``identity`` is ``None``) it says so rather than guess.
    """
    run_id = identity.run_id if identity is not None else version
    if identity is None:
        rows = [
            ("Run", f"<code>{html.escape(run_id)}</code>" if run_id else "unversioned"),
            ("Commit", "not recorded: saved outside a recorded run"),
            ("Data", "not recorded: saved outside a recorded run"),
        ]
    else:
        commit = (
            f"<code>{html.escape(identity.commit)}</code>"
            + (" with uncommitted changes (a patch in the run's bundle)" if identity.dirty else "")
            if identity.commit
            else "none (not a git checkout)"
        )
        data = (
            f"<code>{html.escape(identity.data_digest)}</code> (data snapshot, "
            f"{identity.data_items} items)"
            if identity.data_digest
            else "no data snapshot saved by this run (see <code>kedro repro show</code>)"
        )
        rows = [
            ("Run", f"<code>{html.escape(identity.run_id)}</code>"),
            ("Environment", html.escape(identity.env or "(default)")),
            ("Commit", commit),
            ("Data", data),
        ]
    if run_id:
        rows.append(("Verification", f"not yet verified: kedro repro verify {html.escape(run_id)}"))
    cells = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return f'<table class="run-identity">{cells}</table>\n'
