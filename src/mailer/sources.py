"""Mail sources: POP3 with UIDL tracking (Mailpit in the test stack), IMAP with UIDVALIDITY and
IDLE (Gmail in production). A source only reads; what is stored is decided by the database, and a
mail is marked done at its source (POP3 DELE, IMAP \\Seen) only once it is committed there.

Transport: implicit TLS or STARTTLS with a verified certificate; plaintext only where the
configuration allows it. STARTTLS that the server does not offer is an error, never a silent
fallback. No reply line has a small length limit: one odd mail must not stop a mailbox, so a
failure while fetching one mail names it (MailFetchError) and the fetcher gives up on it."""

from __future__ import annotations

import contextlib
import errno
import imaplib
import io
import logging
import poplib
import re
import select
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

from mailer import addresses
from mailer.config import tls_context
from mailer.spool import Spool

if TYPE_CHECKING:
    from pathlib import Path

    from mailer.config import SourceConfig

log = logging.getLogger("mailer.source")

RECIPIENT_HEADERS = ("to", "cc", "delivered-to", "x-original-to", "envelope-to")


class SourceError(Exception):
    """The mailbox could not be reached or refused us (login, protocol)."""

    permanent = False  # True: retrying cannot help (start-up gives up at once, exit code 2)


class SourceTlsError(SourceError):
    """The server's certificate is not trusted, or STARTTLS is not offered: a configuration or
    an attack, not an outage."""

    permanent = True


class MailFetchError(SourceError):
    """Fetching one mail failed; `source_id` names it, so the fetcher can count per mail."""

    def __init__(self, message: str, source_id: str):
        super().__init__(message)
        self.source_id = source_id


def _tls_problem(name: str, exc: ssl.SSLCertVerificationError) -> SourceTlsError:
    return SourceTlsError(
        f"{name}: TLS certificate refused: {exc.verify_message or exc.reason} "
        "(MAIL_CA_FILE names the CA to trust)"
    )


def _blames_mail(exc: BaseException) -> bool:
    """A failure while a mail was in hand counts against it, unless it is our own disk's."""
    return not (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS))


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
HEADER_LIMIT = 1024 * 1024  # header bytes kept to find the recipients; the rest is read, dropped
# imaplib refuses reply lines over 1,000,000 bytes, and `UID SEARCH ALL` of a Gmail inbox with
# some 120,000 mails is one such line. Bounded, but far above any real mailbox.
IMAP_MAX_LINE = 64 * 1024 * 1024


def _pop3_multiline(conn: poplib.POP3, command: str, out: BinaryIO, limit: int | None) -> int:
    """A multi-line answer streamed into `out`, dot-unstuffed, line ends as sent; past `limit`
    bytes the rest is read and dropped. Returns the bytes written.

    poplib keeps whole answers as lists of lines and refuses lines over 2048 bytes (one such
    line in one mail would stop the mailbox forever); this reads in bounded pieces instead."""
    conn._putcmd(command)
    conn._getresp()  # raises error_proto on -ERR
    written, at_line_start = 0, True
    while True:
        piece = conn.file.readline(_LINE_CHUNK)
        if not piece:
            raise poplib.error_proto(f"connection closed during {command.split()[0]}")
        if at_line_start:
            if piece in (b".\r\n", b".\n"):
                return written
            if piece.startswith(b".."):
                piece = piece[1:]
        at_line_start = piece.endswith(b"\n")
        if limit is not None and written + len(piece) > limit:
            piece = piece[: max(limit - written, 0)]
        if piece:
            out.write(piece)
            written += len(piece)


def _pop3_retr(conn: poplib.POP3, num: int, out: BinaryIO) -> int:
    """RETR streamed into `out` (see _pop3_multiline)."""
    return _pop3_multiline(conn, f"RETR {num}", out, None)


def _pop3_top(conn: poplib.POP3, num: int, limit: int | None = None) -> bytes:
    """The header block (TOP n 0), at most `limit` (default HEADER_LIMIT) bytes of it."""
    buf = io.BytesIO()
    _pop3_multiline(conn, f"TOP {num} 0", buf, HEADER_LIMIT if limit is None else limit)
    return buf.getvalue()


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


def _source_name(kind: str, security: str, host: str, port: int) -> str:
    """The source's name is the key of its mails in the database and the queue: it names the
    mailbox, not how we reach it, so switching pop3 to pop3+starttls on the same port does not
    fetch every mail again (implicit TLS keeps its `s` scheme, as it always had)."""
    return f"{kind}{'s' if security == 'tls' else ''}://{host}:{port}"


class _Mailbox:
    """What both sources are given: the server, the login, the transport security and the
    profile's own addresses (mail to anyone else is left alone)."""

    kind = ""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        *,
        security: str = "tls",
        context: ssl.SSLContext | None = None,
        addresses: tuple[str, ...],
        timeout: float = 30.0,
        spool: Spool | None = None,
    ):
        if security not in ("tls", "starttls", "none"):
            raise ValueError(f"security={security!r}")
        self.host, self.port, self.user, self._password = host, port, user, password
        self.security, self.addresses, self.timeout = security, set(addresses), timeout
        self.context = context
        self.spool = spool
        self.name = _source_name(self.kind, security, host, port)
        self._foreign = _Bounded()


class Pop3Source(_Mailbox):
    """Mailpit's POP3 lists every captured message (all recipients, newest 100) with its message
    ID as the UIDL: we take only mail addressed to our own addresses and leave the rest alone."""

    kind = "pop3"

    def _connect(self) -> poplib.POP3:
        conn = None
        try:
            ctx = self.context or ssl.create_default_context()
            if self.security == "tls":
                conn = poplib.POP3_SSL(self.host, self.port, timeout=self.timeout, context=ctx)
            else:
                conn = poplib.POP3(self.host, self.port, timeout=self.timeout)
            if self.security == "starttls":
                try:
                    conn.stls(ctx)
                except poplib.error_proto as exc:
                    raise SourceTlsError(
                        f"{self.name}: the server does not offer STARTTLS (STLS: {exc}); "
                        "not logging in without TLS"
                    ) from exc
            try:
                conn.user(self.user)
                conn.pass_(self._password)
            except poplib.error_proto as exc:
                raise SourceError(
                    f"{self.name}: login refused ({exc}); check SOURCE_USER and "
                    "SOURCE_PASSWORD_FILE"
                ) from exc
            return conn
        except (SourceError, OSError, poplib.error_proto) as exc:
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()
            if isinstance(exc, SourceError):
                raise
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise _tls_problem(self.name, exc) from exc
            raise SourceError(f"{self.name}: {exc}") from exc

    def check(self) -> None:
        """Log in and out once (start-up check)."""
        self._connect().quit()

    def wait(self, poll_seconds: float, stop) -> None:
        """POP3 cannot announce new mail: the next poll is one interval away."""
        stop.wait(poll_seconds)

    def close(self) -> None:
        """Nothing held open: every poll is its own connection."""

    def poll(
        self,
        known: Callable[[list[str]], set[str]],
        delete: Callable[[list[str]], set[str]] | None = None,
        foreign: Callable[[str], None] | None = None,
    ) -> Iterator[Fetched]:
        """Yield our mails whose UIDL `known` does not report; DELE those `delete` reports as
        committed (only when deletion is configured); `foreign` hears of each mail left unread
        as not ours, once. A failure with a mail in hand raises MailFetchError naming it."""
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
                try:
                    mail = self._fetch(conn, num, uid, sizes.get(num, 0))
                except Exception as exc:
                    if not _blames_mail(exc):
                        raise
                    raise MailFetchError(f"{self.name}: mail {uid}: {exc}", uid) from exc
                if mail is None:
                    self._foreign.add(uid)
                    if foreign is not None:
                        foreign(uid)
                    continue
                yield mail
        except SourceError:
            raise
        except (OSError, poplib.error_proto) as exc:
            raise SourceError(f"{self.name}: {exc}") from exc
        finally:
            try:
                conn.quit()  # commits DELE
            except (OSError, poplib.error_proto):
                with contextlib.suppress(OSError):
                    conn.close()

    def _fetch(self, conn: poplib.POP3, num: int, uid: str, size: int) -> Fetched | None:
        """One mail, or None when it is not addressed to us."""
        if not (recipients_of(_pop3_top(conn, num)) & self.addresses):
            return None
        if self.spool is not None and size > self.spool.threshold:
            with self.spool.writer(self.name, uid) as (name, fh):
                written = _pop3_retr(conn, num, fh)
            return Fetched(uid, uid, b"", written, name)
        buf = io.BytesIO()
        _pop3_retr(conn, num, buf)
        raw = buf.getvalue()
        return Fetched(uid, uid, raw, len(raw))


_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_RFC822_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


class _LongLines:
    """imaplib's readline with IMAP_MAX_LINE instead of its 1,000,000-byte limit."""

    def readline(self) -> bytes:
        line = self.file.readline(IMAP_MAX_LINE + 1)
        if len(line) > IMAP_MAX_LINE:
            raise imaplib.IMAP4.error(f"got more than {IMAP_MAX_LINE} bytes in one line")
        return line


class _IMAP4(_LongLines, imaplib.IMAP4):
    pass


class _IMAP4_SSL(_LongLines, imaplib.IMAP4_SSL):
    pass


class ImapSource(_Mailbox):
    """IMAP with a UID high-water mark per UIDVALIDITY, IDLE to wait for new mail (polling where
    the server lacks IDLE), and \\Seen set only on committed mails."""

    kind = "imap"

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        *,
        mailbox: str = "INBOX",
        idle_seconds: float = 290.0,
        **common,
    ):
        super().__init__(host, port, user, password, **common)
        self.mailbox, self.idle_seconds = mailbox, idle_seconds
        self.name = f"{self.name}/{mailbox}"
        self._conn: imaplib.IMAP4 | None = None
        self.uidvalidity: str | None = None

    def _open(self) -> imaplib.IMAP4:
        """Connected, TLS in place, not yet logged in."""
        ctx = self.context or ssl.create_default_context()
        if self.security == "tls":
            return _IMAP4_SSL(self.host, self.port, timeout=self.timeout, ssl_context=ctx)
        conn = _IMAP4(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            try:
                conn.starttls(ssl_context=ctx)
            except ssl.SSLError:
                with contextlib.suppress(OSError):
                    conn.shutdown()
                raise
            except imaplib.IMAP4.error as exc:
                with contextlib.suppress(OSError):
                    conn.shutdown()
                raise SourceTlsError(
                    f"{self.name}: the server does not offer STARTTLS ({exc}); "
                    "not logging in without TLS"
                ) from exc
        return conn

    def _connect(self) -> imaplib.IMAP4:
        try:
            conn = self._open()
            try:
                conn.login(self.user, self._password)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                with contextlib.suppress(OSError):
                    conn.shutdown()
                raise SourceError(
                    f"{self.name}: login refused ({exc}); check SOURCE_USER and "
                    "SOURCE_PASSWORD_FILE"
                ) from exc
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
        except ssl.SSLCertVerificationError as exc:
            raise _tls_problem(self.name, exc) from exc
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
        foreign: Callable[[str], None] | None = None,
    ) -> Iterator[Fetched]:
        """As Pop3Source.poll, with `<UIDVALIDITY>:<UID>` as the mail's id."""
        try:
            conn = self._ensure()
            conn.noop()  # refreshes EXISTS and detects a dead connection
            # what the server announces from here on is news to wait(): imaplib keeps untagged
            # responses until they are asked for, so they are dropped here (and never pile up)
            conn.untagged_responses.clear()
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
                try:
                    mail = self._fetch(conn, sid, uid)
                except Exception as exc:
                    if isinstance(exc, OSError | imaplib.IMAP4.abort):
                        self.close()  # the connection is in an unknown state
                    if not _blames_mail(exc):
                        raise
                    raise MailFetchError(f"{self.name}: mail {sid}: {exc}", sid) from exc
                if mail is False:
                    self._foreign.add(sid)
                    if foreign is not None:
                        foreign(sid)
                    continue
                if mail is not None:
                    yield mail
        except SourceError:
            raise
        except (OSError, imaplib.IMAP4.error) as exc:
            self.close()
            raise SourceError(f"{self.name}: {exc}") from exc

    def _fetch(self, conn: imaplib.IMAP4, sid: str, uid: str) -> Fetched | bool | None:
        """One mail; False when it is not addressed to us; None when it vanished meanwhile."""
        typ, data = conn.uid(
            "FETCH",
            uid,
            "(RFC822.SIZE BODY.PEEK[HEADER.FIELDS (TO CC DELIVERED-TO X-ORIGINAL-TO ENVELOPE-TO)])",
        )
        if typ != "OK":
            raise SourceError(f"header FETCH failed: {typ} {data!r:.200}")
        parts = [p for p in data if isinstance(p, tuple)]
        if not parts:
            return None  # expunged since SEARCH
        headers = b"".join(p[1] for p in parts)[:HEADER_LIMIT]
        if not (recipients_of(headers) & self.addresses):
            return False
        m = _RFC822_SIZE.search(b" ".join(p[0] for p in parts))
        size = int(m.group(1)) if m else 0
        if self.spool is not None and size > self.spool.threshold:
            with self.spool.writer(self.name, sid) as (name, fh):
                got = self._fetch_partial(conn, uid, fh)
            return Fetched(sid, sid, b"", got, name) if got else None
        typ, data = conn.uid("FETCH", uid, "(BODY.PEEK[])")
        if typ != "OK":
            raise SourceError(f"FETCH failed: {typ} {data!r:.200}")
        raw = b"".join(p[1] for p in data if isinstance(p, tuple))
        return Fetched(sid, sid, raw, len(raw)) if raw else None

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

    def wait(self, poll_seconds: float, stop) -> None:
        """Wait for new mail with IDLE (RFC 2177), up to IDLE_POLLS poll intervals (and at most
        idle_seconds, under the 29 minutes servers allow), or sleep one interval without it."""
        seconds = poll_seconds * IDLE_POLLS
        try:
            conn = self._ensure()
            if "EXISTS" in conn.untagged_responses:
                # a mail arrived while the last poll ran and the server said so in a FETCH's or
                # STORE's answer: it will not say so again in IDLE, so the fetcher polls now
                return
            if b"IDLE" not in b" ".join(
                c if isinstance(c, bytes) else c.encode() for c in conn.capabilities
            ):
                stop.wait(poll_seconds)
                return
            tag = conn._new_tag()
            conn.send(tag + b" IDLE\r\n")
            if not conn.readline().startswith(b"+"):
                raise SourceError(f"{self.name}: IDLE refused")
            sock = conn.socket()
            deadline = time.monotonic() + min(seconds, self.idle_seconds)
            while not stop.is_set() and time.monotonic() < deadline:
                # select on the socket, so a quiet mailbox never blocks a shutdown; but first
                # what is read already: an EXISTS sent with the continuation is in the buffer
                if not _buffered(conn):
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


IDLE_POLLS = 12  # an IMAP IDLE lasts this many poll intervals before it is renewed


def _buffered(conn: imaplib.IMAP4) -> bool:
    """Whether response bytes are waiting where select() on the socket cannot see them: in
    imaplib's read buffer, or decrypted ahead by TLS. Peeks without blocking (a read on the
    socket made non-blocking for it, whose bytes stay in the buffer for readline)."""
    sock = conn.socket()
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        return bool(conn.file.peek(1))
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    finally:
        sock.settimeout(timeout)


class Source(Protocol):
    """A mailbox as the fetcher uses it (Pop3Source, ImapSource): the fetcher never asks which."""

    name: str

    def check(self) -> None:
        """Log in once (the start-up check); raises SourceError."""

    def poll(
        self,
        known: Callable[[list[str]], set[str]],
        delete: Callable[[list[str]], set[str]] | None = None,
        foreign: Callable[[str], None] | None = None,
    ) -> Iterator[Fetched]:
        """Our mails whose ids `known` does not report (see Pop3Source.poll)."""
        ...

    def wait(self, poll_seconds: float, stop: threading.Event) -> None:
        """Until new mail may be there (or `stop`); raises SourceError."""

    def close(self) -> None:
        """Release what the source holds open."""


def build_source(
    source: SourceConfig,
    addresses: tuple[str, ...],
    ca_file: Path | None = None,
    spool: Spool | None = None,
) -> Source:
    """The source SOURCE_PROTOCOL names, for the profile's `addresses`; TLS trusts `ca_file`
    (MAIL_CA_FILE) or else the system store."""
    kw = dict(
        security=source.security,
        context=tls_context(ca_file),
        addresses=addresses,
        spool=spool,
    )
    if source.kind == "pop3":
        return Pop3Source(source.host, source.port, source.user, source.password, **kw)
    return ImapSource(
        source.host,
        source.port,
        source.user,
        source.password,
        mailbox=source.mailbox,
        **kw,
    )
