"""The names of backup files. Only files with these names are ever rotated (B2):

<database>-<YYYYmmddTHHMMSSZ>.dump          pg_dump -Fc of one database
globals-<YYYYmmddTHHMMSSZ>.sql              pg_dumpall --globals-only (roles, tablespaces)
<either of the above>.sha256                its checksum
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
GLOBALS = "globals"
DUMP = re.compile(
    r"(?P<db>[A-Za-z_][A-Za-z0-9_]{0,62})-(?P<stamp>\d{8}T\d{6}Z)\.(?P<kind>dump|sql)"
)
CHECKSUM = re.compile(DUMP.pattern + r"\.sha256")


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(STAMP_FORMAT)


def dump_name(database: str, moment: datetime) -> str:
    return f"{database}-{stamp(moment)}.dump"


def globals_name(moment: datetime) -> str:
    return f"{GLOBALS}-{stamp(moment)}.sql"


@dataclass(frozen=True)
class DumpFile:
    path: Path
    database: str  # "globals" for the globals file
    created: datetime
    kind: str  # "dump" or "sql"


def parse(path: Path) -> DumpFile | None:
    m = DUMP.fullmatch(path.name)
    if not m:
        return None
    if m["kind"] == "sql" and m["db"] != GLOBALS:
        return None
    try:
        created = datetime.strptime(m["stamp"], STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
    return DumpFile(path, m["db"], created, m["kind"])
