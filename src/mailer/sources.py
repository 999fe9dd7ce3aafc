"""Mail sources: POP3 with UIDL tracking (Mailpit in the test stack), IMAP with UIDVALIDITY and
IDLE (Gmail in production). A source only reads; what is stored is decided by the database, and a
mail is marked done at its source (POP3 DELE, IMAP \\Seen) only once it is committed there."""

from __future__ import annotations

import contextlib
import imaplib
import io
import logging
import poplib
import re
import select
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from mailer import addresses
from mailer.spool import Spool

log = logging.getLogger("mailer.source")

RECIPIENT_HEADERS = ("to", "cc", "delivered-to", "x-original-to", "envelope-to")


class SourceError(Exception):
    """The mailbox could not be reached or refused us (login, protocol)."""


@dataclass(frozen=True)
class Fetched:
    """A fetched mail: its bytes, or (larger than the spool threshold) the name of its spool
    file."""

    source_id: str
    external_id: str
    raw: bytes
    size: int
    spooled: str | None = None


_LINE_CHUNK = 64 * 1024
_IMAP_CHUNK = 4 * 1024 * 1024


def _pop3_retr(conn: poplib.POP3, num: int, out: BinaryIO) -> int:
    """RETR streamed into `out`, dot-unstuffed, line ends as sent; returns the bytes written.

    poplib's retr() keeps the whole mail as a list of lines and refuses lines over 2048 bytes
    (one such line would stop the mailbox forever); this reads in bounded pieces instead."""
    conn._putcmd(f"RETR {num}")
    conn._getresp()  # raises error_proto on -ERR
    written, at_line_start = 0, True
    while True:
        piece = conn.file.readline(_LINE_CHUNK)
        if not piece:
            raise poplib.error_proto("connection closed during RETR")
        if at_line_start:
            if piece in (b".\r\n", b".\n"):
                return written
            if piece.startswith(b".."):
                piece = piece[1:]
        out.write(piece)
        written += len(piece)
        at_line_start = piece.endswith(b"\n")


def recipients_of(header_bytes: bytes) -> set[str]:
    """Lower-cased addresses of every recipient header. Each header entry is read on its own
    (mailer.addresses): one malformed entry never hides the others, as getaddresses does."""
    return set(addresses.addresses_of(addresses.header_values(header_bytes, RECIPIENT_HEADERS)))


class _Bounded(OrderedDict):
    """A set of remembered ids that forgets the oldest beyond `limit`."""

    def __init__(self, limit: int = 20_000):
        super().__init__()
        self.limit = limit

    def add(self, key: str) -> None:
        self[key] = None
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class Pop3Source:
    """Mailpit's POP3 lists every captured message (all recipients, newest 100) with its message
    ID as the UIDL: we take only mail addressed to our own addresses and leave the rest alone."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        *,
        tls: bool,
        addresses: tuple[str, ...],
        timeout: float = 30.0,
        spool: Spool | None = None,
    ):
        self.host, self.port, self.user, self._password = host, port, user, password
        self.tls, self.addresses, self.timeout = tls, set(addresses), timeout
        self.spool = spool
        self.name = f"{'pop3s' if tls else 'pop3'}://{host}:{port}"
        self._foreign = _Bounded()

    def _connect(self) -> poplib.POP3:
        try:
            if self.tls:
                conn = poplib.POP3_SSL(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                conn = poplib.POP3(self.host, self.port, timeout=self.timeout)
            conn.user(self.user)
            conn.pass_(self._password)
            return conn
        except (OSError, poplib.error_proto) as exc:
            raise SourceError(f"{self.name}: {exc}") from exc

    def check(self) -> None:
        """Log in and out once (start-up check)."""
        self._connect().quit()

    def poll(
        self,
        known: Callable[[list[str]], set[str]],
        delete: Callable[[list[str]], set[str]] | None = None,
    ) -> Iterator[Fetched]:
        """Yield our mails whose UIDL `known` does not report; DELE those `delete` reports as
        committed (only when deletion is configured)."""
        conn = self._connect()
        try:
            listing = []
            for line in conn.uidl()[1]:
                num, uid = line.decode("utf-8", "replace").split(" ", 1)
                listing.append((int(num), uid.strip()))
            sizes = {}
            for line in conn.list()[1]:
                num, size = line.decode("ascii", "replace").split()[:2]
                sizes[int(num)] = int(size)
            uids = [u for _, u in listing if u not in self._foreign]
            skip = known(uids)
            to_delete = delete(uids) if delete else set()
            for num, uid in listing:
                if uid in to_delete:
                    conn.dele(num)
                    continue
                if uid in skip or uid in self._foreign:
                    continue
                headers = b"\r\n".join(conn.top(num, 0)[1])
                if not (recipients_of(headers) & self.addresses):
                    self._foreign.add(uid)
                    continue
                if self.spool is not None and sizes.get(num, 0) > self.spool.threshold:
                    with self.spool.writer(self.name, uid) as (name, fh):
                        size = _pop3_retr(conn, num, fh)
                    yield Fetched(uid, uid, b"", size, name)
                else:
                    buf = io.BytesIO()
                    _pop3_retr(conn, num, buf)
                    raw = buf.getvalue()
                    yield Fetched(uid, uid, raw, len(raw))
        except (OSError, poplib.error_proto) as exc:
            raise SourceError(f"{self.name}: {exc}") from exc
        finally:
            try:
                conn.quit()  # commits DELE
            except (OSError, poplib.error_proto):
                conn.close()


_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_RFC822_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


class ImapSource:
    """IMAP with a UID high-water mark per UIDVALIDITY, IDLE to wait for new mail (polling where
    the server lacks IDLE), and \\Seen set only on committed mails."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        *,
        tls: bool,
        addresses: tuple[str, ...],
        mailbox: str = "INBOX",
        timeout: float = 30.0,
        idle_seconds: float = 290.0,
        spool: Spool | None = None,
    ):
        self.spool = spool
        self.host, self.port, self.user, self._password = host, port, user, password
        self.tls, self.addresses, self.mailbox = tls, set(addresses), mailbox
        self.timeout, self.idle_seconds = timeout, idle_seconds
        self.name = f"{'imaps' if tls else 'imap'}://{host}:{port}/{mailbox}"
        self._foreign = _Bounded()
        self._conn: imaplib.IMAP4 | None = None
        self.uidvalidity: str | None = None

    def _connect(self) -> imaplib.IMAP4:
        try:
            if self.tls:
                conn = imaplib.IMAP4_SSL(
                    self.host,
                    self.port,
                    timeout=self.timeout,
                    ssl_context=ssl.create_default_context(),
                )
            else:
                conn = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
            conn.login(self.user, self._password)
            typ, _ = conn.select(self.mailbox)
            if typ != "OK":
                raise SourceError(f"{self.name}: cannot select {self.mailbox}")
            m = _UIDVALIDITY.search(
                b" ".join(x for x in conn.untagged_responses.get("OK", []) if isinstance(x, bytes))
            )
            validity = conn.untagged_responses.get("UIDVALIDITY", [None])[-1]
            validity = (
                validity.decode()
                if isinstance(validity, bytes)
                else (m.group(1).decode() if m else "0")
            )
            if self.uidvalidity not in (None, validity):
                log.warning(
                    "UIDVALIDITY changed: every message gets a new id; Message-ID "
                    "dedupe keeps them from being stored twice",
                    extra={"source": self.name, "old": self.uidvalidity, "new": validity},
                )
            self.uidvalidity = validity
            return conn
        except (OSError, imaplib.IMAP4.error) as exc:
            raise SourceError(f"{self.name}: {exc}") from exc

    def _ensure(self) -> imaplib.IMAP4:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                self._conn.logout()
            self._conn = None

    def check(self) -> None:
        self._ensure()

    def sid(self, uid: str) -> str:
        return f"{self.uidvalidity}:{uid}"

    def poll(
        self,
        known: Callable[[list[str]], set[str]],
        delete: Callable[[list[str]], set[str]] | None = None,
    ) -> Iterator[Fetched]:
        try:
            conn = self._ensure()
            conn.noop()  # refreshes EXISTS and detects a dead connection
            typ, data = conn.uid("SEARCH", None, "ALL")
            if typ != "OK":
                raise SourceError(f"{self.name}: SEARCH failed: {data}")
            uids = [u.decode() for u in (data[0] or b"").split()]
            sids = {self.sid(u): u for u in uids if self.sid(u) not in self._foreign}
            skip = known(list(sids))
            done = delete(list(sids)) if delete else set()
            for sid in done:
                conn.uid("STORE", sids[sid], "+FLAGS.SILENT", r"(\Seen)")
            for sid, uid in sids.items():
                if sid in skip:
                    continue
                typ, data = conn.uid(
                    "FETCH",
                    uid,
                    "(RFC822.SIZE BODY.PEEK[HEADER.FIELDS "
                    "(TO CC DELIVERED-TO X-ORIGINAL-TO ENVELOPE-TO)])",
                )
                headers = b"".join(p[1] for p in data if isinstance(p, tuple))
                if not (recipients_of(headers) & self.addresses):
                    self._foreign.add(sid)
                    continue
                m = _RFC822_SIZE.search(b" ".join(p[0] for p in data if isinstance(p, tuple)))
                size = int(m.group(1)) if m else 0
                if self.spool is not None and size > self.spool.threshold:
                    with self.spool.writer(self.name, sid) as (name, fh):
                        got = self._fetch_partial(conn, uid, fh)
                    if got:
                        yield Fetched(sid, sid, b"", got, name)
                    continue
                typ, data = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = b"".join(p[1] for p in data if isinstance(p, tuple))
                if typ == "OK" and raw:
                    yield Fetched(sid, sid, raw, len(raw))
        except (OSError, imaplib.IMAP4.error) as exc:
            self.close()
            raise SourceError(f"{self.name}: {exc}") from exc

    def _fetch_partial(self, conn: imaplib.IMAP4, uid: str, out: BinaryIO) -> int:
        """The whole message in pieces of 4 MiB (RFC 3501 partial fetch): imaplib would
        otherwise hold the literal and its copies in memory at once."""
        offset = 0
        while True:
            typ, data = conn.uid("FETCH", uid, f"(BODY.PEEK[]<{offset}.{_IMAP_CHUNK}>)")
            if typ != "OK":
                raise SourceError(f"{self.name}: partial FETCH failed: {data}")
            piece = b"".join(p[1] for p in data if isinstance(p, tuple))
            out.write(piece)
            offset += len(piece)
            if len(piece) < _IMAP_CHUNK:
                return offset

    def wait(self, seconds: float, stop) -> None:
        """Wait for new mail with IDLE (RFC 2177) up to `seconds`, or poll-sleep without it."""
        try:
            conn = self._ensure()
            if b"IDLE" not in b" ".join(
                c if isinstance(c, bytes) else c.encode() for c in conn.capabilities
            ):
                stop.wait(seconds)
                return
            tag = conn._new_tag()
            conn.send(tag + b" IDLE\r\n")
            if not conn.readline().startswith(b"+"):
                raise SourceError(f"{self.name}: IDLE refused")
            sock = conn.socket()
            deadline = time.monotonic() + min(seconds, self.idle_seconds)
            while not stop.is_set() and time.monotonic() < deadline:
                # select on the socket, so a quiet mailbox never blocks a shutdown
                ready, _, _ = select.select([sock], [], [], 1.0)
                if not ready:
                    continue
                line = conn.readline()
                if b"EXISTS" in line or not line:
                    break
            conn.send(b"DONE\r\n")
            while True:
                line = conn.readline()
                if not line or line.startswith(tag):
                    break
        except (OSError, imaplib.IMAP4.error) as exc:
            self.close()
            raise SourceError(f"{self.name}: {exc}") from exc
