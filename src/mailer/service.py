"""The mailer process: configuration check, bounded connection retries, then four threads
(fetcher, worker, outbox sender, housekeeping) and the HTTP server for /healthz, /readyz and
/metrics until SIGTERM.

Exit codes (X2): 0 clean shutdown (the mail in hand is finished first), 1 configuration error,
2 a dependency still unreachable after bounded retries at start, or at once when retrying cannot
help (a mail server's certificate not trusted, STARTTLS not offered).

The HTTP server answers each connection in its own thread with a read timeout: a peer that opens
a connection and sends nothing must not hold up the health checks (three failed ones restart us).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psycopg
import redis
from prometheus_client import make_wsgi_app

from mailer import clamd, classify, metrics
from mailer.config import Config, ConfigError, describe, load_config
from mailer.housekeeping import Housekeeper
from mailer.outbox import OutboxWorker, SmtpSender, SmtpTlsError, SmtpUnavailable
from mailer.queue import MailQueue
from mailer.scrub import setup_logging
from mailer.sources import ImapSource, MailFetchError, Pop3Source, SourceError, _Bounded
from mailer.spool import Spool
from mailer.store import Store, conninfo
from mailer.worker import Worker

log = logging.getLogger("mailer")

EXIT_OK, EXIT_CONFIG, EXIT_CONNECTION = 0, 1, 2
FETCH_ATTEMPTS = 3  # a mail that failed to fetch this often is skipped until a restart
HTTP_TIMEOUT = 5.0  # seconds an HTTP connection may stay silent
HTTP_MAX_CONNECTIONS = 64  # beyond this, new connections are closed at once


def _retry(
    what: str, fn: Callable[[], object], attempts: int, delay: float, stop: threading.Event
) -> bool:
    for attempt in range(1, attempts + 1):
        try:
            fn()
            return True
        except Exception as exc:
            if getattr(exc, "permanent", False):
                log.error(f"{what} refused: {exc}; retrying cannot help, exiting with code 2")
                return False
            log.warning(
                f"{what} unreachable",
                extra={"attempt": attempt, "of": attempts, "error": f"{type(exc).__name__}: {exc}"},
            )
            if attempt < attempts and stop.wait(delay):
                return False
    log.error(f"{what} still unreachable after {attempts} attempts; exiting with code 2")
    return False


class Fetcher:
    """Polls the mailbox and queues our new mails. A mail whose fetch fails FETCH_ATTEMPTS times
    is skipped from then on (until a restart) and left in the mailbox, so it never blocks the
    mails behind it; mails not addressed to us are counted and logged once."""

    def __init__(self, cfg: Config, source, queue: MailQueue, store: Store):
        self.cfg, self.source, self.queue, self.store = cfg, source, queue, store
        self.last_ok: float | None = None
        self.fetch_failures: dict[str, int] = {}
        self.skipped = _Bounded()
        for counter in (metrics.MAILBOX_FOREIGN, metrics.FETCH_FAILURES, metrics.FETCH_SKIPPED):
            counter.labels(cfg.profile)  # the series exists (at 0) before the first event

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
        metrics.MAILBOX_FOREIGN.labels(self.cfg.profile).inc()
        log.info("mail left in the mailbox: not addressed to us", extra={"uid": source_id})

    def fetch_failed(self, exc: MailFetchError) -> None:
        uid = exc.source_id
        count = self.fetch_failures.get(uid, 0) + 1
        metrics.FETCH_FAILURES.labels(self.cfg.profile).inc()
        if count < FETCH_ATTEMPTS:
            self.fetch_failures[uid] = count
            log.warning(
                "fetching a mail failed; it is tried again",
                extra={"uid": uid, "attempt": count, "of": FETCH_ATTEMPTS, "error": str(exc)},
            )
            return
        self.fetch_failures.pop(uid, None)
        self.skipped.add(uid)
        metrics.FETCH_SKIPPED.labels(self.cfg.profile).inc()
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
        delete = self.committed if self.cfg.delete_after_store else None
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

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self.poll_once()
                self.last_ok = time.monotonic()
                metrics.MAILBOX_UP.labels(self.cfg.profile).set(1)
                failures = 0
            except MailFetchError as exc:
                # the mailbox answers; one mail failed: counted, and tried again soon
                self.fetch_failed(exc)
                stop.wait(self.cfg.poll_seconds)
                continue
            except (
                SourceError,
                redis.RedisError,
                OSError,
                psycopg.OperationalError,  # e.g. PostgreSQL restarting: expected, no traceback
                psycopg.InterfaceError,
            ) as exc:
                failures += 1
                metrics.MAILBOX_UP.labels(self.cfg.profile).set(0)
                log.warning("mailbox poll failed", extra={"error": str(exc), "failures": failures})
                stop.wait(min(self.cfg.poll_seconds * 2**failures, 60))
                continue
            except Exception:
                failures += 1
                log.exception("mailbox poll failed unexpectedly")
                stop.wait(min(self.cfg.poll_seconds * 2**failures, 60))
                continue
            with contextlib.suppress(redis.RedisError):
                metrics.QUEUE_DEPTH.labels(self.cfg.profile).set(self.queue.depth())
            if isinstance(self.source, ImapSource):
                try:
                    self.source.wait(self.cfg.poll_seconds * 12, stop)
                except SourceError as exc:
                    log.warning("IDLE failed; polling", extra={"error": str(exc)})
                    stop.wait(self.cfg.poll_seconds)
            else:
                stop.wait(self.cfg.poll_seconds)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # access logs would drown the JSON log
        pass


def make_app(ready: Callable[[], dict[str, bool]], alive: Callable[[], bool]):
    metrics_app = make_wsgi_app(metrics.REGISTRY)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            ok = alive()
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json")],
            )
            return [json.dumps({"status": "ok" if ok else "failing"}).encode()]
        if path == "/readyz":
            checks = ready()
            ok = all(checks.values())
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json")],
            )
            return [json.dumps({"ready": ok, "checks": checks}).encode()]
        if path == "/metrics":
            return metrics_app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One daemon thread per connection, at most HTTP_MAX_CONNECTIONS at once."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # socketserver's 5 overflows when peers connect at once

    def __init__(self, *args, max_connections: int = HTTP_MAX_CONNECTIONS, **kw):
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(*args, **kw)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # a flood: refused, never queued behind idle peers
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        """A peer that went silent (timeout) or away is routine; anything else is logged as
        JSON, not printed to stderr as socketserver does."""
        if not isinstance(sys.exc_info()[1], OSError):
            log.exception("HTTP request failed", extra={"peer": client_address[0]})


def serve_http(app, port: int, host: str = "0.0.0.0", *, timeout: float = HTTP_TIMEOUT):
    """The HTTP server (not yet serving: call serve_forever in a thread)."""
    handler = type("_Handler", (_QuietHandler,), {"timeout": timeout})
    return make_server(host, port, app, server_class=_ThreadingWSGIServer, handler_class=handler)


def build_source(cfg: Config, spool: Spool | None = None):
    kw = dict(
        security=cfg.source_security,
        context=cfg.tls_context(),
        addresses=cfg.addresses,
        spool=spool,
    )
    if cfg.source_kind == "pop3":
        return Pop3Source(
            cfg.source_host, cfg.source_port, cfg.source_user, cfg.source_password, **kw
        )
    return ImapSource(
        cfg.source_host,
        cfg.source_port,
        cfg.source_user,
        cfg.source_password,
        mailbox=cfg.source_mailbox,
        **kw,
    )


def check_smtp(sender: SmtpSender) -> bool:
    """One connection to the SMTP server at start. An untrusted certificate or a missing
    STARTTLS is fatal (False: exit code 2); a server that is down or a refused login is logged
    and the outbox retries its rows with backoff."""
    try:
        sender.check()
    except SmtpTlsError as exc:
        log.error(f"SMTP server refused: {exc}; retrying cannot help, exiting with code 2")
        return False
    except SmtpUnavailable as exc:
        log.warning("SMTP server not usable yet: outbound mail waits", extra={"error": str(exc)})
    return True


def housekeeping_main(env=None) -> int:
    """`python -m mailer housekeeping`: one run now, its report as JSON on stdout."""
    import os

    from mailer.housekeeping import run_once

    try:
        cfg = load_config(os.environ if env is None else env)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(cfg.log_level, cfg.secrets())
    store = Store(
        conninfo(cfg.db_host, cfg.db_port, cfg.db_name, cfg.db_user, cfg.db_password),
        max_size=1,
        name=f"{cfg.profile}-housekeeping",
    )
    try:
        store.open(timeout=10)
    except Exception as exc:
        print(f"postgres unreachable: {exc}", file=sys.stderr)
        return EXIT_CONNECTION
    try:
        report = run_once(cfg, store)
    finally:
        store.close()
    print(json.dumps({"removed": report.removed, "bytes_freed": report.bytes_freed}))
    return EXIT_OK


def main(env=None, *, start_attempts: int = 30, start_delay: float = 2.0) -> int:
    import os

    try:
        cfg = load_config(os.environ if env is None else env)
    except ConfigError as exc:
        print(
            json.dumps(
                {
                    "ts": datetime.now(UTC).isoformat(),
                    "level": "ERROR",
                    "logger": "mailer",
                    "msg": f"configuration error: {exc}",
                }
            ),
            file=sys.stderr,
            flush=True,
        )
        return EXIT_CONFIG
    setup_logging(cfg.log_level, cfg.secrets())
    log.info(
        "configuration loaded (secrets read from their files, values not logged)",
        extra={"config": describe(cfg)},
    )

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info(
            "shutdown requested; finishing the mail in hand",
            extra={"signal": signal.Signals(signum).name},
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    r = redis.Redis(
        host=cfg.redis_host,
        port=cfg.redis_port,
        username=cfg.redis_user,
        password=cfg.redis_password,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    store = Store(
        conninfo(cfg.db_host, cfg.db_port, cfg.db_name, cfg.db_user, cfg.db_password),
        max_size=cfg.db_pool_max,
        name=f"{cfg.profile}-mailer",
    )
    queue = MailQueue(r, cfg.profile)
    spool = Spool(cfg.data_dir, cfg.spool_threshold_bytes)
    source = build_source(cfg, spool)

    def open_db():
        store.open(timeout=10)
        store.migrate()

    checks = [
        ("redis", lambda: (r.ping(), queue.ensure_group())),
        ("postgres", open_db),
        (f"mailbox {source.name}", source.check),
    ]
    for what, fn in checks:
        if not _retry(what, fn, start_attempts, start_delay, stop):
            if stop.is_set():
                return EXIT_OK
            return EXIT_CONNECTION
    if not check_smtp(SmtpSender(cfg, timeout=10.0)):
        return EXIT_CONNECTION
    spool.clear_work()
    swept = spool.sweep(queue.spooled_names())
    if swept:
        log.info("spool files of committed mails removed", extra={"count": len(swept)})
    if not clamd.ping(cfg.clamd_host, cfg.clamd_port):
        log.warning(
            "clamd not answering yet: mails with attachments wait until it does",
            extra={"clamd": f"{cfg.clamd_host}:{cfg.clamd_port}"},
        )

    ollama = (
        classify.OllamaClient(
            cfg.ollama_url, cfg.ollama_model, cfg.ollama_timeout, num_ctx=cfg.ollama_num_ctx
        )
        if cfg.ollama_url
        else None
    )
    fetcher = Fetcher(cfg, source, queue, store)
    worker = Worker(cfg, store, queue, ollama, consumer=cfg.worker_id, spool=spool)
    outbox = OutboxWorker(cfg, store)
    housekeeper = Housekeeper(cfg, store)
    threads = {
        "fetcher": threading.Thread(target=fetcher.run, args=(stop,), name="fetcher", daemon=True),
        "worker": threading.Thread(target=worker.run, args=(stop,), name="worker", daemon=True),
        "outbox": threading.Thread(target=outbox.run, args=(stop,), name="outbox", daemon=True),
        "housekeeping": threading.Thread(
            target=housekeeper.run, args=(stop,), name="housekeeping", daemon=True
        ),
    }

    def alive() -> bool:
        return all(t.is_alive() for t in threads.values())

    def ready() -> dict[str, bool]:
        recent = fetcher.last_ok is not None and (
            time.monotonic() - fetcher.last_ok < max(cfg.poll_seconds * 30, 120)
        )
        try:
            redis_ok = bool(r.ping())
        except redis.RedisError:
            redis_ok = False
        return {"postgres": store.ping(), "redis": redis_ok, "mailbox": recent, "threads": alive()}

    server = serve_http(make_app(ready, alive), cfg.http_port)
    http = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    http.start()
    for t in threads.values():
        t.start()
    metrics.MAILBOX_UP.labels(cfg.profile).set(0)
    log.info(
        "Service running",
        extra={
            "profile": cfg.profile,
            "source": source.name,
            "ai": "ollama" if ollama else "rules only",
        },
    )
    while not stop.wait(1.0):
        dead = [n for n, t in threads.items() if not t.is_alive()]
        if dead:
            log.error("a thread died; exiting so the container restarts", extra={"threads": dead})
            stop.set()
            server.shutdown()
            return EXIT_CONNECTION
    threads["worker"].join(timeout=60)
    threads["fetcher"].join(timeout=10)
    threads["outbox"].join(timeout=10)
    threads["housekeeping"].join(timeout=10)
    server.shutdown()
    if isinstance(source, ImapSource):
        source.close()
    store.close()
    log.info("stopped cleanly")
    return EXIT_OK
