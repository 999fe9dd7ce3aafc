"""`python -m backup list`: the dumps in the backup dir, newest first, with size, age and
checksum status, then the last lines of backup.log."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from backup import checksum, runlog
from backup.naming import parse


@dataclass(frozen=True)
class Entry:
    name: str
    database: str
    bytes: int
    age_hours: float
    checksum: str


def entries(directory: Path, now: float | None = None, verify: bool = True) -> list[Entry]:
    now = time.time() if now is None else now
    out = []
    for path in directory.iterdir():
        info = parse(path)
        if info is None or not path.is_file():
            continue
        st = path.stat()
        out.append(
            Entry(
                name=path.name,
                database=info.database,
                bytes=st.st_size,
                age_hours=round((now - st.st_mtime) / 3600, 1),
                checksum=checksum.status(path) if verify else "unchecked",
            )
        )
    return sorted(out, key=lambda e: (e.name.rsplit("-", 1)[-1], e.name), reverse=True)


def show(directory: Path, as_json: bool = False, verify: bool = True) -> int:
    """Exit 0, or 6 when a checksum does not match (a damaged dump must not go unnoticed)."""
    found = entries(directory, verify=verify)
    bad = [e for e in found if e.checksum in {"mismatch", "malformed"}]
    if as_json:
        print(json.dumps([asdict(e) for e in found]))
        return 6 if bad else 0
    if not found:
        print(f"no dumps in {directory}")
    else:
        width = max(len(e.name) for e in found)
        print(f"{'dump':<{width}}  {'bytes':>12}  {'age h':>7}  checksum")
        for e in found:
            print(f"{e.name:<{width}}  {e.bytes:>12}  {e.age_hours:>7.1f}  {e.checksum}")
    recent = runlog.records(directory)[-5:]
    if recent:
        print("\nlast runs (backup.log):")
        for rec in recent:
            print("  " + runlog.format_line(rec).rstrip())
    return 6 if bad else 0
