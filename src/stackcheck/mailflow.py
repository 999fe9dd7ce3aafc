"""Mail-flow helpers for acceptance tests: submit mail over SMTP as any sender would, wait for a
mailer's committed row, read a mailer's own metrics, steer the Ollama double.

The stack's mail server requires TLS and authentication, as Gmail does (issue 11): the suite
submits over STARTTLS with AUTH and reads over POP3 with implicit TLS, trusting only the stack's
own CA (`stack/secrets/mail_ca.crt`, made by setup), never an unverified certificate."""

from __future__ import annotations

import email
import email.message
import io
import os
import poplib
import smtplib
import ssl
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from email.header import decode_header
from email.message import EmailMessage
from email.utils import make_msgid

import httpx

from stackcheck.waits import wait_for

PROFILES = {"praxis": "praxis@example.com", "ecom": "ecom@example.com"}

# The suite reads a mailbox that hostile mail reaches too (header lines of 100,000 bytes):
# poplib's 2,048-byte line limit would end the session there and desync it. The mailers read
# without a line limit (mailer.sources); the suite's reader must not fail where they do not.
poplib._MAXLINE = max(poplib._MAXLINE, 4 * 1024 * 1024)


# the antivirus test string, assembled at run time so no file of this project is a test virus
EICAR = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*").encode()


def zipped(files: dict[str, bytes]) -> bytes:
    """A zip archive of these files, built in memory (attachments for the type and scan tests)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def pdf_of_size(size: int) -> bytes:
    """`size` bytes that are a PDF by content (magic and trailer), random in between: large
    attachments that pass the type check and that no compression shrinks."""
    head, tail = b"%PDF-1.4\n", b"\n%%EOF\n"
    return head + os.urandom(size - len(head) - len(tail)) + tail


MAIL_CA_FILE = "mail_ca.crt"  # in stack/secrets (stackcheck.ops.mailtls); public, mode 0444
MAIL_CA_SECRET = "/run/secrets/mail_ca_cert"  # where the stack's services find it


def mail_ca_pem(stack) -> str:
    """The stack's mail CA certificate (PEM): from stack/secrets on this host, else (a stack set
    up elsewhere, --stack=external) from a service that mounts it."""
    path = stack.config.stack_dir / "secrets" / MAIL_CA_FILE
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        pass
    for service in ("praxis-mailer", "ecom-mailer", "alertmanager"):
        if stack.has(service):
            res = stack.service(service).exec(["cat", MAIL_CA_SECRET])
            if res.exit_code == 0 and "BEGIN CERTIFICATE" in res.output:
                return res.output
    raise FileNotFoundError(
        f"{path} is missing and no service mounts {MAIL_CA_SECRET}: run ./run setup"
    )


def mail_tls(stack) -> ssl.SSLContext:
    """A client TLS context that trusts the stack's mail CA only (hostname checked)."""
    return ssl.create_default_context(cadata=mail_ca_pem(stack))


def mail_login(stack, user: str = "praxis") -> tuple[str, str]:
    """SMTP AUTH / POP3 credentials of a mailbox user (the mailbox password is also its SMTP
    password, as Gmail's one app password). Read at each call: a rotation changes it."""
    return user, stack.secret(f"{user}_pop3_password", service=f"{user}-mailer")


def header_text(value) -> str:
    """A header value as text, RFC 2047 words decoded, never raising: real-world mail has
    unknown charsets and bytes that are not what their charset says (iso-2022-jp that is not,
    8-bit bytes in headers); those parts come out with replacement characters."""
    if value is None:
        return ""
    raw = str(value)
    try:
        parts = decode_header(raw)
    except Exception:  # a malformed encoded word: the raw text is still text
        return raw
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        try:
            out.append(chunk.decode(charset or "ascii", "replace"))
        except (LookupError, UnicodeError):  # unknown charset, or a codec that raises anyway
            out.append(chunk.decode("latin-1"))
    return "".join(out)  # decode_header keeps the whitespace of the plain parts


@dataclass
class Sent:
    message_id: str  # without <>
    subject: str
    at: float  # time.monotonic() when the SMTP transaction completed


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

    def __init__(self, stack, user: str = "praxis", timeout: float = 15):
        self.port = stack.service("mailpit").port(1110)
        self.user, self.timeout = user, timeout
        self.password = mail_login(stack, user)[1]
        self.tls = mail_tls(stack)

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


class ProfileDB:
    def __init__(self, stack, profile: str):
        self.stack, self.profile = stack, profile

    def connect(self):
        return self.stack.postgres(
            self.profile, user=self.profile, password_secret=f"{self.profile}_db_password"
        )

    def rows(self, message_id: str) -> list[dict]:
        from psycopg.rows import dict_row

        with self.connect() as conn:
            conn.row_factory = dict_row
            return conn.execute(
                "SELECT * FROM emails WHERE message_id = %s", (message_id,)
            ).fetchall()

    def wait_stored(self, sent: Sent, timeout: float) -> tuple[dict, float]:
        """Poll (every 50 ms) until the mail's row is committed; return it and the seconds from
        the end of the SMTP submission to the first poll that saw it."""
        rows, _ = wait_for(
            lambda: self.rows(sent.message_id),
            timeout=timeout,
            interval=0.05,
            what=f"mail {sent.message_id} in database {self.profile}",
        )
        return rows[0], time.monotonic() - sent.at

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()


def mailer_metric(stack, service: str, name: str, labels: dict[str, str]) -> float:
    """A sample of the mailer's own /metrics (the endpoint Prometheus scrapes), read from inside
    the container: the port is on the stack's networks only."""
    code = (
        "import urllib.request;"
        "print(urllib.request.urlopen('http://127.0.0.1:8000/metrics',timeout=5).read()"
        ".decode())"
    )
    res = stack.service(service).exec(["python3", "-c", code])
    assert res.exit_code == 0, res.output
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in res.output.splitlines():
        if line.startswith(name + "{") or line == name or line.startswith(name + " "):
            metric, _, value = line.rpartition(" ")
            got = metric[len(name) :].strip("{}")
            if all(part in got.split(",") for part in want.split(",") if part):
                total += float(value)
    return total


def peak_rss_mib(stack, service: str) -> float:
    """Peak resident memory of the mailer process (PID 1) since it started (VmHWM)."""
    res = stack.service(service).exec(["cat", "/proc/1/status"])
    assert res.exit_code == 0, res.output
    for line in res.output.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM in /proc/1/status of {service}")


def restarts(stack, service: str) -> tuple[int, bool]:
    """(restart count, OOM-killed) of a service's container: a crash shows in either."""
    c = stack.service(service).container
    c.reload()
    return c.attrs["RestartCount"], c.attrs["State"]["OOMKilled"]


class OllamaDouble:
    def __init__(self, url: str):
        self.url = url

    def control(self, **knobs) -> None:
        httpx.post(f"{self.url}/_control", json=knobs, timeout=5).raise_for_status()

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/_stats", timeout=5).json()
