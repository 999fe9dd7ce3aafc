"""mailer.app.redis_client: a Redis that is down surfaces at once to the mailer's own retries
(X2's bounded start, the worker's backoff), with one reconnect for a dropped connection."""

import socket
import threading
import time
from pathlib import Path

import pytest
import redis

from mailer.app import redis_client
from mailer.config import load_config

pytestmark = pytest.mark.unit


class DroppingServer:
    """A TCP listener on 127.0.0.1 that accepts each connection and closes it at once, counting
    them: what a client meets from a Redis restarting behind a proxy."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def server():
    s = DroppingServer()
    yield s
    s.close()


def _config(tmp_path: Path, port: int):
    pw = tmp_path / "pw"
    pw.write_text("not-a-secret", encoding="utf-8")
    return load_config(
        {
            "MAILER_PROFILE": "praxis",
            "MAILER_ADDRESSES": "praxis@praxis.example",
            "SOURCE_PROTOCOL": "imaps",
            "SOURCE_HOST": "mail.example",
            "SOURCE_USER": "praxis@praxis.example",
            "SOURCE_PASSWORD_FILE": str(pw),
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(port),
            "REDIS_PASSWORD_FILE": str(pw),
            "DB_HOST": "postgres",
            "DB_PASSWORD_FILE": str(pw),
            "CLAMD_HOST": "clamav",
            "SMTP_HOST": "mailpit",
            "SMTP_FROM": "praxis@praxis.example",
            "STAFF_ADDRESS": "team@praxis.example",
        }
    )


def test_a_dropped_connection_is_tried_once_more_then_the_error_is_the_callers(tmp_path, server):
    client = redis_client(_config(tmp_path, server.port))
    start = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    took = time.monotonic() - start
    # redis-py's default (10 retries with backoff) made 11 connections over ~4 s
    assert server.accepted == 2, f"{server.accepted} connections for one ping"
    assert took < 2, f"one failing ping took {took:.1f} s"


def test_a_closed_port_fails_at_once(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    client = redis_client(_config(tmp_path, port))
    start = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    assert time.monotonic() - start < 2
