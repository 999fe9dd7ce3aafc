"""Parsing raw RFC 5322 mail into a ParsedMail. `parse` never raises: whatever is wrong with the
input is reported in `ParsedMail.defects`, and as much of the mail as can be read is returned.

Decisions (see also the docstrings of ParsedMail and parse):

* Attachments: every leaf part with `Content-Disposition: attachment`, or with a file name (also
  inline images), or whose type is neither text/plain nor text/html (a nameless PDF is not
  dropped silently). Nameless ones are called "attachment" plus the extension of their *content*
  (attachment.pdf, attachment.png; "attachment" when the content is not an allowed kind).
  File names are sanitised (attachments.sanitize_filename) and made unique within the mail,
  case-insensitively ("scan.pdf", "scan-2.pdf"), so they can be stored side by side.
* Forwarded mail (message/rfc822 parts, attached or inline): its attachments are extracted like
  the outer ones (same list, same unique names); its text is appended to `text` after a
  "---------- Forwarded message ----------" block with its From/Date/Subject; its HTML is not
  kept. The message/rfc822 part itself is not an attachment. Other message/* containers
  (delivery-status, disposition-notification) are ignored.
* Charsets: labels are read as the WHATWG Encoding Standard says (iso-8859-1 and us-ascii are
  windows-1252, gb2312 is GB18030, iso-8859-8-i is iso-8859-8, ks_c_5601-1987 is cp949, ...).
  Non-ASCII bytes that are valid UTF-8 are UTF-8 whatever the label (the common mislabelling);
  a body that is mostly valid UTF-8 stays UTF-8 with replacement characters; then the declared
  charset; then a CJK codec the bytes plainly are (Shift_JIS labelled utf-8, raw GBK headers);
  then windows-1252 with replacement characters. Each fallback is a defect. Headers with raw
  8-bit bytes are decoded the same way; encoded-words are decoded tolerantly (raw 8-bit inside,
  missing padding, a character split across words).
* Text body: the text/plain parts, unless they are all empty, then the first HTML part as text.
* Calendar invites (text/calendar, .ics) are attachments of the kind "calendar" (nameless ones
  are called invite.ics). A message/partial fragment is kept as an attachment (partial-N.eml),
  with a defect; fragments are not reassembled.
* Header sizes are capped as the parser reads them (_cap_header: the email package is
  quadratic in MIME parameters), each cut a defect.
* Every str in the result is free of NUL and of lone surrogates (safe for PostgreSQL text and
  UTF-8 encoding); such characters become U+FFFD (in file names they are dropped). Defects
  never contain mail content (names, subjects, addresses, file names), only part numbers and
  sanitised tokens such as charset or header names: they are safe to log under the PII rules.
* Limits: subject at most 1000 characters, nesting depth 20, at most 1000 parts, at most 100
  defects (the last one then says how many more there were); beyond them the rest is cut or
  ignored, with a defect.
* Large mails (parse_file): the same decisions, on a skeleton from which the spill pre-pass
  (mailer.spill) has moved large bodies to files; such attachments carry a `path` instead of
  `data`, and a large text body is read up to MAX_SPILLED_TEXT bytes (a defect says so).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.feedparser
import email.generator
import email.header
import email.parser
import email.policy
import functools
import hashlib
import html as html_lib
import io
import mimetypes
import quopri
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import collapse_rfc2231_value, parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path

from mailer.addresses import parse_addresses
from mailer.attachments import KIND_EXTENSIONS, detect_kind, sanitize_filename
from mailer.headercap import _CUT, _MAX_HEADER_CHARS, _POLICY, _label
from mailer.spill import MARKER, NO_SEPARATOR, Spilled, spill

MAX_SUBJECT_CHARS = 1000
MAX_DEPTH = 20
MAX_PARTS = 1000
MAX_DEFECTS = 100
MAX_SPILLED_TEXT = 4 << 20  # bytes of a spilled text body that are read (the raw mail is kept)
_MAX_MESSAGE_ID_CHARS = 998
_FORWARD_MARK = "---------- Forwarded message ----------"

_SURROGATES = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ufffd]")
_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]*:")
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\]+")
_RAW_NAME_PARAM = re.compile(
    r"""(?:^|;)\s*(?:file)?name\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)""", re.IGNORECASE
)
_SINGLETONS = ("Message-ID", "From", "Subject", "Date")
_RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")


@dataclass
class Attachment:
    filename: str  # sanitised, unique within the mail, never empty
    original_filename: str | None  # decoded (RFC 2047 / RFC 2231) as the sender wrote it
    declared_type: str  # Content-Type of the part (lower-case type/subtype)
    data: bytes  # b"" when the content was spilled to `path`
    path: Path | None = None  # the decoded content on disk (large parts, parse_file)

    @property
    def content(self) -> bytes | Path:
        """The data, or the file holding it: what attachments.decide and clamd accept."""
        return self.path if self.path is not None else self.data

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None else len(self.data)

    @property
    def sha256(self) -> str:
        if self.path is None:
            return hashlib.sha256(self.data).hexdigest()
        digest = hashlib.sha256()
        with open(self.path, "rb") as fh:
            while piece := fh.read(1 << 20):
                digest.update(piece)
        return digest.hexdigest()


@dataclass
class ParsedMail:
    message_id: str | None  # without <> and whitespace; None if missing/empty
    subject: str  # decoded, whitespace collapsed, '' if missing
    sender: str  # From address only, lower-cased, '' if missing
    recipients: list[str]  # To, Cc, Delivered-To, X-Original-To, Envelope-To; lower, deduped
    date: datetime | None  # aware; "-0000" / no zone is taken as UTC
    text: str  # text/plain parts, else the first HTML part as text; plus forwarded mails
    html: str | None  # the first text/html body part of the outer mail
    attachments: list[Attachment]
    headers_size: int  # bytes of the top-level header block, blank separator line included
    defects: list[str] = field(default_factory=list)


def fingerprint(raw: bytes) -> str:
    """sha256 hex of the raw bytes: the dedupe guard when a mail has no Message-ID."""
    return hashlib.sha256(bytes(raw)).hexdigest()


# --- small helpers ------------------------------------------------------------------------
def _clean(text: str) -> str:
    """NUL and lone surrogates -> U+FFFD: storable in PostgreSQL text, encodable as UTF-8."""
    return _SURROGATES.sub("\ufffd", text).replace("\x00", "\ufffd")


def _lines(text: str) -> str:
    """CRLF and CR line ends -> LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _one_line(text: str) -> str:
    """Control characters to spaces, whitespace runs collapsed, stripped."""
    text = "".join(" " if (ord(c) < 32 or 0x7F <= ord(c) < 0xA0) else c for c in text)
    return " ".join(text.split())


def _defect_name(defect: object) -> str:
    name = type(defect).__name__.removesuffix("Defect") or "Defect"
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value).replace("\r", "").replace("\n", " ")


def _headers_size(raw: bytes) -> int:
    """Bytes of the top-level header block as the parser sees it: header and continuation lines,
    plus the blank line that ends them (0 when the mail starts with body text)."""
    pos, n = 0, len(raw)
    while pos < n:
        end = raw.find(b"\n", pos)
        line_end = n if end < 0 else end + 1
        line = raw[pos:line_end].rstrip(b"\r\n")
        if not line:
            return line_end
        if line[:1] in (b" ", b"\t"):
            if pos == 0:
                return 0
        elif not (_HEADER_LINE.match(line) or (pos == 0 and line.startswith(b"From "))):
            return pos
        pos = line_end
    return n


# --- charsets ---------------------------------------------------------------------------------
# WHATWG Encoding Standard labels (what browsers and mail clients do): a label names the superset
# real senders mean. Others are looked up in Python's codecs.
_WHATWG_LABELS = {
    **dict.fromkeys(
        (
            *(
                "us-ascii",
                "ascii",
                "ansi_x3.4-1968",
                "iso-8859-1",
                "iso8859-1",
                "iso_8859-1",
                "latin1",
            ),
            *("latin-1", "l1", "iso-ir-100", "cp819", "ibm819", "csisolatin1", "iso88591"),
            *("iso_8859-1:1987", "windows-1252", "cp1252", "x-cp1252", "us", "646"),
        ),
        "cp1252",
    ),
    **dict.fromkeys(
        (
            *("gb2312", "gbk", "x-gbk", "cp936", "ms936", "windows-936", "chinese", "csgb2312"),
            *("gb_2312-80", "gb_2312", "iso-ir-58", "csiso58gb231280", "x-euc-cn", "euc-cn"),
        ),
        "gb18030",
    ),
    **dict.fromkeys(("gb18030",), "gb18030"),
    **dict.fromkeys(("big5", "big5-hkscs", "cn-big5", "csbig5", "x-x-big5"), "big5hkscs"),
    **dict.fromkeys(
        (
            *("shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "csshiftjis", "windows-31j"),
            *("ms932", "cp932", "x-ms-cp932"),
        ),
        "cp932",
    ),
    **dict.fromkeys(
        (
            *("euc-kr", "ks_c_5601-1987", "ks_c_5601-1989", "ksc5601", "ksc_5601", "korean"),
            *("csksc56011987", "iso-ir-149", "windows-949", "cp949", "cseuckr", "x-windows-949"),
        ),
        "cp949",
    ),
    **dict.fromkeys(("iso-8859-8-i", "csiso88598i", "logical", "iso-8859-8-e"), "iso8859_8"),
    **dict.fromkeys(("iso-8859-6-i", "iso-8859-6-e"), "iso8859_6"),
    **dict.fromkeys(("iso-8859-9", "latin5", "l5", "iso8859-9", "windows-1254"), "cp1254"),
    **dict.fromkeys(("iso-8859-11", "tis-620", "dos-874", "windows-874"), "cp874"),
    **dict.fromkeys(("x-mac-roman", "macintosh", "mac", "csmacintosh"), "mac_roman"),
    **dict.fromkeys(("x-mac-cyrillic", "x-mac-ukrainian"), "mac_cyrillic"),
    **dict.fromkeys(
        ("unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"), "utf-8"
    ),
    **dict.fromkeys(("utf8", "utf-8"), "utf-8"),
}
_CJK_CODECS = frozenset({"gb18030", "big5hkscs", "cp932", "cp949", "euc_jp", "iso2022_jp"})
_ASCII_BYTES = bytes(range(128))
_UTF8_SEQ = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_CJK_TEXT = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3\uff00-\uffef]")
_ISOLATED_HIGH = re.compile(rb"(?<![\x80-\xff])[\x80-\xff](?![\x80-\xff])")


@functools.lru_cache(maxsize=256)
def _codec(label: str | None) -> str | None:
    """The Python codec for a charset label (WHATWG mapping first), or None if unknown."""
    if not label:
        return None
    key = label.strip().strip("\"'").strip().lower()
    if key in _WHATWG_LABELS:
        return _WHATWG_LABELS[key]
    if not key or len(key) > 40:
        return None
    try:
        name = codecs.lookup(key).name
    except (LookupError, ValueError):
        return None
    return _WHATWG_LABELS.get(name.replace("_", "-"), name)


def _utf8_share(data: bytes) -> tuple[int, int]:
    """(valid multi-byte UTF-8 sequences, high bytes outside them)."""
    high = len(data.translate(None, _ASCII_BYTES))
    seqs = _UTF8_SEQ.findall(data)
    return len(seqs), high - sum(len(s) for s in seqs)


def _sniff_cjk(data: bytes) -> str | None:
    """A CJK double-byte codec the bytes are plainly written in, or None. Latin text decoded
    in a CJK codec comes out as Han characters too; it is told apart by its high bytes, which
    stand alone between ASCII letters, while CJK text has them in runs."""
    high = len(data.translate(None, _ASCII_BYTES))
    if high < 4:
        return None
    sample = data[: 1 << 16]
    isolated = len(_ISOLATED_HIGH.findall(sample))
    sample_high = len(sample.translate(None, _ASCII_BYTES))
    for codec in ("cp932", "euc_jp", "cp949", "gb18030", "big5hkscs"):
        try:
            text = sample.decode(codec)
        except UnicodeDecodeError:
            continue
        wide = [c for c in text if ord(c) > 127]
        if not wide:
            continue
        cjk = len(_CJK_TEXT.findall(text))
        if cjk < 0.95 * len(wide):
            continue
        if codec in ("cp932", "euc_jp"):
            if len(_KANA.findall(text)) >= 0.1 * len(wide):
                return codec
        elif codec == "cp949":
            if len(_HANGUL.findall(text)) >= 0.9 * len(wide) and isolated * 10 < sample_high:
                return codec
        elif isolated * 10 < sample_high:
            return codec
    return None


def _decode_bytes(data: bytes, charset: str | None, where: str, defects: list[str]) -> str:
    """Bytes to text. The declared charset is read as the WHATWG Encoding Standard says
    (iso-8859-1 and us-ascii as windows-1252, gb2312 as GB18030, ...); non-ASCII bytes that
    are valid UTF-8 are UTF-8 whatever the label says (the most common mislabelling), and mostly
    valid UTF-8 stays UTF-8 with replacement characters. Then the declared charset, a CJK
    codec the bytes plainly are, windows-1252 with replacement characters. Each fallback is a
    defect."""
    label = (charset or "").strip().strip('"').strip().lower() or None
    codec = _codec(label)
    if label and codec is None:
        defects.append(f"unknown charset {_label(label)} in {where}")
    if codec is not None and codec.replace("-", "_").startswith(
        ("utf_16", "utf_32", "utf_7", "iso2022", "hz")
    ):
        try:  # not ASCII-compatible: the label is all we have
            return data.decode(codec)
        except Exception:
            defects.append(f"bytes invalid in declared charset {_label(label)} in {where}")
        if data.isascii():  # ISO-2022-JP with vendor characters (NEC row 13): keep the rest
            try:
                return data.decode(codec, errors="replace")
            except Exception:
                pass
    elif codec is None and b"\x1b$" in data and data.isascii():
        try:  # ISO-2022-JP without a label (old Japanese mail)
            text = data.decode("iso2022_jp")
        except UnicodeDecodeError:
            pass
        else:
            defects.append(f"{where} decoded as iso-2022-jp")
            return text
    if data.isascii():
        return data.decode("ascii")
    if codec is None and label is None:
        defects.append(f"8-bit text without charset in {where}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if codec not in (None, "utf-8"):
            defects.append(f"{where} declared {_label(label)} but is utf-8")
        elif codec is None:
            defects.append(f"{where} decoded as utf-8")
        return text
    if codec == "utf-8":
        defects.append(f"bytes invalid in declared charset {_label(label)} in {where}")
    valid, invalid = _utf8_share(data)
    if codec not in _CJK_CODECS and valid and invalid <= valid:
        defects.append(f"{where} mostly utf-8, {invalid} invalid bytes replaced")
        return data.decode("utf-8", errors="replace")
    if codec is not None and codec != "utf-8":
        try:
            return data.decode(codec)
        except Exception:
            defects.append(f"bytes invalid in declared charset {_label(label)} in {where}")
    sniffed = _sniff_cjk(data)
    if sniffed is not None and sniffed != codec:
        try:
            text = data.decode(sniffed)
        except UnicodeDecodeError:
            pass
        else:
            defects.append(f"{where} decoded as {sniffed}")
            return text
    defects.append(f"{where} decoded as windows-1252")
    return data.decode("cp1252", errors="replace")


_ENCODED_WORD = re.compile(rb"=\?([^?\s*]{1,60})(?:\*[^?\s]{0,20})?\?([bBqQ])\?([^?\s]*?)\?=")
_WORD_GAP = re.compile(rb"[ \t\r\n]*")


def _word_bytes(encoding: bytes, payload: bytes) -> bytes:
    if encoding in (b"b", b"B"):
        payload = re.sub(rb"[^A-Za-z0-9+/]", b"", payload)
        if len(payload) % 4 == 1:
            payload = payload[:-1]
        payload += b"=" * (-len(payload) % 4)
        try:
            return base64.b64decode(payload)
        except (binascii.Error, ValueError):
            return b""
    return re.sub(
        rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), payload.replace(b"_", b" ")
    )


def _decode_words(data: bytes, defects: list[str] | None = None, where: str = "") -> str:
    """A header value with RFC 2047 encoded-words decoded, tolerantly: raw 8-bit bytes inside a
    word, missing padding, adjacent words of one charset that split a character, charsets read
    as _decode_bytes reads them. Text outside words is UTF-8 (or sniffed) as in _decode_bytes."""
    sink: list[str] = [] if defects is None else defects
    out: list[str] = []
    pos = 0
    pending: tuple[bytes, bytearray] | None = None  # (charset, bytes) of adjacent words

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            out.append(_decode_bytes(bytes(pending[1]), pending[0].decode("latin-1"), where, sink))
            pending = None

    for m in _ENCODED_WORD.finditer(data):
        gap = data[pos : m.start()]
        if pending is None or _WORD_GAP.fullmatch(gap) is None:
            flush()
            if gap:
                out.append(_decode_bytes(gap, None, where, sink))
        charset = m.group(1).lower()
        decoded = _word_bytes(m.group(2), m.group(3))
        if pending is not None and pending[0] == charset:
            pending[1].extend(decoded)
        else:
            flush()
            pending = (charset, bytearray(decoded))
        pos = m.end()
    flush()
    if pos < len(data):
        out.append(_decode_bytes(data[pos:], None, where, sink))
    return "".join(out)


def _normalise_headers(part: Message, where: str, defects: list[str]) -> None:
    """Re-decode header values that carry raw 8-bit bytes (surrogate-escaped by the parser):
    UTF-8 if valid, else a CJK codec the bytes plainly are, else windows-1252; an encoded-word
    with raw 8-bit inside (which the email package leaves undecoded) is decoded with its own
    charset. Header order and duplicates are kept."""
    items = list(part.raw_items())
    if not any(_SURROGATES.search(v) for _, v in items if isinstance(v, str)):
        return
    fixed = []
    for name, value in items:
        if isinstance(value, str) and _SURROGATES.search(value):
            data = value.encode("utf-8", "surrogateescape")
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                defects.append(f"8-bit non-UTF-8 bytes in header {_label(name)} of {where}")
            value = _clean(_decode_8bit_header(data))
        fixed.append((name, value))
    for name in {n.lower() for n, _ in items}:
        del part[name]
    for name, value in fixed:
        part.set_raw(name, value)


def _decode_8bit_header(data: bytes) -> str:
    """A raw header value with 8-bit bytes: encoded-words holding 8-bit bytes are decoded with
    their charset, the rest as UTF-8 or sniffed (_decode_bytes without a label)."""
    scratch: list[str] = []  # the caller records one defect per header
    out, pos = [], 0
    for m in _ENCODED_WORD.finditer(data):
        if m.group(3).isascii():
            continue
        out.append(_decode_bytes(data[pos : m.start()], None, "", scratch))
        out.append(_decode_words(m.group(0), scratch))
        pos = m.end()
    out.append(_decode_bytes(data[pos:], None, "", scratch))
    return "".join(out)


def _raw_values(msg: Message, name: str) -> list[str]:
    lname = name.lower()
    return [str(v) for k, v in msg.raw_items() if k.lower() == lname]


def _decode_unstructured(value: str) -> str:
    """An unstructured header value (or a file name) with RFC 2047 encoded-words decoded
    (tolerantly, see _decode_words)."""
    value = _unfold(value)
    try:
        text = _decode_words(value.encode("utf-8", "surrogateescape"))
    except Exception:
        text = value
    return _clean(text)


def _addresses(value: str) -> list[str]:
    """Addresses of one header value, each entry parsed on its own (mailer.addresses)."""
    try:
        return [_clean(a) for a in parse_addresses(value)]
    except Exception:
        return []


def _message_id(value: str) -> str | None:
    value = _unfold(value)
    m = re.search(r"<([^<>]*)>", value)
    inner = m.group(1) if m else value
    inner = re.sub(r"\s+", "", _clean(inner))
    inner = "".join(c for c in inner if ord(c) >= 32 and c != "\x7f")
    return inner[:_MAX_MESSAGE_ID_CHARS] or None


def _date(value: str, defects: list[str]) -> datetime | None:
    try:
        dt = parsedate_to_datetime(_unfold(value).strip())
    except Exception:
        dt = None
    if dt is None:
        defects.append("unparseable Date")
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


def _param(part: Message, name: str) -> str | None:
    try:
        value = part.get_param(name)
    except Exception:
        return None
    if value is None:
        return None
    try:
        return str(collapse_rfc2231_value(value))
    except Exception:
        return None


def _content_type(part: Message) -> str:
    try:
        ctype = part.get_content_type()
    except Exception:
        return "text/plain"
    return _CONTROL.sub("", _clean(ctype))[:200]  # stored as declared_type


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        for value in _raw_values(part, "Content-Disposition"):
            return value.split(";", 1)[0].strip().lower() or None
        return None


def _filename(part: Message) -> str | None:
    name = None
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if not name:
        # unquoted encoded-words and other things the strict parser drops
        for header in ("Content-Disposition", "Content-Type"):
            for value in _raw_values(part, header):
                m = _RAW_NAME_PARAM.search(_unfold(value))
                if m and m.group(1).strip():
                    name = m.group(1).strip()
                    if len(name) >= 2 and name[0] == name[-1] == '"':
                        name = re.sub(r"\\(.)", r"\1", name[1:-1])
                    break
            if name:
                break
    if not name:
        return None
    if "=?" in name:
        name = _decode_unstructured(name)
    return str(name)[:_MAX_HEADER_CHARS] or None  # raw: NUL etc. are for sanitize_filename


def _payload_bytes(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    try:
        payload = part.get_payload()
    except Exception:
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    if isinstance(payload, bytes):
        return payload
    return b""


class _TextExtractor(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "title", "template"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}
        | {"blockquote", "pre", "hr", "section", "article", "header", "footer", "td", "th"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Visible text of an HTML body: tags, scripts and styles removed, entities decoded, one
    line per block element, blank-line runs collapsed."""
    try:
        parser = _TextExtractor()
        parser.feed(markup)
        parser.close()
        text = "".join(parser.parts)
    except Exception:
        text = html_lib.unescape(re.sub(r"<[^>]*>", " ", markup))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --- the walk over the MIME tree ----------------------------------------------------------
@dataclass
class _Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    forwarded: list[str] = field(default_factory=list)
    fallback: list[str] = field(default_factory=list)  # text from inside a winmail.dat

    def text(self) -> str:
        if any(p.strip() for p in self.plain):
            main = "\n\n".join(p for p in self.plain if p.strip())
        elif self.html:  # no text/plain, or only empty ones (clients that send an empty one)
            main = html_to_text(self.html[0])
        elif self.fallback:
            main = "\n\n".join(self.fallback)
        else:
            main = ""
        if not self.forwarded:
            return main
        blocks = [main.rstrip()] if main.strip() else []
        return "\n\n".join(blocks + [f.rstrip() for f in self.forwarded]) + "\n"


@dataclass
class _Walk:
    defects: list[str]
    attachments: list[Attachment] = field(default_factory=list)
    used_names: set[str] = field(default_factory=set)
    count: int = 0
    capped: bool = False
    spilled: Spilled | None = None  # parse_file: bodies moved to files by the pre-pass

    def take_spilled(self, part: Message) -> tuple[Path | None, list[str]]:
        """The file of a spilled part and the pre-pass defects of its body. Only a marker with
        this parse's token counts (a sender cannot guess it); it is removed from the part."""
        if self.spilled is None:
            return None, []
        values = _raw_values(part, MARKER)
        for i, value in enumerate(values):
            token, _, n = value.strip().partition(" ")
            if token == self.spilled.token and n.isascii() and n.isdigit():
                path = self.spilled.files.get(int(n))
                if path is None:
                    continue
                del part[MARKER]
                for other in values[:i] + values[i + 1 :]:
                    part.set_raw(MARKER, other)
                return path, self.spilled.part_defects.get(int(n), [])
        return None, []

    def unique(self, name: str) -> str:
        if name.casefold() not in self.used_names:
            self.used_names.add(name.casefold())
            return name
        root, dot, ext = name.rpartition(".")
        if not root or len(ext) > 15:
            root, dot, ext = name, "", ""
        ext = dot + ext
        i = 2
        while True:
            suffix = f"-{i}"
            budget = 200 - len(ext.encode("utf-8")) - len(suffix)
            base = root.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(" .")
            candidate = f"{base}{suffix}{ext}"
            if candidate.casefold() not in self.used_names:
                self.used_names.add(candidate.casefold())
                return candidate
            i += 1


def _inner_message(part: Message, where: str, defects: list[str]) -> Message | None:
    try:
        payload = part.get_payload()
    except Exception:
        return None
    inner = payload[0] if isinstance(payload, list) and payload else None
    if not isinstance(inner, Message):
        return None
    cte = str(part.get("Content-Transfer-Encoding", "") or "").strip().lower()
    if cte in ("base64", "quoted-printable") and not list(inner.raw_items()):
        # not allowed by RFC 2046, sent anyway: decode and parse the real message
        defects.append(f"message/rfc822 with {cte} transfer encoding in {where}")
        body = inner.get_payload()
        if isinstance(body, str):
            data = body.encode("ascii", "surrogateescape")
            try:
                data = base64.b64decode(data) if cte == "base64" else quopri.decodestring(data)
            except (binascii.Error, ValueError):
                return inner
            return email.message_from_bytes(data, policy=_POLICY)
    return inner


def _forward_header(inner: Message) -> str:
    lines = [_FORWARD_MARK]
    for name in ("From", "Date", "Subject"):
        values = _raw_values(inner, name)
        if values:
            lines.append(f"{name}: {_one_line(_decode_unstructured(values[0][:1000]))}")
    return "\n".join(lines)


def _visit(part: Message, walk: _Walk, body: _Body, depth: int) -> None:
    if walk.count >= MAX_PARTS:
        if not walk.capped:
            walk.defects.append(f"more than {MAX_PARTS} MIME parts, the rest ignored")
            walk.capped = True
        return
    walk.count += 1
    where = f"part {walk.count}"
    _normalise_headers(part, where, walk.defects)
    ctype = _content_type(part)
    if part.is_multipart():
        _part_defects(part, where, walk.defects, [])
        _visit_container(part, ctype, where, walk, body, depth)
    else:
        spill_defects = _visit_leaf(part, ctype, where, walk, body)
        _part_defects(part, where, walk.defects, spill_defects)  # base64 errors land here


def _part_defects(part: Message, where: str, defects: list[str], spilled: list[str]) -> None:
    """The parser's defects of a part, and those the spill pre-pass found in its body (in the
    order the parser would have reported them: a missing separator first)."""
    names = [_defect_name(d) for d in getattr(part, "defects", ())]
    first = [n for n in spilled if n == NO_SEPARATOR]
    names = first + names + [n for n in spilled if n != NO_SEPARATOR]
    defects.extend(f"{name} in {where}" for name in names)


def _visit_container(
    part: Message, ctype: str, where: str, walk: _Walk, body: _Body, depth: int
) -> None:
    if depth >= MAX_DEPTH:
        walk.defects.append(f"MIME nesting deeper than {MAX_DEPTH} in {where}, ignored")
        return
    if ctype == "message/partial":
        _keep_partial(part, where, walk)
        return
    if ctype.startswith("message/"):
        if ctype not in ("message/rfc822", "message/global"):
            return  # delivery-status and the like: header blocks, not content
        inner = _inner_message(part, where, walk.defects)
        if inner is None:
            return
        inner_body = _Body()
        _visit(inner, walk, inner_body, depth + 1)
        block = _forward_header(inner)
        inner_text = inner_body.text()
        body.forwarded.append(f"{block}\n\n{inner_text}" if inner_text else block)
        return
    try:
        children = part.get_payload()
    except Exception:
        children = []
    for child in children if isinstance(children, list) else []:
        if isinstance(child, Message):
            _visit(child, walk, body, depth + 1)


def _keep_partial(part: Message, where: str, walk: _Walk) -> None:
    """A message/partial fragment (RFC 2046 5.2.2) is never dropped: it is kept as an attachment
    (its content as sent), with a defect; fragments are not reassembled across mails."""
    data = b""
    try:
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else payload
        if isinstance(inner, Message):
            buf = io.BytesIO()
            email.generator.BytesGenerator(buf, mangle_from_=False, policy=_POLICY).flatten(inner)
            data = buf.getvalue()
        elif isinstance(inner, str):
            data = inner.encode("utf-8", "surrogateescape")
    except Exception:
        walk.defects.append(f"message/partial in {where} not readable")
    number, total = (_param(part, n) or "" for n in ("number", "total"))
    number = number if number.isascii() and number.isdigit() else "?"
    total = total if total.isascii() and total.isdigit() else "?"
    walk.defects.append(
        f"message/partial fragment {number[:6]} of {total[:6]} in {where} kept as attachment"
    )
    name = "partial" if number == "?" else f"partial-{number[:6]}"
    walk.attachments.append(Attachment(walk.unique(f"{name}.eml"), None, "message/partial", data))


def _visit_leaf(part: Message, ctype: str, where: str, walk: _Walk, body: _Body) -> list[str]:
    """Body text or an attachment; returns the spill pre-pass defects of the part's body."""
    maintype = ctype.split("/", 1)[0]
    disposition = _disposition(part)
    filename = _filename(part)
    if maintype == "multipart":
        ctype = "text/plain"  # a multipart without usable boundary: its body is all we have
    is_body = ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename
    path, spill_defects = walk.take_spilled(part)  # its payload is empty, the file is decoded
    charset = _param(part, "charset")
    if path is None:
        data = _payload_bytes(part)
    elif is_body:
        data = _spilled_text(path, charset, where, walk.defects)
    else:
        data = b""
    if is_body:
        text = _lines(_clean(_decode_bytes(data, charset, where, walk.defects)))
        (body.plain if ctype == "text/plain" else body.html).append(text)
        return spill_defects
    kind = detect_kind(data if path is None else path)
    base = "invite" if kind == "calendar" else "attachment"
    fallback = base + KIND_EXTENSIONS.get(kind or "", "")
    name = walk.unique(sanitize_filename(filename, fallback=fallback))
    original = _clean(filename) if filename is not None else None
    walk.attachments.append(Attachment(name, original, ctype, data, path=path))
    if _is_tnef(ctype, filename, _head_bytes(data, path)):
        _extract_tnef(data if path is None else path, where, walk, body)
    return spill_defects


def _head_bytes(data: bytes, path: Path | None) -> bytes:
    if path is None:
        return data[:16]
    try:
        with open(path, "rb") as fh:
            return fh.read(16)
    except OSError:
        return b""


# --- TNEF (winmail.dat) -----------------------------------------------------------------------
_TNEF_SIGNATURE = b"\x78\x9f\x3e\x22"
_TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
MAX_TNEF_BYTES = 32 << 20  # a larger winmail.dat is kept as it is, not opened
_MAX_TNEF_OBJECTS = 20_000
_MAX_TNEF_COPY = 8 << 30  # bytes tnefparse may copy in all (objects x stream size)
_MAX_TNEF_DEPTH = 4  # attached Outlook messages inside attached messages
_IMESSAGE_SIG = b"\x07\x03\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x46"
_MAPI_FIXED = {0x0002: 2, 0x000B: 2, 0x0003: 4, 0x0004: 4, 0x000A: 4, 0x0048: 16}
_MAPI_FIXED.update(dict.fromkeys((0x0005, 0x0006, 0x0007, 0x0014, 0x0040), 8))
_MAPI_VARIABLE = frozenset({0x0000, 0x000D, 0x001E, 0x001F, 0x0102})


def _is_tnef(ctype: str, filename: str | None, data: bytes) -> bool:
    return (
        ctype in _TNEF_TYPES
        or (filename or "").strip().lower() == "winmail.dat"
        or data[:4] == _TNEF_SIGNATURE
    )


def _u32(data: bytes, offset: int) -> int | None:
    return int.from_bytes(data[offset : offset + 4], "little") if offset + 4 <= len(data) else None


def _mapi_plausible(data: bytes, offset: int, depth: int) -> int | None:
    """Walks a MAPI property list as tnefparse.decode_mapi does; None when a count could make
    it loop for long (tnefparse trusts every 32-bit count), else the offset after the list."""
    n, size = _u32(data, offset), len(data)
    if n is None or n > (size - offset) // 4:
        return None
    offset += 4
    for _ in range(n):
        if offset + 4 > size:
            return offset  # tnefparse skips the rest or stops
        atype = int.from_bytes(data[offset : offset + 2], "little")
        aname = int.from_bytes(data[offset + 2 : offset + 4], "little")
        offset += 4
        if aname >= 0x8000:  # named property: GUID, kind, id or name
            kind = _u32(data, offset + 16)
            offset += 20
            if kind == 0:
                offset += 4
            else:
                length = _u32(data, offset)
                if length is None:
                    return offset
                offset += 4 + length + (-length % 4)
        multi = None
        if atype & 0x1000:
            atype ^= 0x1000
            multi = _u32(data, offset)
            if multi is None:
                return offset
            if multi > (size - offset) // 2 + 1:
                return None
            offset += 4
        for _ in range(multi or 1):
            if atype in _MAPI_FIXED:
                offset += _MAPI_FIXED[atype]
            elif atype in _MAPI_VARIABLE:
                values = 1
                if not multi:
                    values = _u32(data, offset)
                    if values is None:
                        return offset
                    if values > (size - offset) // 4 + 1:
                        return None
                    offset += 4
                for _ in range(values):
                    length = _u32(data, offset)
                    if length is None:
                        return offset
                    item = data[offset + 4 : offset + 4 + length]
                    embedded = aname == 0x3701 and item.startswith(_IMESSAGE_SIG)
                    if embedded and not _tnef_plausible(item[len(_IMESSAGE_SIG) :], depth + 1):
                        return None
                    offset += 4 + length + (-length % 4)
            else:
                return offset  # tnefparse raises and stops this list
            if offset > size:
                return offset
        if (multi or 1) % 2 and atype in (0x0002, 0x000B):
            offset += 2
    return offset


def _tnef_plausible(data: bytes, depth: int = 0) -> bool:
    """The TNEF object stream as tnefparse.TNEF walks it, with every count checked against the
    bytes there are: a crafted count must not make it loop billions of times."""
    if depth > _MAX_TNEF_DEPTH or data[:4] != _TNEF_SIGNATURE:
        return False
    offset, objects, size = 6, 0, len(data)
    while offset + 12 < size:
        objects += 1
        if objects > _MAX_TNEF_OBJECTS or objects * size > _MAX_TNEF_COPY:
            return False  # tnefparse copies the rest of the stream for every object
        name = int.from_bytes(data[offset + 1 : offset + 3], "little")
        length = min(size - offset, (_u32(data, offset + 5) or 0) + 11)
        body = data[offset + 9 : offset + length - 2]
        if name in (0x9003, 0x9005) and _mapi_plausible(body, 0, depth) is None:
            return False
        if name == 0x9004:  # recipient table: rows of property lists
            rows, pos = _u32(body, 0), 4
            if rows is None or rows > len(body) // 4:
                return False
            for _ in range(rows):
                pos = _mapi_plausible(body, pos, depth)
                if pos is None:
                    return False
                if pos >= len(body):
                    break
        offset += length
    return True


def _tnef_files(data: bytes) -> tuple[list[tuple[str, bytes]], str | bytes | None]:
    """(name, bytes) of the files in a TNEF stream (tnefparse), and its plain-text body (Outlook
    puts the text there when it sends no text/plain); raises on what it cannot read."""
    import tnefparse  # here, not at import: a mail without TNEF never needs it

    tnef = tnefparse.TNEF(data, do_checksum=False)
    text = tnef.body if isinstance(tnef.body, str | bytes) else None
    files = []
    for att in tnef.attachments:
        try:
            name = att.long_filename()
        except Exception:
            name = None
        if isinstance(name, list):
            name = name[0] if name else None
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if not isinstance(name, str) or not name.strip("\x00 "):
            try:
                name = att.name
            except Exception:
                name = ""
        payload = att.data if isinstance(att.data, bytes) else b""
        files.append((str(name).strip("\x00"), payload))
    return files, text


def _extract_tnef(content: bytes | Path, where: str, walk: _Walk, body: _Body) -> None:
    """The files inside a winmail.dat become attachments of their own (after it, named as
    Outlook named them); the winmail.dat itself stays, so nothing the sender sent is lost."""
    try:
        size = content.stat().st_size if isinstance(content, Path) else len(content)
        if size > MAX_TNEF_BYTES:
            walk.defects.append(f"TNEF in {where} larger than {MAX_TNEF_BYTES} bytes, not opened")
            return
        data = content.read_bytes() if isinstance(content, Path) else content
    except OSError:
        walk.defects.append(f"TNEF in {where} not readable")
        return
    if not _tnef_plausible(data):
        walk.defects.append(f"TNEF in {where} malformed, not opened")
        return
    try:
        files, text = _tnef_files(data)
    except Exception as exc:
        walk.defects.append(f"TNEF in {where} not readable ({type(exc).__name__})")
        return
    if isinstance(text, bytes):
        text = _decode_bytes(text.rstrip(b"\x00"), None, f"TNEF text of {where}", walk.defects)
    if text and text.strip("\x00 \r\n"):
        body.fallback.append(_lines(_clean(text.rstrip("\x00"))))
    for name, payload in files:
        if walk.count >= MAX_PARTS:
            walk.defects.append(f"TNEF in {where}: more files than parts allowed, the rest ignored")
            return
        walk.count += 1
        kind = detect_kind(payload)
        fallback = ("invite" if kind == "calendar" else "attachment") + KIND_EXTENSIONS.get(
            kind or "", ""
        )
        declared = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
        original = _clean(name) if name else None
        walk.attachments.append(
            Attachment(
                walk.unique(sanitize_filename(name, fallback=fallback)), original, declared, payload
            )
        )


def _spilled_text(path: Path, charset: str | None, where: str, defects: list[str]) -> bytes:
    """At most MAX_SPILLED_TEXT bytes of a spilled text body: a text that large is not read by
    anyone, and the raw mail is kept. A UTF-8 sequence broken by the cut is dropped."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_SPILLED_TEXT + 1)
    if len(data) <= MAX_SPILLED_TEXT:
        return data
    data = data[:MAX_SPILLED_TEXT]
    label = (charset or "").strip().strip('"').lower().replace("_", "-")
    if label in ("", "us-ascii", "utf-8", "utf8"):
        for i in range(1, 4):
            lead = data[-i]
            if lead < 0x80:
                break
            if lead >= 0xC0:
                if i < (2 if lead < 0xE0 else 3 if lead < 0xF0 else 4):
                    data = data[:-i]
                break
    defects.append(f"text {where} of {path.stat().st_size} bytes cut to {len(data)} bytes")
    return data


_MAX_PARSE_DEPTH = MAX_DEPTH + 2  # deeper parts are parsed as text (the walk ignores them)
_MAX_PARSE_PARTS = MAX_PARTS + 10  # parts after these are parsed as text (the walk ignores them)


class _BoundedFeedParser(email.feedparser.BytesFeedParser):
    """The email package's parser, with its structure bounded: a part nested deeper than
    _MAX_PARSE_DEPTH, or after the first _MAX_PARSE_PARTS parts, is read as text/plain, so its
    body is not searched for more parts. Without this, 2000 nested multiparts took minutes (every
    line is matched against every open boundary) and 10,000 parts parsed 10,000 Content-Types.
    Hooks FeedParser._parse_headers (stable since Python 3.3; checked on 3.11.2 and 3.11.7)."""

    def _parse_headers(self, lines: list[str]) -> None:
        super()._parse_headers(lines)
        self._seen = getattr(self, "_seen", 0) + 1
        deep = len(self._msgstack) > _MAX_PARSE_DEPTH
        if not deep and self._seen <= _MAX_PARSE_PARTS:
            return
        if "content-type" in (k.lower() for k in self._cur):
            del self._cur["Content-Type"]
        self._cur.set_raw("Content-Type", "text/plain")
        if not getattr(self, "_told", False):
            self._told = True
            sink = _CUT.get()
            if sink is not None:
                why = f"deeper than {_MAX_PARSE_DEPTH}" if deep else f"after {_MAX_PARSE_PARTS}"
                sink.append(f"MIME parts {why} read as text, not parsed")


def _parse_message(raw: bytes, defects: list[str]) -> Message:
    try:
        parser = _BoundedFeedParser(policy=_POLICY)
        parser.feed(raw)
        return parser.close()
    except Exception as exc:
        defects.append(f"MIME structure not parseable ({type(exc).__name__}), body kept as text")
    try:
        return email.parser.BytesParser(policy=_POLICY).parsebytes(raw, headersonly=True)
    except Exception:
        return email.message_from_bytes(b"\n" + raw, policy=email.policy.compat32)


def _parse(raw: bytes, spilled: Spilled | None = None) -> ParsedMail:
    defects: list[str] = list(spilled.defects) if spilled is not None else []
    token = _CUT.set(defects)  # header cuts (_cap_header) are defects of this mail
    try:
        return _parse_with(raw, spilled, defects)
    finally:
        _CUT.reset(token)


def _parse_with(raw: bytes, spilled: Spilled | None, defects: list[str]) -> ParsedMail:
    msg = _parse_message(raw, defects)
    walk = _Walk(defects, spilled=spilled)
    body = _Body()
    _visit(msg, walk, body, 0)  # also normalises the top-level headers

    for name in _SINGLETONS:
        n = len(_raw_values(msg, name))
        if n > 1:
            defects.append(f"duplicate {name} headers ({n})")

    ids = _raw_values(msg, "Message-ID")
    message_id = _message_id(ids[0]) if ids else None
    if not ids:
        defects.append("missing Message-ID")
    elif message_id is None:
        defects.append("empty Message-ID")

    subject = ""
    subjects = _raw_values(msg, "Subject")
    if subjects:
        value = subjects[0]
        if len(value) > _MAX_HEADER_CHARS:
            defects.append(f"Subject header of {len(value)} characters cut")
            value = value[:_MAX_HEADER_CHARS]
        subject = _one_line(_decode_unstructured(value))
        if len(subject) > MAX_SUBJECT_CHARS:
            subject = subject[:MAX_SUBJECT_CHARS]
            defects.append(f"Subject longer than {MAX_SUBJECT_CHARS} characters, truncated")

    sender = ""
    froms = _raw_values(msg, "From") or _raw_values(msg, "Sender")
    if not froms:
        defects.append("missing From")
    else:
        found = _addresses(froms[0])
        if found:
            sender = found[0]
        else:
            defects.append("no valid address in From")

    recipients: list[str] = []
    for header in _RECIPIENT_HEADERS:
        for value in _raw_values(msg, header):
            for addr in _addresses(value):
                if addr not in recipients:
                    recipients.append(addr)

    dates = _raw_values(msg, "Date")
    date = _date(dates[0], defects) if dates else None
    if not dates:
        defects.append("missing Date")

    if len(defects) > MAX_DEFECTS:
        defects[MAX_DEFECTS - 1 :] = [f"{len(defects) - MAX_DEFECTS + 1} more defects"]
    outer_html = body.html[0] if body.html else None
    return ParsedMail(
        message_id=message_id,
        subject=subject,
        sender=sender,
        recipients=recipients,
        date=date,
        text=_clean(body.text()),
        html=outer_html,
        attachments=walk.attachments,
        headers_size=_headers_size(raw) if spilled is None else spilled.headers_size,
        defects=defects,
    )


def _unparseable(exc: Exception, headers_size: int) -> ParsedMail:
    return ParsedMail(
        message_id=None,
        subject="",
        sender="",
        recipients=[],
        date=None,
        text="",
        html=None,
        attachments=[],
        headers_size=headers_size,
        defects=[f"unparseable mail ({type(exc).__name__})"],
    )


def parse(raw: bytes) -> ParsedMail:
    """Parse raw mail bytes. Never raises; see the module docstring for what is decided how."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    try:
        raw = bytes(raw)
    except Exception:
        raw = b""
    try:
        return _parse(raw)
    except Exception as exc:  # the contract: a bad mail is a defect, never a crash of the worker
        try:
            size = _headers_size(raw)
        except Exception:
            size = 0
        return _unparseable(exc, size)


def parse_file(path: Path, workdir: Path, *, threshold: int = 1 << 20) -> tuple[ParsedMail, str]:
    """Parse the raw mail in file `path` in bounded memory: leaf bodies larger than `threshold`
    are decoded into files in `workdir` (spilled attachments keep them as `path`), the rest is
    parsed as `parse` does. Returns the result and the sha256 fingerprint of the file. Never
    raises on bad input; an OSError reading the file or writing `workdir` propagates."""
    with open(path, "rb") as fh:
        try:
            spilled = spill(fh, workdir, threshold=threshold)
        except OSError:
            raise
        except Exception as exc:  # a bug in the pre-pass: as in parse, a defect, not a crash
            digest = hashlib.sha256()
            fh.seek(0)
            while piece := fh.read(1 << 20):
                digest.update(piece)
            return _unparseable(exc, 0), digest.hexdigest()
    try:
        return _parse(spilled.skeleton, spilled), spilled.sha256
    except Exception as exc:
        return _unparseable(exc, spilled.headers_size), spilled.sha256
