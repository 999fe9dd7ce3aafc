"""Replay a folder of real mail through the stack and prove that every mail is kept (RW1).

Every file of the folder is delivered to each profile in turn as a receiving MTA would: over
SMTP with the profile's address as envelope recipient and a `Delivered-To` header, line ends made
CRLF (what SMTP carries), a leading mbox `From ` line dropped. A marker header
(`X-Stackcheck-Replay: <run>.<n>`) names each delivery, so its outcome is found in the profile's
database whatever the mail says about itself: stored, stored with parse defects, stored raw and
flagged `unprocessed`, or recorded as a duplicate. A delivery found in none of these is missing:
the run fails and names the file.

Operators point it at an export of their own mailbox (`./run replay DIR`); CI replays the shared
corpus of 857 real mails from other parsers' test data.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

MARKER = "X-Stackcheck-Replay"
_MARKER_RE = re.compile(rb"^" + MARKER.encode() + rb": (\S+)\r?$", re.MULTILINE | re.IGNORECASE)
# folder files that describe a corpus rather than being mail
_NOT_MAIL = {"readme", "readme.md", "readme.txt", "sources.tsv", "license", "licence", "copying"}
HEAD_BYTES = 64 * 1024  # the marker is among the first header lines; Received lines come first


def corpus_files(root: Path) -> list[Path]:
    """Every regular file under `root` that may be a mail, in a stable order."""
    if not root.is_dir():
        raise FileNotFoundError(f"mail corpus {root} is not a folder")
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name.lower() not in _NOT_MAIL
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def prepare(raw: bytes, address: str, marker: str) -> bytes:
    """The bytes an MTA would hand on for `address`: CRLF line ends, no mbox `From ` line, a
    `Delivered-To` for the profile and the replay marker on top."""
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    body = re.sub(rb"\r\n|\r|\n", b"\r\n", raw)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    head = f"Delivered-To: {address}\r\n{MARKER}: {marker}\r\n".encode()
    if not body or body.startswith(b"\r\n"):  # no header section at all: keep it a body
        return head + b"\r\n" + body.removeprefix(b"\r\n")
    return head + body


def marker_of(head: bytes | None) -> str | None:
    if not head:
        return None
    m = _MARKER_RE.search(head.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0])
    return m.group(1).decode("ascii", "replace") if m else None


@dataclass
class Delivery:
    marker: str
    file: str  # relative to the corpus
    profile: str
    size: int
    sent: bool = False
    refused: str | None = None  # the mail server refused it at SMTP (not the mailers' doing)
    outcome: str | None = None  # stored | flagged | unprocessed | duplicate
    processing_ms: int | None = None


@dataclass
class Report:
    deliveries: list[Delivery] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> Counter:
        c: Counter = Counter()
        for d in self.deliveries:
            c[d.outcome or ("refused by the mail server" if d.refused else "missing")] += 1
        return c

    def missing(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.sent and d.outcome is None]

    def kept_percent(self) -> float:
        sent = [d for d in self.deliveries if d.sent]
        if not sent:
            return 0.0
        return 100.0 * sum(d.outcome is not None for d in sent) / len(sent)

    def slowest(self, n: int = 5) -> list[Delivery]:
        timed = [d for d in self.deliveries if d.processing_ms is not None]
        return sorted(timed, key=lambda d: d.processing_ms or 0, reverse=True)[:n]


# SQL: each profile's rows that appeared since the replay started, with the head of the raw mail
# (the marker) or, for a large mail kept as a file, its path on the mailer's data volume
NEW_ROWS = """
SELECT 'e', e.id, e.status, coalesce(cardinality(e.defects), 0), e.processing_ms,
       substring(r.raw from 1 for %(head)s), r.raw_path
  FROM emails e JOIN raw_messages r ON r.email_id = e.id
 WHERE e.received_at >= %(since)s AND e.id > %(e_after)s
UNION ALL
SELECT 'd', d.id, 'duplicate', 0, NULL, substring(d.raw from 1 for %(head)s), d.raw_path
  FROM duplicates d
 WHERE d.seen_at >= %(since)s AND d.id > %(d_after)s
"""


class Replay:
    """Deliver, then wait until every delivery has an outcome or nothing moves for `stall_s`.

    `send(profile_address, data)` submits one mail over SMTP (raising on refusal);
    `query(profile, sql, params)` reads the profile's database; `read_head(profile, raw_path)`
    returns the first bytes of a raw mail kept as a file. At most `window` deliveries are in
    flight, so a mail server that shows only its newest messages (Mailpit's POP3: 100) never
    hides one from the mailers."""

    def __init__(
        self,
        send: Callable[[str, bytes], None],
        query: Callable[[str, str, dict], list[tuple]],
        read_head: Callable[[str, str], bytes],
        addresses: dict[str, str],
        *,
        window: int = 60,
        stall_s: float = 180.0,
        progress: Callable[[str], None] = lambda _m: None,
    ):
        self.send, self.query, self.read_head = send, query, read_head
        self.addresses, self.window, self.stall_s = addresses, window, stall_s
        self.progress = progress
        self.run_id = uuid.uuid4().hex[:10]
        self._after: dict[tuple[str, str], int] = {}  # (profile, table) -> last id read

    def plan(self, root: Path, files: Iterable[Path]) -> list[Delivery]:
        out = []
        for n, path in enumerate(files):
            for profile in self.addresses:
                out.append(
                    Delivery(
                        f"{self.run_id}.{n}.{profile}",
                        str(path.relative_to(root)),
                        profile,
                        path.stat().st_size,
                    )
                )
        return out

    def run(self, root: Path, since: datetime) -> Report:
        t0 = time.monotonic()
        files = corpus_files(root)
        report = Report(self.plan(root, files))
        by_marker = {d.marker: d for d in report.deliveries}
        found_at = time.monotonic()
        for i, d in enumerate(report.deliveries):
            while sum(x.sent and x.outcome is None for x in report.deliveries) >= self.window:
                if self._collect(by_marker, since):
                    found_at = time.monotonic()
                elif time.monotonic() - found_at > self.stall_s:
                    self.progress(f"stalled: nothing stored for {self.stall_s:.0f} s")
                    report.seconds = time.monotonic() - t0
                    return report
                else:
                    time.sleep(0.2)
            raw = (root / d.file).read_bytes()
            try:
                self.send(
                    self.addresses[d.profile], prepare(raw, self.addresses[d.profile], d.marker)
                )
                d.sent = True
            except Exception as exc:  # the mail server's refusal, recorded per mail
                d.refused = f"{type(exc).__name__}: {exc}"[:300]
            if i % 200 == 0:
                self.progress(f"replay: {i}/{len(report.deliveries)} delivered")
        while any(d.sent and d.outcome is None for d in report.deliveries):
            if self._collect(by_marker, since):
                found_at = time.monotonic()
            elif time.monotonic() - found_at > self.stall_s:
                self.progress(f"stalled: nothing stored for {self.stall_s:.0f} s")
                break
            else:
                time.sleep(0.5)
        if report.missing():  # a last full read, in case rows committed out of id order
            self._after.clear()
            self._collect(by_marker, since)
        report.seconds = time.monotonic() - t0
        return report

    def _collect(self, by_marker: dict[str, Delivery], since: datetime) -> int:
        """Read new rows of every profile; returns how many deliveries got their outcome."""
        got = 0
        for profile in self.addresses:
            params = {
                "since": since,
                "head": HEAD_BYTES,
                "e_after": self._after.get((profile, "e"), 0),
                "d_after": self._after.get((profile, "d"), 0),
            }
            for table, row_id, status, defects, ms, head, raw_path in self.query(
                profile, NEW_ROWS, params
            ):
                key = (profile, table)
                self._after[key] = max(self._after.get(key, 0), row_id)
                if head is None and raw_path:
                    head = self.read_head(profile, raw_path)
                marker = marker_of(bytes(head) if head is not None else None)
                d = by_marker.get(marker or "")
                if d is None or d.outcome is not None:
                    continue
                if status == "duplicate":
                    d.outcome = "duplicate"
                elif status == "unprocessed":
                    d.outcome = "unprocessed"
                else:
                    d.outcome = "flagged" if defects else "stored"
                d.processing_ms = ms
                got += 1
        return got
