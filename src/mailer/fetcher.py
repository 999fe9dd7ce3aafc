"""The fetcher: polls the profile's mailbox through its Source (POP3 or IMAP, the same
protocol) and queues our new mails on the Redis stream; what is known (stored or queued) is
never fetched again, and a mail that cannot be fetched never blocks the ones behind it."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import psycopg
import redis

from mailer import metrics
from mailer.config import SourceConfig
from mailer.queue import MailQueue
from mailer.sources import MailFetchError, Source, SourceError, _Bounded
from mailer.store import Store

log = logging.getLogger("mailer")

FETCH_ATTEMPTS = 3  # a mail that failed to fetch this often is skipped until a restart


class Fetcher:
    """Polls the mailbox and queues our new mails. A mail whose fetch fails FETCH_ATTEMPTS times
    is skipped from then on (until a restart) and left in the mailbox, so it never blocks the
    mails behind it; mails not addressed to us are counted and logged once."""

    def __init__(
        self, profile: str, settings: SourceConfig, source: Source, queue: MailQueue, store: Store
    ):
        self.profile, self.settings = profile, settings
        self.source, self.queue, self.store = source, queue, store
        self.last_ok: float | None = None
        self.fetch_failures: dict[str, int] = {}
        self.skipped = _Bounded()
        for counter in (metrics.MAILBOX_FOREIGN, metrics.FETCH_FAILURES, metrics.FETCH_SKIPPED):
            counter.labels(profile)  # the series exists (at 0) before the first event

    def known(self, ids: list[str]) -> set[str]:
        skipped = {i for i in ids if i in self.skipped}
        rest = [i for i in ids if i not in skipped]
        return (
            skipped
            | self.store.known_source_ids(self.source.name, rest)
            | self.queue.enqueued(self.source.name, rest)
        )

    def committed(self, ids: list[str]) -> set[str]:
        return self.store.known_source_ids(self.source.name, ids)

    def foreign(self, source_id: str) -> None:
        """A mail left unread: not addressed to this profile (the source reports each once)."""
        metrics.MAILBOX_FOREIGN.labels(self.profile).inc()
        log.info("mail left in the mailbox: not addressed to us", extra={"uid": source_id})

    def fetch_failed(self, exc: MailFetchError) -> None:
        uid = exc.source_id
        count = self.fetch_failures.get(uid, 0) + 1
        metrics.FETCH_FAILURES.labels(self.profile).inc()
        if count < FETCH_ATTEMPTS:
            self.fetch_failures[uid] = count
            log.warning(
                "fetching a mail failed; it is tried again",
                extra={"uid": uid, "attempt": count, "of": FETCH_ATTEMPTS, "error": str(exc)},
            )
            return
        self.fetch_failures.pop(uid, None)
        self.skipped.add(uid)
        metrics.FETCH_SKIPPED.labels(self.profile).inc()
        log.error(
            "mail could not be fetched; skipped until the mailer restarts, left in the mailbox, "
            "recorded as unprocessed",
            extra={"uid": uid, "attempts": count, "error": str(exc)},
        )
        # A row for a person, under an id of its own: stored under the real UID, a partial copy
        # would count as the mail (and SOURCE_DELETE_AFTER_STORE would delete the original).
        why = (
            f"could not be fetched from the mailbox after {count} attempts ({str(exc)[:300]}); "
            f"it is still there under UID {uid}"
        )
        try:
            self.queue.enqueue(self.source.name, f"{uid}#unfetchable", uid, b"", None, flag=why)
        except Exception as qexc:  # the queue is down: the log line above stays the record
            log.warning("could not record the unfetchable mail", extra={"error": str(qexc)})

    def poll_once(self) -> int:
        added = 0
        delete = self.committed if self.settings.delete_after_store else None
        for mail in self.source.poll(self.known, delete, self.foreign):
            self.fetch_failures.pop(mail.source_id, None)
            if self.queue.enqueue(
                self.source.name, mail.source_id, mail.external_id, mail.raw, mail.spooled
            ):
                added += 1
                log.info(
                    "email fetched",
                    extra={
                        "external_id": mail.external_id,
                        "bytes": mail.size,
                        "spooled": mail.spooled is not None,
                    },
                )
        return added

    def dependencies_answer(self) -> bool:
        return self.queue.ping() and self.store.ping()

    def await_dependencies(self, stop: threading.Event, backoff: float) -> None:
        """After a Redis or PostgreSQL error: wait until both answer again (asked every
        second), at most `backoff`. A mailer that slept out its backoff left new mail unread
        for up to a minute after a Redis outage had ended. Where both answer at once, the
        error was not an outage (a refused command, say): the whole backoff is waited, so the
        mailbox (Gmail counts logins) is never polled in a tight loop."""
        if self.dependencies_answer():
            stop.wait(backoff)
            return
        deadline = time.monotonic() + backoff
        while not stop.wait(max(0.0, min(1.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline or self.dependencies_answer():
                return

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self.poll_once()
                self.last_ok = time.monotonic()
                metrics.MAILBOX_UP.labels(self.profile).set(1)
                failures = 0
            except MailFetchError as exc:
                # the mailbox answers; one mail failed: counted, and tried again soon
                self.fetch_failed(exc)
                stop.wait(self.settings.poll_seconds)
                continue
            except (
                SourceError,
                OSError,
                redis.RedisError,
                psycopg.OperationalError,  # e.g. PostgreSQL restarting: expected, no traceback
                psycopg.InterfaceError,
            ) as exc:
                failures += 1
                metrics.MAILBOX_UP.labels(self.profile).set(0)
                log.warning("mailbox poll failed", extra={"error": str(exc), "failures": failures})
                backoff = min(self.settings.poll_seconds * 2**failures, 60)
                if isinstance(exc, SourceError | OSError):
                    stop.wait(backoff)
                else:  # the queue or the database, not the mailbox: polled once they answer
                    self.await_dependencies(stop, backoff)
                continue
            except Exception:
                failures += 1
                log.exception("mailbox poll failed unexpectedly")
                stop.wait(min(self.settings.poll_seconds * 2**failures, 60))
                continue
            with contextlib.suppress(redis.RedisError):
                metrics.QUEUE_DEPTH.labels(self.profile).set(self.queue.depth())
            try:
                self.source.wait(self.settings.poll_seconds, stop)  # IDLE on IMAP, a sleep on POP3
            except SourceError as exc:
                log.warning("waiting for new mail failed; polling", extra={"error": str(exc)})
                stop.wait(self.settings.poll_seconds)
