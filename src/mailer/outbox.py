"""Sends the outbox: acknowledgements and staff notifications over SMTP (implicit TLS, STARTTLS,
or plain where the configuration allows it), with AUTH when a user is set, and retries with
backoff. Each row keeps one Message-ID, so a resend after a crash between sending and marking is
recognisable as the same mail by any receiver.

A failure that is not the mail's own (server down, login refused, certificate not trusted)
defers the whole pass with one log line and never uses up a row's attempts: a wrong password
must not drop mail, nor cost one failed login per row. Only a server refusing this one mail
counts towards MAX_ATTEMPTS."""

from __future__ import annotations

import contextlib
import logging
import smtplib
import ssl
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from mailer import metrics
from mailer.config import SmtpConfig, tls_context
from mailer.store import Store

log = logging.getLogger("mailer.outbox")
MAX_ATTEMPTS = 10


class SmtpUnavailable(Exception):
    """The SMTP server cannot take any mail now (down, login refused, TLS): no row's fault."""


class SmtpTlsError(SmtpUnavailable):
    """The server's certificate is not trusted, or it does not offer STARTTLS."""


def backoff(attempts: int) -> float:
    return float(min(30 * 2 ** max(attempts - 1, 0), 3600))


def build(from_address: str, row: dict) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = row["recipient"]
    msg["Subject"] = row["subject"]
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = row["message_id"]
    msg["Auto-Submitted"] = "auto-replied" if row["kind"] == "acknowledgement" else "auto-generated"
    msg.set_content(row["body"])
    return msg


class SmtpSender:
    """The SMTP section's server; TLS trusts `ca_file` (MAIL_CA_FILE) or else the system store."""

    def __init__(self, smtp: SmtpConfig, ca_file: Path | None = None, timeout: float = 30.0):
        self.smtp, self.ca_file, self.timeout = smtp, ca_file, timeout
        self.name = f"{smtp.security}://{smtp.host}:{smtp.port}"

    def _open(self) -> smtplib.SMTP:
        """Connected, TLS in place, logged in; SmtpUnavailable otherwise."""
        cfg = self.smtp
        smtp: smtplib.SMTP | None = None
        try:
            ctx = tls_context(self.ca_file)
            if cfg.security == "tls":
                smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=self.timeout, context=ctx)
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=self.timeout)
            if cfg.security == "starttls":
                try:
                    smtp.starttls(context=ctx)
                except smtplib.SMTPNotSupportedError as exc:
                    raise SmtpTlsError(
                        f"{self.name}: the server does not offer STARTTLS; not sending without TLS"
                    ) from exc
            if cfg.user and cfg.password:
                try:
                    smtp.login(cfg.user, cfg.password)
                except smtplib.SMTPAuthenticationError as exc:
                    raise SmtpUnavailable(
                        f"{self.name}: login refused ({exc.smtp_code} "
                        f"{_text(exc.smtp_error)}); check SMTP_USER and SMTP_PASS_FILE"
                    ) from exc
                except smtplib.SMTPNotSupportedError as exc:
                    raise SmtpUnavailable(f"{self.name}: the server offers no AUTH") from exc
            return smtp
        except SmtpUnavailable:
            _close(smtp)
            raise
        except ssl.SSLCertVerificationError as exc:
            _close(smtp)
            raise SmtpTlsError(
                f"{self.name}: TLS certificate refused: {exc.verify_message or exc.reason} "
                "(MAIL_CA_FILE names the CA to trust)"
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            _close(smtp)
            raise SmtpUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    def check(self) -> None:
        """Connect, TLS, log in, quit (start-up check)."""
        smtp = self._open()
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            _close(smtp)

    @contextlib.contextmanager
    def session(self) -> Iterator[Callable[[EmailMessage], None]]:
        """One connection for several mails (an outbox pass): one TLS handshake and one login
        instead of one per mail, which servers that count connections (Gmail) throttle.
        SmtpUnavailable when no mail can go now; smtplib's errors for one mail's own (the server
        has reset the transaction, the session goes on)."""
        smtp = self._open()
        try:
            yield lambda msg: self._send_on(smtp, msg)
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                _close(smtp)

    def _send_on(self, smtp: smtplib.SMTP, msg: EmailMessage) -> None:
        try:
            smtp.send_message(msg)
        except smtplib.SMTPServerDisconnected as exc:
            raise SmtpUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:  # service closing (rate limit, shutdown): not this mail's
                raise SmtpUnavailable(f"{self.name}: 421 {_text(exc.smtp_error)}") from exc
            raise
        except smtplib.SMTPException:  # an OSError too: this mail refused (recipients, data)
            raise
        except OSError as exc:  # the connection broke
            raise SmtpUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    def send(self, msg: EmailMessage) -> None:
        """One mail on a connection of its own (see session)."""
        with self.session() as send:
            send(msg)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError):
            smtp.close()


class OutboxWorker:
    """Sends the profile's outbox rows through `sender`, From its SMTP section's address."""

    def __init__(self, profile: str, sender: SmtpSender, store: Store):
        self.profile, self.sender, self.store = profile, sender, store

    def run_once(self) -> int:
        """Send the claimed rows on one SMTP session; what the server cannot take now waits
        with its backoff, a mail it refuses counts towards its row's attempts."""
        rows = self.store.claim_outbox()
        if not rows:
            return 0
        try:
            with self.sender.session() as send:
                for i, row in enumerate(rows):
                    try:
                        send(build(self.sender.smtp.from_address, row))
                    except SmtpUnavailable as exc:
                        self._defer(rows[i:], exc)
                        return 0  # nothing more goes: the loop waits before the next pass
                    except (OSError, smtplib.SMTPException) as exc:
                        self._refused(row, exc)
                        continue
                    self.store.outbox_sent(row["id"])
                    metrics.SMTP_RESULTS.labels(self.profile, row["kind"], "sent").inc()
                    extra = {"kind": row["kind"], "attempt": row["attempts"]}
                    log.info("outbound mail sent", extra=extra)
        except SmtpUnavailable as exc:  # no session: the server is down, refuses us, or TLS
            self._defer(rows, exc)
            return 0
        return len(rows)

    def _refused(self, row: dict, exc: Exception) -> None:
        final = row["attempts"] >= MAX_ATTEMPTS
        retry = None if final else backoff(row["attempts"])
        self.store.outbox_failed(row["id"], f"{type(exc).__name__}: {exc}", retry)
        metrics.SMTP_RESULTS.labels(self.profile, row["kind"], "failed" if final else "retry").inc()
        log.warning(
            "outbound mail not sent",
            extra={
                "kind": row["kind"],
                "attempt": row["attempts"],
                "retry_in_s": retry,
                "error": str(exc),
            },
        )

    def _defer(self, rows: list[dict], exc: SmtpUnavailable) -> None:
        """The server took nothing: every claimed row waits with its backoff, none is dropped."""
        delays = []
        for row in rows:
            retry = backoff(row["attempts"])
            delays.append(retry)
            self.store.outbox_failed(row["id"], str(exc), retry)
            metrics.SMTP_RESULTS.labels(self.profile, row["kind"], "retry").inc()
        log.warning(
            "outbound mail waits: SMTP server not usable",
            extra={"rows": len(rows), "retry_in_s": min(delays), "error": str(exc)},
        )

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                if self.run_once():
                    continue
            except Exception:
                log.exception("outbox pass failed; retrying")
                stop.wait(5)
            stop.wait(interval)
