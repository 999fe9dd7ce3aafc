"""A minimal clamd client over TCP (requirement A4): INSTREAM scans and PING.

Protocol (clamd(8)): `zINSTREAM\\0`, then chunks `<uint32 big-endian length><data>`, ended by a
zero-length chunk; the reply is `stream: OK\\0`, `stream: <signature> FOUND\\0` or
`... ERROR\\0`. Beyond StreamMaxLength clamd answers `INSTREAM size limit exceeded. ERROR` and
closes the connection, possibly while we are still sending.

Errors: ClamdUnavailable (no connection, timeout, connection lost without an answer: the mail
must wait and be retried) and ClamdScanError (clamd answered, but with an error: record a scan
failure). `timeout` is one deadline for the whole scan, not per socket operation.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_MAX_REPLY = 64 * 1024


class ClamdUnavailable(Exception):
    """clamd could not be reached or did not answer in time; retry later."""


class ClamdScanError(Exception):
    """clamd answered with an error (e.g. size limit exceeded); the scan failed."""


@dataclass(frozen=True)
class ScanResult:
    infected: bool
    signature: str | None


class _Deadline:
    def __init__(self, timeout: float):
        self.timeout = timeout
        self.end = time.monotonic() + timeout

    def arm(self, sock: socket.socket) -> None:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out after {self.timeout:g} s")
        sock.settimeout(left)


def _connect(host: str, port: int, deadline: _Deadline) -> socket.socket:
    try:
        left = max(deadline.end - time.monotonic(), 0.001)
        return socket.create_connection((host, port), timeout=left)
    except TimeoutError as exc:
        raise ClamdUnavailable(f"clamd {host}:{port}: connect timed out") from exc
    except OSError as exc:
        raise ClamdUnavailable(f"clamd {host}:{port}: cannot connect ({_why(exc)})") from exc


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return str(exc) if str(exc) and str(exc) != "timed out" else "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _read_reply(sock: socket.socket, deadline: _Deadline) -> bytes:
    """Bytes up to the terminating NUL (or EOF); b'' if the peer closed without a word."""
    buf = bytearray()
    while b"\0" not in buf and len(buf) < _MAX_REPLY:
        deadline.arm(sock)
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return bytes(buf.split(b"\0", 1)[0])


def _interpret(reply: bytes) -> ScanResult:
    text = reply.decode("utf-8", "replace").strip()
    if text.endswith("FOUND"):
        body = text[: -len("FOUND")].rstrip()
        signature = body.split(": ", 1)[1] if ": " in body else body
        return ScanResult(True, signature.strip() or "unknown")
    if text.endswith("ERROR"):
        raise ClamdScanError(f"clamd: {text}")
    if text.endswith(": OK") or text == "OK":
        return ScanResult(False, None)
    raise ClamdScanError(f"clamd: unexpected reply {text[:200]!r}")


def _chunks(data: bytes | Path, chunk_size: int) -> Iterator[memoryview | bytes]:
    if isinstance(data, Path):  # a large attachment spilled to disk: read piece by piece
        with open(data, "rb") as fh:
            while chunk := fh.read(chunk_size):
                yield chunk
        return
    view = memoryview(data)
    for start in range(0, len(view), chunk_size):
        yield view[start : start + chunk_size]


def scan(
    host: str, port: int, data: bytes | Path, timeout: float = 30.0, chunk_size: int = 65536
) -> ScanResult:
    """Scan `data` (bytes, or a file) with INSTREAM. ScanResult(infected, signature) on an
    answer; ClamdScanError when clamd answers ERROR (or something unknown); ClamdUnavailable
    when there is no answer."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    deadline = _Deadline(timeout)
    sock = _connect(host, port, deadline)
    try:
        send_error: BaseException | None = None
        try:
            deadline.arm(sock)
            sock.sendall(b"zINSTREAM\0")
            for chunk in _chunks(data, chunk_size):
                deadline.arm(sock)
                sock.sendall(struct.pack(">I", len(chunk)))
                sock.sendall(chunk)
            deadline.arm(sock)
            sock.sendall(b"\0\0\0\0")
        except TimeoutError as exc:
            raise ClamdUnavailable(f"clamd {host}:{port}: {_why(exc)} while sending") from exc
        except OSError as exc:
            # clamd closes early on errors (size limit): its reply may still be readable
            send_error = exc
        try:
            reply = _read_reply(sock, deadline)
        except TimeoutError as exc:
            raise ClamdUnavailable(f"clamd {host}:{port}: no reply ({_why(exc)})") from exc
        except OSError as exc:
            cause = send_error or exc
            raise ClamdUnavailable(f"clamd {host}:{port}: connection lost ({_why(cause)})") from exc
        if not reply:
            what = f"({_why(send_error)}) " if send_error else ""
            raise ClamdUnavailable(f"clamd {host}:{port}: connection closed {what}without a reply")
        return _interpret(reply)
    finally:
        sock.close()


def ping(host: str, port: int, timeout: float = 5.0) -> bool:
    """True if clamd answers PONG within `timeout`; never raises for network trouble."""
    try:
        deadline = _Deadline(timeout)
        sock = _connect(host, port, deadline)
    except ClamdUnavailable:
        return False
    try:
        deadline.arm(sock)
        sock.sendall(b"zPING\0")
        return _read_reply(sock, deadline).strip() == b"PONG"
    except OSError:
        return False
    finally:
        sock.close()
