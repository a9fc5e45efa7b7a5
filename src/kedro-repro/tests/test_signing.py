"""SSH signatures of run records, with the real ssh-keygen and keys made in the test."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kedro_repro.signing import (
    SigningError,
    allowed_signers_line,
    default_allowed_signers,
    default_signing_key,
    sign_file,
    signature_path,
    signature_status,
)

pytestmark = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="needs ssh-keygen (Debian: openssh-client)"
)


@pytest.fixture(autouse=True)
def isolated_git(tmp_path, monkeypatch) -> Path:
    """An empty global git config, so the developer's own signing settings never leak in."""
    config = tmp_path / "gitconfig"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.chdir(tmp_path)  # not inside the project's repository
    return config


def _key(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return key


def _fingerprint(key: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{key}.pub"], check=True, capture_output=True, text=True
    )
    return out.stdout.split()[1]


@pytest.fixture
def setup(tmp_path) -> tuple[Path, Path, Path]:
    """A record, alice's key, and an allowed-signers file trusting alice."""
    record = tmp_path / "run" / "record.json"
    record.parent.mkdir()
    record.write_text('{"status": "complete", "test_wer": 1.0}\n')
    alice = _key(tmp_path, "alice")
    signers = tmp_path / "allowed_signers"
    signers.write_text(allowed_signers_line("alice@example.org", f"{alice}.pub"))
    return record, alice, signers


def test_unsigned(setup):
    record, _, signers = setup
    status = signature_status(record, signers)
    assert status.state == "unsigned" and not status.ok
    assert status.signature == record.parent / "record.json.sig"


def test_sign_then_signed_with_principal(setup):
    record, alice, signers = setup
    sig = sign_file(record, alice)
    assert sig == signature_path(record) == record.parent / "record.json.sig"
    assert sig.read_text().startswith("-----BEGIN SSH SIGNATURE-----")
    status = signature_status(record, signers)
    assert status.state == "signed" and status.ok
    assert status.principals == ("alice@example.org",)
    assert status.fingerprint == _fingerprint(alice)
    assert status.key_type == "ED25519"
    assert status.allowed_signers == signers
    assert "alice@example.org" in status.describe()


def test_record_edited_after_signing_is_invalid(setup):
    record, alice, signers = setup
    sign_file(record, alice)
    record.write_text(record.read_text().replace("1.0", "0.0123"))
    status = signature_status(record, signers)
    assert status.state == "invalid" and not status.ok
    assert "signature" in status.message.lower()
    assert signature_status(record, None).state == "invalid"  # no signers file needed


def test_resigned_by_unknown_key(setup, tmp_path):
    record, alice, signers = setup
    first = sign_file(record, alice).read_bytes()
    mallory = _key(tmp_path, "mallory")
    sign_file(record, mallory)
    assert signature_path(record).read_bytes() != first
    assert sorted(os.listdir(record.parent)) == ["record.json", "record.json.sig"]  # no temp
    status = signature_status(record, signers)
    assert status.state == "unknown-key" and not status.ok
    assert status.fingerprint == _fingerprint(mallory) != _fingerprint(alice)
    assert status.principals == ()


def test_no_allowed_signers_is_unknown_key(setup):
    record, alice, _ = setup
    sign_file(record, alice)
    status = signature_status(record, None)  # and git has no gpg.ssh.allowedSignersFile
    assert status.state == "unknown-key"
    assert status.fingerprint == _fingerprint(alice)
    assert "allowed-signers" in status.message
    missing = signature_status(record, record.parent / "nope")
    assert missing.state == "unknown-key" and "does not exist" in missing.message


def test_other_namespace_is_invalid(setup):
    record, alice, signers = setup
    sign_file(record, alice, namespace="git")
    status = signature_status(record, signers)
    assert status.state == "invalid" and "namespace" in status.message


def test_damaged_signature_is_invalid(setup):
    record, _, signers = setup
    signature_path(record).write_text("garbage\n")
    assert signature_status(record, signers).state == "invalid"


def test_git_defaults(setup, isolated_git):
    record, alice, signers = setup
    assert default_signing_key() is None and default_allowed_signers() is None
    with pytest.raises(SigningError, match="no signing key"):
        sign_file(record)
    isolated_git.write_text(
        f'[user]\n\tsigningkey = {alice}\n[gpg "ssh"]\n\tallowedSignersFile = {signers}\n'
    )
    assert default_signing_key() == alice
    assert default_allowed_signers() == signers
    sign_file(record)
    status = signature_status(record)
    assert status.state == "signed" and status.principals == ("alice@example.org",)


def test_literal_key_in_git_config_is_refused(isolated_git):
    isolated_git.write_text("[user]\n\tsigningkey = key::ssh-ed25519 AAAAC3Nza\n")
    with pytest.raises(SigningError, match="key::"):
        default_signing_key()


def test_without_git_defaults_are_none(setup, monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert default_signing_key() is None and default_allowed_signers() is None


def test_without_ssh_keygen(setup, monkeypatch, tmp_path):
    record, alice, signers = setup
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert signature_status(record, signers).state == "unsigned"  # nothing to check
    with pytest.raises(SigningError, match="ssh-keygen was not found"):
        sign_file(record, alice)
    signature_path(record).write_text("x")
    with pytest.raises(SigningError, match="ssh-keygen was not found"):
        signature_status(record, signers)


def test_timeout_is_a_clear_error(setup, monkeypatch, tmp_path):
    record, alice, _ = setup
    slow = tmp_path / "slow-bin"
    slow.mkdir()
    (slow / "ssh-keygen").write_text("#!/bin/sh\nexec sleep 30\n")
    (slow / "ssh-keygen").chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(SigningError, match="timed out"):
        sign_file(record, alice, timeout=0.5)
    assert not signature_path(record).exists()


def test_missing_key_file(setup, tmp_path):
    record, _, _ = setup
    with pytest.raises(SigningError, match="does not exist"):
        sign_file(record, tmp_path / "no-such-key")


def test_allowed_signers_line_rejects_spaces(setup):
    _, alice, _ = setup
    with pytest.raises(ValueError):
        allowed_signers_line("two words", f"{alice}.pub")
