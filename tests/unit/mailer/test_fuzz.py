"""A bounded property-based run of the mail parser (hypothesis): structure-aware random mails
(random headers, charsets, encoded-words, boundaries, nesting, transfer encodings, byte noise)
must always give a ParsedMail, never an exception, and only storable strings. Bounded by
max_examples and a per-example deadline so the whole file runs in well under 30 s; no example
database is written (database=None); hypothesis' cache folder .hypothesis/ ignores itself (it
writes its own .gitignore), so the checkout stays clean."""

import base64
import quopri
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.addresses import header_values, parse_addresses
from mailer.parsing import MAX_DEFECTS, ParsedMail, parse

pytestmark = pytest.mark.unit

FUZZ = settings(
    max_examples=150,
    deadline=2000,  # ms per example; a slow example is a finding, not noise
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CHARSETS = [
    "utf-8", "us-ascii", "iso-8859-1", "windows-1252", "iso-8859-8-i", "gb2312", "gbk", "big5",
    "shift_jis", "euc-jp", "iso-2022-jp", "ks_c_5601-1987", "koi8-r", "utf-16", "utf-7",
    "x-unknown", "", "\"utf-8\"", "UTF8", "latin1",
]  # fmt: skip
SAMPLE_TEXT = st.text(
    alphabet=st.sampled_from('aäöüßé€ 中文日本語한국어Привет\u05e9\u00a0\r\n\t<>@,;:"()=?_\\\x00'),
    max_size=40,
)
HEADER_NAMES = [
    "From", "To", "Cc", "Subject", "Date", "Message-ID", "Content-Type", "Content-Disposition",
    "Content-Transfer-Encoding", "MIME-Version", "Delivered-To", "Reply-To", "X-Custom", "Sender",
]  # fmt: skip
TYPES = [
    "text/plain", "text/html", "text/calendar", "application/pdf", "application/ms-tnef",
    "image/png", "message/partial", "message/delivery-status", "application/octet-stream",
    "text/plain; format=flowed", "multipart/mixed", "TEXT/PLAIN", "", "garbage",
]  # fmt: skip
ENCODINGS = ["", "7bit", "8bit", "base64", "quoted-printable", "binary", "x-uuencode", "bogus"]


@st.composite
def encoded_text(draw) -> bytes:
    """Text in a random charset: raw, or as RFC 2047 encoded-words (sometimes with raw 8-bit
    inside, broken padding or a wrong label)."""
    text = draw(SAMPLE_TEXT)
    charset = draw(st.sampled_from(CHARSETS))
    try:
        data = text.encode(charset.strip('"') or "ascii", "replace")
    except LookupError:
        data = text.encode("utf-8", "surrogatepass")
    mode = draw(st.sampled_from(["raw", "b", "q", "q8bit", "broken"]))
    if mode == "raw":
        return data
    if mode == "b":
        return b"=?%s?B?%s?=" % (charset.encode(), base64.b64encode(data))
    if mode == "q":
        return b"=?%s?Q?%s?=" % (charset.encode(), quopri.encodestring(data, header=True))
    if mode == "q8bit":
        return b"=?%s?Q?%s?=" % (charset.encode(), data.replace(b"?", b"=3F"))
    return b"=?%s?B?%s" % (charset.encode(), base64.b64encode(data)[:-1])


@st.composite
def header(draw) -> bytes:
    name = draw(st.sampled_from(HEADER_NAMES) | st.text("abcXYZ-:", min_size=0, max_size=8))
    parts = draw(st.lists(encoded_text() | st.sampled_from([b"a@b.example", b"<x@y>"]), max_size=4))
    value = b" ".join(parts)
    if draw(st.booleans()):
        value = value.replace(b" ", b"\r\n ", 1)  # folded
    return name.encode("utf-8", "surrogatepass") + b": " + value


def _param_header(ctype: str, params: list[tuple[str, bytes]]) -> bytes:
    out = b"Content-Type: " + ctype.encode()
    for name, value in params:
        out += b"; " + name.encode() + b"=" + value
    return out


@st.composite
def leaf(draw) -> bytes:
    ctype = draw(st.sampled_from(TYPES))
    charset = draw(st.sampled_from(CHARSETS))
    cte = draw(st.sampled_from(ENCODINGS))
    body = draw(st.binary(max_size=200) | encoded_text())
    if draw(st.booleans()):
        body = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    if draw(st.integers(0, 5)) == 0:
        body = b"\x78\x9f\x3e\x22\x01\x00" + draw(st.binary(max_size=300))  # TNEF-like
    if cte == "base64":
        body = base64.encodebytes(body)
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]  # cut: invalid padding
    elif cte == "quoted-printable":
        body = quopri.encodestring(body)
    params = [("charset", charset.encode())]
    if draw(st.booleans()):
        params.append(("name", b'"' + draw(encoded_text()).replace(b'"', b"") + b'"'))
    if draw(st.booleans()):
        params.append(("name*", b"utf-8''%E2%82%AC%FF.pdf"))
    headers = [_param_header(ctype, params)]
    if cte:
        headers.append(b"Content-Transfer-Encoding: " + cte.encode())
    if draw(st.booleans()):
        headers.append(b"Content-Disposition: " + draw(st.sampled_from([b"attachment", b"inline"])))
    headers += draw(st.lists(header(), max_size=2))
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


def _multipart(children: list[bytes], boundary: bytes, subtype: bytes, close: bool) -> bytes:
    out = b'Content-Type: multipart/%s; boundary="%s"\r\n\r\npreamble\r\n' % (subtype, boundary)
    for child in children:
        out += b"--" + boundary + b"\r\n" + child + b"\r\n"
    if close:
        out += b"--" + boundary + b"--\r\n"
    return out


_FIXED_BOUNDARIES = [b"b", b"=_x", b"a" * 70, b"", b"b b", b"--", b"\xff\xfe"]
BOUNDARIES = st.sampled_from(_FIXED_BOUNDARIES) | st.binary(min_size=1, max_size=10).map(
    lambda b: b.replace(b'"', b"").replace(b"\r", b"").replace(b"\n", b"") or b"z"
)


def _node(children):
    multipart = st.builds(
        _multipart,
        st.lists(children, max_size=4),
        BOUNDARIES,
        st.sampled_from([b"mixed", b"alternative", b"related", b"digest", b"signed"]),
        st.booleans(),
    )
    rfc822 = children.map(lambda inner: b"Content-Type: message/rfc822\r\n\r\n" + inner)
    partial = children.map(
        lambda inner: b"Content-Type: message/partial; number=1; total=2; id=x\r\n\r\n" + inner
    )
    return multipart | rfc822 | partial


STRUCTURE = st.recursive(leaf(), _node, max_leaves=12)


@st.composite
def mail(draw) -> bytes:
    top = draw(st.lists(header(), max_size=6))
    raw = b"\r\n".join(top) + (b"\r\n" if top else b"") + draw(STRUCTURE)
    if draw(st.booleans()):
        raw = raw.replace(b"\r\n", b"\n")
    for _ in range(draw(st.integers(0, 3))):  # byte noise: overwrite, insert, delete
        if not raw:
            break
        at = draw(st.integers(0, len(raw) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        noise = draw(st.binary(min_size=1, max_size=4))
        if op == "flip":
            raw = raw[:at] + noise + raw[at + len(noise) :]
        elif op == "insert":
            raw = raw[:at] + noise + raw[at:]
        else:
            raw = raw[:at] + raw[at + len(noise) :]
    return raw


def check(parsed: ParsedMail) -> None:
    assert isinstance(parsed, ParsedMail)
    assert len(parsed.defects) <= MAX_DEFECTS
    strings = [parsed.subject, parsed.sender, parsed.text, parsed.html or "", *parsed.recipients]
    strings += [parsed.message_id or "", *parsed.defects]
    for a in parsed.attachments:
        strings += [a.filename, a.original_filename or "", a.declared_type]
        assert a.filename
        assert isinstance(a.data, bytes)
    for s in strings:
        assert isinstance(s, str)
        assert "\x00" not in s
        s.encode("utf-8")  # no lone surrogates
    assert len({a.filename.casefold() for a in parsed.attachments}) == len(parsed.attachments)


@FUZZ
@given(mail())
def test_structured_random_mail_never_raises(raw):
    check(parse(raw))


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw):
    check(parse(raw))


def _tnef_object(level: int, name: int, kind: int, data: bytes) -> bytes:
    return struct.pack("<BHHI", level, name, kind, len(data)) + data + b"\x00\x00"


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from([1, 2]),
            st.sampled_from([0x9002, 0x9003, 0x9004, 0x9005, 0x800F, 0x8010, 0x9007, 0x8004]),
            st.sampled_from([0x0001, 0x0006, 0x0008]),
            st.binary(max_size=64),
        ),
        max_size=8,
    )
)
def test_random_tnef_never_raises(objects):
    tnef = b"\x78\x9f\x3e\x22\x01\x00" + b"".join(_tnef_object(*o) for o in objects)
    raw = (
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b'Content-Type: application/ms-tnef; name="winmail.dat"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(tnef) + b"--b--\r\n"
    )
    parsed = parse(raw)
    check(parsed)
    assert parsed.attachments[0].data == tnef


@FUZZ
@given(st.text(max_size=300))
def test_addresses_never_raise(value):
    for addr in parse_addresses(value):
        assert addr == addr.lower()
        assert "@" in addr
        assert not any(c in addr for c in "\r\n\x00\ufffd")


@FUZZ
@given(st.binary(max_size=500))
def test_header_values_never_raise(block):
    for value in header_values(block, ("to", "cc")):
        assert isinstance(value, str)
