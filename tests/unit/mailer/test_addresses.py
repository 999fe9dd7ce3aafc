"""mailer.addresses: every entry of an address header is read on its own, so one malformed entry
(a display name that is itself an address, an unquoted comma, a group) never hides the others.
Used by parsing (sender, recipients) and by sources.recipients_of (which mails are ours)."""

import time

import pytest

from mailer import parsing, sources
from mailer.addresses import addresses_of, header_values, parse_addresses
from mailer.parsing import parse
from mailer.sources import recipients_of

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("info@shop.example <info@shop.example>", ["info@shop.example"]),
        ("Info@Shop.Example", ["info@shop.example"]),
        ('"Doe, John" <j@x.de>, a@b.c', ["j@x.de", "a@b.c"]),
        ("Müller, Hans <hm@x.de>", ["hm@x.de"]),  # unquoted comma, raw 8-bit name
        ("a@b.c (Joe, x)", ["a@b.c"]),  # comment with a comma
        ("(Joe <x@y.z>) a@b.c", ["a@b.c"]),  # an address in a comment is not one
        ("=?utf-8?q?M=C3=BCller,_H?= <m@x.de>, b@c.d", ["m@x.de", "b@c.d"]),
        ("=?utf-8?q?a<b?= <q@x.de>", ["q@x.de"]),
        ("undisclosed-recipients:;", []),
        ("undisclosed-recipients:;, a@b.c", ["a@b.c"]),
        ("Team: a@x.de, B@Y.de;, c@z.de", ["a@x.de", "b@y.de", "c@z.de"]),
        ("Support: Desk <s@x.de>", ["s@x.de"]),
        ("<@relay.x,@relay.y:u@h.de>", ["u@h.de"]),
        ("<mailto:x@y.z>", ["x@y.z"]),
        ('"john doe"@example.com', ['"john doe"@example.com']),
        ("foo@[192.0.2.1]", ["foo@[192.0.2.1]"]),
        ("John john@example.com", ["john@example.com"]),  # angle brackets forgotten
        ("Ops <ops@x.de>, Billing Dept. billing@x.de", ["ops@x.de", "billing@x.de"]),
        ("a@x.de <a@x.de>; b@x.de", ["a@x.de", "b@x.de"]),
        ("<a@x.de>, <b@x.de", ["a@x.de", "b@x.de"]),  # unclosed angle
        ('"unclosed <x@y.z>, a@b.c', ["x@y.z"]),  # an unclosed quote swallows the rest
        ("a@x.de,,, ,a@x.de", ["a@x.de"]),
        ("jörg@bücher.example", ["jörg@bücher.example"]),  # SMTPUTF8
        ("", []),
        ("garbage", []),
        ("@", []),
        ("<>", []),
        ("\x00a@b.c\ud800", []),
        # RFC 5322 A.5/A.6.3: comments inside the brackets, obsolete spaces around dots
        ("Pete(A \\) chap) <pete(his account)@silly.test(his host)>", ["pete@silly.test"]),
        ("A Group(Some people):Chris <c@(host.)public.example>;", ["c@public.example"]),
        (
            "Mary Smith <@node.test:mary@example.net>, jdoe@test   . example",
            ["mary@example.net", "jdoe@test.example"],
        ),
    ],
)
def test_parse_addresses(value, expected):
    assert parse_addresses(value) == expected


def test_folded_value():
    assert parse_addresses("A <a@x.de>,\r\n\tB\r\n <b@x.de>") == ["a@x.de", "b@x.de"]


@pytest.mark.parametrize(
    "value",
    [
        *("a" * 60000, "a" * 60000 + "@", "@" * 60000, ":" * 60000, "(" * 60000, '"' * 60000),
        *("<" * 60000, "=?" * 30000, "a@b," * 20000, "x " * 30000 + "a@b"),
    ],
)
def test_hostile_values_are_linear(value):
    # CPU time, not wall time: a loaded CI machine stretches the wall clock, never the work
    start = time.process_time()
    parse_addresses(value * 4)  # cut at MAX_CHARS
    assert time.process_time() - start < 1.0


def test_addresses_of_dedupes_across_values():
    assert addresses_of(["a@x.de, B@x.de", "b@x.de <b@x.de>", "c@x.de"]) == [
        "a@x.de",
        "b@x.de",
        "c@x.de",
    ]


def test_header_values():
    block = (
        b"Received: from x\r\nTO: a@x.de,\r\n b@x.de\r\ncc:c@x.de\r\nSubject: To: d@x.de\r\n"
        b"Cc: \xe4 <e@x.de>\r\n\r\nTo: body@x.de\r\n"
    )
    assert header_values(block, ("to", "cc")) == ["a@x.de, b@x.de", "c@x.de", "\ufffd <e@x.de>"]


SHOP = (
    b"From: info@shop.example <info@shop.example>\r\n"
    b"To: info@shop.example <info@shop.example>\r\n"
    b"Cc: praxis@example.com\r\n"
    b"Subject: Bestellung\r\n"
    b"Message-ID: <1@shop.example>\r\n"
    b"Date: Mon, 4 Mar 2024 09:15:00 +0100\r\n"
    b"\r\n"
    b"Hallo\r\n"
)


def _strict_getaddresses(values):
    """What CPython's getaddresses does since the CVE-2023-27043 fix (Debian's 3.11.2 in the
    mailer image) when one entry is malformed: nothing at all for the whole list."""
    return [("", "")]


def test_display_name_that_is_an_address(monkeypatch):
    """Issue 10: on the image's Python the whole To/Cc came out empty, so the fetcher skipped
    the mail and no acknowledgement went out. The result must not depend on getaddresses."""
    monkeypatch.setattr(parsing, "getaddresses", _strict_getaddresses, raising=False)
    monkeypatch.setattr(sources, "getaddresses", _strict_getaddresses, raising=False)
    parsed = parse(SHOP)
    assert parsed.sender == "info@shop.example"
    assert parsed.recipients == ["info@shop.example", "praxis@example.com"]
    assert recipients_of(SHOP.split(b"\r\n\r\n")[0]) == {"info@shop.example", "praxis@example.com"}


def test_recipients_of_every_recipient_header():
    block = (
        b"To: undisclosed-recipients:;\r\nDelivered-To: praxis@example.com\r\n"
        b"X-Original-To: Ops <OPS@example.com>\r\nEnvelope-To: e@example.com\r\n"
        b"Bcc: hidden@example.com\r\nFrom: f@example.com\r\n"
    )
    assert recipients_of(block) == {"praxis@example.com", "ops@example.com", "e@example.com"}


def test_recipients_of_imap_header_fields_response():
    """IMAP BODY.PEEK[HEADER.FIELDS (...)]: only those lines, ended by an empty line."""
    assert recipients_of(b"To: John john@example.com\r\nCc: \xff\xfe <c@x.de>\r\n\r\n") == {
        "john@example.com",
        "c@x.de",
    }


def test_recipients_of_garbage_never_raises():
    for block in (b"", b"\r\n", b":\r\n", b" folded first\r\nTo: a@b.c\r\n", b"\x00" * 1000):
        assert isinstance(recipients_of(block), set)
    assert recipients_of(b" folded first\r\nTo: a@b.c\r\n") == {"a@b.c"}


def test_sender_from_a_bare_name_and_address():
    parsed = parse(b"From: John john@example.com\r\nTo: x@y.z\r\n\r\nhi\r\n")
    assert parsed.sender == "john@example.com"
    assert "no valid address in From" not in parsed.defects
