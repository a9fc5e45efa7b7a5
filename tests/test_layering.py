"""kedro-repro stays speech-agnostic by content, not only by imports: a layering rule, checked on source.

Everything project-specific (datasets, folders, variables, libraries, metrics) reaches kedro_repro
through the ``ReproConfig`` that settings.py hands it. Code is checked (identifiers and string literals);
docstrings and comments are prose and may say what the machinery is *not* about.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

import kedro_repro
from kedro_repro.config import project_config
from kedro_repro.record import RunRecord
from kedro_repro.verify import DEFAULT_ATOL, DEFAULT_RTOL
from tests.conftest import PROJECT_ROOT

REPRO_DIR = Path(kedro_repro.__file__).parent
SPEECH = re.compile(
    r"speech|audio|torchaudio|corpus|corpora|hypothes[ie]s|utterance|01_raw|training\.device",
    re.IGNORECASE,
)
KNOWN_EXCEPTIONS = {
    # The ssh-keygen signature namespace: changing it invalidates every signature already made;
    # it moves to the config with signing (not part of this change).
    ("signing.py", "speech-repro-run"),
}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (of modules, classes, functions, fields)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for statement in body:  # a bare string statement anywhere in a body is prose
            if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                found.add(id(statement.value))
    return found


def _code_words(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, text)`` of every identifier and non-docstring string literal of a module."""
    prose = _docstrings(tree)
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue  # checked by test_repro_imports_nothing_of_the_project
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            words.append((node.lineno, node.value))
        for attribute in ("id", "attr", "arg", "name"):
            value = getattr(node, attribute, None)
            if isinstance(value, str) and hasattr(node, "lineno"):
                words.append((node.lineno, value))
    return words


# Catalog names that are also everyday words of generic code ("model name" of a CPU).
GENERIC_WORDS = {"model", "features", "manifest"}


def _catalog_names() -> set[str]:
    """The project's dataset names, as a literal in repro/ would spell them."""
    catalog = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text())
    return {name for name in catalog if not name.startswith("_")} - GENERIC_WORDS


def speech_leaks(directory: Path) -> list[str]:
    """Every place in ``directory``'s modules where code names speech or a project dataset."""
    catalog = _catalog_names()
    record_fields = set(RunRecord.model_fields)  # "metrics" is the record's own field
    leaks = []
    for path in sorted(directory.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, text in _code_words(tree):
            if (path.name, text) in KNOWN_EXCEPTIONS:
                continue
            if SPEECH.search(text):
                leaks.append(f"{path.name}:{line}: {text!r}")
            elif text in catalog and text not in record_fields:
                leaks.append(f"{path.name}:{line}: dataset name {text!r}")
        for node in ast.walk(tree):  # a dataset as a default: the project's name baked in
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for default in [*node.args.defaults, *node.args.kw_defaults]:
                    if isinstance(default, ast.Constant) and default.value in catalog:
                        leaks.append(f"{path.name}:{default.lineno}: default {default.value!r}")
    return leaks


def test_repro_names_no_speech_and_no_project_dataset():
    assert speech_leaks(REPRO_DIR) == []


def test_the_check_finds_a_leak(tmp_path):
    """The rule bites: each kind of leak that repro/ once had is reported."""
    (tmp_path / "leaky.py").write_text(
        '"""Docstrings may say audio."""\n'
        "import os\n\n"
        "PREFIXES = ('KEDRO', 'SPEECH_REPRO')  # comments may say corpus\n\n\n"
        "def run(metrics_dataset: str = 'metrics', data_dirs=('data/01_raw',)) -> None:\n"
        "    torchaudio_version = os.environ.get('X')\n"
        "    raise RuntimeError('run on the CPU (training.device: cpu)')\n"
    )
    leaks = speech_leaks(tmp_path)
    for expected in (
        "SPEECH_REPRO",
        "default 'metrics'",
        "01_raw",
        "torchaudio",
        "training.device",
    ):
        assert any(expected in leak for leak in leaks), (expected, leaks)
    assert not any("Docstrings" in leak or "comments" in leak for leak in leaks)


def test_repro_imports_nothing_of_the_project():
    for path in sorted(REPRO_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                assert not name.startswith("speech_repro"), f"{path.name} imports {name}"
                assert "torchaudio" not in name, f"{path.name} imports {name}"


def test_the_project_config_is_read_through_kedro_settings():
    """What the commands read: the REPRO object settings.py builds, through Kedro's settings."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from kedro_repro.plugin import hooks
    from speech_repro.settings import REPRO

    bootstrap_project(PROJECT_ROOT)
    assert project_config() is REPRO
    with KedroSession.create(project_path=PROJECT_ROOT, env="test") as session:
        session.load_context()
    assert hooks.config is REPRO  # the plugin's hooks, registered by entry point, read it
    assert hooks.run_record is not None and hooks.run_record.config is REPRO
    assert REPRO.namespace == "urn:speech-repro:"


@pytest.mark.parametrize(("option", "default"), [("atol", DEFAULT_ATOL), ("rtol", DEFAULT_RTOL)])
def test_verify_tolerances_have_one_default(option, default):
    """``kedro repro verify`` and :func:`verify` share the core's tolerance defaults."""
    import inspect

    from kedro_repro.verify import verify
    from speech_repro.cli import cli

    assert inspect.signature(verify).parameters[option].default == default
    command = cli.commands["repro"].commands["verify"]
    (parameter,) = [p for p in command.params if p.name == option]
    # the CLI may defer importing the core (a callable default): the value is what counts
    shown = parameter.default() if callable(parameter.default) else parameter.default
    assert shown == default
