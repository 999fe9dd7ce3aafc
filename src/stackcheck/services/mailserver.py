"""The stack's mail server (Mailpit, or the offline stand-in): SMTP submission and POP3 reading
as a client of a provider would, and the HTTP UI/API.

It requires TLS and authentication, as Gmail does (issue 11): the suite submits over STARTTLS
with AUTH and reads over POP3 with implicit TLS, trusting only the stack's own CA
(`stack/secrets/mail_ca.crt`, made by setup), never an unverified certificate."""

from __future__ import annotations

import email
import email.message
import poplib
import smtplib
import ssl
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid

import httpx

from stackcheck.compose import PublishedPort
from stackcheck.mailflow import Sent
from stackcheck.services.base import Service

# The suite reads a mailbox that hostile mail reaches too (header lines of 100,000 bytes):
# poplib's 2,048-byte line limit would end the session there and desync it. The mailers read
# without a line limit (mailer.sources); the suite's reader must not fail where they do not.
poplib._MAXLINE = max(poplib._MAXLINE, 4 * 1024 * 1024)

MAIL_CA_FILE = "mail_ca.crt"  # in stack/secrets (stackcheck.ops.mailtls); public, mode 0444
MAIL_CA_SECRET = "/run/secrets/mail_ca_cert"  # where the stack's services find it
# services that mount the CA, asked in this order when this host has no stack/secrets
CA_HOLDERS = ("praxis-mailer", "ecom-mailer", "alertmanager")
SMTP_PORT, POP3_PORT, HTTP_PORT = 1025, 1110, 8025


class MailServer(Service):
    def ca_pem(self) -> str:
        """The stack's mail CA certificate (PEM): from stack/secrets on this host, else (a stack
        set up elsewhere, --stack=external) from a service that mounts it."""
        path = self.engine.secrets_dir / MAIL_CA_FILE
        try:
            return path.read_text(encoding="ascii")
        except FileNotFoundError:
            pass
        for name in CA_HOLDERS:
            holder = self.engine.peer(name)
            if holder is not None:
                res = holder.exec(["cat", MAIL_CA_SECRET])
                if res.exit_code == 0 and "BEGIN CERTIFICATE" in res.output:
                    return res.output
        raise FileNotFoundError(
            f"{path} is missing and no service mounts {MAIL_CA_SECRET}: run ./run setup"
        )

    def tls(self) -> ssl.SSLContext:
        """A client TLS context that trusts the stack's mail CA only (hostname checked)."""
        return ssl.create_default_context(cadata=self.ca_pem())

    def login(self, user: str = "praxis") -> tuple[str, str]:
        """SMTP AUTH / POP3 credentials of a mailbox user (the mailbox password is also its SMTP
        password, as Gmail's one app password), from the secret its mailer mounts. Read at each
        call: a rotation changes it."""
        return user, self.engine.sibling(f"{user}-mailer").secret(f"{user}_pop3_password")

    def smtp_address(self) -> tuple[str, int]:
        port = self.port(SMTP_PORT)
        return port.host, port.port

    def submitter(self, user: str = "praxis") -> MailClient:
        """A submitting client as to any provider: STARTTLS verified against the stack's CA,
        then AUTH as `user`. Fails here, naming the service, when no SMTP port is published."""
        self.smtp_address()
        return MailClient(self.smtp_address, tls=self.tls(), login=lambda: self.login(user))

    def reader(self, user: str = "praxis", timeout: float = 15) -> Pop3Reader:
        """The mailbox over POP3 (implicit TLS) as `user`."""
        password = self.login(user)[1]
        return Pop3Reader(self.port(POP3_PORT), user, password, self.tls(), timeout)

    def api(self) -> httpx.Client:
        """The web UI's HTTP API (messages, search), on the published loopback port."""
        return self.http(HTTP_PORT)


class MailClient:
    """Submits mail to the stack's SMTP port (Mailpit, or the offline mail server) as a client of
    a provider that requires TLS and AUTH: STARTTLS verified against `tls` (the stack's CA), then
    AUTH with `login()`. The address and the credentials are looked up for every connection: a
    restarted mail server gets a new host port, a rotation a new password. Without `tls` and
    `login` it submits in plain text (a server that allows it)."""

    def __init__(
        self,
        locate: Callable[[], tuple[str, int]],
        *,
        tls: ssl.SSLContext | None = None,
        login: Callable[[], tuple[str, str]] | None = None,
    ):
        self.locate, self.tls, self.login = locate, tls, login

    def build(
        self,
        to: str,
        subject: str,
        body: str,
        *,
        sender: str = "patient@example.org",
        attachments: list[tuple[str, bytes, str]] = (),
    ) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(idstring=uuid.uuid4().hex[:12], domain="stackcheck.test")
        msg.set_content(body)
        for name, data, ctype in attachments:
            maintype, subtype = ctype.split("/", 1)
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
        return msg

    def connect(self) -> smtplib.SMTP:
        """An SMTP session ready to submit (the one place that knows how to log in)."""
        host, port = self.locate()
        conn = smtplib.SMTP(host, port, timeout=30)
        try:
            if self.tls is not None:
                conn.starttls(context=self.tls)  # no STARTTLS offered: SMTPNotSupportedError
            if self.login is not None:
                conn.login(*self.login())
        except BaseException:
            conn.close()
            raise
        return conn

    def send(self, msg: EmailMessage, smtp: smtplib.SMTP | None = None) -> Sent:
        if smtp is None:
            with self.connect() as conn:
                conn.send_message(msg)
        else:
            smtp.send_message(msg)
        return Sent(msg["Message-ID"].strip("<>"), msg["Subject"], time.monotonic())

    def send_raw(
        self,
        recipient: str,
        data: bytes,
        *,
        sender: str = "replay@stackcheck.test",
        smtp: smtplib.SMTP | None = None,
    ) -> None:
        """Submit bytes as they are (a real mail, a hostile one): no re-serialisation by the
        email package. SMTPUTF8/8BITMIME are whatever the server offers; its refusal raises."""
        if smtp is None:
            with self.connect() as conn:
                conn.sendmail(sender, [recipient], data)
        else:
            smtp.sendmail(sender, [recipient], data)

    def mail(self, to: str, subject: str, body: str, **kw) -> Sent:
        return self.send(self.build(to, subject, body, **kw))


class Pop3Reader:
    """The stack's mail server read over POP3 as a mail client would (what the mailers sent:
    acknowledgements, notifications, alerts). Mailpit shows every captured message to every
    user; the offline mail server does the same. POP3 on 1110 is implicit TLS (Mailpit's POP3
    with a certificate), verified against the stack's CA.

    The mailbox also holds mail this suite did not write (real-world mail replayed, hostile
    mail, other tests' mail): nothing here decodes more than it must, and what cannot be parsed
    is skipped, never raised (issue 10, case 7)."""

    def __init__(
        self,
        port: PublishedPort,
        user: str,
        password: str,
        tls: ssl.SSLContext,
        timeout: float = 15,
    ):
        self.port, self.user, self.password, self.tls = port, user, password, tls
        self.timeout = timeout

    def _session(self) -> poplib.POP3:
        conn = poplib.POP3_SSL(
            self.port.host, self.port.port, timeout=self.timeout, context=self.tls
        )
        try:
            conn.user(self.user)
            conn.pass_(self.password)
        except BaseException:
            conn.close()
            raise
        return conn

    def uids(self) -> set[str]:
        conn = self._session()
        try:
            return {line.split(b" ", 1)[1].decode() for line in conn.uidl()[1]}
        finally:
            conn.quit()

    def tops(self, body_lines: int = 0, skip: set[str] | frozenset[str] = frozenset()) -> dict:
        """uid -> the header block plus `body_lines` lines of body (bytes), for every message
        whose uid is not in `skip`."""
        conn = self._session()
        try:
            out = {}
            for line in conn.uidl()[1]:
                num, uid = line.decode().split(" ", 1)
                if uid not in skip:
                    out[uid] = b"\r\n".join(conn.top(int(num), body_lines)[1])
            return out
        finally:
            conn.quit()

    def delete_except(self, keep: set[str]) -> int:
        """DELE every message whose uid is not in `keep` (what a run added), as a mail client
        would; returns how many."""
        conn = self._session()
        try:
            n = 0
            for line in conn.uidl()[1]:
                num, uid = line.decode("ascii", "replace").split(" ", 1)
                if uid.strip() not in keep:
                    conn.dele(int(num))
                    n += 1
            return n
        finally:
            conn.quit()

    def headers(self, contains: bytes | None = None) -> list[email.message.Message]:
        """The header block of every message (only those whose raw header block contains
        `contains`, when given), parsed (values as sent, RFC 2047 not decoded: header_text()
        does that without raising). A header block the parser cannot take is skipped."""
        out = []
        for top in self.tops().values():
            if contains is not None and contains not in top:
                continue
            try:
                out.append(email.message_from_bytes(top))
            except Exception:  # never seen with compat32, but not ours to fail on
                continue
        return out
