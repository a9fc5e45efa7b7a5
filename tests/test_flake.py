"""flake.nix and flake.lock agree with each other, with the verified pins, and with uv.lock.

Nothing here evaluates the flake against nixpkgs (that needs the network and Nix >= 2.18; see
docs/nix.md). What can be checked offline is checked:

- the lock's structure: version 7, one node per flake input, every ``original`` exactly the URL in
  flake.nix (otherwise Nix would re-lock, which needs the network), every transitive input a
  ``follows`` that resolves, complete ``locked`` fields, no orphan nodes;
- the lock's values equal ``../shared/nix/pins.json`` (verified revisions and hashes) when that
  file is present, i.e. in the development checkout, not in CI;
- the flake's Python environment is uv.lock's: uv2nix loads the workspace, the interpreter named
  in flake.nix satisfies requires-python, and uv.lock has a wheel for that interpreter for every
  package the flake does not build from source;
- the driver floor in flake.nix is the one the run-time check uses;
- with Debian's nix-bin (2.8; CI installs it): flake.nix parses, its inputs evaluate to what this
  file reads from the text, and ``nix flake metadata --offline`` accepts the lock as up to date.

Each checker returns a list of problems, and the mutation tests show each one can fail.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from kedro_repro.environment import MIN_NVIDIA_DRIVER

from .conftest import GIT

ROOT = Path(__file__).resolve().parents[1]
FLAKE = ROOT / "flake.nix"
LOCK = ROOT / "flake.lock"
# Verified pins live beside the checkout during development; they are not part of the product.
PINS = ROOT.parent / "shared" / "nix" / "pins.json"

LOCKED_KEYS = {"type", "owner", "repo", "rev", "narHash", "lastModified"}
SHA256_SRI = re.compile(r"sha256-[A-Za-z0-9+/]{43}=")
GIT_REV = re.compile(r"[0-9a-f]{40}")
# Linux systems the flake builds the CUDA environment for, as PEP 508 / wheel platform names.
LINUX_MACHINES = ("x86_64", "aarch64")


# --------------------------------------------------------------------------------------------
# Reading flake.nix and the locks


@dataclass
class FlakeInput:
    """One entry of flake.nix's ``inputs``: its URL and ``inputs.<dep>.follows`` targets."""

    url: str
    follows: dict[str, str] = field(default_factory=dict)


def _strip_comments(text: str) -> str:
    """flake.nix without ``#`` comments (its strings contain no ``#``) and ``/* */`` blocks."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"#[^\n]*", "", text)


def _block_after(text: str, opening: re.Match[str]) -> str:
    """The text between the ``{`` that ``opening`` ends on and its matching ``}``."""
    depth, start = 1, opening.end()
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start:index]
    raise AssertionError("unbalanced braces in flake.nix")


def flake_inputs(text: str) -> dict[str, FlakeInput]:
    """The ``inputs`` of a flake.nix written as ``name.url = "...";`` or ``name = { url = ...; }``."""
    body = _strip_comments(text)
    opening = re.search(r"^\s*inputs\s*=\s*\{", body, flags=re.M)
    assert opening, "flake.nix has no top-level `inputs = { ... };`"
    block = _block_after(body, opening)
    inputs: dict[str, FlakeInput] = {}
    for match in re.finditer(r'([A-Za-z][\w-]*)\.url\s*=\s*"([^"]+)"\s*;', block):
        inputs[match.group(1)] = FlakeInput(match.group(2))
    entry_start = re.compile(r"([A-Za-z][\w-]*)\s*=\s*\{")
    position = 0
    while match := entry_start.search(block, position):
        entry = _block_after(block, match)
        position = match.end() + len(entry) + 1  # continue after this entry's closing brace
        url = re.search(r'\burl\s*=\s*"([^"]+)"\s*;', entry)
        assert url, f"input {match.group(1)} has no url"
        follows = dict(re.findall(r'inputs\.([\w-]+)\.follows\s*=\s*"([^"]+)"\s*;', entry))
        inputs[match.group(1)] = FlakeInput(url.group(1), follows)
    # `name.inputs.dep.follows = "x";` written flat, outside a `name = { ... }` block
    for match in re.finditer(r'([A-Za-z][\w-]*)\.inputs\.([\w-]+)\.follows\s*=\s*"([^"]+)"', block):
        inputs[match.group(1)].follows[match.group(2)] = match.group(3)
    return inputs


def original_of(url: str) -> dict[str, str]:
    """The ``original`` node Nix writes for a flake URL; only ``github:`` URLs are used here."""
    match = re.fullmatch(r"github:([^/]+)/([^/]+)(?:/([^/?]+))?", url)
    assert match, f"{url}: only github:OWNER/REPO[/REF] inputs are supported by this test"
    owner, repo, ref = match.groups()
    original = {"type": "github", "owner": owner, "repo": repo}
    if ref is not None:
        original["ref"] = ref
    return original


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text())


# --------------------------------------------------------------------------------------------
# Checkers: each returns the problems it finds (an empty list when all is well)


def lock_problems(inputs: dict[str, FlakeInput], lock: dict[str, Any]) -> list[str]:
    """Whether ``lock`` is a complete, minimal, offline-usable lock of ``inputs``."""
    problems: list[str] = []
    if lock.get("version") != 7:
        problems.append(f"lock version {lock.get('version')!r}, expected 7")
    nodes: dict[str, Any] = lock.get("nodes", {})
    root_name = lock.get("root")
    if root_name != "root" or root_name not in nodes:
        return [*problems, f"root node {root_name!r} missing"]
    root_inputs = nodes[root_name].get("inputs", {})
    if set(root_inputs) != set(inputs):
        problems.append(f"root inputs {sorted(root_inputs)} != flake inputs {sorted(inputs)}")

    for name, spec in inputs.items():
        node_name = root_inputs.get(name)
        if not isinstance(node_name, str) or node_name not in nodes:
            problems.append(f"{name}: no lock node")
            continue
        node = nodes[node_name]
        if node.get("original") != original_of(spec.url):
            problems.append(f"{name}: original {node.get('original')} != {original_of(spec.url)}")
        node_inputs = node.get("inputs", {})
        for dep, target in spec.follows.items():
            if node_inputs.get(dep) != target.split("/"):
                problems.append(
                    f"{name}.{dep}: lock has {node_inputs.get(dep)!r}, flake follows {target!r}"
                )
        for dep, ref in node_inputs.items():
            if dep not in spec.follows:
                # A node of its own would mean a second nixpkgs (or pyproject-nix...) in the closure.
                problems.append(f"{name}.{dep}: not a follows in flake.nix (lock has {ref!r})")

    for node_name, node in nodes.items():
        if node_name == root_name:
            continue
        locked = node.get("locked", {})
        if set(locked) != LOCKED_KEYS:
            problems.append(f"{node_name}: locked keys {sorted(locked)} != {sorted(LOCKED_KEYS)}")
        if not GIT_REV.fullmatch(str(locked.get("rev", ""))):
            problems.append(f"{node_name}: rev {locked.get('rev')!r} is not a full git revision")
        if not SHA256_SRI.fullmatch(str(locked.get("narHash", ""))):
            problems.append(f"{node_name}: narHash {locked.get('narHash')!r} is not sha256 SRI")
        if not isinstance(locked.get("lastModified"), int) or locked["lastModified"] <= 0:
            problems.append(f"{node_name}: lastModified {locked.get('lastModified')!r}")
        for key in ("type", "owner", "repo"):
            if locked.get(key) != node.get("original", {}).get(key):
                problems.append(f"{node_name}: locked {key} differs from original")
        for dep, ref in node.get("inputs", {}).items():
            if isinstance(ref, list) and _follow(nodes, root_name, ref) is None:
                problems.append(f"{node_name}.{dep}: follows path {ref} does not resolve")

    reachable = _reachable(nodes, root_name)
    orphans = sorted(set(nodes) - reachable)
    if orphans:
        problems.append(f"orphan nodes {orphans}")
    return problems


def _follow(nodes: dict[str, Any], root_name: str, path: list[str]) -> str | None:
    """The node a ``follows`` path names, starting at the root, or ``None``."""
    current = root_name
    for step in path:
        ref = nodes.get(current, {}).get("inputs", {}).get(step)
        if isinstance(ref, list):
            ref = _follow(nodes, root_name, ref)
        if not isinstance(ref, str) or ref not in nodes:
            return None
        current = ref
    return current


def _reachable(nodes: dict[str, Any], root_name: str) -> set[str]:
    seen, todo = {root_name}, [root_name]
    while todo:
        for ref in nodes.get(todo.pop(), {}).get("inputs", {}).values():
            target = _follow(nodes, root_name, ref) if isinstance(ref, list) else ref
            if isinstance(target, str) and target in nodes and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def pins_problems(lock: dict[str, Any], pins: dict[str, Any]) -> list[str]:
    """Whether every lock node carries exactly the verified values of the pin of the same name."""
    problems: list[str] = []
    for name, node in lock["nodes"].items():
        if name == lock["root"]:
            continue
        pin = pins.get(name)
        if not isinstance(pin, dict) or "narHash" not in pin:
            problems.append(f"{name}: no verified pin")
            continue
        expected = {key: pin[key] for key in LOCKED_KEYS}
        if node.get("locked") != expected:
            problems.append(f"{name}: locked {node.get('locked')} != pin {expected}")
        if node.get("original") != pin.get("original"):
            problems.append(f"{name}: original {node.get('original')} != pin {pin.get('original')}")
    return problems


def flake_interpreters(text: str) -> set[str]:
    """The ``pythonXY`` attributes flake.nix takes from nixpkgs (a bare ``python3`` included)."""
    return set(re.findall(r"\bpkgs\.(python3\d*)\b(?!Packages)", _strip_comments(text)))


def interpreter_version(attribute: str) -> Version:
    """``python312`` -> 3.12."""
    match = re.fullmatch(r"python3(\d+)", attribute)
    assert match, f"{attribute}: name the interpreter explicitly (python3XY), not python3"
    return Version(f"3.{match.group(1)}")


def sdist_fixups(text: str) -> set[str]:
    """Packages flake.nix gives a build system to (its ``buildSystemFixups`` overlay)."""
    body = _strip_comments(text)
    opening = re.search(r"buildSystemFixups\s*=\s*final:\s*prev:\s*\{", body)
    assert opening, "flake.nix has no buildSystemFixups overlay"
    block = _block_after(body, opening)
    overrides = re.findall(r"([\w.-]+)\s*=\s*prev\.([\w.-]+)\.overrideAttrs", block)
    return {name for name, overridden in overrides if name == overridden}


def _wheel_fits(filename: str, python: Version, machine: str) -> bool:
    """Whether a wheel installs on CPython ``python`` on manylinux ``machine``."""
    python_tags, abi_tag, platform_tags = filename.removesuffix(".whl").split("-")[-3:]
    cp = f"cp3{python.minor}"
    abi3_ok = abi_tag == "abi3" and any(
        tag.startswith("cp3") and int(tag[3:]) <= python.minor for tag in python_tags.split(".")
    )
    python_ok = abi3_ok or any(
        tag in ("py3", "py2", f"py3{python.minor}", cp) and (abi_tag in ("none", cp))
        for tag in python_tags.split(".")
    )
    platform_ok = any(
        tag == "any" or (tag.startswith(("manylinux", "linux")) and tag.endswith(machine))
        for tag in platform_tags.split(".")
    )
    return python_ok and platform_ok


def dependency_markers(uv_lock: dict[str, Any]) -> dict[str, list[str | None]]:
    """For each locked package, the marker of every edge that requires it (None: always)."""
    edges: dict[str, list[str | None]] = {}
    for package in uv_lock["package"]:
        groups = [package.get("dependencies", [])]
        for table in ("optional-dependencies", "dev-dependencies"):
            groups += list(package.get(table, {}).values())
        for group in groups:
            for dependency in group:
                edges.setdefault(dependency["name"], []).append(dependency.get("marker"))
    return edges


def wheel_problems(
    uv_lock: dict[str, Any], python: Version, built_from_sdist: set[str]
) -> list[str]:
    """Packages uv2nix (sourcePreference = "wheel") would have to build without a build system."""
    problems: list[str] = []
    required_by = dependency_markers(uv_lock)
    for machine in LINUX_MACHINES:
        environment = {
            "python_version": f"{python.major}.{python.minor}",
            "python_full_version": f"{python.major}.{python.minor}.0",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": machine,
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "os_name": "posix",
        }
        for package in uv_lock["package"]:
            if "registry" not in package.get("source", {}):
                continue  # the project itself (editable)
            markers = package.get("resolution-markers")
            if markers and not any(Marker(m).evaluate(environment) for m in markers):
                continue  # a version this interpreter never resolves to
            edges = required_by.get(package["name"], [])
            if edges and all(m is not None and not Marker(m).evaluate(environment) for m in edges):
                continue  # required only on other systems (pywin32: sys_platform == 'win32')
            if any(
                _wheel_fits(w["url"].rsplit("/", 1)[-1], python, machine)
                for w in package.get("wheels", [])
            ):
                continue
            if package["name"] in built_from_sdist and package.get("sdist"):
                continue
            problems.append(
                f"{package['name']} {package['version']}: no cp3{python.minor} {machine} wheel"
            )
    return problems


# --------------------------------------------------------------------------------------------
# The real files


@pytest.fixture(scope="module")
def flake_text() -> str:
    return FLAKE.read_text()


@pytest.fixture(scope="module")
def lock() -> dict[str, Any]:
    return _load_json(LOCK)


@pytest.fixture(scope="module")
def inputs(flake_text: str) -> dict[str, FlakeInput]:
    return flake_inputs(flake_text)


def test_flake_declares_the_issue_inputs(inputs):
    assert inputs["nixpkgs"].url == "github:NixOS/nixpkgs/nixos-26.05"  # a release branch
    for name in ("pyproject-nix", "uv2nix", "pyproject-build-systems"):
        assert inputs[name].follows["nixpkgs"] == "nixpkgs", name
    assert inputs["uv2nix"].follows["pyproject-nix"] == "pyproject-nix"
    assert inputs["pyproject-build-systems"].follows == {
        "nixpkgs": "nixpkgs",
        "pyproject-nix": "pyproject-nix",
        "uv2nix": "uv2nix",
    }


def test_lock_is_complete_minimal_and_matches_flake(inputs, lock):
    assert lock_problems(inputs, lock) == []


@pytest.mark.skipif(
    not PINS.is_file(), reason=f"{PINS} (verified pins) exists only beside the dev checkout"
)
def test_lock_carries_the_verified_pins(lock):
    assert pins_problems(lock, _load_json(PINS)) == []


def test_python_environment_comes_from_uv_lock(flake_text):
    body = _strip_comments(flake_text)
    assert re.search(
        r"uv2nix\.lib\.workspace\.loadWorkspace\s*\{\s*workspaceRoot\s*=\s*\./\.;\s*\}", body
    )
    assert re.search(r'mkPyprojectOverlay\s*\{\s*sourcePreference\s*=\s*"wheel";\s*\}', body)
    # Both shells and the check take their virtualenv from the workspace, never from nixpkgs.
    assert "python312Packages" not in body and "withPackages" not in body
    assert body.count("mkVirtualEnv") >= 3


def test_interpreter_satisfies_requires_python(flake_text):
    interpreters = flake_interpreters(flake_text)
    assert len(interpreters) == 1, f"one interpreter, named explicitly: {interpreters}"
    python = interpreter_version(interpreters.pop())
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    locked = tomllib.loads((ROOT / "uv.lock").read_text())["requires-python"]
    assert SpecifierSet(declared) == SpecifierSet(locked), "uv.lock is stale against pyproject.toml"
    # Every patch release of the minor: nixpkgs moves patch versions within a release branch.
    for patch in (0, 99):
        assert Version(f"{python}.{patch}") in SpecifierSet(declared), (python, declared)


def test_uv_lock_has_wheels_for_the_flake_interpreter(flake_text):
    (interpreter,) = flake_interpreters(flake_text)
    uv_lock = tomllib.loads((ROOT / "uv.lock").read_text())
    problems = wheel_problems(uv_lock, interpreter_version(interpreter), sdist_fixups(flake_text))
    assert problems == []


def test_driver_floor_is_shared_with_the_runtime_check(flake_text):
    match = re.search(r'minNvidiaDriver\s*=\s*"([0-9.]+)"\s*;', flake_text)
    assert match, "flake.nix declares no minNvidiaDriver"
    assert match.group(1) == MIN_NVIDIA_DRIVER
    assert "${minNvidiaDriver}" in flake_text  # and the CUDA shell actually checks it


# --------------------------------------------------------------------------------------------
# The checkers fail when they should


def _mutated(lock: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(lock)


def test_lock_problems_catches_a_changed_url(inputs, lock):
    changed = copy.deepcopy(inputs)
    changed["nixpkgs"].url = "github:nixos/nixpkgs/nixos-26.05"  # case matters to Nix
    assert any("nixpkgs: original" in p for p in lock_problems(changed, lock))


def test_lock_problems_catches_missing_and_extra_inputs(inputs, lock):
    fewer = {k: v for k, v in inputs.items() if k != "nix-gl-host"}
    assert any("orphan" in p or "root inputs" in p for p in lock_problems(fewer, lock))
    more = {**inputs, "flake-utils": FlakeInput("github:numtide/flake-utils")}
    assert any("flake-utils: no lock node" in p for p in lock_problems(more, lock))


def test_lock_problems_catches_bad_locked_fields(inputs, lock):
    broken = _mutated(lock)
    del broken["nodes"]["uv2nix"]["locked"]["narHash"]
    broken["nodes"]["nixpkgs"]["locked"]["rev"] = "5880666f"
    broken["nodes"]["pyproject-nix"]["locked"]["lastModified"] = "1782905613"
    problems = lock_problems(inputs, broken)
    assert any(p.startswith("uv2nix: locked keys") for p in problems)
    assert any(p.startswith("nixpkgs: rev") for p in problems)
    assert any(p.startswith("pyproject-nix: lastModified") for p in problems)


def test_lock_problems_catches_transitive_nodes_and_dangling_follows(inputs, lock):
    second = _mutated(lock)
    second["nodes"]["nixpkgs_2"] = copy.deepcopy(second["nodes"]["nixpkgs"])
    second["nodes"]["uv2nix"]["inputs"]["nixpkgs"] = "nixpkgs_2"
    assert any("uv2nix.nixpkgs" in p for p in lock_problems(inputs, second))

    dangling = _mutated(lock)
    dangling["nodes"]["uv2nix"]["inputs"]["pyproject-nix"] = ["pyproject"]
    assert any("does not resolve" in p for p in lock_problems(inputs, dangling))

    orphan = _mutated(lock)
    orphan["nodes"]["flake-utils"] = copy.deepcopy(orphan["nodes"]["nix-gl-host"])
    assert any("orphan nodes ['flake-utils']" in p for p in lock_problems(inputs, orphan))

    version = _mutated(lock)
    version["version"] = 6
    assert any("version" in p for p in lock_problems(inputs, version))


def test_pins_problems_catches_any_changed_value(lock):
    pins = {
        name: {**node["locked"], "original": node["original"]}
        for name, node in lock["nodes"].items()
        if name != "root"
    }
    assert pins_problems(lock, pins) == []
    for key, value in (
        ("narHash", "sha256-" + "A" * 43 + "="),
        ("lastModified", 1),
        ("rev", "0" * 40),
    ):
        wrong = copy.deepcopy(pins)
        wrong["nixpkgs"][key] = value
        problems = pins_problems(lock, wrong)
        assert len(problems) == 1 and problems[0].startswith("nixpkgs: locked"), problems
    wrong = copy.deepcopy(pins)
    wrong["uv2nix"]["original"] = {**wrong["uv2nix"]["original"], "ref": "main"}
    assert pins_problems(lock, wrong) == [
        f"uv2nix: original {lock['nodes']['uv2nix']['original']} != pin {wrong['uv2nix']['original']}"
    ]
    missing = pins_problems(lock, {})
    assert missing and all("no verified pin" in p for p in missing)


def test_interpreter_checks_fail_for_a_bare_or_wrong_python():
    assert flake_interpreters("python = pkgs.python3;") == {"python3"}
    with pytest.raises(AssertionError, match="explicitly"):
        interpreter_version("python3")
    assert interpreter_version("python313") not in SpecifierSet(">=3.11,<3.13")


def test_wheel_problems_catches_a_package_without_a_wheel():
    lock = {
        "package": [
            {
                "name": "onlysdist",
                "version": "1.0",
                "source": {"registry": "https://pypi.org/simple"},
                "sdist": {"url": "https://files.example/onlysdist-1.0.tar.gz"},
            },
            {
                "name": "oldcp",
                "version": "1.0",
                "source": {"registry": "https://pypi.org/simple"},
                "wheels": [
                    {"url": "https://files.example/oldcp-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"}
                ],
            },
            {
                "name": "abi3",
                "version": "1.0",
                "source": {"registry": "https://pypi.org/simple"},
                "wheels": [
                    {"url": f"https://files.example/abi3-1.0-cp39-abi3-manylinux_2_28_{m}.whl"}
                    for m in LINUX_MACHINES
                ],
            },
        ]
    }
    problems = wheel_problems(lock, Version("3.12"), built_from_sdist=set())
    assert "onlysdist 1.0: no cp312 x86_64 wheel" in problems
    assert "oldcp 1.0: no cp312 x86_64 wheel" in problems
    assert not any(p.startswith("abi3") for p in problems)
    assert not any(
        p.startswith("onlysdist") for p in wheel_problems(lock, Version("3.12"), {"onlysdist"})
    )


# --------------------------------------------------------------------------------------------
# With Nix (Debian's nix-bin 2.8 in CI): parse, evaluate the inputs, check the lock offline


# A command that needs nothing but a working Nix, per tool: is this Nix usable by this user?
_PROBES = {
    "nix-instantiate": ["--eval", "--expr", "1"],
    "nix": ["--extra-experimental-features", "nix-command", "eval", "--expr", "1"],
}


@functools.cache
def _unusable(tool: str) -> str | None:
    """Why ``tool`` cannot be used here (not installed, or no access to the Nix store), or None."""
    path = shutil.which(tool)
    if path is None:
        return f"{tool} not installed (Debian: apt-get install nix-bin)"
    probe = subprocess.run(
        [path, *_PROBES[tool]], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        return f"{tool} cannot run here: {probe.stderr.strip()[:200]}"
    return None


def _require(tool: str) -> str:
    """The path of ``tool``. CI installs nix-bin and runs as root, so there a missing or unusable
    tool fails the test; elsewhere it is skipped with the reason."""
    reason = _unusable(tool)
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run installs Debian's nix-bin")
        pytest.skip(reason)
    path = shutil.which(tool)
    assert path is not None
    return path


def test_flake_parses():
    nix_instantiate = _require("nix-instantiate")
    result = subprocess.run(
        [nix_instantiate, "--parse", str(FLAKE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_inputs_evaluate_to_what_the_text_says(inputs):
    """Nix itself reads flake.nix's inputs (outputs are not evaluated): the text parser agrees."""
    nix_instantiate = _require("nix-instantiate")
    expression = f"(import {FLAKE}).inputs"
    result = subprocess.run(
        [nix_instantiate, "--eval", "--strict", "--json", "--expr", expression],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    evaluated = {
        name: FlakeInput(
            spec["url"], {dep: sub["follows"] for dep, sub in spec.get("inputs", {}).items()}
        )
        for name, spec in json.loads(result.stdout).items()
    }
    assert evaluated == inputs


def test_nix_accepts_the_lock_offline(tmp_path, lock):
    """``nix flake metadata --offline --no-update-lock-file`` fetches nothing when the lock is in
    sync with flake.nix and fails (it would have to re-lock) otherwise."""
    nix = _require("nix")  # its probe also proves the store is usable: metadata copies into it
    repo = tmp_path / "flake"
    repo.mkdir()
    shutil.copy2(FLAKE, repo / "flake.nix")
    shutil.copy2(LOCK, repo / "flake.lock")
    for args in (
        ["init", "-q"],
        ["add", "flake.nix", "flake.lock"],
        ["commit", "-q", "-m", "flake"],
    ):
        subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, timeout=60)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run(
        [
            nix,
            "--extra-experimental-features",
            "nix-command flakes",
            "flake",
            "metadata",
            "--offline",
            "--no-update-lock-file",
            "--json",
            str(repo),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["locks"]["nodes"] == lock["nodes"]
