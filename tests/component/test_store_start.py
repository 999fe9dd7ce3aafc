"""The mailer's start while PostgreSQL does not answer yet: the start retries opening the store
(mailer.app._retry), and a retry must be able to succeed once the server is there. Real
PostgreSQL (conftest.py); between the store and it a TCP relay that is switched on only after the
first attempt has failed, as when the mailer starts before the database (a restart, a slow first
init, a stack brought up by hand)."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from mailer.store import Store, StoreUnavailable

from .conftest import Server, free_port

pytestmark = [pytest.mark.component, pytest.mark.req("X2")]


class _Relay(socketserver.ThreadingTCPServer):
    """127.0.0.1:port -> the real server, both directions, a thread per connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, target: tuple[str, int]):
        self.target = target
        super().__init__(("127.0.0.1", port), _Pipe)


class _Pipe(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        upstream = socket.create_connection(self.server.target, timeout=10)

        def copy(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=copy, args=(upstream, self.request), daemon=True)
        back.start()
        copy(self.request, upstream)
        back.join(10)
        upstream.close()


@pytest.fixture
def late_postgres(local_postgres: Server) -> Iterator[tuple[int, Callable[[], None]]]:
    """A port where PostgreSQL answers only after `switch_on()`."""
    port = free_port()
    relays: list[_Relay] = []

    def switch_on() -> None:
        relay = _Relay(port, (local_postgres.host, local_postgres.port))
        threading.Thread(target=relay.serve_forever, daemon=True).start()
        relays.append(relay)

    yield port, switch_on
    for relay in relays:
        relay.shutdown()
        relay.server_close()


def _late_store(port: int, password: str) -> Store:
    info = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=port, dbname="postgres", user="postgres", password=password,
        connect_timeout=2,
    )  # fmt: skip
    return Store(info, max_size=2, name="late-start")


def test_a_retry_opens_the_store_once_postgres_answers(late_postgres, local_postgres):
    """Each attempt fails fast, says why, and is worth retrying; once PostgreSQL answers, the
    next attempt opens the store."""
    port, switch_on = late_postgres
    store = _late_store(port, local_postgres.password)
    try:
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="Connection refused") as caught:
                store.open(timeout=5)
            assert not caught.value.permanent  # a server not there yet: worth retrying
            assert time.monotonic() - started < 4, "a refused connection must not wait it out"
        switch_on()
        store.open(timeout=10)
        with store.pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert store.ping()
    finally:
        store.close()


def test_a_pool_that_timed_out_is_replaced_for_the_next_attempt(
    late_postgres, local_postgres, monkeypatch
):
    """psycopg_pool closes a pool whose first wait timed out, and a closed pool cannot be
    reopened: before the fix every retry of the start failed with PoolClosed until the mailer
    gave up (30 attempts) and Docker restarted it. The probe is left out here, so that the
    pool's own wait is what fails (as when PostgreSQL goes away between the two)."""
    monkeypatch.setattr("mailer.store.probe", lambda conninfo, timeout: None)
    port, switch_on = late_postgres
    store = _late_store(port, local_postgres.password)
    try:
        for _ in range(2):  # the second time: the same error, not PoolClosed
            with pytest.raises(PoolTimeout):
                store.open(timeout=1)
        switch_on()
        store.open(timeout=10)
        assert store.ping()
    finally:
        store.close()


def test_a_refused_password_is_named_and_not_retried(local_postgres):
    """Volumes made with other secrets (a fresh clone beside old volumes, a restored backup):
    PostgreSQL refuses the password, and retrying cannot help. The start says so and gives up at
    once (exit 2, mailer.app._retry) instead of logging "unreachable" thirty times."""
    info = psycopg.conninfo.make_conninfo(
        host=local_postgres.host, port=local_postgres.port, dbname="postgres", user="postgres",
        password="not-the-password", connect_timeout=2,
    )  # fmt: skip
    store = Store(info, max_size=1, name="wrong-password")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="password authentication failed") as caught:
            store.open(timeout=10)
        assert caught.value.permanent
        assert time.monotonic() - started < 5, "a refused login must not wait out the timeout"
    finally:
        store.close()
