"""A replay imports the repository's own packages from the restored code, not the working tree."""

from __future__ import annotations

import subprocess
import sys

from kedro_repro.verify import restored_import_paths


def test_editable_paths_inside_the_project_map_to_the_restored_tree(tmp_path):
    project, workdir, elsewhere = tmp_path / "project", tmp_path / "replay", tmp_path / "other"
    for root in (project, workdir):
        (root / "src/core/src").mkdir(parents=True)
    elsewhere.mkdir()
    search_path = [
        str(project / "src/core/src"),
        str(elsewhere),
        str(project / "missing"),
        sys.prefix,
    ]
    assert restored_import_paths(project, workdir, search_path) == [str(workdir / "src/core/src")]


def test_the_replay_process_imports_the_restored_copy(tmp_path):
    """What the mapping is for: with it first on the path, the restored module wins."""
    project, workdir = tmp_path / "project", tmp_path / "replay"
    for root, marker in ((project, "today"), (workdir, "recorded")):
        (root / "src/core/src/corepkg").mkdir(parents=True)
        (root / "src/core/src/corepkg/__init__.py").write_text(f"WHICH = {marker!r}\n")
    paths = restored_import_paths(project, workdir, [str(project / "src/core/src")])
    probe = (
        f"import sys; sys.path.append({str(project / 'src/core/src')!r}); "
        "import corepkg; print(corepkg.WHICH)"
    )  # the editable install's entry comes after PYTHONPATH, as site-packages' .pth files do
    result = subprocess.run(
        [sys.executable, "-c", probe], env={"PYTHONPATH": ":".join(paths)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == "recorded"
