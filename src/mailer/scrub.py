"""Log scrubbing (requirement S7) and JSON logging.

`scrub` removes e-mail addresses, the service's own secret values and anything that looks like a
credential (password=..., PASS ..., Authorization: ..., user:password@ in URLs) from a text; the
rest of the line stays as it was. `setup_logging` sends every log record through it as one JSON
object per line.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import quote

EMAIL = "<email>"
SECRET = "<secret>"
MIN_SECRET_LEN = 4

_SURROGATES = re.compile(r"[\ud800-\udfff]")
_EMAIL_RE = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
_URL_USERINFO = re.compile(r"(\b[A-Za-z][\w+.-]*://[^\s/:@]*:)([^\s@/]+)(@)")
_AUTHORIZATION = re.compile(
    r"(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:basic|bearer|digest|token|negotiate|ntlm)\s+)?)"
    r"([^\s\"',;]+)",
    re.IGNORECASE,
)
_KEY_VALUE = re.compile(
    r"(\b(?:\w+[_-])?(?:password|passwd|pwd|passphrase|pass|secret|api[_-]?key|"
    r"access[_-]?token|auth[_-]?token|token)[\"']?\s*[:=]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s\"',;&]+)",
    re.IGNORECASE,
)
_SECRET_KEY = re.compile(
    r"(?:^|[_-])(?:password|passwd|pwd|passphrase|secret|api[_-]?key|token|authorization)$",
    re.IGNORECASE,
)
_PASS_COMMAND = re.compile(r"(\bpass\s+)(?![:=])([^\s\"']+)", re.IGNORECASE)
_IMAP_LOGIN = re.compile(r"(\bLOGIN\s+\S+\s+)([^\s\"']+)")


def _quoted_secret(match: re.Match[str]) -> str:
    value = match.group(2)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return f"{match.group(1)}{value[0]}{SECRET}{value[0]}"
    return f"{match.group(1)}{SECRET}"


@functools.lru_cache(maxsize=32)
def _secret_pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    variants: set[str] = set()
    for secret in secrets:
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_LEN:
            continue
        variants.add(secret)
        variants.add(quote(secret, safe=""))  # as it appears in URLs and DSNs
    if not variants:
        return None
    ordered = sorted(variants, key=len, reverse=True)  # longest first: no partial leftovers
    return re.compile("|".join(re.escape(v) for v in ordered))


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with secret values, credentials and e-mail addresses replaced by "<secret>" and
    "<email>". Secrets shorter than 4 characters are not searched (too many false hits)."""
    if not text:
        return text
    pattern = _secret_pattern(tuple(secrets))
    if pattern is not None:
        text = pattern.sub(SECRET, text)
    text = _URL_USERINFO.sub(rf"\1{SECRET}\3", text)
    text = _AUTHORIZATION.sub(rf"\1{SECRET}", text)
    text = _KEY_VALUE.sub(_quoted_secret, text)
    text = _PASS_COMMAND.sub(rf"\1{SECRET}", text)
    text = _IMAP_LOGIN.sub(rf"\1{SECRET}", text)
    text = _EMAIL_RE.sub(EMAIL, text)
    return text


_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
_CORE = ("ts", "level", "logger", "msg", "exc", "stack")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (RFC 3339, UTC, ms), level, logger, msg, the record's `extra`
    fields, exc (traceback) and stack; every string scrubbed, and the value of an extra field
    named like a secret (password, db_password, token, api_key, ...) replaced entirely."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets = tuple(s for s in secrets if isinstance(s, str) and s)

    def _scrub(self, text: str) -> str:
        return _SURROGATES.sub("\ufffd", scrub(text, self.secrets))

    def _value(self, value: object, depth: int = 0) -> object:
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        if isinstance(value, str):
            return self._scrub(value)
        if depth < 5 and isinstance(value, dict):
            return {
                self._scrub(str(k)): SECRET
                if _SECRET_KEY.search(str(k)) and v not in (None, "")
                else self._value(v, depth + 1)
                for k, v in value.items()
            }
        if depth < 5 and isinstance(value, list | tuple | set | frozenset):
            return [self._value(v, depth + 1) for v in value]
        return self._scrub(str(value))

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: still log something
            message = f"{record.msg!r} % {record.args!r}"
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        out: dict[str, object] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": self._scrub(str(message)),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRS or key in _CORE or key.startswith("_"):
                continue
            secret_key = _SECRET_KEY.search(key) and value not in (None, "")
            out[key] = SECRET if secret_key else self._value(value)
        if record.exc_info:
            out["exc"] = self._scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc"] = self._scrub(record.exc_text)
        if record.stack_info:
            out["stack"] = self._scrub(self.formatStack(record.stack_info))
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str, secrets: Iterable[str] = (), stream: TextIO | None = None) -> None:
    """Root logger -> one handler writing JsonFormatter lines to `stream` (default: sys.stdout
    at call time). Replaces handlers a previous call installed and plain StreamHandlers (such as
    basicConfig's), so nothing unscrubbed is written next to it; other handlers are kept."""
    numeric = logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_mailer_json", False) or type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter(secrets))
    handler._mailer_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
    for noisy in ("httpx", "httpcore"):  # one INFO line per request, with URLs
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
