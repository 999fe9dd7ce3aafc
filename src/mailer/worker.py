"""The worker: one queue entry at a time, from raw bytes to a committed row.

Worker.handle reads top to bottom: settle (already stored? flagged? poison?) → read (parse) →
decide (a stored Message-ID makes it a duplicate before anything is scanned or written; else
every attachment scanned by clamd, then stored, quarantined or refused; then classification,
Ollama else rules) → mail, attachments and outbox rows in one transaction → acknowledge.
Anything transient (clamd, PostgreSQL, Redis unreachable) leaves the entry unacknowledged and
retries it with backoff: a mail is never stored unscanned, never lost, never stored twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import redis

from mailer import attachments, clamd, classify, metrics, parsing
from mailer.config import Config
from mailer.queue import Entry, MailQueue
from mailer.spool import Spool, sha256_file
from mailer.store import AttachmentRow, MailRow, OutboxRow, Store

log = logging.getLogger("mailer.worker")

# a mail taken more often than this without a commit is poison (it crashed or failed the worker
# each time): stored raw and flagged instead (Worker._store_unprocessed); transient failures never
# count, as they are retried in-process
POISON_DELIVERIES = 3
_HEAD_BYTES = 64 * 1024  # enough of a mail to see its header block

TRANSIENT = (
    clamd.ClamdUnavailable,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
    TimeoutError,
    ConnectionError,
)

SUBJECTS = {
    "praxis": {
        "acknowledgement": "Ihre Nachricht ist eingegangen",
        "notification": "Neue Nachricht ({category}): {subject}",
        "unprocessed": "Nachricht konnte nicht verarbeitet werden: {external_id}",
    },
    "ecom": {
        "acknowledgement": "We received your message",
        "notification": "New mail ({category}): {subject}",
        "unprocessed": "Mail could not be processed: {external_id}",
    },
}
BODIES = {
    "praxis": "Guten Tag,\n\nvielen Dank für Ihre Nachricht. Wir melden uns so bald wie möglich.\n"
    "\nIhre Praxis\n",
    "ecom": "Hello,\n\nthank you for your message. We will get back to you shortly.\n\n"
    "Your shop team\n",
}


def _staged(path: Path, data: bytes | Path) -> tuple[Path, bool]:
    """The content as a synced file on the target's filesystem, and whether it is a copy made
    here. A spilled attachment (a file on the same volume) is used as it is."""
    if isinstance(data, Path):
        with open(data, "rb+") as fh:
            os.fsync(fh.fileno())
        if data.stat().st_dev == path.parent.stat().st_dev:
            return data, False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        if isinstance(data, Path):
            with open(data, "rb") as src:
                shutil.copyfileobj(src, fh, 1 << 20)
        else:
            fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp, True


def write_new(path: Path, data: bytes | Path, sha256: str) -> Path:
    """Store a file under `path` without ever replacing one: a stored file is never overwritten.

    The synced content gets its final name by link(2), which fails where the name exists (a
    rename would replace it). An existing file with the same content is this mail's own (written
    before a crash, processed again) and is reused; other content under the name (another mail
    whose key sanitises to the same folder) makes this one `<stem>.<sha256[:12]><ext>`.
    Returns the path used; a crash leaves no half file under a final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    src, copied = _staged(path, data)
    try:
        for target in (path, path.with_name(f"{path.stem}.{sha256[:12]}{path.suffix}")):
            try:
                os.link(src, target)
                return target
            except FileExistsError:
                if sha256_file(target) == sha256:
                    return target
        raise FileExistsError(f"{path.parent}: both names for {path.name} hold other content")
    finally:
        if copied or isinstance(data, Path):  # the spilled part is consumed, as a move would
            with contextlib.suppress(FileNotFoundError):
                os.unlink(src)


def message_key(parsed: parsing.ParsedMail, fingerprint: str) -> str:
    """The {message_id} folder of A1: the Message-ID (made safe by storage_path), else the raw
    mail's hash."""
    return parsed.message_id or f"fp-{fingerprint[:24]}"


def is_automatic(parsed: parsing.ParsedMail, raw: bytes, cfg: Config) -> bool:
    """Mail we must not acknowledge: from ourselves, a daemon, or marked auto-submitted
    (RFC 3834), so two auto-responders never loop. `raw` needs only the header block."""
    sender = parsed.sender
    if not sender or sender in cfg.addresses or sender == cfg.smtp.from_address.lower():
        return True
    if sender.split("@")[0] in {"mailer-daemon", "postmaster", "noreply", "no-reply"}:
        return True
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].lower()
    return b"\nauto-submitted:" in head and b"auto-submitted: no" not in head


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(_HEAD_BYTES)


@dataclass(frozen=True)
class _Mail:
    """A mail as read: parsed, and where its raw bytes are (in memory, or kept as a file)."""

    parsed: parsing.ParsedMail
    fingerprint: str
    raw: bytes | None
    raw_path: str | None
    raw_size: int
    head: bytes
    now: datetime


@dataclass(frozen=True)
class _Decision:
    """What became of it: its attachment rows, its classification, its status."""

    rows: list[AttachmentRow]
    result: classify.Classification
    status: str


class Worker:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        queue: MailQueue,
        ollama: classify.OllamaClient | None,
        consumer: str,
        spool: Spool | None = None,
    ):
        self.cfg, self.store, self.queue = cfg, store, queue
        self.spool = spool or Spool(cfg.storage.data_dir, cfg.storage.spool_threshold_bytes)
        self.ollama, self.consumer = ollama, consumer
        self.busy = threading.Event()
        self.last_loop = time.monotonic()

    # --- the loop ------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        pending = self.queue.own_pending(self.consumer)
        if pending:
            log.info("resuming mails taken before a restart", extra={"count": len(pending)})
        while not stop.is_set():
            self.last_loop = time.monotonic()
            try:
                entries = pending or self.queue.read(self.consumer, block_ms=1000)
                pending = []
            except TRANSIENT as exc:
                log.warning("queue unreachable; retrying", extra={"error": str(exc)})
                stop.wait(2)
                continue
            for entry in entries:
                self.handle_with_retry(entry, stop)
                if stop.is_set():
                    break  # SIGTERM: the mail in hand is finished, the next stays queued

    def handle_with_retry(self, entry: Entry, stop: threading.Event) -> None:
        """Transient failures (a dependency down) are retried here with backoff: every mail
        needs that dependency. A failure of this one mail is retried a few times, then the mail
        is parked unacknowledged, so it cannot block the mails behind it; the queue hands it
        out again after claim_idle_ms."""
        attempt = failures = 0
        while True:
            attempt += 1
            try:
                self.busy.set()
                self.handle(entry)
                return
            except TRANSIENT as exc:
                cause = type(exc).__name__
                metrics.RETRIES.labels(self.cfg.profile, cause).inc()
                if isinstance(exc, clamd.ClamdUnavailable):
                    metrics.ATTACHMENT_SCANS.labels(self.cfg.profile, "unavailable").inc()
                delay = min(2.0**attempt, 30.0)
                log.warning(
                    "mail waits: a service it needs is unreachable",
                    extra={
                        "external_id": entry.external_id,
                        "cause": cause,
                        "error": str(exc),
                        "attempt": attempt,
                        "retry_in_s": delay,
                    },
                )
            except Exception as exc:  # a bug must not drop the mail: it stays queued
                failures += 1
                metrics.RETRIES.labels(self.cfg.profile, "error").inc()
                log.exception(
                    "processing failed; the mail stays queued",
                    extra={"external_id": entry.external_id, "attempt": attempt, "error": str(exc)},
                )
                if failures >= 3:
                    log.error(
                        "mail parked unacknowledged after 3 failures; retried later",
                        extra={"external_id": entry.external_id},
                    )
                    return
                delay = 2.0 * failures
            finally:
                self.busy.clear()
            if stop.wait(delay):
                return  # shutting down: the entry stays pending and is resumed on restart

    # --- one mail ------------------------------------------------------------------------
    def handle(self, entry: Entry) -> None:
        """One mail through the stages, top to bottom: settle what needs no processing, read
        (parse), decide (a duplicate, else scan and store its files, then classify), commit,
        acknowledge, account. An exception leaves the entry unacknowledged (handle_with_retry)."""
        start = time.monotonic()
        log.info(
            f"Processing email: {entry.external_id}",
            extra={
                "external_id": entry.external_id,
                "source": entry.source,
                "delivery": entry.deliveries,
            },
        )
        if self._settled(entry, start):
            return
        mail = self._read(entry)
        decision = self._decide(mail)
        outcome, email_id = self.store.save(self._row(entry, mail, decision, start))
        self._done(entry)
        self._account(entry, mail, decision, outcome, email_id, time.monotonic() - start)

    def _settled(self, entry: Entry, start: float) -> bool:
        """The entries that need no parsing: already committed (a repeated delivery), spool
        file gone (fetched again instead), flagged by the fetcher, or poison. True if handled."""
        if self.store.is_stored(entry.source, entry.source_id):
            log.info(
                "already stored; acknowledging the repeated entry",
                extra={"external_id": entry.external_id},
            )
            self._done(entry)
            return True
        if entry.spooled is not None and not self.spool.path(entry.spooled).exists():
            # the mailbox still has it (a mail leaves its source only once committed)
            log.error(
                "spool file of a queued mail is missing; it is fetched again from the mailbox",
                extra={"external_id": entry.external_id},
            )
            self.queue.release(entry.source, entry.source_id)
            self.queue.ack(entry)
            return True
        if entry.flag is not None:  # the fetcher could not fetch it: kept for a person
            self._store_unprocessed(entry, start, why=entry.flag)
            return True
        if entry.deliveries > POISON_DELIVERIES:
            self._store_unprocessed(entry, start)
            return True
        return False

    def _read(self, entry: Entry) -> _Mail:
        """Parse the mail: from its bytes, or (large) from its spool file with attachments
        spilled to disk and the raw bytes kept as a file."""
        now = datetime.now(UTC)
        if entry.spooled is None:
            parsed = parsing.parse(entry.raw)
            fingerprint = parsing.fingerprint(entry.raw)
            raw, raw_path, raw_size, head = entry.raw, None, len(entry.raw), entry.raw[:_HEAD_BYTES]
        else:
            src = self.spool.path(entry.spooled)
            parsed, fingerprint = parsing.parse_file(src, self.spool.workdir(entry.spooled))
            raw, raw_size, head = None, src.stat().st_size, _head(src)
            raw_path = self.spool.keep_raw(entry.spooled, fingerprint, now)
        return _Mail(parsed, fingerprint, raw, raw_path, raw_size, head, now)

    def _decide(self, mail: _Mail) -> _Decision:
        """A Message-ID already stored makes it a duplicate before anything of it is scanned,
        classified or written (it must never reach the first mail's attachment folder); else
        every attachment is scanned and stored, quarantined or refused, then it is classified."""
        parsed = mail.parsed
        if parsed.message_id and self.store.has_message_id(parsed.message_id):
            result = classify.Classification("duplicate", "", "rules", None, "not classified")
            return _Decision([], result, "duplicate")
        key = message_key(parsed, mail.fingerprint)
        rows = [self._attachment(i, a, key, mail.now) for i, a in enumerate(parsed.attachments)]
        result = self._classify(parsed)
        status = "processed" if result.source == "ollama" else "processed_without_ai"
        return _Decision(rows, result, status)

    def _row(self, entry: Entry, mail: _Mail, decision: _Decision, start: float) -> MailRow:
        parsed, result = mail.parsed, decision.result
        return MailRow(
            source=entry.source,
            source_id=entry.source_id,
            external_id=entry.external_id,
            message_id=parsed.message_id,
            fingerprint=mail.fingerprint,
            sender=parsed.sender,
            recipients=parsed.recipients,
            subject=parsed.subject,
            sent_at=parsed.date,
            body_text=parsed.text,
            defects=parsed.defects,
            status=decision.status,
            category=result.category,
            summary=result.summary,
            ai_source=result.source,
            ai_latency_ms=None if result.latency_s is None else int(result.latency_s * 1000),
            ai_error=result.error,
            processing_ms=int((time.monotonic() - start) * 1000),
            worker=self.consumer,
            raw=mail.raw,
            raw_size=mail.raw_size,
            raw_path=mail.raw_path,
            attachments=decision.rows,
            outbox=[]
            if decision.status == "duplicate"
            else self._outbox(entry, parsed, result, mail.head),
        )

    def _account(
        self,
        entry: Entry,
        mail: _Mail,
        decision: _Decision,
        outcome: str,
        email_id: int,
        took: float,
    ) -> None:
        """Metrics and the log line of a committed mail."""
        profile = self.cfg.profile
        if outcome == "stored":
            metrics.EMAILS_PROCESSED.labels(profile, decision.status).inc()
            metrics.PROCESSING_SECONDS.labels(profile).observe(took)
            for r in decision.rows:
                metrics.ATTACHMENT_SCANS.labels(profile, r.virus_scan_status).inc()
                if r.virus_scan_status == "infected":
                    metrics.ATTACHMENTS_INFECTED.labels(profile).inc()
                if r.virus_scan_status == "refused":
                    reason = (r.refused_reason or "policy").split(":")[0]
                    metrics.ATTACHMENTS_REFUSED.labels(profile, reason).inc()
        elif outcome == "duplicate":
            metrics.EMAILS_DUPLICATE.labels(profile).inc()
        log.info(
            "email stored" if outcome == "stored" else f"email {outcome}",
            extra={
                "external_id": entry.external_id,
                "email_id": email_id,
                "status": decision.status,
                "category": decision.result.category,
                "attachments": len(decision.rows),
                "defects": len(mail.parsed.defects),
                "seconds": round(took, 3),
            },
        )

    def _done(self, entry: Entry) -> None:
        """Acknowledge a committed (or already stored) mail and drop its spool file."""
        self.queue.ack(entry)
        if entry.spooled is not None:
            self.spool.remove(entry.spooled)

    def _store_unprocessed(self, entry: Entry, start: float, why: str | None = None) -> None:
        """Store a poison mail raw, flagged 'unprocessed', and tell the staff address: it is
        kept for a person instead of crashing the worker forever or being dropped. Nothing here
        parses the mail, so nothing here can fail the way its processing did."""
        cfg = self.cfg
        now = datetime.now(UTC)
        if entry.spooled is None:
            raw, raw_path, raw_size = entry.raw, None, len(entry.raw)
            fingerprint = parsing.fingerprint(entry.raw)
        else:
            src = self.spool.path(entry.spooled)
            fingerprint, raw, raw_size = sha256_file(src), None, src.stat().st_size
            raw_path = self.spool.keep_raw(entry.spooled, fingerprint, now)
        why = (
            why or f"processing failed on {entry.deliveries - 1} deliveries; stored raw, not parsed"
        )
        notice = OutboxRow(
            "notification",
            cfg.smtp.staff_address,
            SUBJECTS[cfg.profile]["unprocessed"].format(external_id=entry.external_id[:100]),
            f"{why}.\n\nexternal_id: {entry.external_id}\nraw size: {raw_size} bytes\n",
            self._outbox_id("notification", entry),
        )
        mail = MailRow(
            source=entry.source,
            source_id=entry.source_id,
            external_id=entry.external_id,
            message_id=None,
            fingerprint=fingerprint,
            sender="",
            recipients=[],
            subject="",
            sent_at=None,
            body_text="",
            defects=[why],
            status="unprocessed",
            category=None,
            summary=None,
            ai_source=None,
            ai_latency_ms=None,
            ai_error=None,
            processing_ms=int((time.monotonic() - start) * 1000),
            worker=self.consumer,
            raw=raw,
            raw_size=raw_size,
            raw_path=raw_path,
            outbox=[notice],
        )
        _outcome, email_id = self.store.save(mail)
        self._done(entry)
        metrics.EMAILS_PROCESSED.labels(cfg.profile, "unprocessed").inc()
        log.error(
            "mail failed processing repeatedly; stored raw and flagged unprocessed",
            extra={
                "external_id": entry.external_id,
                "email_id": email_id,
                "deliveries": entry.deliveries,
            },
        )

    def _attachment(
        self, position: int, att: parsing.Attachment, key: str, now: datetime
    ) -> AttachmentRow:
        storage, scanner = self.cfg.storage, self.cfg.clamd
        data = att.content  # bytes, or the file of a part spilled from a large mail
        size = att.size
        row = AttachmentRow(
            position=position,
            filename=att.filename,
            original_filename=att.original_filename,
            declared_type=att.declared_type,
            kind=attachments.detect_kind(data),
            size_bytes=size,
            sha256=att.sha256,
            storage_path=None,
            virus_scan_status="refused",
        )
        if size > storage.max_attachment_bytes:
            row.refused_reason = f"too large: {size} > {storage.max_attachment_bytes}"
            return row  # never stored, so never scanned; the raw mail keeps it
        try:  # every file is scanned before anything is decided or written (A4)
            scan = clamd.scan(scanner.host, scanner.port, data, timeout=scanner.timeout)
        except clamd.ClamdScanError as exc:
            row.virus_scan_status, row.refused_reason = "scan_failed", f"scan failed: {exc}"
            return row
        if scan.infected:
            path = attachments.quarantine_path(storage.data_dir, key, f"{position}-{att.filename}")
            path = write_new(path, data, att.sha256)
            row.virus_scan_status, row.virus_signature = "infected", scan.signature
            row.storage_path = str(path.relative_to(storage.data_dir))
            log.warning(
                "infected attachment quarantined",
                extra={
                    "signature": scan.signature,
                    "attachment": att.filename,
                    "path": row.storage_path,
                },
            )
            return row
        decision = attachments.decide(att.filename, data, storage.max_attachment_bytes)
        if not decision.accepted:
            row.refused_reason = decision.reason
            return row
        name = att.filename if position == 0 else f"{position}-{att.filename}"
        path = attachments.storage_path(storage.data_dir, now, key, name)
        path = write_new(path, data, att.sha256)
        row.kind, row.virus_scan_status = decision.kind, "clean"
        row.storage_path = str(path.relative_to(storage.data_dir))
        return row

    def _classify(self, parsed: parsing.ParsedMail) -> classify.Classification:
        result = classify.classify(self.cfg.profile, parsed.subject, parsed.text, self.ollama)
        if result.source == "ollama":
            metrics.AI_SECONDS.labels(self.cfg.profile).observe(result.latency_s or 0.0)
            log.info(
                "Ollama response",
                extra={
                    "category": result.category,
                    "latency_s": round(result.latency_s or 0.0, 3),
                    "model": self.cfg.ollama.model,
                },
            )
        elif self.ollama is not None:
            metrics.AI_FALLBACK.labels(self.cfg.profile).inc()
            log.warning(
                "Ollama unavailable; classified by rules",
                extra={"error": result.error, "category": result.category},
            )
        return result

    def _outbox_id(self, kind: str, entry: Entry) -> str:
        """The Message-ID of an outbound mail: fixed per source mail and kind, so a resend after
        a crash is recognisable as the same mail."""
        domain = self.cfg.smtp.from_address.rsplit("@", 1)[-1]
        stem = hashlib.sha256(f"{entry.source}|{entry.source_id}".encode()).hexdigest()[:24]
        return f"<{kind}.{stem}@{domain}>"

    def _outbox(
        self,
        entry: Entry,
        parsed: parsing.ParsedMail,
        result: classify.Classification,
        head: bytes,
    ) -> list[OutboxRow]:
        cfg = self.cfg
        texts = SUBJECTS[cfg.profile]
        subject = (parsed.subject or "(ohne Betreff)")[:150]
        rows = [
            OutboxRow(
                "notification",
                cfg.smtp.staff_address,
                texts["notification"].format(category=result.category, subject=subject),
                f"{result.summary}\n\nexternal_id: {entry.external_id}\n"
                f"attachments: {len(parsed.attachments)}\n",
                self._outbox_id("notification", entry),
            )
        ]
        if cfg.smtp.send_acknowledgement and not is_automatic(parsed, head, cfg):
            rows.append(
                OutboxRow(
                    "acknowledgement",
                    parsed.sender,
                    texts["acknowledgement"],
                    BODIES[cfg.profile],
                    self._outbox_id("ack", entry),
                )
            )
        return rows
