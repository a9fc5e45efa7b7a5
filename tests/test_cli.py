"""The command package: light to import, no private Kedro attributes, run-local versions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from kedro_repro.session import versioned_entries

SRC = Path(__file__).resolve().parents[1] / "src" / "speech_repro"
CORE = Path(__file__).resolve().parents[1] / "src" / "kedro-repro" / "src" / "kedro_repro"


def test_settings_commands_and_plugin_import_no_torch_pandas_or_scipy():
    """Kedro imports the settings, the project's CLI and the plugin's hooks on every `kedro` call."""
    probe = (
        "import sys, speech_repro.settings, speech_repro.cli, kedro_repro.plugin; "
        "print(sorted({'torch', 'pandas', 'scipy', 'numpy'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


def _private_kedro_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr == "_get_catalog":
            found.append(f"{path.name}:{node.lineno} _get_catalog")
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "_version":
                    found.append(f"{path.name}:{node.lineno} assigns _version")
        if isinstance(node, ast.Attribute) and node.attr in {"_version", "_clear_version_cache"}:
            found.append(f"{path.name}:{node.lineno} {node.attr}")
    return found


def test_commands_and_run_hooks_use_no_private_kedro_attributes():
    files = [*sorted((SRC / "cli").glob("*.py")), *sorted((CORE / "cli").glob("*.py"))]
    # Datasets subclass Kedro's versioned dataset and use their own attributes: not checked.
    # kedro_repro/context.py is a KedroContext subclass overriding Kedro's documented catalog
    # hook (_get_catalog), as custom contexts do: not checked either.
    files += [CORE / name for name in ("hooks.py", "plugin.py", "session.py", "rerun.py")]
    assert [use for path in files for use in _private_kedro_uses(path)] == []


def test_run_local_pins_cover_versioned_entries_and_factories_only():
    catalog = {
        "model": {"type": "json.JSONDataset", "filepath": "data/m.json", "versioned": True},
        "split_lock": {"type": "json.JSONDataset", "filepath": "data/lock.json"},
        "{seed}.model": {
            "type": "json.JSONDataset",
            "filepath": "data/{seed}/m.json",
            "versioned": True,
        },
    }
    names = ["model", "split_lock", "seed_1.model", "in_memory"]
    assert versioned_entries(catalog, {}, names) == {"model", "seed_1.model"}


def test_an_indented_table_is_not_padded_to_the_console_width():
    """Output to a pipe is never wrapped (a very wide console), so nothing may fill that width."""
    probe = (
        "from kedro_repro.cli.common import print_table; "
        "print_table(['grade', 'dataset'], [['bitwise', 'model']], indent=2)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    lines = result.stdout.splitlines()
    assert [line.rstrip() for line in lines] == ["  grade    dataset", "  bitwise  model"]
    assert max(len(line) for line in lines) < 40, [len(line) for line in lines]
