"""mailer.sources against real TLS servers on 127.0.0.1: minimal POP3/IMAP/SMTP fakes behind a
throwaway CA (issue 11), and mailboxes that must never stall (issue 10): long header lines, a
mail that cannot be fetched, mail for other profiles.

The fakes and the PKI are imported by test_mailer_outbox.py too."""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from mailer import app as service
from mailer import metrics
from mailer.fetcher import FETCH_ATTEMPTS, Fetcher
from mailer.sources import (
    IMAP_MAX_LINE,
    ImapSource,
    MailFetchError,
    Pop3Source,
    SourceError,
    SourceTlsError,
)

pytestmark = pytest.mark.unit

OURS = "praxis@praxis.example"
PASSWORD = "app-Password-16x"


# --- a throwaway PKI ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    ca: Path  # signs the servers' certificate
    other_ca: Path  # a CA that signed nothing here: the wrong one to trust
    server: ssl.SSLContext  # server side, certificate for localhost and 127.0.0.1 by `ca`
    server_by_other: ssl.SSLContext  # the same names, signed by `other_ca`


def _pki(directory: Path) -> Pki:
    """Made with setup's own code (stackcheck.ops.mailtls): the CA and server certificate shapes
    the stack uses, names localhost and 127.0.0.1."""
    pytest.importorskip("cryptography")
    from stackcheck.ops.mailtls import make_ca, make_server_cert

    def server(ca: tuple[str, str], stem: str) -> ssl.SSLContext:
        key, cert = make_server_cert(*ca, dns=("localhost",), ips=("127.0.0.1",), days=1)
        (directory / f"{stem}.pem").write_text(cert)
        (directory / f"{stem}.key").write_text(key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(directory / f"{stem}.pem", directory / f"{stem}.key")
        return ctx

    ca, other = make_ca("stackcheck test CA"), make_ca("some other CA")
    (directory / "ca.pem").write_text(ca[1])
    (directory / "other-ca.pem").write_text(other[1])
    return Pki(
        directory / "ca.pem",
        directory / "other-ca.pem",
        server(ca, "server"),
        server(other, "server-by-other"),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return _pki(tmp_path_factory.mktemp("pki"))


def client_ctx(ca: Path) -> ssl.SSLContext:
    from mailer.config import tls_context

    return tls_context(ca)


# --- a line-based fake server ------------------------------------------------------------------
class Conn:
    """One client connection of a fake: lines in, bytes out, STARTTLS on demand."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLContext):
        self.sock, self.tls_ctx, self.buf, self.tls = (
            sock,
            tls,
            b"",
            isinstance(sock, ssl.SSLSocket),
        )
        self.commands: list[str] = []

    def readline(self) -> bytes:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return b""
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        text = line.decode("utf-8", "replace").rstrip("\r")
        self.commands.append(text)
        return line + b"\n"

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                break
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def starttls(self) -> None:
        self.sock = self.tls_ctx.wrap_socket(self.sock, server_side=True)
        self.tls = True


class FakeServer:
    """Runs `session(conn)` per connection on 127.0.0.1, with implicit TLS when `implicit`."""

    def __init__(self, session, tls: ssl.SSLContext, *, implicit: bool):
        self.session, self.tls, self.implicit = session, tls, implicit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[Conn] = []
        self.errors: list[BaseException] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        try:
            if self.implicit:
                sock = self.tls.wrap_socket(sock, server_side=True)
            conn = Conn(sock, self.tls)
            self.conns.append(conn)
            self.session(conn)
        except (OSError, ssl.SSLError) as exc:  # e.g. the client refused our certificate
            self.errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    @property
    def commands(self) -> list[str]:
        return [c for conn in self.conns for c in conn.commands]

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def servers():
    made: list[FakeServer] = []

    def start(session, tls: ssl.SSLContext, *, implicit: bool) -> FakeServer:
        server = FakeServer(session, tls, implicit=implicit)
        made.append(server)
        return server

    yield start
    for server in made:
        server.close()


def _dot_stuff(data: bytes) -> bytes:
    lines = data.split(b"\r\n")
    return b"\r\n".join(b"." + x if x.startswith(b".") else x for x in lines)


# --- POP3 --------------------------------------------------------------------------------------
@dataclass
class Pop3Box:
    mails: list[bytes]
    password: str = PASSWORD
    stls: bool = True
    fail_retr: set[int] = field(default_factory=set)  # numbers whose RETR answers -ERR

    def session(self, conn: Conn) -> None:
        conn.send("+OK fake POP3 ready\r\n")
        while line := conn.readline():
            cmd, _, arg = line.decode().strip().partition(" ")
            cmd = cmd.upper()
            if cmd == "CAPA":
                stls = "STLS\r\n" if self.stls and not conn.tls else ""
                conn.send(f"+OK\r\nUSER\r\nUIDL\r\nTOP\r\n{stls}.\r\n")
            elif cmd == "STLS" and self.stls and not conn.tls:
                conn.send("+OK begin TLS\r\n")
                conn.starttls()
            elif cmd == "USER":
                conn.send("+OK\r\n")
            elif cmd == "PASS":
                if arg == self.password:
                    conn.send("+OK logged in\r\n")
                else:
                    conn.send("-ERR [AUTH] Authentication failed.\r\n")
            elif cmd == "UIDL":
                rows = "".join(f"{i} uid-{i}\r\n" for i in range(1, len(self.mails) + 1))
                conn.send(f"+OK\r\n{rows}.\r\n")
            elif cmd == "LIST":
                rows = "".join(f"{i} {len(m)}\r\n" for i, m in enumerate(self.mails, 1))
                conn.send(f"+OK\r\n{rows}.\r\n")
            elif cmd == "TOP":
                raw = self.mails[int(arg.split()[0]) - 1]
                head = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                conn.send(b"+OK\r\n" + _dot_stuff(head) + b".\r\n")
            elif cmd == "RETR":
                num = int(arg)
                if num in self.fail_retr:
                    conn.send("-ERR message is corrupt\r\n")
                    continue
                raw = self.mails[num - 1]
                conn.send(
                    b"+OK\r\n" + _dot_stuff(raw) + (b"" if raw.endswith(b"\r\n") else b"\r\n")
                )
                conn.send(b".\r\n")
            elif cmd in ("DELE", "NOOP", "RSET"):
                conn.send("+OK\r\n")
            elif cmd == "QUIT":
                conn.send("+OK bye\r\n")
                return
            else:
                conn.send("-ERR unknown command\r\n")


def mail(to: str, subject: str, extra_header: bytes = b"") -> bytes:
    return (
        f"From: someone@elsewhere.example\r\nTo: {to}\r\nSubject: {subject}\r\n".encode()
        + extra_header
        + b"Message-ID: <"
        + subject.replace(" ", "-").encode()
        + b"@x>\r\n\r\nHello.\r\n.leading dot\r\n"
    )


def _source(cls, server: FakeServer, ca: Path, security: str, **kw):
    """A source of class `cls` for the fake server, trusting `ca`, reading for OURS."""
    return cls(
        "127.0.0.1",
        server.port,
        "praxis",
        kw.pop("password", PASSWORD),
        security=security,
        context=client_ctx(ca),
        addresses=(OURS,),
        timeout=5,
        **kw,
    )


def pop3(server: FakeServer, ca: Path, security: str, **kw) -> Pop3Source:
    return _source(Pop3Source, server, ca, security, **kw)


def _poll(source, known=lambda ids: set(), foreign=None) -> list:
    return list(source.poll(known, None, foreign))


def test_pop3s_with_the_right_ca(servers, pki):
    box = Pop3Box([mail(OURS, "first"), mail("other@shop.example", "not ours")])
    server = servers(box.session, pki.server, implicit=True)
    source = pop3(server, pki.ca, "tls")
    assert source.name == f"pop3s://127.0.0.1:{server.port}"
    source.check()
    seen: list[str] = []
    fetched = _poll(source, foreign=seen.append)
    assert [m.source_id for m in fetched] == ["uid-1"]
    assert fetched[0].raw == mail(OURS, "first")  # dot-unstuffed, line ends as sent
    assert seen == ["uid-2"]
    _poll(source, foreign=seen.append)
    assert seen == ["uid-2"]  # reported once


def test_pop3s_with_the_wrong_ca_is_refused_naming_the_problem(servers, pki):
    server = servers(Pop3Box([]).session, pki.server, implicit=True)
    source = pop3(server, pki.other_ca, "tls")
    with pytest.raises(SourceTlsError) as err:
        source.check()
    assert err.value.permanent
    assert "TLS certificate refused: unable to get local issuer certificate" in str(err.value)
    assert "USER praxis" not in server.commands


def test_pop3_starttls(servers, pki):
    box = Pop3Box([mail(OURS, "over starttls")])
    server = servers(box.session, pki.server, implicit=False)
    source = pop3(server, pki.ca, "starttls")
    assert source.name == f"pop3://127.0.0.1:{server.port}"  # the mailbox's name, as before
    assert [m.source_id for m in _poll(source)] == ["uid-1"]
    assert server.commands.index("STLS") < server.commands.index("USER praxis")
    assert all(conn.tls for conn in server.conns)


def test_pop3_starttls_not_offered_is_refused_without_logging_in(servers, pki):
    server = servers(Pop3Box([], stls=False).session, pki.server, implicit=False)
    source = pop3(server, pki.ca, "starttls")
    with pytest.raises(SourceTlsError, match="does not offer STARTTLS") as err:
        source.check()
    assert err.value.permanent
    assert not any(c.startswith(("USER", "PASS")) for c in server.commands)


def test_pop3_starttls_with_the_wrong_ca(servers, pki):
    server = servers(Pop3Box([]).session, pki.server, implicit=False)
    with pytest.raises(SourceTlsError, match="unable to get local issuer certificate"):
        pop3(server, pki.other_ca, "starttls").check()
    assert not any(c.startswith("PASS") for c in server.commands)


def test_pop3_wrong_password_is_a_clear_error_without_the_secret(servers, pki):
    server = servers(Pop3Box([]).session, pki.server, implicit=True)
    source = pop3(server, pki.ca, "tls", password="wrong-Secret-99")
    with pytest.raises(SourceError) as err:
        source.check()
    assert not err.value.permanent  # retried at start: an auth backend may be starting
    text = str(err.value)
    assert "login refused" in text and "SOURCE_PASSWORD_FILE" in text
    assert "wrong-Secret-99" not in text


def test_pop3_plaintext_only_where_configured(servers, pki):
    server = servers(Pop3Box([mail(OURS, "plain")]).session, pki.server, implicit=False)
    source = pop3(server, pki.ca, "none")
    assert [m.source_id for m in _poll(source)] == ["uid-1"]
    assert "STLS" not in server.commands


@pytest.mark.parametrize("length", [3_000, 100_000, 2 * 1024 * 1024])
def test_pop3_long_header_lines_do_not_stop_the_mailbox(servers, pki, length):
    """poplib's TOP refused lines over 2048 bytes: every poll failed, no later mail came."""
    long_line = b"X-Long: " + b"a" * length + b"\r\n"
    box = Pop3Box([mail(OURS, "long", long_line), mail(OURS, "after")])
    server = servers(box.session, pki.server, implicit=True)
    fetched = _poll(pop3(server, pki.ca, "tls"))
    assert [m.source_id for m in fetched] == ["uid-1", "uid-2"]
    assert fetched[0].raw == mail(OURS, "long", long_line)


def test_pop3_recipients_past_the_header_limit_are_not_seen_but_the_next_mail_is(servers, pki):
    filler = b"X-Filler: " + b"b" * (1024 * 1024 + 10) + b"\r\n"
    late_to = b"From: a@b.example\r\n" + filler + f"To: {OURS}\r\n\r\nbody\r\n".encode()
    box = Pop3Box([late_to, mail(OURS, "next")])
    server = servers(box.session, pki.server, implicit=True)
    seen: list[str] = []
    fetched = _poll(pop3(server, pki.ca, "tls"), foreign=seen.append)
    assert [m.source_id for m in fetched] == ["uid-2"]  # the protocol stayed in step
    assert seen == ["uid-1"]


# --- IMAP --------------------------------------------------------------------------------------
@dataclass
class ImapBox:
    mails: list[bytes]
    password: str = PASSWORD
    starttls: bool = True
    uids: list[int] | None = None  # what SEARCH reports (default: one per mail)
    fail_fetch: set[int] = field(default_factory=set)  # UIDs whose body FETCH answers NO
    # IDLE offered; the new mail's EXISTS comes in the same packet as IDLE's continuation
    idle_exists: bool = False
    # IDLE offered; a mail arrives during the first UID FETCH and that FETCH's answer announces
    # it (`* N EXISTS`, as Dovecot does): the IDLE after it announces nothing (already told)
    arrives_in_fetch: bytes | None = None

    def session(self, conn: Conn) -> None:
        def caps() -> str:
            return (
                "IMAP4rev1"
                + (" IDLE" if self.idle_exists or self.arrives_in_fetch else "")
                + (" STARTTLS" if self.starttls and not conn.tls else "")
            )

        conn.send(f"* OK [CAPABILITY {caps()}] fake IMAP ready\r\n")
        while line := conn.readline():
            tag, _, rest = line.decode().strip().partition(" ")
            cmd, _, args = rest.partition(" ")
            cmd = cmd.upper()
            if cmd == "CAPABILITY":
                conn.send(f"* CAPABILITY {caps()}\r\n{tag} OK done\r\n")
            elif cmd == "STARTTLS" and self.starttls and not conn.tls:
                conn.send(f"{tag} OK begin TLS\r\n")
                conn.starttls()
            elif cmd == "LOGIN":
                password = args.split(" ", 1)[1].strip('"')
                if password == self.password:
                    conn.send(f"{tag} OK logged in\r\n")
                else:
                    conn.send(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n")
            elif cmd == "SELECT":
                conn.send(
                    f"* {len(self.mails)} EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n"
                    f"{tag} OK [READ-WRITE] selected\r\n"
                )
            elif cmd == "NOOP":
                conn.send(f"{tag} OK done\r\n")
            elif cmd == "IDLE" and (self.idle_exists or self.arrives_in_fetch):
                news = f"* {len(self.mails) + 1} EXISTS\r\n" if self.idle_exists else ""
                conn.send(f"+ idling\r\n{news}")
                if conn.readline().strip() == b"DONE":
                    conn.send(f"{tag} OK idle done\r\n")
            elif cmd == "UID":
                self._uid(conn, tag, args)
            elif cmd == "LOGOUT":
                conn.send(f"* BYE\r\n{tag} OK bye\r\n")
                return
            else:
                conn.send(f"{tag} BAD unknown\r\n")

    def _uid(self, conn: Conn, tag: str, args: str) -> None:
        sub, _, rest = args.partition(" ")
        if sub.upper() == "SEARCH":
            uids = self.uids or range(1, len(self.mails) + 1)
            conn.send(("* SEARCH " + " ".join(map(str, uids)) + "\r\n").encode())
            conn.send(f"{tag} OK search done\r\n")
            return
        if sub.upper() == "FETCH":
            uid_text, _, what = rest.partition(" ")
            uid = int(uid_text)
            raw = self.mails[uid - 1]
            if self.arrives_in_fetch is not None:
                self.mails.append(self.arrives_in_fetch)
                self.arrives_in_fetch = b""  # IDLE stays offered; it arrives only once
                conn.send(f"* {len(self.mails)} EXISTS\r\n")
            if "HEADER.FIELDS" not in what and uid in self.fail_fetch:
                conn.send(f"{tag} NO [UNAVAILABLE] message cannot be read\r\n")
                return
            if "HEADER.FIELDS" in what:
                data = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                item = f"RFC822.SIZE {len(raw)} BODY[HEADER.FIELDS (TO CC)]"
            else:
                data, item = raw, "BODY[]"
            conn.send(f"* {uid} FETCH (UID {uid} {item} {{{len(data)}}}\r\n".encode())
            conn.send(data + b")\r\n")
            conn.send(f"{tag} OK fetch done\r\n")
            return
        conn.send(f"{tag} OK done\r\n")


def imap(server: FakeServer, ca: Path, security: str, **kw) -> ImapSource:
    return _source(ImapSource, server, ca, security, **kw)


def test_imaps_with_the_right_ca(servers, pki):
    box = ImapBox([mail(OURS, "first"), mail("other@shop.example", "theirs")])
    server = servers(box.session, pki.server, implicit=True)
    source = imap(server, pki.ca, "tls")
    seen: list[str] = []
    try:
        fetched = _poll(source, foreign=seen.append)
    finally:
        source.close()
    assert [m.source_id for m in fetched] == ["7:1"]
    assert fetched[0].raw == mail(OURS, "first")
    assert seen == ["7:2"]


def test_imaps_with_the_wrong_ca_is_refused_naming_the_problem(servers, pki):
    server = servers(ImapBox([]).session, pki.server, implicit=True)
    with pytest.raises(SourceTlsError) as err:
        imap(server, pki.other_ca, "tls").check()
    assert "TLS certificate refused: unable to get local issuer certificate" in str(err.value)


def test_a_mail_announced_during_a_poll_is_fetched_without_waiting_out_an_idle(servers, pki):
    """A mail that arrives while a poll fetches is announced in that FETCH's answer (Dovecot
    does so), and a server announces a mail once: the IDLE after the poll stays silent. The
    mailer waited that IDLE out (12 poll intervals: 12 s in the stack, 60 s with the default
    poll), under a steady inflow again and again."""
    box = ImapBox([mail(OURS, "first")], arrives_in_fetch=mail(OURS, "second"))
    server = servers(box.session, pki.server, implicit=True)
    source = imap(server, pki.ca, "tls")
    try:
        first = _poll(source)
        start = time.monotonic()
        source.wait(1.0, threading.Event())
        took = time.monotonic() - start
        second = _poll(source, known=lambda ids: {"7:1"})
    finally:
        source.close()
    assert [m.source_id for m in first] == ["7:1"]
    assert took < 3, f"the mail announced during the poll waited for the IDLE: {took:.1f} s"
    assert [m.source_id for m in second] == ["7:2"]


def test_imap_idle_returns_on_a_new_mail_announced_with_the_continuation(servers, pki):
    """A server may send `+ idling` and `* N EXISTS` in one packet (TLS record): the EXISTS is
    then in the client's read buffer, not on the socket, and waiting on the socket missed it
    until the IDLE ran out (12 poll intervals: 12 s in the stack, 60 s with the default poll)."""
    box = ImapBox([mail(OURS, "first")], idle_exists=True)
    server = servers(box.session, pki.server, implicit=True)
    source = imap(server, pki.ca, "tls")
    try:
        _poll(source)  # as the fetcher: a poll, then the wait
        start = time.monotonic()
        source.wait(1.0, threading.Event())
        took = time.monotonic() - start
    finally:
        source.close()
    assert any(c.endswith(" IDLE") for c in server.commands), server.commands
    assert took < 3, f"IDLE missed the EXISTS that came with its continuation: {took:.1f} s"


def test_imap_starttls(servers, pki):
    server = servers(ImapBox([mail(OURS, "x")]).session, pki.server, implicit=False)
    source = imap(server, pki.ca, "starttls")
    assert source.name == f"imap://127.0.0.1:{server.port}/INBOX"
    try:
        assert [m.source_id for m in _poll(source)] == ["7:1"]
    finally:
        source.close()
    commands = [c.split(" ", 1)[1] for c in server.commands]
    assert commands.index("STARTTLS") < next(
        i for i, c in enumerate(commands) if c.startswith("LOGIN")
    )


def test_imap_starttls_not_offered_is_refused_without_logging_in(servers, pki):
    server = servers(ImapBox([], starttls=False).session, pki.server, implicit=False)
    with pytest.raises(SourceTlsError, match="does not offer STARTTLS"):
        imap(server, pki.ca, "starttls").check()
    assert not any(" LOGIN " in c for c in server.commands)


def test_imap_wrong_password_is_a_clear_error(servers, pki):
    server = servers(ImapBox([]).session, pki.server, implicit=True)
    with pytest.raises(SourceError) as err:
        imap(server, pki.ca, "tls", password="wrong-Secret-99").check()
    assert "login refused" in str(err.value) and "wrong-Secret-99" not in str(err.value)
    assert not err.value.permanent


def test_imap_search_line_over_imaplibs_limit(servers, pki):
    """UID SEARCH ALL of a large mailbox is one line; imaplib refuses lines over 1,000,000."""
    uids = [*range(1, 3), *range(1_000_000, 1_000_000 + 150_000)]  # about 1.2 MB
    box = ImapBox([mail(OURS, "a"), mail(OURS, "b")], uids=uids)
    server = servers(box.session, pki.server, implicit=True)
    source = imap(server, pki.ca, "tls")
    big = {f"7:{u}" for u in uids[2:]}
    try:
        fetched = _poll(source, known=lambda ids: {i for i in ids if i in big})
    finally:
        source.close()
    assert [m.source_id for m in fetched] == ["7:1", "7:2"]
    assert IMAP_MAX_LINE > 1_000_000


# --- the fetcher: one mail never blocks the mailbox ---------------------------------------------
class _Queue:
    def __init__(self):
        self.entries: list[str] = []
        self.flagged: dict[str, str] = {}  # source id -> why (recorded as unprocessed)

    def enqueue(self, source, source_id, external_id, raw, spooled=None, flag=None) -> bool:
        if flag is not None:
            self.flagged[source_id] = flag
        else:
            self.entries.append(source_id)
        return True

    def enqueued(self, source, ids):
        return {i for i in ids if i in self.entries}

    def depth(self) -> int:
        return len(self.entries)


class _Store:
    def known_source_ids(self, source, ids):
        return set()


def _sample(name: str, profile: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, {"profile": profile}) or 0.0


def test_a_mail_that_cannot_be_fetched_is_skipped_after_3_tries(servers, pki, caplog):
    box = Pop3Box(
        [mail(OURS, "broken"), mail(OURS, "fine"), mail("x@other.example", "foreign")],
        fail_retr={1},
    )
    server = servers(box.session, pki.server, implicit=True)
    settings = SimpleNamespace(poll_seconds=0.01, delete_after_store=False)
    profile = "unit-skip"
    queue = _Queue()
    fetcher = Fetcher(profile, settings, pop3(server, pki.ca, "tls"), queue, _Store())
    assert _sample("mailbox_fetch_skipped_total", "unit-skip") == 0.0  # exists from the start
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="mailer")
    thread = threading.Thread(target=fetcher.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while "uid-2" not in queue.entries and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # a few more polls: the broken mail is not tried again
    stop.set()
    thread.join(5)
    assert queue.entries == ["uid-2"]
    # recorded for a person under an id of its own; the mail itself stays in the mailbox
    assert list(queue.flagged) == ["uid-1#unfetchable"]
    assert "after 3 attempts" in queue.flagged["uid-1#unfetchable"]
    assert "UID uid-1" in queue.flagged["uid-1#unfetchable"]
    retr_1 = [c for c in server.commands if c == "RETR 1"]
    assert len(retr_1) == FETCH_ATTEMPTS
    assert _sample("mailbox_fetch_failures_total", "unit-skip") == 3
    assert _sample("mailbox_fetch_skipped_total", "unit-skip") == 1
    assert _sample("mailbox_foreign_total", "unit-skip") == 1  # once, though polled many times
    skipped = [r for r in caplog.records if r.getMessage().startswith("mail could not be fetched")]
    assert len(skipped) == 1 and skipped[0].uid == "uid-1"
    foreign = [r for r in caplog.records if "not addressed to us" in r.getMessage()]
    assert [r.uid for r in foreign] == ["uid-3"]
    assert "@" not in foreign[0].getMessage()


def test_the_failure_count_belongs_to_the_mail_that_was_in_hand(servers, pki):
    box = Pop3Box([mail(OURS, "a"), mail(OURS, "b")], fail_retr={2})
    server = servers(box.session, pki.server, implicit=True)
    source = pop3(server, pki.ca, "tls")
    got = []
    with pytest.raises(MailFetchError) as err:
        got.extend(source.poll(lambda ids: set(), None))
    assert err.value.source_id == "uid-2"
    assert [m.source_id for m in got] == ["uid-1"]  # what came before is not lost


def test_imap_a_mail_that_cannot_be_fetched_is_skipped_after_3_tries(servers, pki):
    box = ImapBox([mail(OURS, "broken"), mail(OURS, "fine")], fail_fetch={1})
    server = servers(box.session, pki.server, implicit=True)
    source = imap(server, pki.ca, "tls")
    settings = SimpleNamespace(poll_seconds=0.01, delete_after_store=False)
    profile = "unit-skip-imap"
    queue = _Queue()
    fetcher = Fetcher(profile, settings, source, queue, _Store())
    try:
        for _ in range(FETCH_ATTEMPTS):
            with pytest.raises(MailFetchError) as err:
                fetcher.poll_once()
            assert err.value.source_id == "7:1"
            fetcher.fetch_failed(err.value)
        fetcher.poll_once()
        fetcher.poll_once()
    finally:
        source.close()
    assert queue.entries == ["7:2"]
    assert list(queue.flagged) == ["7:1#unfetchable"]
    assert _sample("mailbox_fetch_skipped_total", "unit-skip-imap") == 1
    body_fetches = [c for c in server.commands if "FETCH 1 (BODY.PEEK[])" in c]
    assert len(body_fetches) == FETCH_ATTEMPTS


# --- start-up: a certificate problem is exit code 2 at once, with the reason -------------
@pytest.fixture
def main_env(tmp_path, pki, monkeypatch):
    """service.main with Redis and PostgreSQL stood in for; the mailbox and SMTP are real."""

    class FakeRedis:
        def __init__(self, **kw):
            pass

        def ping(self):
            return True

        def xgroup_create(self, *a, **kw):
            return True

    class FakeStore:
        def __init__(self, *a, **kw):
            pass

        def open(self, timeout=None):
            pass

        def migrate(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(service.redis, "Redis", FakeRedis)
    monkeypatch.setattr(service, "Store", FakeStore)
    monkeypatch.setattr(service, "setup_logging", lambda *a, **kw: None)
    monkeypatch.setattr(service.signal, "signal", lambda *a: None)
    for name, value in [("source", PASSWORD), ("redis", "r-Secret-1"), ("db", "d-Secret-2")]:
        (tmp_path / name).write_text(value)
    return {
        "MAILER_PROFILE": "praxis",
        "MAILER_ADDRESSES": OURS,
        "SOURCE_PROTOCOL": "pop3s",
        "SOURCE_HOST": "127.0.0.1",
        "SOURCE_USER": "praxis",
        "SOURCE_PASSWORD_FILE": str(tmp_path / "source"),
        "REDIS_HOST": "redis",
        "REDIS_PASSWORD_FILE": str(tmp_path / "redis"),
        "DB_HOST": "postgres",
        "DB_PASSWORD_FILE": str(tmp_path / "db"),
        "CLAMD_HOST": "clamav",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_FROM": OURS,
        "STAFF_ADDRESS": "team@praxis.example",
        "DATA_DIR": str(tmp_path / "data"),
        "MAIL_CA_FILE": str(pki.other_ca),
    }


def test_wrong_ca_at_start_exits_2_at_once_naming_the_certificate_problem(
    servers, pki, main_env, caplog
):
    server = servers(Pop3Box([]).session, pki.server, implicit=True)
    main_env["SOURCE_PORT"] = str(server.port)
    caplog.set_level(logging.INFO, logger="mailer")
    start = time.monotonic()
    assert service.main(main_env, start_attempts=30, start_delay=2.0) == service.EXIT_CONNECTION
    assert time.monotonic() - start < 10  # not 30 attempts
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(
        "TLS certificate refused: unable to get local issuer certificate" in m
        and "exiting with code 2" in m
        for m in errors
    ), errors


def test_starttls_missing_at_start_exits_2(servers, pki, main_env, caplog):
    server = servers(Pop3Box([], stls=False).session, pki.server, implicit=False)
    main_env.update(
        {"SOURCE_PROTOCOL": "pop3+starttls", "SOURCE_PORT": str(server.port)},
        MAIL_CA_FILE=str(pki.ca),
    )
    caplog.set_level(logging.INFO, logger="mailer")
    assert service.main(main_env, start_attempts=30, start_delay=2.0) == service.EXIT_CONNECTION
    assert any("does not offer STARTTLS" in r.getMessage() for r in caplog.records)


def test_plaintext_source_without_the_switch_exits_1(main_env, capsys):
    main_env["SOURCE_PROTOCOL"] = "pop3"
    assert service.main(main_env) == service.EXIT_CONFIG
    assert "sends the mailbox password unencrypted" in capsys.readouterr().err


# --- SMTP fake (used by test_mailer_outbox.py) -------------------------------------------------
@dataclass
class SmtpServerFake:
    password: str = PASSWORD
    starttls: bool = True
    received: list[bytes] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    reject_rcpt: bool = False

    def session(self, conn: Conn) -> None:
        conn.send("220 fake ESMTP\r\n")
        while line := conn.readline():
            text = line.decode().strip()
            cmd = text.split(" ", 1)[0].upper()
            if cmd == "EHLO":
                tls = "250-STARTTLS\r\n" if self.starttls and not conn.tls else ""
                conn.send(f"250-localhost\r\n{tls}250-AUTH PLAIN\r\n250 8BITMIME\r\n")
            elif cmd == "HELO":
                conn.send("250 localhost\r\n")
            elif cmd == "STARTTLS" and self.starttls and not conn.tls:
                conn.send("220 go ahead\r\n")
                conn.starttls()
            elif cmd == "AUTH":
                _, _mech, blob = text.split(" ", 2)
                user, password = base64.b64decode(blob).split(b"\0")[1:]
                self.logins.append(user.decode())
                if password.decode() == self.password:
                    conn.send("235 2.7.0 Accepted\r\n")
                else:
                    conn.send("535 5.7.8 Username and Password not accepted\r\n")
            elif cmd == "MAIL":
                conn.send("250 ok\r\n")
            elif cmd == "RCPT":
                conn.send("550 5.1.1 no such user\r\n" if self.reject_rcpt else "250 ok\r\n")
            elif cmd == "DATA":
                conn.send("354 go\r\n")
                data = b""
                while (piece := conn.readline()) not in (b".\r\n", b""):
                    data += piece
                self.received.append(data)
                conn.send("250 queued\r\n")
            elif cmd in ("RSET", "NOOP"):
                conn.send("250 ok\r\n")
            elif cmd == "QUIT":
                conn.send("221 bye\r\n")
                return
            else:
                conn.send("502 unknown\r\n")
