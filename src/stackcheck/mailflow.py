"""Mail-building helpers for acceptance tests: the profiles' addresses, attachments (zip, PDF,
the antivirus test string), header decoding that never raises, and the record of a submission.
The clients that send and read mail live with their services (stackcheck.services.mailserver,
.mailer, .postgres)."""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from email.header import decode_header

PROFILES = {"praxis": "praxis@example.com", "ecom": "ecom@example.com"}


# the antivirus test string, assembled at run time so no file of this project is a test virus
EICAR = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*").encode()


def zipped(files: dict[str, bytes]) -> bytes:
    """A zip archive of these files, built in memory (attachments for the type and scan tests)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def pdf_of_size(size: int) -> bytes:
    """`size` bytes that are a PDF by content (magic and trailer), random in between: large
    attachments that pass the type check and that no compression shrinks."""
    head, tail = b"%PDF-1.4\n", b"\n%%EOF\n"
    return head + os.urandom(size - len(head) - len(tail)) + tail


def header_text(value) -> str:
    """A header value as text, RFC 2047 words decoded, never raising: real-world mail has
    unknown charsets and bytes that are not what their charset says (iso-2022-jp that is not,
    8-bit bytes in headers); those parts come out with replacement characters."""
    if value is None:
        return ""
    raw = str(value)
    try:
        parts = decode_header(raw)
    except Exception:  # a malformed encoded word: the raw text is still text
        return raw
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        try:
            out.append(chunk.decode(charset or "ascii", "replace"))
        except (LookupError, UnicodeError):  # unknown charset, or a codec that raises anyway
            out.append(chunk.decode("latin-1"))
    return "".join(out)  # decode_header keeps the whitespace of the plain parts


@dataclass
class Sent:
    message_id: str  # without <>
    subject: str
    at: float  # time.monotonic() when the SMTP transaction completed
