"""The spool: large mails on the data volume instead of in memory and in Redis.

A mail larger than the threshold is streamed from the mailbox into `spool/<name>.eml` (written
beside the target, fsynced, renamed), and its queue entry carries the file's name instead of the
bytes. The worker parses it from the file in bounded memory (parsing.parse_file, with a scratch
directory `spool/work/<name>/`), links it to `raw/YYYY/MM/<sha256>.eml` as the kept raw mail, and
removes the spool file once the mail is committed and acknowledged. A 50 MB attachment is ~68 MB
of base64: held in memory, parsed by the stdlib and sent through Redis, it needs more than the
mailer's 512 MB (requirement A2).

The name is derived from (source, source id): a mail fetched again is written to the same file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


class Spool:
    def __init__(self, data_dir: Path, threshold: int):
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "spool"
        self.threshold = threshold

    @staticmethod
    def name_for(source: str, source_id: str) -> str:
        return hashlib.sha256(f"{source}|{source_id}".encode()).hexdigest()[:32]

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"not a spool file name: {name!r}")
        return self.root / f"{name}.eml"

    @contextlib.contextmanager
    def writer(self, source: str, source_id: str) -> Iterator[tuple[str, BinaryIO]]:
        """(name, file) to stream a mail into; the file appears under its name only when the
        block ends without an exception."""
        name = self.name_for(source, source_id)
        final = self.path(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                yield name, fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def workdir(self, name: str) -> Path:
        """An empty scratch directory for the spilled parts of one mail (a fresh one per try)."""
        work = self.root / "work" / name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        return work

    def remove(self, name: str) -> None:
        """Forget a mail that is committed (or handed back to its mailbox)."""
        shutil.rmtree(self.root / "work" / name, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.path(name).unlink()

    def clear_work(self) -> None:
        """Scratch directories left by a crash: nothing in them is needed any more."""
        shutil.rmtree(self.root / "work", ignore_errors=True)

    def sweep(self, referenced: set[str]) -> list[str]:
        """At start, before the fetcher runs: remove half-written files and spool files no queue
        entry refers to (a crash between acknowledging a mail and removing its file). The mails
        they held are committed, or still in their mailbox. Returns the names removed."""
        removed = []
        if not self.root.is_dir():
            return removed
        for path in self.root.iterdir():
            if path.is_file() and path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
                removed.append(path.name)
            elif path.is_file() and path.suffix == ".eml" and path.stem not in referenced:
                path.unlink(missing_ok=True)
                removed.append(path.stem)
        return removed

    def keep_raw(self, name: str, fingerprint: str, received: datetime) -> str:
        """The spool file as the kept raw mail, `raw/YYYY/MM/<sha256>.eml` relative to the data
        directory. Content-addressed, so a second copy of the same bytes is the same file; a hard
        link, so the spool file stays valid until the mail is acknowledged."""
        rel = Path("raw") / f"{received.year:04d}" / f"{received.month:02d}" / f"{fingerprint}.eml"
        target = self.data_dir / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            try:
                os.link(self.path(name), tmp)
            except OSError:  # a filesystem without hard links: copy
                shutil.copyfile(self.path(name), tmp)
            os.replace(tmp, target)
        return str(rel)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
