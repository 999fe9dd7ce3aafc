#!/usr/bin/python3
"""Health check of the offline Mailpit stand-in (/usr/local/bin/mailserver-healthcheck, also run by
`/mailpit readyz`): every service must answer on the container's loopback, else exit 1 with one
line naming what is down. SMTP 1025 greets "220", POP3 1110 "+OK", IMAP 1143 "* OK", and HTTP
8025 answers GET /readyz with 200. Each probe only reads the greeting and says goodbye (QUIT,
LOGOUT); it never logs in.
"""

import socket
import sys

TIMEOUT = 2.0  # per probe: all four stay under the 10 s timeout of the stack's health check
PROBES = [
    # name, port, expected start of the first line, goodbye
    ("SMTP", 1025, b"220", b"QUIT\r\n"),
    ("POP3", 1110, b"+OK", b"QUIT\r\n"),
    ("IMAP", 1143, b"* OK", b"a LOGOUT\r\n"),
    ("HTTP", 8025, b"HTTP/1.1 200", None),
]


def first_line(port: int, send: bytes | None = None, goodbye: bytes | None = None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
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
    for name, port, expect, goodbye in PROBES:
        send = b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n" if name == "HTTP" else None
        try:
            line = first_line(port, send, goodbye)
        except OSError as e:
            failed.append(f"{name} {port}: {e.strerror or e}")
            continue
        if not line.startswith(expect):
            failed.append(f"{name} {port}: answered {line[:60]!r}")
    if failed:
        print("unhealthy: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
