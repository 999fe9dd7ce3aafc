"""Sends the outbox: acknowledgements and staff notifications over SMTP (plain, STARTTLS or TLS),
with bounded retries and backoff. Each row keeps one Message-ID, so a resend after a crash between
sending and marking is recognisable as the same mail by any receiver."""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from email.message import EmailMessage
from email.utils import formatdate

from mailer import metrics
from mailer.config import Config
from mailer.store import Store

log = logging.getLogger("mailer.outbox")
MAX_ATTEMPTS = 10


def backoff(attempts: int) -> float:
    return float(min(30 * 2 ** max(attempts - 1, 0), 3600))


def build(cfg: Config, row: dict) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = cfg.smtp_from
    msg["To"] = row["recipient"]
    msg["Subject"] = row["subject"]
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = row["message_id"]
    msg["Auto-Submitted"] = "auto-replied" if row["kind"] == "acknowledgement" else "auto-generated"
    msg.set_content(row["body"])
    return msg


class SmtpSender:
    def __init__(self, cfg: Config, timeout: float = 30.0):
        self.cfg, self.timeout = cfg, timeout

    def send(self, msg: EmailMessage) -> None:
        cfg = self.cfg
        ctx = ssl.create_default_context()
        if cfg.smtp_security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                cfg.smtp_host, cfg.smtp_port, timeout=self.timeout, context=ctx
            )
        else:
            smtp = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=self.timeout)
        with smtp:
            if cfg.smtp_security == "starttls":
                smtp.starttls(context=ctx)
            if cfg.smtp_user and cfg.smtp_password:
                smtp.login(cfg.smtp_user, cfg.smtp_password)
            smtp.send_message(msg)


class OutboxWorker:
    def __init__(self, cfg: Config, store: Store, sender: SmtpSender | None = None):
        self.cfg, self.store = cfg, store
        self.sender = sender or SmtpSender(cfg)

    def run_once(self) -> int:
        rows = self.store.claim_outbox()
        for row in rows:
            try:
                self.sender.send(build(self.cfg, row))
            except (OSError, smtplib.SMTPException) as exc:
                final = row["attempts"] >= MAX_ATTEMPTS
                retry = None if final else backoff(row["attempts"])
                self.store.outbox_failed(row["id"], f"{type(exc).__name__}: {exc}", retry)
                metrics.SMTP_RESULTS.labels(
                    self.cfg.profile, row["kind"], "failed" if final else "retry"
                ).inc()
                log.warning(
                    "outbound mail not sent",
                    extra={
                        "kind": row["kind"],
                        "attempt": row["attempts"],
                        "retry_in_s": retry,
                        "error": str(exc),
                    },
                )
                continue
            self.store.outbox_sent(row["id"])
            metrics.SMTP_RESULTS.labels(self.cfg.profile, row["kind"], "sent").inc()
            log.info("outbound mail sent", extra={"kind": row["kind"], "attempt": row["attempts"]})
        return len(rows)

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                if self.run_once():
                    continue
            except Exception:
                log.exception("outbox pass failed; retrying")
                stop.wait(5)
            stop.wait(interval)
