"""backup.log (B3): one line per run, appended, never rotated away (a line a day).

    2025-01-31T02:30:00Z result=success exit=0 duration_s=4.21 databases=praxis,ecom,n8n
    sizes=praxis:81234,ecom:40211,n8n:30444,globals:1201 total_bytes=153090 rotated=4

(one line in the file). The time is the run's start (UTC); `message` is added, JSON-quoted, when
the run failed. Values without spaces stay bare, so `grep result=disk_full` works.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from backup.errors import from_os_error
from backup.files import FILE_MODE

LOG_NAME = "backup.log"
_FIELD = re.compile(r'(?P<key>[a-z_]+)=(?P<value>"(?:[^"\\]|\\.)*"|\S*)')
_BARE = re.compile(r"[^\s\"=]*")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class RunRecord:
    started: datetime
    result: str
    exit_code: int
    duration: float
    databases: tuple[str, ...]
    sizes: dict[str, int] = field(default_factory=dict)  # name -> bytes of its dump file
    rotated: int = 0
    message: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


def _value(text: str) -> str:
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def format_line(rec: RunRecord) -> str:
    parts = [
        rec.started.astimezone(UTC).strftime(_TIME_FORMAT),
        f"result={rec.result}",
        f"exit={rec.exit_code}",
        f"duration_s={rec.duration:.2f}",
        f"databases={','.join(rec.databases) or '-'}",
        "sizes=" + (",".join(f"{k}:{v}" for k, v in rec.sizes.items()) or "-"),
        f"total_bytes={rec.total_bytes}",
        f"rotated={rec.rotated}",
    ]
    if rec.message:
        # one line whatever the message holds: JSON quoting escapes newlines and quotes
        parts.append(f"message={_value(' '.join(rec.message.split()))}")
    return " ".join(parts) + "\n"


def parse_line(line: str) -> RunRecord:
    """The inverse of format_line (ValueError for a line that is not a run record)."""
    head, _, rest = line.strip().partition(" ")
    started = datetime.strptime(head, _TIME_FORMAT).replace(tzinfo=UTC)
    fields = {}
    for m in _FIELD.finditer(rest):
        raw = m["value"]
        fields[m["key"]] = json.loads(raw) if raw.startswith('"') else raw
    try:
        sizes = {}
        if fields.get("sizes", "-") != "-":
            for item in fields["sizes"].split(","):
                name, _, num = item.rpartition(":")
                sizes[name] = int(num)
        dbs = fields.get("databases", "-")
        return RunRecord(
            started=started,
            result=fields["result"],
            exit_code=int(fields["exit"]),
            duration=float(fields["duration_s"]),
            databases=tuple(dbs.split(",")) if dbs != "-" else (),
            sizes=sizes,
            rotated=int(fields.get("rotated", 0)),
            message=fields.get("message", ""),
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"not a backup.log run line: {line.strip()[:200]!r}") from exc


def append(directory: Path, rec: RunRecord) -> None:
    """Append one line with one write (O_APPEND: concurrent writers never interleave)."""
    path = directory / LOG_NAME
    data = format_line(rec).encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            if os.fstat(fd).st_mode & 0o007:  # B5: never world-readable, even if made by hand
                with contextlib.suppress(OSError):
                    os.fchmod(fd, FILE_MODE)
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, "short write")  # a short append means a full disk
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise from_os_error(exc, f"appending to {path}") from exc


def records(directory: Path, tail_bytes: int = 256 * 1024) -> list[RunRecord]:
    """The run records in the last `tail_bytes` of backup.log (unparsable lines skipped)."""
    path = directory / LOG_NAME
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            data = fh.read()
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if size > tail_bytes:
        lines = lines[1:]  # the first may be cut
    out = []
    for ln in lines:
        try:
            out.append(parse_line(ln))
        except ValueError:
            continue
    return out


def last_success(directory: Path) -> RunRecord | None:
    for rec in reversed(records(directory)):
        if rec.result == "success":
            return rec
    return None
