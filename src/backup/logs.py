"""The service's own log: one JSON object per line on stdout (collected by Docker's json-file
driver and the log pipeline). Never carries a secret: callers pass names, paths and numbers."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import TextIO

_lock = threading.RLock()  # re-entrant: a signal handler may log while the main thread does
stream: TextIO | None = None  # None: sys.stdout at the time of the call


def event(level: str, message: str, **fields: object) -> None:
    record = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": level,
        "logger": "backup",
        "message": message,
        **{k: v for k, v in fields.items() if v is not None},
    }
    line = json.dumps(record, default=str, ensure_ascii=False)
    with _lock:
        print(line, file=stream or sys.stdout, flush=True)


def info(message: str, **fields: object) -> None:
    event("info", message, **fields)


def warning(message: str, **fields: object) -> None:
    event("warning", message, **fields)


def error(message: str, **fields: object) -> None:
    event("error", message, **fields)
