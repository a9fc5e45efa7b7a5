"""What is wrong with a corpus, as typed records, and the one report that presents them.

Every check on a corpus (reading the manifest, comparing identifiers, inspecting the audio,
normalising the transcripts) yields :class:`CorpusProblem` records instead of raising at once, so
one run reports everything. :func:`format_problems` groups them by kind, with a count, the first
examples of each kind and the option that fixes it where there is one.

:class:`CorpusLogFilter` keeps Kedro from repeating a corpus error: Kedro logs a failing node's
message, then suggests repeating or resuming the run, then the command prints the traceback.
For a corpus error the first two are noise (the message is long, and repeating the run fails
the same way), so the filter drops them and the traceback's message is the one report.

The filter is installed on Kedro's node and runner loggers when this module is imported, which
every corpus error's class requires. ``conf/logging.yml`` cannot name it: Kedro 1.7 refuses
``()`` factories there and takes filter classes only from modules listed in the
``KEDRO_LOGGING_MODULE_ALLOWLIST`` environment variable, read when Kedro is imported.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PROBLEMS = "corpus_problems"  # DataFrame.attrs key: problems found while indexing the corpus
EXAMPLES_PER_KIND = 5


@dataclass(frozen=True)
class CorpusProblem:
    """One thing wrong with a corpus.

    ``kind`` groups problems in the report (``"missing file"``); ``location`` is where it was
    found (``manifest.jsonl:12`` or an audio file); ``utterance`` the utterance id, if one is
    known; ``reason`` says what is wrong; ``fix`` names the option or action that fixes it.
    """

    kind: str
    location: str = ""
    utterance: str = ""
    reason: str = ""
    fix: str = ""

    def __str__(self) -> str:
        # repr: an id with a zero-width or control character shows it escaped
        utterance = repr(self.utterance) if self.utterance else ""
        where = " ".join(part for part in (self.location, utterance) if part)
        return f"{where}: {self.reason}" if where else self.reason


def format_problems(problems: Sequence[CorpusProblem], limit: int = EXAMPLES_PER_KIND) -> str:
    """The report: one section per kind (in order of first occurrence), count, examples, fix."""
    by_kind: dict[str, list[CorpusProblem]] = {}
    for problem in problems:
        by_kind.setdefault(problem.kind, []).append(problem)
    sections = []
    for kind, found in by_kind.items():
        lines = [f"{kind} ({len(found)}):"]
        lines += [f"  {problem}" for problem in found[:limit]]
        if len(found) > limit:
            lines.append(f"  ... and {len(found) - limit} more")
        for fix in dict.fromkeys(problem.fix for problem in found if problem.fix):
            lines.append(f"  fix: {fix}")
        sections.append("\n".join(lines))
    return "\n".join(sections)


class CorpusProblemsError(ValueError):
    """A corpus has problems; ``problems`` holds the records, the message is their report."""

    def __init__(self, summary: str, problems: Iterable[CorpusProblem] = ()):
        self.summary = summary
        self.problems = list(problems)
        message = summary
        if self.problems:
            message += f" ({len(self.problems)} problem(s)):\n" + format_problems(self.problems)
        super().__init__(message)


def _is_corpus_error(error: BaseException | None) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, CorpusProblemsError):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


class CorpusLogFilter(logging.Filter):
    """Drops Kedro's node-failure message and its retry/resume hint when a corpus error is raised.

    Both are logged from inside the ``except`` block that handles the error (``kedro.pipeline.node``
    "Node ... failed with error", ``kedro.runner`` "No nodes ran. Repeat the previous command" /
    "There are N nodes that have not run"), so the error is ``sys.exc_info()`` while the record is
    filtered. The exception itself still propagates and is printed once by the command.
    """

    _LOGGERS = ("kedro.pipeline.node", "kedro.runner")

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a Kedro failure/retry record logged while a corpus error is being handled."""
        if not record.name.startswith(self._LOGGERS):
            return True
        return not _is_corpus_error(sys.exc_info()[1])


# The loggers whose records the filter sees: a logger's own filters apply to the records logged
# on it (``_suggest_resume_scenario`` logs on the concrete runner's module logger).
_KEDRO_FAILURE_LOGGERS = (
    "kedro.pipeline.node",
    "kedro.runner.runner",
    "kedro.runner.sequential_runner",
    "kedro.runner.parallel_runner",
    "kedro.runner.thread_runner",
)


def install_corpus_log_filter() -> None:
    """Put one :class:`CorpusLogFilter` on each of Kedro's failure loggers (idempotent)."""
    for name in _KEDRO_FAILURE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, CorpusLogFilter) for f in logger.filters):
            logger.addFilter(CorpusLogFilter())


install_corpus_log_filter()
