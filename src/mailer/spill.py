"""Streaming pre-pass for mails too large for the stdlib parser (it needs ~7x the mail in memory).

`spill` reads a raw mail line by line, follows its MIME structure the way email.feedparser does
and writes every leaf body larger than `threshold` transfer-decoded to `workdir/<n>`. What is left,
the skeleton, is the mail with those bodies emptied and a header `X-Mailer-Spilled: <token> <n>`
in their place (and without Content-Transfer-Encoding if it was base64 or quoted-printable: the
file is decoded); everything else is kept byte for byte, so parsing.parse_file can run the usual
parser on it. Memory: a spilled body costs at most `threshold` plus one line (read in 64 KiB
pieces; a quoted-printable line up to 1 MiB), whatever its size; what stays inline is held, as
the skeleton.

Header blocks are read with policy.default, the policy parsing.parse uses: with compat32 some
malformed Content-Type and Content-Transfer-Encoding values read differently (`boundary=b c`,
encoded words), and the skeleton must split where the parser will. What the pre-pass cannot
follow (uuencode, a base64 message/rfc822, a boundary that is never seen, nesting beyond
_MAX_DEPTH) stays inline, as the stdlib always saw it.
"""

from __future__ import annotations

import binascii
import email.parser
import hashlib
import re
import secrets
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from mailer.headercap import _POLICY

MARKER = "X-Mailer-Spilled"
NO_SEPARATOR = "missing header body separator"  # the feedparser's defect, as parsing names it
_CHUNK = 64 * 1024  # longest piece of a line held at once
_QP_LINE = 1 << 20  # a longer quoted-printable line is decoded in pieces
_MAX_DEPTH = 50  # deeper than parsing follows (20); beyond it parts stay inline
_HEADER = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")  # feedparser.headerRE
_SIZE_HEADER = re.compile(rb"[\x21-\x39\x3b-\x7e]*:")  # parsing._HEADER_LINE
_BOUNDARY_TAIL = re.compile(rb"(--)?[ \t]*(?:\r\n|\r|\n)?")
_EOL = re.compile(rb"(?:\r\n|\r|\n)\Z")
_B64_KEEP = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_DELETE = bytes(sorted(set(range(256)) - set(_B64_KEEP)))
_B64_RUNS = re.compile(rb"=+|[^=]+")
_UUENCODE = ("x-uuencode", "uuencode", "uue", "x-uue")
# the parser's capped policy: an unbounded Content-Type parameter run is quadratic here too
_PARSER = email.parser.BytesHeaderParser(policy=_POLICY)


@dataclass
class Spilled:
    skeleton: bytes  # the mail with spilled bodies emptied and marked
    token: str  # random per call: a marker with another token is the sender's, not ours
    files: dict[int, Path]  # n -> decoded body of the part marked "<token> <n>"
    size: int  # bytes read
    sha256: str  # of all bytes read (= parsing.fingerprint of the file)
    headers_size: int  # = parsing._headers_size of the original bytes
    defects: list[str] = field(default_factory=list)  # about the mail as a whole
    part_defects: dict[int, list[str]] = field(default_factory=dict)  # n -> defect names


def _boundary(line: bytes, sep: bytes) -> str | None:
    """'sep' or 'close' when `line` is a boundary line for `sep` (feedparser's boundaryre)."""
    if not line.startswith(sep):
        return None
    m = _BOUNDARY_TAIL.fullmatch(line, len(sep))
    return None if m is None else ("close" if m.group(1) else "sep")


def _ends_line(piece: bytes) -> bool:
    return piece.endswith((b"\n", b"\r"))


class _Reader:
    """Lines of the mail as the feedparser cuts them, in pieces of at most _CHUNK bytes, with
    push-back; hashes and counts what it reads and tracks parsing._headers_size on the way."""

    def __init__(self, src: BinaryIO) -> None:
        self.src = src
        self.sha = hashlib.sha256()
        self.size = 0
        self.eol = b""  # the first line end of the mail: the style of lines we add
        self.headers_size: int | None = None
        self._line_start: int | None = None  # of the LF-terminated line being read
        self._head = b""  # its first piece
        self._back: list[bytes] = []
        self._split: deque[bytes] = deque()

    def piece(self) -> bytes:
        """The next piece, b"" at the end."""
        if self._back:
            return self._back.pop()
        if self._split:
            return self._split.popleft()
        raw = self.src.readline(_CHUNK)
        self._track(raw)
        first, *rest = raw.splitlines(keepends=True) or [b""]  # a lone CR ends a line too
        self._split.extend(rest)
        return first

    def block(self) -> bytes | None:
        """Up to _CHUNK bytes of whole lines at once when none of them can be a boundary or
        ends in a lone CR: the bulk of a large body, read without a step per line. None: go on
        with piece() (the lines, if any, are queued for it)."""
        if self._back or self._split or self.headers_size is None:
            return None
        raw = self.src.read(_CHUNK)
        if raw and not raw.endswith(b"\n"):
            raw += self.src.readline(_CHUNK)
        self._track(raw)
        if raw.startswith(b"--") or b"\n--" in raw or raw.count(b"\r") != raw.count(b"\r\n"):
            self._split.extend(raw.splitlines(keepends=True))
            return None
        return raw or None

    def line(self, first: bytes) -> bytes:
        """`first` completed to the end of its line (header lines are short, or kept anyway)."""
        parts = [first]
        while not _ends_line(parts[-1]) and (p := self.piece()):
            parts.append(p)
        return b"".join(parts)

    def unread(self, piece: bytes) -> None:
        self._back.append(piece)

    def _track(self, raw: bytes) -> None:
        if not raw:
            if self.headers_size is None and self._line_start is not None:
                self._judge(self._head, self._line_start, self.size)
            if self.headers_size is None:
                self.headers_size = self.size
            return
        self.sha.update(raw)
        start, self.size = self.size, self.size + len(raw)
        if not self.eol and (m := _EOL.search(raw)):
            self.eol = m.group()
        if self.headers_size is None:
            if self._line_start is None:
                self._line_start, self._head = start, raw
            if raw.endswith(b"\n"):
                self._judge(self._head, self._line_start, self.size)
                self._line_start = None

    def _judge(self, head: bytes, start: int, end: int) -> None:
        """One step of parsing._headers_size, from the first piece of a line."""
        line = head.rstrip(b"\r\n")
        if not line:
            self.headers_size = end
        elif line[:1] in (b" ", b"\t"):
            if start == 0:
                self.headers_size = 0
        elif not (_SIZE_HEADER.match(line) or (start == 0 and line.startswith(b"From "))):
            self.headers_size = start


class _Raw:
    """7bit, 8bit, binary or an unknown encoding: the bytes as they are, like the stdlib."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh

    def feed(self, piece: bytes) -> None:
        self.fh.write(piece)

    def close(self) -> list[str]:
        return []


class _QuotedPrintable(_Raw):
    """binascii.a2b_qp (what quopri.decodestring uses) per line: it keeps no state across lines.
    A line over _QP_LINE is decoded in pieces, cut where no escape can span the cut (no '=' in
    the two bytes before it): exact unless such a line has "=" + lone CR or runs of '='."""

    def __init__(self, fh: BinaryIO) -> None:
        super().__init__(fh)
        self.buf = bytearray()

    def feed(self, piece: bytes) -> None:
        self.buf += piece  # lone-CR pieces are joined again: "=\r" skips to the LF
        if piece.endswith(b"\n"):
            self.fh.write(binascii.a2b_qp(self.buf))
            self.buf.clear()
        elif len(self.buf) >= _QP_LINE:
            cut = len(self.buf)
            while cut > len(self.buf) - 3 and b"=" in self.buf[cut - 2 : cut]:
                cut -= 1
            if b"=" in self.buf[cut - 2 : cut]:  # in a run of '=': no safe place near the end
                cut = len(self.buf)
            self.fh.write(binascii.a2b_qp(self.buf[:cut]))
            del self.buf[:cut]

    def close(self) -> list[str]:
        self.fh.write(binascii.a2b_qp(self.buf))
        return []


class _Base64(_Raw):
    """Streaming twin of Message.get_payload(decode=True) for base64: other bytes are skipped,
    decoding stops at the first padding that completes a group, missing padding is tolerated, and
    the defects are those the stdlib reports. One difference: a single base64 character left over
    is dropped (invalid base64 length); the stdlib then returns the undecoded text instead."""

    def __init__(self, fh: BinaryIO) -> None:
        super().__init__(fh)
        self.buf = bytearray()  # base64 characters not decoded yet
        self.count = self.pads = self.run = 0  # characters, '=' in all, '=' ending the group
        self.done = self.invalid = self.irregular = False

    def feed(self, piece: bytes) -> None:
        data = piece.translate(None, _B64_DELETE)  # line ends go too, as with splitlines()
        self.invalid |= len(piece) - len(data) != piece.count(b"\n") + piece.count(b"\r")
        for run in _B64_RUNS.findall(data) if b"=" in data else (data,) if data else ():
            if run[0] == 0x3D:  # '='
                self.pads += len(run)
                group = len(self.buf) % 4
                if not self.done and group >= 2:
                    self.run += len(run)
                    self.done = group + self.run >= 4
            else:
                self.irregular |= self.pads > 0  # data after padding: strict decoding fails
                self.count += len(run)
                if not self.done:
                    self.buf += run
                    self.run = 0
        if len(self.buf) >= _CHUNK:
            cut = len(self.buf) - len(self.buf) % 4
            self.fh.write(binascii.a2b_base64(self.buf[:cut]))
            del self.buf[:cut]

    def close(self) -> list[str]:
        rest = len(self.buf) % 4
        cut = len(self.buf) - rest
        self.fh.write(binascii.a2b_base64(self.buf[:cut]))
        if rest >= 2:
            self.fh.write(binascii.a2b_base64(self.buf[cut:] + b"=="))
        # email._encoded_words.decode_b: strict decoding with padding added, then lenient
        err = (self.count + self.pads) % 4
        added = 4 - err if err else 0
        group, pads = self.count % 4, self.pads + added
        # strict mode ignores '=' after a full group, but not first, nor too many after a part
        full = group == 0 and (self.count > 0 or pads == 0)
        if not (self.invalid or self.irregular) and (full or (group >= 2 and pads == 4 - group)):
            return ["invalid base64 padding"] if added else []
        if self.done or rest == 0:
            return ["invalid base64 characters"]
        if rest >= 2:
            return ["invalid base64 characters", "invalid base64 padding"]
        return ["invalid base64 length"]


@dataclass
class _Head:
    lines: list[bytes]  # header lines as read (continuations included)
    sep: bytes | None  # the blank line, None when the block ended otherwise
    missing_sep: bool  # ended at a line that is not a header (the feedparser's defect)
    pushed: bytes | None  # a last "From " line: the feedparser makes it the first body line
    emitted: int  # leading lines already in the skeleton (a "From " line pushed to this part)

    def own(self) -> list[bytes]:
        """The lines that are this block's to write."""
        return self.lines[self.emitted :]


class _Spiller:
    def __init__(self, src: BinaryIO, workdir: Path, threshold: int) -> None:
        self.r = _Reader(src)
        self.workdir = workdir
        self.threshold = threshold
        self.token = secrets.token_hex(8)
        self.out: list[bytes] = []
        self.files: dict[int, Path] = {}
        self.part_defects: dict[int, list[str]] = {}
        self.defects: list[str] = []
        self.fh: BinaryIO | None = None  # the spill file being written

    def ends(self, piece: bytes, stack: list[bytes]) -> bool:
        """Whether a piece at the start of a line is a boundary of an enclosing multipart."""
        return piece.startswith(b"--") and any(_boundary(piece, sep) for sep in stack)

    def head(self, stack: list[bytes], first: bytes | None) -> _Head:
        lines = [first] if first else []
        sep, missing = None, False
        while p := self.r.piece():
            if self.ends(p, stack):
                self.r.unread(p)
                break
            if p[:1] in (b"\r", b"\n"):
                sep = p
                break
            if not _HEADER.match(p):
                self.r.unread(p)
                missing = True
                break
            lines.append(self.r.line(p))
        pushed = lines[-1] if len(lines) > 1 and lines[-1].startswith(b"From ") else None
        return _Head(lines, sep, missing, pushed, 1 if first else 0)

    def message(
        self,
        stack: list[bytes],
        depth: int,
        digest: bool = False,
        glued: bool = False,
        first: bytes | None = None,
    ) -> None:
        """A message or body part, up to a boundary of `stack` (left unread) or the end. `glued`:
        it follows a header block without blank line, so a marker would land in that block;
        `first`: the "From " line the enclosing block pushed to it."""
        head = self.head(stack, first)
        try:
            msg = _PARSER.parsebytes(b"".join(head.lines))
            if digest:
                msg.set_default_type("message/rfc822")
            ctype = msg.get_content_type()
            boundary = msg.get_boundary() if ctype.startswith("multipart/") else None
            cte = str(msg.get("content-transfer-encoding", "")).lower()
        except Exception:  # the parser will not make sense of it either: keep it as it is
            self.leaf(head, None, stack, strip=bool(stack))
            return
        if depth > _MAX_DEPTH:
            if depth == _MAX_DEPTH + 1:
                self.defects.append(f"MIME nesting deeper than {_MAX_DEPTH}, not spilled")
            self.leaf(head, None, stack, strip=bool(stack))
        elif boundary is not None:
            self.out += [*head.own(), head.sep or b""]
            self.multipart(boundary, stack, depth, ctype == "multipart/digest")
        elif (forward := ctype in ("message/rfc822", "message/global")) and cte.strip() not in (
            "base64",
            "quoted-printable",  # parsing decodes those from the payload: keep them inline
        ):
            self.out += [*head.own(), head.sep or b""]
            self.message(stack, depth + 1, glued=head.sep is None, first=head.pushed)
        else:
            spillable = not (forward or glued) and cte not in _UUENCODE
            # the line end before a boundary is the boundary's, except after a multipart
            strip = bool(stack) and not ctype.startswith("multipart/")
            self.leaf(head, cte if spillable else None, stack, strip=strip)

    def multipart(self, boundary: str, stack: list[bytes], depth: int, digest: bool) -> None:
        try:
            sep = ("--" + boundary).encode("ascii", "surrogateescape")
        except UnicodeEncodeError:  # the feedparser never finds such a boundary: all preamble
            self.copy(stack)
            return
        start = True
        while p := self.r.piece():
            if start and self.ends(p, stack):
                self.r.unread(p)
                return
            kind = _boundary(p, sep) if start else None
            start = _ends_line(p)
            self.out.append(p)  # preamble and boundary lines stay as they are
            if kind == "close":
                self.copy(stack)  # the epilogue
                return
            if kind == "sep":
                while (q := self.r.piece()) and not self.ends(q, stack) and _boundary(q, sep):
                    self.out.append(q)  # repeated boundary lines: no part between them
                if q:
                    self.r.unread(q)
                self.message([*stack, sep], depth + 1, digest)
                start = True

    def copy(self, stack: list[bytes]) -> None:
        """Lines kept as they are, up to a boundary of `stack` or the end."""
        start = True
        while p := self.r.piece():
            if start and self.ends(p, stack):
                self.r.unread(p)
                return
            start = _ends_line(p)
            self.out.append(p)

    def leaf(self, head: _Head, cte: str | None, stack: list[bytes], strip: bool) -> None:
        """A body read up to a boundary or the end; spilled when larger than the threshold and
        `cte` is not None. Holds at most the threshold plus one piece."""
        body = [head.pushed] if head.pushed else []
        size, sink, start = sum(map(len, body)), None, True
        while p := (sink and self.r.block()) or self.r.piece():
            if start and self.ends(p, stack):
                self.r.unread(p)
                break
            start = _ends_line(p)
            body.append(p)
            size += len(p)
            if sink is None and cte is not None and size > self.threshold:
                n = len(self.files)
                self.files[n] = self.workdir / str(n)
                self.fh = open(self.files[n], "wb")  # noqa: SIM115 - closed below, or by spill()
                decoder = {"base64": _Base64, "quoted-printable": _QuotedPrintable}.get(cte, _Raw)
                sink = decoder(self.fh)
            if sink is not None:  # the last piece waits: its line end may be the boundary's
                for piece in body[:-1]:
                    sink.feed(piece)
                del body[:-1]
        if sink is None:
            self.out += [*head.own(), head.sep or b"", *body[1 if head.pushed else 0 :]]
            return
        last, eol = body[0], b""
        if strip and (m := _EOL.search(last)):
            eol, last = m.group(), last[: m.start()]
        sink.feed(last)
        defects = [NO_SEPARATOR] if head.missing_sep else []
        defects += sink.close()
        self.fh.close()
        self.fh = None
        n = len(self.files) - 1
        if defects:
            self.part_defects[n] = defects
        lines = head.own()[:-1] if head.pushed else head.own()
        if isinstance(sink, _QuotedPrintable | _Base64):  # the file is decoded
            lines = _without_cte(lines)
        style = self.r.eol or b"\r\n"
        marker = f"{MARKER}: {self.token} {n}".encode() + style
        self.out += [*lines, marker, head.sep or style, eol]


def _without_cte(lines: list[bytes]) -> list[bytes]:
    """Header lines without Content-Transfer-Encoding (and its continuation lines)."""
    out, skip = [], False
    for line in lines:
        if line[:1] not in (b" ", b"\t"):
            skip = line[:26].lower() == b"content-transfer-encoding:"
        if not skip:
            out.append(line)
    return out


def spill(src: BinaryIO, workdir: Path, *, threshold: int = 1 << 20) -> Spilled:
    """Split the raw mail in `src` into a skeleton and the files of its large leaf bodies in
    `workdir` (created if missing). Never raises on bad input; OSError does propagate."""
    workdir.mkdir(parents=True, exist_ok=True)
    s = _Spiller(src, workdir, threshold)
    try:
        s.message([], 0)
        s.copy([])  # nothing is left after the top-level part, but all of it must be read
    finally:
        if s.fh is not None:
            s.fh.close()
    return Spilled(
        skeleton=b"".join(s.out),
        token=s.token,
        files=s.files,
        size=s.r.size,
        sha256=s.r.sha.hexdigest(),
        headers_size=s.r.headers_size if s.r.headers_size is not None else s.r.size,
        defects=s.defects,
        part_defects=s.part_defects,
    )
