"""The mailer's start while PostgreSQL does not answer yet: the start retries opening the store
(mailer.app._retry), and a retry must be able to succeed once the server is there. Real
PostgreSQL (conftest.py); between the store and it a TCP relay that is switched on only after the
first attempt has failed, as when the mailer starts before the database (a restart, a slow first
init, a stack brought up by hand)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress

import psycopg
import pytest

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


def test_a_retry_opens_the_store_once_postgres_answers(late_postgres, local_postgres):
    """psycopg_pool closes a pool whose first wait timed out, and a closed pool cannot be
    reopened: before the fix every retry of the start failed with PoolClosed until the mailer
    gave up (30 attempts) and Docker restarted it."""
    port, switch_on = late_postgres
    info = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=port, dbname="postgres", user="postgres",
        password=local_postgres.password, connect_timeout=2,
    )  # fmt: skip
    store = Store(info, max_size=2, name="late-start")
    try:
        for _ in range(2):  # the second time: the same error, not PoolClosed
            with pytest.raises(StoreUnavailable, match="Connection refused") as caught:
                store.open(timeout=1)
            assert not caught.value.permanent  # a server not there yet: worth retrying
        switch_on()
        store.open(timeout=10)
        with store.pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
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
        with pytest.raises(StoreUnavailable, match="password authentication failed") as caught:
            store.open(timeout=2)
        assert caught.value.permanent
    finally:
        store.close()
