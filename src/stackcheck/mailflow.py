"""Mail-flow helpers for acceptance tests: submit mail over SMTP as any sender would, wait for a
mailer's committed row, read a mailer's own metrics, steer the Ollama double."""

from __future__ import annotations

import email
import email.message
import io
import os
import poplib
import smtplib
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

import httpx

from stackcheck.waits import wait_for

PROFILES = {"praxis": "praxis@example.com", "ecom": "ecom@example.com"}


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


@dataclass
class Sent:
    message_id: str  # without <>
    subject: str
    at: float  # time.monotonic() when the SMTP transaction completed


class MailClient:
    """Submits mail to the stack's SMTP port (Mailpit, or the offline mail server). The address
    is looked up for every connection: a restarted mail server gets a new host port."""

    def __init__(self, locate: Callable[[], tuple[str, int]]):
        self.locate = locate

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
        return smtplib.SMTP(host, port, timeout=30)

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
    user; the offline mail server does the same."""

    def __init__(self, stack, user: str = "praxis", timeout: float = 15):
        self.port = stack.service("mailpit").port(1110)
        self.user, self.timeout = user, timeout
        self.password = stack.secret(f"{user}_pop3_password", service=f"{user}-mailer")

    def _session(self) -> poplib.POP3:
        conn = poplib.POP3(self.port.host, self.port.port, timeout=self.timeout)
        conn.user(self.user)
        conn.pass_(self.password)
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

    def headers(self) -> list[email.message.Message]:
        """The header block of every message, parsed (values as sent, RFC 2047 not decoded)."""
        return [email.message_from_bytes(top) for top in self.tops().values()]


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
