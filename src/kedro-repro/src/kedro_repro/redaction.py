"""One redaction for everything a run records, logs, exports or prints.

Secrets are recognised two ways, and every writer and printer of a run's data (the run record,
the environment capture, the logs, the PROV export, ``kedro repro show``) goes through this module:

- **by shape**, in any string (:func:`redact_text`): the userinfo of a URL (``scheme://user:pass@``,
  ``scheme://TOKEN@``, up to the *last* ``@`` of the authority, so an ``@`` inside a password is
  masked too), ``Authorization:`` headers and ``Bearer``/``Basic`` credentials, PEM private-key
  blocks, well-known token formats (GitHub, Hugging Face, AWS access key ids, Slack, GitLab,
  OpenAI-style ``sk-``, Google API keys, npm, PyPI, JWTs), and ``name=value`` or
  ``"name": "value"`` pairs whose name looks secret;
- **by name** (:func:`is_secret_name`): a mapping key such as ``password``, ``db_pass``,
  ``GITHUB_PAT``, ``hub_auth``, ``creds`` or ``apiKey`` has its value replaced whole
  (:func:`redact_value`), whatever it looks like.

Each match becomes :data:`REDACTED`. Redaction is idempotent: redacting redacted text changes
nothing. Nothing here knows about speech; it only knows the run record's layout
(:data:`RECORD_FREE_FORM`) to decide where keys are user-chosen names.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

REDACTED = "***redacted***"

SECRET_NAME_PARTS = ("PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "CREDENTIAL", "APIKEY")
"""A name whose letters (separators removed, upper-cased) contain one of these is secret."""

SECRET_NAME_WORDS = frozenset(
    {"PASS", "PWD", "PAT", "AUTH", "AUTHORIZATION", "OAUTH", "CREDS", "CRED", "COOKIE", "BEARER"}
)
"""A name with one of these as a whole word (``DB_PASS``, ``GITHUB_PAT``) is secret."""

SECRET_WORD_ENDINGS = ("TOKEN", "KEY")
"""A name with a word ending so (``HF_TOKEN``, ``authToken``, ``PRIVATEKEY``) is secret."""

RECORD_FREE_FORM = (
    ("parameters", "design"),
    ("parameters", "tunable"),
    ("run_options",),
    ("environment", "environment_variables"),
    ("environment", "determinism_env"),
)
"""Where a run record's keys are names users chose: values under secret names are redacted."""

# Words of a name: "apiKey" -> api, Key; "HF_HUB_PASSWD" -> HF, HUB, PASSWD; "HFToken" -> HF, Token.
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    # to its END line, or to the end of the text when it was cut short (a truncated message)
    r".*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
# scheme://USERINFO@host: the userinfo runs to the last "@" before the path, query or fragment,
# so "https://u:p@ss@host" loses all of "u:p@ss". Quotes and backslashes end it, so a URL
# inside JSON or a repr does not swallow its neighbours.
_URL_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.\-])(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s\"'<>\\]+@"
)
_AUTHORIZATION_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization\s*[:=]\s*)"
    r"(?:(?:bearer|basic|digest|token|negotiate)\s+)?[^\s,;\"']+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<scheme>\bbearer\s+)[A-Za-z0-9\-._~+/]{8,}=*", re.IGNORECASE)
_BASIC = re.compile(r"(?P<scheme>\bbasic\s+)(?P<credential>[A-Za-z0-9+/]{8,}={0,2})", re.IGNORECASE)
_TOKEN_SHAPES = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{40,}"  # GitHub fine-grained tokens
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}(?![0-9A-Z])"  # AWS key ids
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|sk-[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic and others
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
    r"|npm_[A-Za-z0-9]{36}"  # npm
    r"|pypi-[A-Za-z0-9_-]{50,}"  # PyPI
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JSON Web Tokens
    r")"
)
# NAME=value (command lines, query strings, "--params a=1,db.password=x"); the value ends at
# whitespace or a separator of such lists.
_ASSIGNMENT = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<name>-{0,2}[A-Za-z_][A-Za-z0-9_.\-]*)=(?P<value>[^\s,;&\"'<>]+)"
)
# "name": "value" and 'name': 'value' (JSON text, Python reprs in error messages).
_QUOTED_PAIR = re.compile(
    r"(?P<q1>[\"'])(?P<name>[A-Za-z0-9_.\- ]{1,64})(?P=q1)(?P<sep>\s*:\s*)"
    r"(?P<q2>[\"'])(?P<value>(?:\\.|(?!(?P=q2)).)*)(?P=q2)"
)

# What every rule below needs somewhere in the text: strings without any (digests, paths,
# numbers, most of a record) are returned at the cost of one search.
_ANY_RULE = re.compile(
    r"://|-----BEGIN|=|[\"']|authorization|bearer|basic|gh[pousr]_|github_pat_|hf_"
    r"|A[A-Z]{3}[0-9A-Z]{16}|xox|glpat-|sk-|[sr]k_|AIza|npm_|pypi-|eyJ",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    """Whether a variable, option or parameter name marks its value as secret.

    ``password``, ``HF_HUB_PASSWD``, ``client_secret``, ``api_key``/``apiKey``, ``HF_TOKEN``,
    ``DB_PASS``, ``GITHUB_PAT``, ``HUB_AUTH``, ``CUDA_CREDS`` are; ``path``, ``tokenizer``,
    ``max_tokens``, ``author``, ``bypass`` are not (see :data:`SECRET_NAME_PARTS`,
    :data:`SECRET_NAME_WORDS`, :data:`SECRET_WORD_ENDINGS`).
    """
    words = [word.upper() for word in _WORDS.findall(name)]
    letters = "".join(words)
    if any(part in letters for part in SECRET_NAME_PARTS):
        return True
    return any(word in SECRET_NAME_WORDS or word.endswith(SECRET_WORD_ENDINGS) for word in words)


def _basic(match: re.Match[str]) -> str:
    credential = match["credential"]
    # base64 of "user:password", not a word of prose ("Basic settings"): it has a digit, "+",
    # "/" or "=", or a capital after its first letter.
    looks_encoded = any(c.isdigit() or c in "+/=" for c in credential) or any(
        c.isupper() for c in credential[1:]
    )
    return f"{match['scheme']}{REDACTED}" if looks_encoded else match[0]


def _assignment(match: re.Match[str]) -> str:
    return f"{match['name']}={REDACTED}" if is_secret_name(match["name"]) else match[0]


def _quoted_pair(match: re.Match[str]) -> str:
    if not is_secret_name(match["name"]):
        return match[0]
    q1, q2 = match["q1"], match["q2"]
    return f"{q1}{match['name']}{q1}{match['sep']}{q2}{REDACTED}{q2}"


def redact_text(text: str) -> str:
    """``text`` with every secret recognisable by its shape replaced by :data:`REDACTED`.

    ``https://u:p@ss@host/x`` -> ``https://***redacted***@host/x``; ``Bearer abc...`` ->
    ``Bearer ***redacted***``; a PEM private key (to its END line) -> ``***redacted***``;
    ``ghp_...``, ``hf_...``, ``AKIA...`` -> ``***redacted***``; ``db.password=x`` ->
    ``db.password=***redacted***``. Anything else is returned unchanged.
    """
    if not text or _ANY_RULE.search(text) is None:
        return text
    text = _PEM_PRIVATE_KEY.sub(REDACTED, text)
    if "://" in text:  # a cheap test first: most strings of a record are not URLs
        text = _URL_USERINFO.sub(rf"\g<scheme>{REDACTED}@", text)
    text = _AUTHORIZATION_HEADER.sub(rf"\g<name>{REDACTED}", text)
    text = _BEARER.sub(rf"\g<scheme>{REDACTED}", text)
    text = _BASIC.sub(_basic, text)
    text = _TOKEN_SHAPES.sub(REDACTED, text)
    text = _ASSIGNMENT.sub(_assignment, text)
    return _QUOTED_PAIR.sub(_quoted_pair, text)


def redact_value(value: Any, *, secret: bool = False, by_name: bool = True) -> Any:
    """A copy of ``value`` (JSON-like: mappings, lists, scalars) with its secrets redacted.

    Every string goes through :func:`redact_text`, mapping keys included. With ``by_name``, a
    value under a key for which :func:`is_secret_name` holds is replaced whole: every string,
    number and nested value in it becomes :data:`REDACTED` (booleans, ``None`` and empty
    strings stay: they hide nothing). ``secret=True`` treats ``value`` itself as under such a key.
    """
    if isinstance(value, Mapping):
        return {
            redact_text(str(key)): redact_value(
                item, secret=secret or (by_name and is_secret_name(str(key))), by_name=by_name
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(item, secret=secret, by_name=by_name) for item in value]
    if isinstance(value, bool) or value is None or value == "":
        return value
    if secret and isinstance(value, str | int | float | bytes):
        return REDACTED
    return redact_text(value) if isinstance(value, str) else value


def redact_command(argv: Sequence[str]) -> list[str]:
    """A command line with every argument passed through :func:`redact_text`.

    In addition, the argument after a secret-named option is replaced by :data:`REDACTED`
    (``--api-token VALUE``); ``--api-key=VALUE`` and ``API_KEY=VALUE`` are masked by
    :func:`redact_text` itself.
    """
    redacted: list[str] = []
    secret_flag_before = False
    for arg in argv:
        if secret_flag_before:
            redacted.append(REDACTED)
            secret_flag_before = False
            continue
        redacted.append(redact_text(arg))
        secret_flag_before = arg.startswith("-") and "=" not in arg and is_secret_name(arg)
    return redacted


def redact_record(
    record: Mapping[str, Any], free_form: Iterable[tuple[str, ...]] = RECORD_FREE_FORM
) -> dict[str, Any]:
    """A copy of a run record with every string redacted by shape, and by name where keys are
    users' names (:data:`RECORD_FREE_FORM`: parameters, run options, environment variables).

    Elsewhere keys are the project's own (dataset, node, package names), so a dataset called
    ``token_counts`` keeps its digests. Records written before redaction existed are safe to
    print after this.
    """
    redacted: dict[str, Any] = redact_value(record, by_name=False)
    for path in free_form:
        parent: Any = redacted
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, Mapping) else None
        if isinstance(parent, dict) and path[-1] in parent:
            parent[path[-1]] = redact_value(parent[path[-1]])
    return redacted


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record with its message and traceback redacted.

    Attach it to a handler (``conf/logging.yml``) so that nothing a handler writes, to the
    console or to a file, carries a secret a message or an exception happened to contain.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops it."""
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatted once here, so the handler's formatter reuses the redacted text.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def redact_logging(logger: logging.Logger | None = None) -> int:
    """Attach a :class:`RedactingFilter` to every handler of ``logger`` (default: the root
    logger) and of the loggers below it that have their own handlers; returns how many were
    added. Idempotent: a handler that already has one is left alone.

    Kedro refuses custom filter classes in ``conf/logging.yml`` unless their module is listed in
    ``KEDRO_LOGGING_MODULE_ALLOWLIST``, so the run hook calls this once logging is configured.
    """
    loggers = [logger or logging.getLogger()]
    if logger is None:
        loggers += [
            item
            for item in logging.Logger.manager.loggerDict.values()
            if isinstance(item, logging.Logger) and item.handlers
        ]
    added = 0
    for each in loggers:
        for handler in each.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
                added += 1
    return added


def redacted_keys(tree: Any) -> list[str]:
    """Dotted keys of a nested mapping whose values were redacted when recorded.

    A replay or resume must not run with the marker in place of the value the run used.
    """
    found: dict[str, None] = {}

    def visit(value: Any, key: str) -> None:
        if isinstance(value, Mapping):
            for name, item in value.items():
                visit(item, f"{key}.{name}" if key else str(name))
        elif isinstance(value, list | tuple):
            for item in value:
                visit(item, key)
        elif isinstance(value, str) and REDACTED in value:
            found[key] = None

    visit(tree, "")
    return list(found)
