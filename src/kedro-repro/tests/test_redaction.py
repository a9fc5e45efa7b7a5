"""The one redaction: secrets by shape in any string, by name in any mapping, idempotent."""

from __future__ import annotations

import io
import json
import logging

import pytest

from kedro_repro.redaction import (
    REDACTED,
    RedactingFilter,
    is_secret_name,
    redact_command,
    redact_logging,
    redact_record,
    redact_text,
    redact_value,
)

R = REDACTED
PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBplantedpemlinetwo0123456789abcdefghijklmnopqrstuv\n"
    "-----END OPENSSH PRIVATE KEY-----"
)

SHAPES = [
    ("https://user:SECRET@host/x", f"https://{R}@host/x"),
    ("https://u:p@ssWORD@host/x?q=1", f"https://{R}@host/x?q=1"),
    ("https://TOKEN123@host", f"https://{R}@host"),
    (
        "UV_INDEX_URL=https://tok@pypi.example/simple",
        f"UV_INDEX_URL=https://{R}@pypi.example/simple",
    ),
    (
        "postgresql://u:p%40ss@db:5432/x and ftp://a:b@c",
        f"postgresql://{R}@db:5432/x and ftp://{R}@c",
    ),
    ('{"a":"https://x.org","b":"c@d"}', '{"a":"https://x.org","b":"c@d"}'),
    ("Authorization: Bearer abc.def-ghi_jkl", f"Authorization: {R}"),
    ("curl -H 'Bearer eyPlanted-Token123'", f"curl -H 'Bearer {R}'"),
    ("Basic dXNlcjpwYXNzd29yZA==", f"Basic {R}"),
    ("Basic settings are fine", "Basic settings are fine"),
    (f"key:\n{PEM}\nend", f"key:\n{R}\nend"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEcut-short", R),  # a message truncated mid-key
    ("token ghp_" + "a1B2" * 9, f"token {R}"),
    ("github_pat_" + "A1b2_" * 10, R),
    ("x hf_" + "Ab1" * 12 + " y", f"x {R} y"),
    ("AKIAIOSFODNN7EXAMPLE", R),
    ("xoxb-123456789012-abcdefABCDEF", R),
    ("sk-proj-" + "a1B2c3" * 5, R),
    ("--params a=1,db.password=hunter2,b=2", f"--params a=1,db.password={R},b=2"),
    ("https://host/x?access_token=abc123&page=2", f"https://host/x?access_token={R}&page=2"),
    ("KeyError: {'password': 'hunter2', 'n': '3'}", f"KeyError: {{'password': '{R}', 'n': '3'}}"),
]
UNCHANGED = [
    "https://host:8080/x",
    "a:b@c",
    "user@example.org",
    "blake3:" + "ab" * 32,
    "data/06_models/model.safetensors/2026-01-01T00.00.00.000Z/model.safetensors",
    "training.seed=1234",
    "plain",
    "",
]


@pytest.mark.parametrize(("text", "expected"), SHAPES)
def test_secrets_are_redacted_by_shape(text, expected):
    assert redact_text(text) == expected
    assert redact_text(expected) == expected  # idempotent


@pytest.mark.parametrize("text", UNCHANGED)
def test_ordinary_text_is_unchanged(text):
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "name",
    [
        "password", "HF_HUB_PASSWD", "SPEECH_REPRO_DB_PASS", "KEDRO_GITHUB_PAT", "HF_HUB_AUTH",
        "CUDA_CREDS", "client_secret", "api_key", "apiKey", "HF_TOKEN", "authToken",
        "private_key", "AWS_SECRET_ACCESS_KEY", "db.passphrase", "--api-token", "credentials",
    ],
)  # fmt: skip
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    ["path", "filepath", "tokenizer", "max_tokens", "author", "bypass", "salt", "keep_characters",
     "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "seed", "patience", "passes"],
)  # fmt: skip
def test_ordinary_names(name):
    assert not is_secret_name(name)


def test_values_under_secret_names_are_redacted_whole():
    params = {
        "db": {"password": "plain-words", "pin_pass": 1234, "host": "db.example"},
        "hub": {"auth": {"user": "alice", "enabled": True}, "token": ""},
        "split": {"salt": "https://u:p@host/x", "fractions": [0.6, 0.4]},
        "max_tokens": 100,
    }
    assert redact_value(params) == {
        "db": {"password": R, "pin_pass": R, "host": "db.example"},
        "hub": {"auth": {"user": R, "enabled": True}, "token": ""},
        "split": {"salt": f"https://{R}@host/x", "fractions": [0.6, 0.4]},
        "max_tokens": 100,
    }
    assert redact_value(params["db"], by_name=False)["password"] == "plain-words"


def test_command_redaction():
    argv = ["kedro", "run", "--api-token", "tok-1", "API_KEY=key-2", "--data=s3://b:p@x/y", "-p"]
    assert redact_command(argv) == [
        "kedro", "run", "--api-token", R, f"API_KEY={R}", f"--data=s3://{R}@x/y", "-p",
    ]  # fmt: skip


def test_record_redaction_by_name_only_where_users_name_things():
    record = {
        "run_id": "r",
        "command": ["kedro", "run", "--params", "split.salt=https://u:pw@h/x"],
        "parameters": {"design": {"split": {"salt": "s"}}, "tunable": {"db": {"pass": "pw-1"}}},
        "run_options": {"runtime_params": {"token": "tok-2"}},
        "environment": {
            "environment_variables": {"HF_HUB_AUTH": "hub-3", "OMP_NUM_THREADS": "2"},
            "packages": {"google-auth": "2.0"},
        },
        "ledger": {"token_counts": {"digest": "blake3:00"}},
    }
    redacted = redact_record(record)
    assert redacted["command"][-1] == f"split.salt=https://{R}@h/x"
    assert redacted["parameters"]["tunable"]["db"]["pass"] == R
    assert redacted["run_options"]["runtime_params"]["token"] == R
    assert redacted["environment"]["environment_variables"] == {
        "HF_HUB_AUTH": R,
        "OMP_NUM_THREADS": "2",
    }
    assert redacted["environment"]["packages"] == {"google-auth": "2.0"}
    assert redacted["ledger"] == record["ledger"]
    assert record["parameters"]["tunable"]["db"]["pass"] == "pw-1"  # the input is not modified
    assert "pw-1" not in json.dumps(redacted)


def test_logging_filter_redacts_messages_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test_redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("fetching %s with %s", "https://u:pw-log-1@h/x", "Bearer tok-log-2-abcdef")
        try:
            raise RuntimeError("refused ghp_" + "Z9" * 18)
        except RuntimeError:
            logger.exception("failed for password=pw-log-3")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    for secret in ("pw-log-1", "tok-log-2", "Z9Z9Z9", "pw-log-3"):
        assert secret not in text
    assert "RuntimeError: refused ***redacted***" in text  # the traceback is still there


def test_redact_logging_attaches_the_filter_once_to_every_handler():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("test_redaction.attach")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        assert redact_logging(logger) == 1
        assert redact_logging(logger) == 0  # idempotent
        logger.warning("token=tok-attach-1 at https://u:pw-attach-2@h/x")
    finally:
        logger.removeHandler(handler)
    assert "tok-attach-1" not in stream.getvalue()
    assert "pw-attach-2" not in stream.getvalue()
