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

import json
import logging
import signal
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from prometheus_client import make_wsgi_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from mailer import clamd, classify, metrics
from mailer.config import Config, ConfigError, OllamaConfig, describe, load_config
from mailer.fetcher import Fetcher
from mailer.housekeeping import Housekeeper
from mailer.outbox import OutboxWorker, SmtpSender, SmtpTlsError, SmtpUnavailable
from mailer.queue import MailQueue
from mailer.scrub import setup_logging
from mailer.sources import Source, build_source
from mailer.spool import Spool
from mailer.store import Store, conninfo
from mailer.worker import Worker

log = logging.getLogger("mailer")

EXIT_OK, EXIT_CONFIG, EXIT_CONNECTION = 0, 1, 2
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
    setup_logging(cfg.process.log_level, cfg.secrets())
    store = Store(conninfo(cfg.db), max_size=1, name=f"{cfg.profile}-housekeeping")
    try:
        store.open(timeout=10)
    except Exception as exc:
        print(f"postgres unreachable: {exc}", file=sys.stderr)
        return EXIT_CONNECTION
    try:
        report = run_once(cfg.profile, cfg.storage, store)
    finally:
        store.close()
    print(json.dumps({"removed": report.removed, "bytes_freed": report.bytes_freed}))
    return EXIT_OK


def main(env=None, *, start_attempts: int = 30, start_delay: float = 2.0) -> int:
    """Build, then run: the configuration (exit 1 if wrong), the connections with bounded
    retries (exit 2 if one stays down), then the threads until SIGTERM (exit 0) or until one
    of them dies (exit 2, so the container restarts)."""
    import os

    cfg = _configure(os.environ if env is None else env)
    if cfg is None:
        return EXIT_CONFIG
    stop = _stop_on_signals()
    parts = _connect(cfg, stop, start_attempts, start_delay)
    if isinstance(parts, int):
        return parts
    return _serve(cfg, parts, stop)


def _configure(env) -> Config | None:
    """The configuration, or None after one JSON line naming every problem."""
    try:
        cfg = load_config(env)
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
        return None
    setup_logging(cfg.process.log_level, cfg.secrets())
    log.info(
        "configuration loaded (secrets read from their files, values not logged)",
        extra={"config": describe(cfg)},
    )
    return cfg


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info(
            "shutdown requested; finishing the mail in hand",
            extra={"signal": signal.Signals(signum).name},
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


@dataclass
class _Parts:
    """What the threads share, connected and checked."""

    redis: redis.Redis
    store: Store
    queue: MailQueue
    spool: Spool
    source: Source


def redis_client(cfg: Config) -> redis.Redis:
    """The mailer's Redis client. One immediate reconnect (a connection the server dropped); no
    more: redis-py 6+ retries every command ten times with backoff by default, ~4 s per call
    against a Redis that is down, which hid outages from the mailer's own bounded retries
    (a start with 3 attempts took 13 s instead of 1 s) and slowed /readyz."""
    return redis.Redis(
        host=cfg.redis.host,
        port=cfg.redis.port,
        username=cfg.redis.user,
        password=cfg.redis.password,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1),
    )


def _connect(cfg: Config, stop: threading.Event, attempts: int, delay: float) -> _Parts | int:
    """Redis, PostgreSQL (migrated), the mailbox and the SMTP server, each with bounded
    retries; then the spool tidied. An exit code when one stays unreachable."""
    r = redis_client(cfg)
    store = Store(conninfo(cfg.db), max_size=cfg.db.pool_max, name=f"{cfg.profile}-mailer")
    queue = MailQueue(r, cfg.profile)
    spool = Spool(cfg.storage.data_dir, cfg.storage.spool_threshold_bytes)
    source = build_source(cfg.source, cfg.addresses, cfg.mail_ca_file, spool)

    def open_db():
        store.open(timeout=10)
        store.migrate()

    checks = [
        ("redis", lambda: (r.ping(), queue.ensure_group())),
        ("postgres", open_db),
        (f"mailbox {source.name}", source.check),
    ]
    for what, fn in checks:
        if not _retry(what, fn, attempts, delay, stop):
            return EXIT_OK if stop.is_set() else EXIT_CONNECTION
    if not check_smtp(SmtpSender(cfg.smtp, cfg.mail_ca_file, timeout=10.0)):
        return EXIT_CONNECTION
    spool.clear_work()
    swept = spool.sweep(queue.spooled_names())
    if swept:
        log.info("spool files of committed mails removed", extra={"count": len(swept)})
    if not clamd.ping(cfg.clamd.host, cfg.clamd.port):
        log.warning(
            "clamd not answering yet: mails with attachments wait until it does",
            extra={"clamd": f"{cfg.clamd.host}:{cfg.clamd.port}"},
        )
    return _Parts(r, store, queue, spool, source)


def _ollama_client(ollama: OllamaConfig) -> classify.OllamaClient | None:
    """The classifier's model client; None without OLLAMA_URL (rules only)."""
    if not ollama.url:
        return None
    return classify.OllamaClient(ollama.url, ollama.model, ollama.timeout, num_ctx=ollama.num_ctx)


def _serve(cfg: Config, parts: _Parts, stop: threading.Event) -> int:
    """The four threads and the HTTP server, until SIGTERM or until a thread dies."""
    ollama = _ollama_client(cfg.ollama)
    fetcher = Fetcher(cfg.profile, cfg.source, parts.source, parts.queue, parts.store)
    runners = {
        "fetcher": fetcher.run,
        "worker": Worker(
            cfg, parts.store, parts.queue, ollama, consumer=cfg.process.worker_id, spool=parts.spool
        ).run,
        "outbox": OutboxWorker(
            cfg.profile, SmtpSender(cfg.smtp, cfg.mail_ca_file), parts.store
        ).run,
        "housekeeping": Housekeeper(cfg.profile, cfg.storage, parts.store).run,
    }
    threads = {
        n: threading.Thread(target=fn, args=(stop,), name=n, daemon=True)
        for n, fn in runners.items()
    }

    def alive() -> bool:
        return all(t.is_alive() for t in threads.values())

    def ready() -> dict[str, bool]:
        recent = fetcher.last_ok is not None and (
            time.monotonic() - fetcher.last_ok < max(cfg.source.poll_seconds * 30, 120)
        )
        try:
            redis_ok = bool(parts.redis.ping())
        except redis.RedisError:
            redis_ok = False
        return {
            "postgres": parts.store.ping(),
            "redis": redis_ok,
            "mailbox": recent,
            "threads": alive(),
        }

    server = serve_http(make_app(ready, alive), cfg.process.http_port)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    for t in threads.values():
        t.start()
    metrics.MAILBOX_UP.labels(cfg.profile).set(0)
    log.info(
        "Service running",
        extra={
            "profile": cfg.profile,
            "source": parts.source.name,
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
    for name, seconds in (("worker", 60), ("fetcher", 10), ("outbox", 10), ("housekeeping", 10)):
        threads[name].join(timeout=seconds)  # the worker finishes the mail in hand first
    server.shutdown()
    parts.source.close()
    parts.store.close()
    log.info("stopped cleanly")
    return EXIT_OK
