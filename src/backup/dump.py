"""One dump: a client tool's output streamed into an AtomicFile while it is hashed, then read back
by pg_restore (or checked for its header), then renamed to its final name beside its checksum
file. A dump that fails at any step leaves nothing under a final name."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from backup import checksum
from backup.errors import DatabaseError, Interrupted
from backup.files import AtomicFile

CHUNK = 1 << 20
_SERVER_VERSION = re.compile(r"^;\s*Dumped from database version:\s*(.+)$", re.MULTILINE)
GLOBALS_HEADER = b"PostgreSQL database cluster dump"


class Source(Protocol):
    """What a run dumps from: backup.pgtools.PgTools, or a fake in the unit tests."""

    def database_sizes(self, databases: tuple[str, ...]) -> dict[str, int]: ...

    def dump(self, database: str) -> AbstractContextManager[BinaryIO]: ...

    def dump_globals(self) -> AbstractContextManager[BinaryIO]: ...

    def archive_list(self, path: Path) -> str: ...


class Sink(Protocol):
    """Where the bytes go until commit (backup.files.AtomicFile, or a fake)."""

    tmp: Path
    size: int

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


Opener = Callable[[Path], Sink]


@dataclass(frozen=True)
class Artifact:
    name: str  # database name, or "globals"
    path: Path
    size: int
    sha256: str
    server_version: str = ""


def stream_into(stream: BinaryIO, sink: Sink, stop: threading.Event | None = None) -> str:
    """Copy a stream into a sink; return the SHA-256 of what was written."""
    h = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        if stop is not None and stop.is_set():
            raise Interrupted("stopped by a signal while dumping")
        sink.write(chunk)
        h.update(chunk)
    return h.hexdigest()


def _write(
    final: Path,
    produce: AbstractContextManager[BinaryIO],
    check: Callable[[Path], str],
    opener: Opener,
    stop: threading.Event | None,
) -> tuple[int, str, str]:
    sink = opener(final)
    try:
        with produce as stream:
            digest = stream_into(stream, sink, stop)
        info = check(sink.tmp)
        size = sink.size
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    try:
        checksum.write(final, digest)
    except BaseException:
        final.unlink(missing_ok=True)  # no dump under its final name without its checksum
        raise
    return size, digest, info


def dump_database(
    source: Source,
    database: str,
    final: Path,
    *,
    opener: Opener = AtomicFile,
    stop: threading.Event | None = None,
) -> Artifact:
    def check(tmp: Path) -> str:
        listing = source.archive_list(tmp)
        m = _SERVER_VERSION.search(listing)
        if not m:
            raise DatabaseError(f"pg_restore --list of the {database} dump shows no header")
        return m[1].strip()

    size, digest, version = _write(final, source.dump(database), check, opener, stop)
    return Artifact(database, final, size, digest, version)


def dump_globals(
    source: Source,
    final: Path,
    *,
    opener: Opener = AtomicFile,
    stop: threading.Event | None = None,
) -> Artifact:
    def check(tmp: Path) -> str:
        with tmp.open("rb") as fh:
            head = fh.read(512)
        if GLOBALS_HEADER not in head:
            raise DatabaseError("pg_dumpall --globals-only wrote no cluster dump header")
        return ""

    size, digest, _ = _write(final, source.dump_globals(), check, opener, stop)
    return Artifact("globals", final, size, digest)
