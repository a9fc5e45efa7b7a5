"""Optional SSH signatures of files (a run's ``record.json``), made and checked the way git does.

``sign_file`` runs ``ssh-keygen -Y sign`` and writes the armored signature to ``<file>.sig``;
``signature_status`` checks it with ``ssh-keygen -Y check-novalidate`` (the signature is valid
for the key embedded in it), then ``-Y find-principals`` and ``-Y verify`` against an
allowed-signers file (who that key belongs to). The namespace (:data:`NAMESPACE`) keeps a
signature made for this purpose from being accepted as, say, a git commit signature.

As in git, the key defaults to ``git config user.signingkey`` and the allowed-signers file to
``git config gpg.ssh.allowedSignersFile`` (format: ``<principal> <key type> <base64 key>`` per
line, see ``ALLOWED SIGNERS`` in ``man ssh-keygen``; :func:`allowed_signers_line` writes one).

A signature says who vouched for exactly these bytes; it cannot say the numbers in them are
true. The file is passed to ``ssh-keygen`` on standard input, never through a shell. Needs an
OpenSSH with ``-Y find-principals`` (8.2 or later); tested with OpenSSH 9.2.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kedro_repro.atomic import atomic_write_bytes

NAMESPACE = "speech-repro-run"
SIGNATURE_SUFFIX = ".sig"
GIT_TIMEOUT_S = 10.0
SSH_TIMEOUT_S = 60.0  # signing may wait on a hardware key's touch or an agent's confirmation
_ARMOR = b"-----BEGIN SSH SIGNATURE-----"
_GOOD = re.compile(r"with (?P<type>\S+) key (?P<fingerprint>\S+)")

SignatureState = Literal["unsigned", "signed", "unknown-key", "invalid"]


class SigningError(RuntimeError):
    """Signing or checking could not be done (no ssh-keygen, no key, a timeout, ...)."""


@dataclass(frozen=True)
class SignatureStatus:
    """The state of ``path``'s signature ``signature``.

    ``"unsigned"``: no signature file. ``"signed"``: valid, and its key belongs to
    ``principals`` in ``allowed_signers``. ``"unknown-key"``: valid for the key with
    ``fingerprint``, but that key is not in ``allowed_signers`` (or there is no such file).
    ``"invalid"``: the signature does not verify against the file's bytes (the file was changed
    after signing, another namespace, a damaged signature); ``message`` is ssh-keygen's reason.
    """

    state: SignatureState
    path: Path
    signature: Path
    fingerprint: str | None = None  # e.g. "SHA256:Hq/AEj..."
    key_type: str | None = None  # e.g. "ED25519"
    principals: tuple[str, ...] = ()
    allowed_signers: Path | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        """True only for ``"signed"``."""
        return self.state == "signed"

    def describe(self) -> str:
        """One human-readable line."""
        if self.state == "signed":
            return f"signed by {', '.join(self.principals)} ({self.key_type} {self.fingerprint})"
        if self.state == "unknown-key":
            return f"signed by an unknown key {self.key_type} {self.fingerprint}: {self.message}"
        if self.state == "invalid":
            return f"INVALID signature: {self.message}"
        return "unsigned"


def signature_path(path: str | Path) -> Path:
    """Where the signature of ``path`` lives: ``<path>.sig`` beside it."""
    target = Path(path)
    return target.with_name(target.name + SIGNATURE_SUFFIX)


def ssh_keygen() -> str:
    """Path of the ``ssh-keygen`` executable; raises :class:`SigningError` if there is none."""
    found = shutil.which("ssh-keygen")
    if found is None:
        raise SigningError(
            "ssh-keygen was not found on PATH; install the OpenSSH client "
            "(Debian/Ubuntu: apt-get install openssh-client) to sign or check signatures"
        )
    return found


def default_signing_key(cwd: str | Path | None = None) -> Path | None:
    """The key git signs with (``git config user.signingkey``, read in ``cwd``), or None."""
    value = _git_config("user.signingkey", cwd)
    if value is None:
        return None
    if value.startswith("key::"):
        # git writes such literal public keys to a temporary file for the agent; not supported
        raise SigningError(
            "git config user.signingkey holds a literal 'key::' public key; "
            "pass a key file (or set user.signingkey to a path) instead"
        )
    return _resolve(value, cwd)


def default_allowed_signers(cwd: str | Path | None = None) -> Path | None:
    """git's allowed-signers file (``git config gpg.ssh.allowedSignersFile``), or None."""
    value = _git_config("gpg.ssh.allowedSignersFile", cwd)
    return _resolve(value, cwd) if value is not None else None


def allowed_signers_line(principal: str, public_key: str | Path) -> str:
    """An allowed-signers line (with newline) trusting the key in ``public_key`` (a ``.pub``
    file) for ``principal``, e.g. an e-mail address."""
    if not principal or any(c.isspace() for c in principal):
        raise ValueError(f"a principal must be non-empty and without spaces: {principal!r}")
    fields = Path(public_key).read_text().split()
    if len(fields) < 2:
        raise ValueError(f"{public_key} does not look like an SSH public key")
    return f"{principal} {fields[0]} {fields[1]}\n"


def sign_file(
    path: str | Path,
    key_path: str | Path | None = None,
    *,
    namespace: str = NAMESPACE,
    cwd: str | Path | None = None,
    timeout: float = SSH_TIMEOUT_S,
) -> Path:
    """Sign ``path``'s current bytes with an SSH key; returns the signature's path.

    ``key_path``: a private key, or a public key whose private half is in ``ssh-agent``;
    default ``git config user.signingkey``. A previous signature is replaced atomically, so
    readers see the old signature or the new one, never a partial file.
    """
    target = Path(path)
    key = Path(key_path) if key_path is not None else default_signing_key(cwd)
    if key is None:
        raise SigningError(
            "no signing key: pass one, or set one with `git config user.signingkey <key file>`"
        )
    if not key.is_file():
        raise SigningError(f"signing key {key} does not exist")
    data = target.read_bytes()  # sign exactly these bytes, even if the file changes meanwhile
    # Signing standard input makes ssh-keygen write the signature to stdout instead of to
    # <file>.sig, which it would refuse (or prompt) to overwrite; we then replace it atomically.
    result = _run([ssh_keygen(), "-Y", "sign", "-f", str(key), "-n", namespace], data, timeout)
    if result.returncode != 0 or not result.stdout.startswith(_ARMOR):
        raise SigningError(f"ssh-keygen could not sign {target} with {key}: {_message(result)}")
    destination = signature_path(target)
    atomic_write_bytes(destination, result.stdout)
    return destination


def signature_status(
    path: str | Path,
    allowed_signers: str | Path | None = None,
    *,
    namespace: str = NAMESPACE,
    cwd: str | Path | None = None,
    timeout: float = SSH_TIMEOUT_S,
) -> SignatureStatus:
    """Check ``path`` against its ``<path>.sig``.

    ``allowed_signers`` defaults to ``git config gpg.ssh.allowedSignersFile``; without one a
    valid signature is ``"unknown-key"``. Raises :class:`SigningError` when a signature exists
    but cannot be checked (no ssh-keygen, a timeout).
    """
    target = Path(path)
    signature = signature_path(target)
    if not signature.is_file():
        return SignatureStatus("unsigned", target, signature)
    keygen = ssh_keygen()
    data = target.read_bytes()  # one read: every check below sees the same bytes
    sig = str(signature)

    checked = _run([keygen, "-Y", "check-novalidate", "-n", namespace, "-s", sig], data, timeout)
    good = _GOOD.search(_text(checked))
    if checked.returncode != 0 or good is None:
        return SignatureStatus("invalid", target, signature, message=_message(checked))
    fingerprint, key_type = good["fingerprint"], good["type"]

    signers = Path(allowed_signers) if allowed_signers is not None else None
    if signers is None:
        signers = default_allowed_signers(cwd)

    def unknown(message: str) -> SignatureStatus:
        return SignatureStatus(
            "unknown-key", target, signature, fingerprint, key_type, (), signers, message
        )

    if signers is None:
        return unknown("no allowed-signers file given (git config gpg.ssh.allowedSignersFile)")
    if not signers.is_file():
        return unknown(f"allowed-signers file {signers} does not exist")
    found = _run([keygen, "-Y", "find-principals", "-s", sig, "-f", str(signers)], None, timeout)
    candidates = found.stdout.decode(errors="replace").split() if found.returncode == 0 else []
    if not candidates:
        return unknown(f"the key is not in {signers}")
    # find-principals only matches the key; verify also applies the file's namespace and
    # validity restrictions, and checks the signature once more for each principal.
    principals: list[str] = []
    failures: list[str] = []
    for principal in candidates:
        command = [keygen, "-Y", "verify", "-f", str(signers), "-I", principal]
        verified = _run([*command, "-n", namespace, "-s", sig], data, timeout)
        if verified.returncode == 0:
            principals.append(principal)
        else:
            failures.append(f"{principal}: {_message(verified)}")
    if not principals:
        return unknown(f"the key is in {signers} but not accepted: {'; '.join(failures)}")
    return SignatureStatus(
        "signed", target, signature, fingerprint, key_type, tuple(principals), signers
    )


def _run(args: list[str], data: bytes | None, timeout: float) -> subprocess.CompletedProcess[bytes]:
    try:
        if data is None:
            return subprocess.run(
                args, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
            )
        return subprocess.run(args, input=data, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SigningError(
            f"`ssh-keygen {' '.join(args[1:3])}` timed out after {timeout:g} s "
            "(waiting for a passphrase? load the key into ssh-agent)"
        ) from exc
    except OSError as exc:
        raise SigningError(f"could not run {args[0]}: {exc}") from exc


def _text(result: subprocess.CompletedProcess[bytes]) -> str:
    return (result.stdout + b"\n" + result.stderr).decode(errors="replace")


def _message(result: subprocess.CompletedProcess[bytes]) -> str:
    lines = [line.strip() for line in _text(result).splitlines() if line.strip()]
    return "; ".join(lines) or f"exit status {result.returncode}"


def _git_config(key: str, cwd: str | Path | None) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        result = subprocess.run(
            [git, "config", "--get", key],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no usable git: behave as if nothing were configured
    value = result.stdout.strip()
    return value if result.returncode == 0 and value else None


def _resolve(value: str, cwd: str | Path | None) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() or cwd is None else Path(cwd) / path
