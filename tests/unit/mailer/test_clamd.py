"""mailer.clamd against a fake clamd on 127.0.0.1 that speaks the INSTREAM/PING protocol."""

import contextlib
import socket
import socketserver
import struct
import threading
import time

import pytest

from mailer.clamd import ClamdScanError, ClamdUnavailable, ScanResult, ping, scan

pytestmark = pytest.mark.unit

MARKER = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + MARKER + b"!$H+H*"


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _read_command(sock: socket.socket) -> bytes:
    buf = bytearray()
    while not buf.endswith(b"\0"):
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf[:-1])


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass


class FakeClamd(socketserver.ThreadingTCPServer):
    """Modes: ok (OK, or FOUND when the stream holds the EICAR marker), found_extended,
    error (ERROR reply), garbage, silent (never answers), slow (reads slowly, never answers),
    close_mid (closes while receiving),
    limit (size limit ERROR after `limit` bytes, then closes at once, like clamd)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, mode: str, limit: int = 0):
        super().__init__(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        if mode == "slow":  # a small receive window, so the client's sends really wait
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.server_bind()
        self.server_activate()
        self.mode = mode
        self.limit = limit
        self.commands: list[bytes] = []
        self.streams: list[bytes] = []
        self.chunk_sizes: list[list[int]] = []


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        srv: FakeClamd = self.server  # type: ignore[assignment]
        sock: socket.socket = self.request
        sock.settimeout(10)
        try:
            command = _read_command(sock)
            srv.commands.append(command)
            if srv.mode == "silent":
                _drain(sock)  # until the client gives up and closes
                return
            if srv.mode == "slow":
                end = time.monotonic() + 3  # 4 KB per 20 ms for 3 s, never an answer
                while time.monotonic() < end and sock.recv(4096):
                    time.sleep(0.02)
                return
            if command == b"zPING":
                sock.sendall(b"PONG\0")
                return
            if command != b"zINSTREAM":
                sock.sendall(b"UNKNOWN COMMAND\0")
                return
            if srv.mode == "close_mid":
                sock.recv(10)
                return  # close without a word
            self._instream(srv, sock)
        except (EOFError, OSError):
            return

    def _instream(self, srv: FakeClamd, sock: socket.socket) -> None:
        data = bytearray()
        sizes = []
        while True:
            (n,) = struct.unpack(">I", _read_exact(sock, 4))
            if n == 0:
                break
            sizes.append(n)
            data += _read_exact(sock, n)
            if srv.mode == "limit" and len(data) > srv.limit:
                sock.sendall(b"INSTREAM size limit exceeded. ERROR\0")
                return  # clamd closes at once, the client may still be sending
        srv.streams.append(bytes(data))
        srv.chunk_sizes.append(sizes)
        if srv.mode == "error":
            sock.sendall(b"stream: Can't allocate memory ERROR\0")
        elif srv.mode == "garbage":
            sock.sendall(b"stream: WHATEVER\0")
        elif MARKER in data:
            sig = "Eicar-Test-Signature"
            if srv.mode == "found_extended":
                sig += "(44d88612fea8a8f36de82e1278abb02f:68)"
            sock.sendall(f"stream: {sig} FOUND\0".encode())
        else:
            sock.sendall(b"stream: OK\0")


@contextlib.contextmanager
def fake_clamd(mode: str = "ok", limit: int = 0):
    server = FakeClamd(mode, limit)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield host, port, server
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- scan -------------------------------------------------------------------------------------
def test_clean_stream():
    with fake_clamd() as (host, port, server):
        result = scan(host, port, b"%PDF-1.4 harmless", timeout=5)
    assert result == ScanResult(False, None)
    assert server.commands == [b"zINSTREAM"]
    assert server.streams == [b"%PDF-1.4 harmless"]


def test_eicar_found():
    with fake_clamd() as (host, port, _):
        result = scan(host, port, EICAR, timeout=5)
    assert result == ScanResult(True, "Eicar-Test-Signature")


def test_found_with_extended_detection_info():
    with fake_clamd("found_extended") as (host, port, _):
        result = scan(host, port, b"zip with " + EICAR, timeout=5)
    assert result.infected
    assert result.signature == "Eicar-Test-Signature(44d88612fea8a8f36de82e1278abb02f:68)"


def test_stream_is_chunked_and_reassembled_exactly():
    data = bytes(range(256)) * 800  # 204800 bytes
    with fake_clamd() as (host, port, server):
        assert scan(host, port, data, timeout=5, chunk_size=65536) == ScanResult(False, None)
    assert server.streams == [data]
    assert server.chunk_sizes == [[65536, 65536, 65536, 204800 - 3 * 65536]]


def test_a_file_is_streamed_in_the_same_chunks(tmp_path):
    """A spilled attachment of a large mail is scanned from its file, never read whole."""
    data = bytes(range(256)) * 800
    path = tmp_path / "part"
    path.write_bytes(data)
    with fake_clamd() as (host, port, server):
        assert scan(host, port, path, timeout=5, chunk_size=65536) == ScanResult(False, None)
    assert server.streams == [data]
    assert server.chunk_sizes == [[65536, 65536, 65536, 204800 - 3 * 65536]]


def test_marker_split_across_chunks_is_still_found():
    data = b"x" * 100 + EICAR + b"y" * 100
    with fake_clamd() as (host, port, server):
        assert scan(host, port, data, timeout=5, chunk_size=7).infected
    assert server.streams == [data]
    assert max(server.chunk_sizes[0]) == 7


def test_empty_data():
    with fake_clamd() as (host, port, server):
        assert scan(host, port, b"", timeout=5) == ScanResult(False, None)
    assert server.streams == [b""]
    assert server.chunk_sizes == [[]]


def test_error_reply_is_a_scan_error():
    with fake_clamd("error") as (host, port, _), pytest.raises(ClamdScanError) as err:
        scan(host, port, b"data", timeout=5)
    assert str(err.value) == "clamd: stream: Can't allocate memory ERROR"


def test_unexpected_reply_is_a_scan_error():
    with fake_clamd("garbage") as (host, port, _), pytest.raises(ClamdScanError) as err:
        scan(host, port, b"data", timeout=5)
    assert "unexpected reply" in str(err.value)


def test_size_limit_error_while_client_is_still_sending():
    """clamd answers ERROR and closes after StreamMaxLength, while we still send."""
    data = b"\0" * (4 * 1024 * 1024)
    limit = 64 * 1024
    with fake_clamd("limit", limit=limit) as (host, port, _), pytest.raises(ClamdScanError) as err:
        scan(host, port, data, timeout=5, chunk_size=16 * 1024)
    assert str(err.value) == "clamd: INSTREAM size limit exceeded. ERROR"


def test_server_that_never_answers_times_out():
    with fake_clamd("silent") as (host, port, _):
        start = time.monotonic()
        with pytest.raises(ClamdUnavailable) as err:
            scan(host, port, b"data", timeout=0.25)
        took = time.monotonic() - start
    assert 0.2 <= took < 2.0
    assert "timed out" in str(err.value)


def test_timeout_is_one_deadline_for_the_whole_scan():
    """A server that keeps reading slowly never lets a single send time out; the deadline for
    the whole scan must still end it (with per-operation timeouts it would run until the
    server gives up after 3 s)."""
    with fake_clamd("slow") as (host, port, _):
        start = time.monotonic()
        with pytest.raises(ClamdUnavailable) as err:
            scan(host, port, b"z" * 16_000_000, timeout=0.4, chunk_size=4096)
        took = time.monotonic() - start
    assert took < 1.5
    assert "timed out" in str(err.value)


def test_server_closing_mid_stream_is_unavailable():
    with fake_clamd("close_mid") as (host, port, _), pytest.raises(ClamdUnavailable) as err:
        scan(host, port, b"a" * 2_000_000, timeout=5, chunk_size=4096)
    assert "clamd 127.0.0.1:" in str(err.value)


def test_server_closing_mid_stream_small_data_is_unavailable():
    with fake_clamd("close_mid") as (host, port, _), pytest.raises(ClamdUnavailable) as err:
        scan(host, port, b"tiny", timeout=5)
    assert "without a reply" in str(err.value) or "connection" in str(err.value)


def test_connection_refused_is_unavailable():
    port = free_port()
    with pytest.raises(ClamdUnavailable) as err:
        scan("127.0.0.1", port, b"data", timeout=2)
    assert f"127.0.0.1:{port}" in str(err.value)
    assert "cannot connect" in str(err.value)


def test_unavailable_and_scan_error_are_distinct():
    assert not issubclass(ClamdUnavailable, ClamdScanError)
    assert not issubclass(ClamdScanError, ClamdUnavailable)


def test_bad_chunk_size():
    with pytest.raises(ValueError):
        scan("127.0.0.1", 1, b"x", chunk_size=0)


# --- ping -------------------------------------------------------------------------------------
def test_ping_ok():
    with fake_clamd() as (host, port, server):
        assert ping(host, port, timeout=2) is True
    assert server.commands == [b"zPING"]


def test_ping_refused():
    assert ping("127.0.0.1", free_port(), timeout=1) is False


def test_ping_silent_server_times_out():
    with fake_clamd("silent") as (host, port, _):
        start = time.monotonic()
        assert ping(host, port, timeout=0.2) is False
        assert time.monotonic() - start < 2.0


def test_ping_wrong_answer():
    with fake_clamd("close_mid") as (host, port, server):
        server.mode = "ok"

        class NotClamd(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.recv(100)
                self.request.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        server.RequestHandlerClass = NotClamd
        assert ping(host, port, timeout=2) is False
