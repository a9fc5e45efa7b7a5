"""Runs travel: push a run bundle to a remote and pull it into another project, by content.

A remote is a folder (a shared file system) or an fsspec URL (``s3://bucket/prefix``; needs the
``remote`` extra). It holds::

    objects/blake3/<hex[:2]>/<hex>    the bytes of one file, named by their BLAKE3 digest
    runs/<run id>.json                the run's manifest (:class:`RunManifest`)

A manifest maps every project-relative path of the run to its digest, size and kind: ``bundle``
(the record, data snapshot, code patch and lock files, every stored output of the ledger, the
checkpoints the record keeps) or ``data`` (the files of the unversioned datasets the run used,
e.g. its raw corpus and split lock: sent only with ``with_data``). The record stays the
authority: a pull checks that the manifest lists every file the record lists, with the record's
digests, before it fetches anything.

Content-addressed and idempotent: an object already on the remote is not sent again, a file
already in the project with the right bytes is not fetched again. Every object is checked by
digest: before it is sent (the bytes read are hashed, and must be what the record says) and on
arrival (a pull hashes what it downloaded before placing it; a corrupted object is refused,
named). Placement is atomic: objects and files are written to a temporary sibling and renamed
(folders, local files) or put whole (object stores); a manifest is written after every object
it names, and a pulled run's record is placed last and then sealed in the project's runs log, so
a killed push or pull leaves no run that looks complete. Credentials are never written: the
remote is named by its URL with any userinfo redacted, and s3fs reads keys from the usual
places (environment, ``~/.aws``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kedro_repro import runlog
from kedro_repro.atomic import atomic_path, atomic_write_bytes
from kedro_repro.bundles import catalog_config, dataset_locations
from kedro_repro.hashing import bytes_digest, file_digest
from kedro_repro.integrity import check_run, open_cache, require_intact, stored_items
from kedro_repro.record import (
    RECORD_FILE,
    RUNS_DIR,
    Digest,
    RelativePath,
    RunId,
    RunRecord,
    is_run_id,
    load_run,
    parse_record,
)
from kedro_repro.redaction import redact_text
from kedro_repro.signing import default_allowed_signers, signature_path, signature_status

MANIFEST_FORMAT = 1
OBJECTS = "objects/blake3"
RUNS = "runs"
REMOTE_CONFIG = "repro"
"""``conf/<env>/repro.yml``: its ``remote`` key names the default remote (:class:`RemoteSettings`)."""
CHECKPOINT_MANIFEST = "CHECKPOINTS.json"  # a checkpoint store's own index, beside its files
_IN_MEMORY = 64 << 20  # files up to this size are read once, hashed and sent from memory
_WORKERS = 10  # concurrent transfers (as the AWS CLI): a connection carries one request at a time


class TransferError(RuntimeError):
    """A push or pull refused: the remote, the manifest or a file is not what it must be."""


class RemoteSettings(BaseModel):
    """The default remote, ``remote:`` in ``conf/base/repro.yml`` or ``conf/local/repro.yml``.

    ``storage_options`` go to fsspec (e.g. ``{endpoint_url: http://127.0.0.1:9000}`` for an
    S3-compatible server). Keys and secrets do not belong here: s3fs reads them from the
    environment or ``~/.aws``, and nothing of this is ever written to a record or a manifest.
    """

    model_config = ConfigDict(extra="forbid")
    url: str
    storage_options: dict[str, Any] = {}


class ManifestFile(BaseModel):
    """One file of a pushed run."""

    model_config = ConfigDict(extra="forbid")
    digest: Digest
    size: int = Field(ge=0)
    kind: Literal["bundle", "data"]


class RunManifest(BaseModel):
    """``runs/<run id>.json`` on a remote: every file of a pushed run, by project-relative path."""

    model_config = ConfigDict(extra="forbid")
    format: Literal[1] = MANIFEST_FORMAT
    run_id: RunId
    record: Digest
    """Digest of the run's ``record.json`` bytes (the runs log seals the same digest)."""
    requires: list[RunId] = []
    """Runs whose bundles this run loaded inputs from (``--load-versions``): pushed with it."""
    files: dict[RelativePath, ManifestFile]


@dataclass
class TransferResult:
    """What a push or a pull did."""

    direction: Literal["push", "pull"]
    remote: str
    """The remote's URL, userinfo redacted."""
    runs: list[str] = field(default_factory=list)
    objects_transferred: int = 0
    """Objects uploaded (push) or downloaded and placed (pull)."""
    bytes_transferred: int = 0
    objects_skipped: int = 0
    """Already on the remote (push) or already in the project with the right bytes (pull)."""
    manifests_written: list[str] = field(default_factory=list)
    """Push: runs whose manifest was new or gained files; pull: runs whose record was placed."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


# --------------------------------------------------------------------------------------------
# Remotes


class Remote(Protocol):
    """Where objects and manifests live; keys are ``/``-separated paths below the remote's root."""

    url: str

    def present(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` exist."""
        ...

    def put(self, key: str, source: Path, digest: str) -> int:
        """Store ``source``'s bytes at ``key``, refusing them unless they hash to ``digest``;
        returns their size."""
        ...

    def fetch(self, key: str, destination: Path) -> None:
        """Copy the object at ``key`` to ``destination`` (a file that is then checked)."""
        ...

    def read(self, key: str) -> bytes | None:
        """A small object's bytes (a manifest), None when absent."""
        ...

    def write(self, key: str, data: bytes) -> None:
        """Store a small object (a manifest) whole."""
        ...


def _read_checked(source: Path, digest: str) -> bytes | None:
    """``source``'s bytes when small enough to hold (None otherwise), after checking that they,
    or the file read in chunks, hash to ``digest``."""
    if source.stat().st_size <= _IN_MEMORY:
        data = source.read_bytes()
        actual = bytes_digest(data)
    else:
        data, actual = None, file_digest(source)
    if actual != digest:
        raise TransferError(
            f"{source}: its bytes hash to {actual}, not the recorded {digest}: not sending it"
        )
    return data


class FolderRemote:
    """A remote in a folder (a shared file system): every write is temporary file + rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def present(self, keys: Iterable[str]) -> set[str]:
        return {key for key in keys if (self.root / key).is_file()}

    def put(self, key: str, source: Path, digest: str) -> int:
        data = _read_checked(source, digest)
        with atomic_path(self.root / key) as tmp:
            if data is not None:
                tmp.write_bytes(data)
            else:
                shutil.copyfile(source, tmp)
                if file_digest(tmp) != digest:  # the source changed while it was copied
                    raise TransferError(f"{source} changed while it was sent: not sending it")
        return source.stat().st_size

    def fetch(self, key: str, destination: Path) -> None:
        try:
            shutil.copyfile(self.root / key, destination)
        except FileNotFoundError:
            raise TransferError(f"object {key} is missing from remote {self.url}") from None

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        atomic_write_bytes(self.root / key, data)


class FsspecRemote:
    """A remote at an fsspec URL (``s3://bucket/prefix``, ...): an object put is atomic there."""

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        import fsspec  # only pushes and pulls to URLs need it

        try:
            self.fs, root = fsspec.core.url_to_fs(url, **storage_options)
        except ImportError as error:
            raise TransferError(
                f"remote {redact_text(url)} needs a file-system package that is not installed "
                f"({error}); for s3:// install the remote extra: uv sync --extra remote"
            ) from None
        self.root = root.rstrip("/")
        self.url = redact_text(url)

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def present(self, keys: Iterable[str]) -> set[str]:
        wanted = set(keys)
        if not wanted:
            return set()
        # One listing of the object store (a request per 1,000 objects), not a request per file,
        # never answered from s3fs's listings cache: another machine may have pushed since.
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(self._path(OBJECTS))
        except FileNotFoundError:
            return set()
        prefix = f"{self.root}/"
        return wanted & {name.removeprefix(prefix) for name in found}

    def put(self, key: str, source: Path, digest: str) -> int:
        data = _read_checked(source, digest)
        if data is not None:
            self.fs.pipe_file(self._path(key), data)  # the hashed bytes are the bytes sent
        else:
            before = source.stat()
            self.fs.put_file(str(source), self._path(key))
            after = source.stat()
            if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
                self.fs.rm_file(self._path(key))
                raise TransferError(f"{source} changed while it was sent: not sending it")
        return source.stat().st_size

    def fetch(self, key: str, destination: Path) -> None:
        try:
            self.fs.get_file(self._path(key), str(destination))
        except FileNotFoundError:
            raise TransferError(f"object {key} is missing from remote {self.url}") from None

    def read(self, key: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._path(key))
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(key), data)


def remote_settings(project: Path) -> RemoteSettings | None:
    """The default remote of ``project`` (``remote:`` in ``conf/{base,local}/repro.yml``), or None."""
    from kedro.config import MissingConfigException, OmegaConfigLoader

    loader = OmegaConfigLoader(
        conf_source=str(Path(project) / "conf"),
        base_env="base",
        default_run_env="local",
        config_patterns={REMOTE_CONFIG: [f"{REMOTE_CONFIG}*", f"{REMOTE_CONFIG}*/**"]},
    )
    try:
        section = dict(loader[REMOTE_CONFIG]).get("remote")
    except MissingConfigException:
        return None
    if section is None:
        return None
    if isinstance(section, str):
        section = {"url": section}
    try:
        return RemoteSettings.model_validate(section)
    except ValidationError as error:
        raise TransferError(f"conf/*/{REMOTE_CONFIG}.yml: remote: {error}") from None


def open_remote(project: Path, location: str | None) -> Remote:
    """The remote at ``location`` (a folder, relative to ``project`` if not absolute, or a URL),
    or the project's default remote (:func:`remote_settings`) when ``location`` is None."""
    settings = remote_settings(project)
    if location is None:
        if settings is None:
            raise TransferError(
                "no remote given and no default remote configured: pass REMOTE (a folder or a "
                f"URL such as s3://bucket/runs), or set remote: in conf/local/{REMOTE_CONFIG}.yml"
            )
        location = settings.url
    options = settings.storage_options if settings and settings.url == location else {}
    if location.startswith("file://"):
        location = location.removeprefix("file://")
    if "://" in location:
        return FsspecRemote(location, options)
    folder = Path(location)
    return FolderRemote(folder if folder.is_absolute() else Path(project) / folder)


def object_key(digest: str) -> str:
    """Where the object of ``digest`` lives on a remote."""
    algorithm, hexdigest = digest.split(":", 1)
    if algorithm != "blake3":
        raise TransferError(f"{digest}: objects are named by BLAKE3 digests only")
    return f"{OBJECTS}/{hexdigest[:2]}/{hexdigest}"


def manifest_key(run_id: str) -> str:
    """Where the manifest of ``run_id`` lives on a remote."""
    return f"{RUNS}/{run_id}.json"


# --------------------------------------------------------------------------------------------
# What a run's bundle is


def _local_files(project: Path, relative: str) -> list[str]:
    """Project-relative paths of the files at or below ``relative`` (symlinked folders followed),
    temporary files of interrupted writes left out."""
    base = project / relative
    if base.is_file():
        return [relative]
    found = []
    for folder, _, names in os.walk(base, followlinks=True):
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                continue
            found.append((Path(folder) / name).relative_to(project).as_posix())
    return sorted(found)


def data_paths(project: Path, record: RunRecord) -> list[str]:
    """The files of the unversioned local datasets ``record`` saved or read without storing them
    in its bundle (its raw data, a split lock): what ``with_data`` sends."""
    catalog = catalog_config(project, record.env)
    locations = dataset_locations(project, catalog)
    used = [n for n, e in record.ledger.items() if not e.files] + list(record.inputs)
    paths: list[str] = []
    for name in used:
        location = locations.get(name)
        if location is None or location.versioned or location.is_factory:
            continue
        if Path(location.path).is_absolute() or not (project / location.path).exists():
            continue  # outside the project: not part of what a clone can receive
        paths += _local_files(project, location.path)
    return sorted(set(paths))


def _required_runs(project: Path, run_id: str) -> list[str]:
    """``run_id`` after every run whose bundle it loaded inputs from, transitively."""
    ordered: list[str] = []

    def visit(current: str) -> None:
        if current in ordered:
            return
        record = load_run(project / RUNS_DIR, current)
        for source in sorted(set(record.load_versions.values())):
            if is_run_id(source):
                visit(source)
        ordered.append(current)

    visit(run_id)
    return ordered


def bundle_manifest(
    project: Path, run_id: str, *, with_data: bool, cache: Any = None
) -> RunManifest:
    """The manifest of ``run_id`` as it lies in ``project``: recorded files with the record's
    digests, the rest of the bundle folder (record, data snapshot, signature) and the
    checkpoint stores' indexes hashed now, with the data files when ``with_data``."""
    record = load_run(project / RUNS_DIR, run_id)
    bundle = f"{RUNS_DIR}/{run_id}"
    digests: dict[str, tuple[str | None, str]] = {
        path: (digest, "bundle") for _, path, digest in stored_items(record)
    }
    extra = _local_files(project, bundle)
    for section in record.checkpoints.values():
        index = f"{section.directory}/{CHECKPOINT_MANIFEST}"
        if (project / index).is_file():
            extra.append(index)
    for path in extra:
        digests.setdefault(path, (None, "bundle"))
    if with_data:
        for path in data_paths(project, record):
            digests.setdefault(path, (None, "data"))
    unknown = [p for p, (d, _) in digests.items() if d is None]
    own = cache is None
    cache = cache or open_cache(project)
    try:
        computed = dict(zip(unknown, cache.digests([project / p for p in unknown]), strict=True))
    finally:
        if own:
            cache.close()
    files = {
        path: ManifestFile(
            digest=digest or computed[path], size=(project / path).stat().st_size, kind=kind
        )
        for path, (digest, kind) in sorted(digests.items())
    }
    requires = sorted({v for v in record.load_versions.values() if is_run_id(v)})
    return RunManifest(
        run_id=run_id,
        record=files[f"{bundle}/{RECORD_FILE}"].digest,
        requires=requires,
        files=files,
    )


# --------------------------------------------------------------------------------------------
# Push


def _remote_manifest(remote: Remote, run_id: str) -> RunManifest | None:
    data = remote.read(manifest_key(run_id))
    if data is None:
        return None
    try:
        return RunManifest.model_validate_json(data)
    except ValidationError as error:
        raise TransferError(
            f"{manifest_key(run_id)} on remote {remote.url} is not a run manifest: "
            f"{error.errors()[0]['msg']} at {'.'.join(str(p) for p in error.errors()[0]['loc'])}"
        ) from None


def push(
    project: Path,
    run_id: str,
    remote: Remote,
    *,
    with_data: bool = False,
    progress: Callable[[str], None] | None = None,
) -> TransferResult:
    """Send ``run_id`` (and the runs it loaded inputs from) to ``remote``.

    Only finished runs travel. Each run's stored bytes are checked against its record first
    (a tampered run is never sent); objects the remote already holds are not sent again; each run's manifest is written
    after all its objects. A remote holding another record under the same run id is refused.
    """
    project = Path(project)
    result = TransferResult("push", remote.url)
    manifests: list[tuple[RunManifest, RunManifest | None]] = []
    with open_cache(project) as cache:
        for current in _required_runs(project, run_id):
            if load_run(project / RUNS_DIR, current).status == "running":
                raise TransferError(
                    f"run {current} has not finished (running, or killed: resume it first): "
                    "only a final record travels"
                )
            require_intact(project, current, what="to push")
            manifest = bundle_manifest(project, current, with_data=with_data, cache=cache)
            existing = _remote_manifest(remote, current)
            if existing is not None and existing.record != manifest.record:
                raise TransferError(
                    f"remote {remote.url} holds run {current} with another record "
                    f"({existing.record}, here {manifest.record}): not replacing it"
                )
            manifests.append((manifest, existing))
            result.runs.append(current)
    wanted: dict[str, tuple[Path, str]] = {}  # object key -> (a local file with it, digest)
    for manifest, _ in manifests:
        for path, entry in manifest.files.items():
            wanted.setdefault(object_key(entry.digest), (project / path, entry.digest))
    present = remote.present(wanted)
    missing = sorted(set(wanted) - present)
    result.objects_skipped = len(present)
    if progress:
        progress(f"{len(missing)} object(s) to send, {len(present)} already on {remote.url}")
    with ThreadPoolExecutor(_WORKERS) as pool:
        sizes = list(pool.map(lambda key: remote.put(key, *wanted[key]), missing))
    result.objects_transferred, result.bytes_transferred = len(missing), sum(sizes)
    for manifest, existing in manifests:
        if existing is not None:
            merged = {**existing.files, **manifest.files}  # earlier data pushes are kept
            if merged == existing.files:
                continue
            manifest = manifest.model_copy(update={"files": dict(sorted(merged.items()))})
        remote.write(manifest_key(manifest.run_id), manifest.model_dump_json(indent=1).encode())
        result.manifests_written.append(manifest.run_id)
    return result


# --------------------------------------------------------------------------------------------
# Pull


def _check_paths(manifest: RunManifest, record: RunRecord) -> None:
    """Refuse a manifest that disagrees with its record or names a path a pull must not write."""
    bundle = f"{RUNS_DIR}/{record.run_id}/"
    recorded = {path: digest for _, path, digest in stored_items(record)}
    indexes = {f"{s.directory}/{CHECKPOINT_MANIFEST}" for s in record.checkpoints.values()}
    for path, digest in recorded.items():
        entry = manifest.files.get(path)
        if entry is None:
            raise TransferError(f"the remote's manifest of run {record.run_id} lacks {path}")
        if entry.digest != digest:
            raise TransferError(
                f"the remote's manifest of run {record.run_id} names {path} with digest "
                f"{entry.digest}, but the run recorded {digest}"
            )
    for path, entry in manifest.files.items():
        # A pull writes only data: under data/, and of the run bundles only this run's own.
        inside = PurePosixPath(path).parts[0] == "data" and (
            path.startswith(bundle) or not path.startswith(f"{RUNS_DIR}/")
        )
        if entry.kind == "bundle":
            allowed = path in recorded or path in indexes or path.startswith(bundle)
        else:
            allowed = not path.startswith(bundle)
        if not (inside and allowed):
            raise TransferError(
                f"the remote's manifest of run {record.run_id} names {path} ({entry.kind}), "
                "which is not a file of that run: refusing the whole run"
            )


def _fetch_record(remote: Remote, manifest: RunManifest, workdir: Path) -> tuple[bytes, RunRecord]:
    key = object_key(manifest.record)
    temporary = workdir / "record.json"
    remote.fetch(key, temporary)
    data = temporary.read_bytes()
    if bytes_digest(data) != manifest.record:
        raise TransferError(
            f"object {key} on remote {remote.url} (the record of run {manifest.run_id}) hashes "
            f"to {bytes_digest(data)}, not {manifest.record}: refused"
        )
    try:
        record = parse_record(
            json.loads(data), f"the record of run {manifest.run_id} on {remote.url}"
        )
    except ValueError as error:
        raise TransferError(str(error)) from None
    if record.run_id != manifest.run_id:
        raise TransferError(
            f"object {key} is the record of run {record.run_id}, not {manifest.run_id}"
        )
    return data, record


def _fetch_checked(remote: Remote, key: str, target: Path, digest: str, path: str) -> int:
    """Download ``key`` next to ``target``, place it only if it hashes to ``digest``."""
    with atomic_path(target) as tmp:
        remote.fetch(key, tmp)
        actual = file_digest(tmp)
        if actual != digest:
            raise TransferError(
                f"object {key} on remote {remote.url} (for {path}) hashes to {actual}, not "
                f"{digest}: the remote copy is corrupt; refused, nothing placed for it"
            )
    return target.stat().st_size


def pull(
    project: Path,
    run_id: str,
    remote: Remote,
    *,
    with_data: bool = False,
    trust_patch: bool = False,
    progress: Callable[[str], None] | None = None,
) -> TransferResult:
    """Fetch ``run_id`` (and the runs it loaded inputs from) from ``remote`` into ``project``.

    The record is fetched and checked against the manifest's digest first, and the manifest
    against the record; every other object is checked by digest before it is placed. Files
    already here with the right bytes are kept; a file here with other bytes is refused (a pull
    never overwrites). The record is placed last and sealed in the runs log, then the whole run
    is checked as ``kedro repro check`` does. A run that ran from a dirty tree is sealed only
    when an allowed signer signed its record, or with ``trust_patch`` (its stored patch is code
    that ``verify`` applies to sealed runs).
    """
    project = Path(project)
    result = TransferResult("pull", remote.url)
    order: dict[str, RunManifest] = {}  # dependencies first

    def visit(current: str) -> None:
        if current in order:
            return
        manifest = _remote_manifest(remote, current)
        if manifest is None:
            raise TransferError(f"remote {remote.url} holds no run {current}")
        for source in manifest.requires:
            visit(source)
        order[current] = manifest

    visit(run_id)
    for current, manifest in order.items():
        _pull_one(project, manifest, remote, with_data, trust_patch, result, progress)
        result.runs.append(current)
    return result


def _require_signed_patch(project: Path, record: RunRecord, record_bytes: bytes) -> None:
    """Refuse to seal a run whose code includes a stored patch unless an allowed signer signed
    its record: sealing it here would make ``verify`` apply that patch (code from the remote)
    without asking, which it does only for runs this project's log or a trusted key vouches for."""
    bundle = project / RUNS_DIR / record.run_id
    with tempfile.TemporaryDirectory(prefix="kedro-repro-pull-") as workdir:
        candidate = Path(workdir) / RECORD_FILE
        candidate.write_bytes(record_bytes)
        signature = signature_path(bundle / RECORD_FILE)
        if signature.is_file():
            shutil.copyfile(signature, signature_path(candidate))
        status = signature_status(candidate, default_allowed_signers(project), cwd=project)
    if status.state != "signed":
        assert record.code is not None and record.code.patch is not None
        raise TransferError(
            f"run {record.run_id} ran from a dirty tree: its code includes the patch "
            f"{bundle / record.code.patch}, code from the remote, and its record is "
            f"{status.describe()}; read the patch, then pull again with --trust-patch (the run "
            "is not placed until then)"
        )


def _pull_one(
    project: Path,
    manifest: RunManifest,
    remote: Remote,
    with_data: bool,
    trust_patch: bool,
    result: TransferResult,
    progress: Callable[[str], None] | None,
) -> None:
    run_id = manifest.run_id
    runs_dir = project / RUNS_DIR
    record_path = f"{RUNS_DIR}/{run_id}/{RECORD_FILE}"
    with tempfile.TemporaryDirectory(prefix="kedro-repro-pull-") as workdir:
        record_bytes, record = _fetch_record(remote, manifest, Path(workdir))
    _check_paths(manifest, record)
    if with_data and not any(e.kind == "data" for e in manifest.files.values()):
        raise TransferError(
            f"run {run_id} was pushed to {remote.url} without its data: push it with --with-data"
        )
    local_record = project / record_path
    if local_record.is_file() and file_digest(local_record) != manifest.record:
        raise TransferError(f"{record_path} exists here with another record: not replacing it")
    wanted = {
        path: entry
        for path, entry in manifest.files.items()
        if path != record_path and (with_data or entry.kind == "bundle")
    }
    here = [path for path in wanted if (project / path).is_file()]
    with open_cache(project) as cache:
        digests = dict(zip(here, cache.digests([project / p for p in here]), strict=True))
    conflicts = [p for p, d in digests.items() if d != wanted[p].digest]
    if conflicts:
        raise TransferError(
            f"run {run_id}: {len(conflicts)} file(s) exist here with other bytes, e.g. "
            f"{conflicts[0]} (here {digests[conflicts[0]]}, the run's {wanted[conflicts[0]].digest}); "
            "a pull never overwrites files"
        )
    missing = sorted(set(wanted) - set(digests))
    result.objects_skipped += len(digests)
    if progress:
        progress(f"run {run_id}: {len(missing)} file(s) to fetch, {len(digests)} already here")

    def fetch(path: str) -> int:
        entry = wanted[path]
        return _fetch_checked(remote, object_key(entry.digest), project / path, entry.digest, path)

    with ThreadPoolExecutor(_WORKERS) as pool:
        sizes = list(pool.map(fetch, missing))
    result.objects_transferred += len(missing)
    result.bytes_transferred += sum(sizes)
    if not local_record.is_file():
        if record.code is not None and record.code.patch is not None and not trust_patch:
            _require_signed_patch(project, record, record_bytes)
        atomic_write_bytes(local_record, record_bytes)  # last: the run exists once complete
        result.bytes_transferred += len(record_bytes)
        result.objects_transferred += 1
        result.manifests_written.append(run_id)
    else:
        result.objects_skipped += 1
    if runlog.check_record(runs_dir, run_id).status == "unsealed":
        runlog.append(runs_dir, run_id, local_record)
    check = check_run(project, run_id)
    if check.problems:
        raise TransferError(
            f"run {run_id} was pulled but does not check: "
            + "; ".join(p.describe() for p in check.problems)
        )


__all__ = [
    "FolderRemote",
    "FsspecRemote",
    "RemoteSettings",
    "RunManifest",
    "TransferError",
    "TransferResult",
    "bundle_manifest",
    "open_remote",
    "pull",
    "push",
    "remote_settings",
]
