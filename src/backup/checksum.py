"""SHA-256 checksum files beside each dump, in `sha256sum` format (`sha256sum -c` checks them)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from backup.files import write_atomic

SUFFIX = ".sha256"
_LINE = re.compile(r"(?P<digest>[0-9a-f]{64}) [ *](?P<name>[^/\n]+)\n?")
CHUNK = 1 << 20


def checksum_path(dump: Path) -> Path:
    return dump.with_name(dump.name + SUFFIX)


def line(digest: str, name: str) -> str:
    return f"{digest}  {name}\n"


def write(dump: Path, digest: str) -> Path:
    path = checksum_path(dump)
    write_atomic(path, line(digest, dump.name).encode())
    return path


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def status(dump: Path) -> str:
    """'ok', 'mismatch', 'missing' (no checksum file) or 'malformed'."""
    path = checksum_path(dump)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "missing"
    except (OSError, UnicodeDecodeError):
        return "malformed"
    m = _LINE.fullmatch(text)
    if not m or m["name"] != dump.name:
        return "malformed"
    return "ok" if file_digest(dump) == m["digest"] else "mismatch"
