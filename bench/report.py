"""Writes a benchmark's Markdown block between its markers in a document under docs/."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs/benchmarks.md"


def write_section(name: str, lines: list[str], doc: Path = DOC) -> None:
    """Replace what stands between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``; print it."""
    start_marker, end_marker = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = "\n".join([start_marker, *lines, end_marker])
    print(block)
    text = doc.read_text()
    start, end = text.index(start_marker), text.index(end_marker) + len(end_marker)
    doc.write_text(text[:start] + block + text[end:])
