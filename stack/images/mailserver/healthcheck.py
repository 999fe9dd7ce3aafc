#!/usr/bin/python3
"""Health check of the offline Mailpit stand-in (/usr/local/bin/mailserver-healthcheck, also run by
`/mailpit readyz`): every service must answer on the container's loopback, else exit 1 with one
line naming what is down. SMTP 1025 greets "220", POP3 1110 "+OK", IMAP 1143 "* OK", and HTTP
8025 answers GET /readyz with 200; with TLS configured (the MP_*_TLS_* variables of the
container's environment, which `docker exec` passes on) the implicit-TLS ports are probed over
TLS (the TLS handshake is part of the check; the certificate is the server's own, not verified
here) and the extra ports (SMTP 1465, POP3 1111, IMAPS 1993) too. Each probe only reads the
greeting and says goodbye (QUIT, LOGOUT); it never logs in.
"""

import os
import socket
import ssl
import sys

TIMEOUT = 1.2  # per probe: all seven stay under the 10 s timeout of the stack's health check


def env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def probes() -> list[tuple[str, int, bytes, bytes | None, bool]]:
    """name, port, expected start of the first line, goodbye, implicit TLS"""
    smtp_tls = bool(os.environ.get("MP_SMTP_TLS_CERT", "").strip())
    pop3_tls = bool(os.environ.get("MP_POP3_TLS_CERT", "").strip())
    out = [
        ("SMTP", 1025, b"220", b"QUIT\r\n", smtp_tls and env_bool("MP_SMTP_REQUIRE_TLS")),
        ("POP3", 1110, b"+OK", b"QUIT\r\n", pop3_tls),
        ("IMAP", 1143, b"* OK", b"a LOGOUT\r\n", False),
        ("HTTP", 8025, b"HTTP/1.1 200", None, False),
    ]
    if smtp_tls:
        out.append(("SMTPS", 1465, b"220", b"QUIT\r\n", True))
    if pop3_tls:
        out.append(("POP3-STLS", 1111, b"+OK", b"QUIT\r\n", False))
        out.append(("IMAPS", 1993, b"* OK", b"a LOGOUT\r\n", True))
    return out


def first_line(port: int, send: bytes | None, goodbye: bytes | None, tls: bool) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        s = raw
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(raw)
        if send:
            s.sendall(send)
        buf = b""
        while b"\n" not in buf and len(buf) < 1024:
            chunk = s.recv(1024)
            if not chunk:
                break
            buf += chunk
        if goodbye:
            try:
                s.sendall(goodbye)
                s.recv(1024)
            except OSError:
                pass
        return buf.split(b"\n", 1)[0].rstrip(b"\r")


def main() -> int:
    failed = []
    for name, port, expect, goodbye, tls in probes():
        send = b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n" if name == "HTTP" else None
        try:
            line = first_line(port, send, goodbye, tls)
        except OSError as e:  # ssl.SSLError is an OSError
            failed.append(f"{name} {port}: {getattr(e, 'strerror', None) or e}")
            continue
        if not line.startswith(expect):
            failed.append(f"{name} {port}: answered {line[:60]!r}")
    if failed:
        print("unhealthy: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
