"""mailer.app's HTTP server: idle or half-open connections from peers never hold up /readyz
(issue 10: one idle connection on single-threaded wsgiref stalled it, and three failed health
checks restarted the mailer)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.request

import pytest

from mailer import app as service

pytestmark = pytest.mark.unit


@pytest.fixture
def serve():
    servers = []

    def start(**kw):
        app = service.make_app(lambda: {"postgres": True, "redis": True}, lambda: True)
        server = service.serve_http(app, 0, "127.0.0.1", **kw)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _idle(port: int, n: int, first_bytes: bytes = b"") -> list[socket.socket]:
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if first_bytes:
            s.sendall(first_bytes)
        conns.append(s)
    return conns


def test_readyz_answers_within_1s_with_20_idle_connections_open(serve):
    port = serve()
    conns = _idle(port, 10) + _idle(port, 10, b"GET /readyz HTTP/1.1\r\n")  # silent, half-sent
    try:
        time.sleep(0.2)  # every one accepted and waiting in its handler
        start = time.monotonic()
        status, body = _get(port, "/readyz", timeout=1.0)
        took = time.monotonic() - start
        assert status == 200 and json.loads(body)["ready"] is True
        assert took < 1.0
        assert _get(port, "/healthz")[0] == 200
        assert _get(port, "/metrics")[0] == 200
        assert _get(port, "/nope")[0] == 404
    finally:
        for s in conns:
            s.close()


def test_an_idle_connection_is_closed_after_the_timeout(serve):
    port = serve(timeout=0.3)
    (conn,) = _idle(port, 1)
    with conn:
        conn.settimeout(3)
        start = time.monotonic()
        assert conn.recv(1) == b""  # the server hung up
        assert time.monotonic() - start < 2.5


def test_beyond_the_connection_limit_new_ones_are_closed_not_queued(serve):
    port = serve(timeout=5)
    server_cls = service._ThreadingWSGIServer
    assert server_cls.daemon_threads and not server_cls.block_on_close
    conns = _idle(port, service.HTTP_MAX_CONNECTIONS)
    try:
        time.sleep(0.3)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=3) as extra,
            contextlib.suppress(ConnectionResetError),
        ):
            assert extra.recv(1) == b""  # closed at once
        conns.pop().close()
        time.sleep(0.2)  # its slot is given back
        assert _get(port, "/healthz", timeout=2)[0] == 200
    finally:
        for s in conns:
            s.close()
