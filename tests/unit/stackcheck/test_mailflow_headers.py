"""stackcheck.mailflow reads a mailbox that holds mail the suite did not write (issue 10, case 7:
UnicodeDecodeError 'iso2022_jp' from a real-world Subject): nothing there may fail a test."""

from email.header import decode_header, make_header

import pytest

from stackcheck.mailflow import header_text
from stackcheck.services.mailserver import Pop3Reader

pytestmark = pytest.mark.unit

BROKEN_JIS = "=?iso-2022-jp?B?GyRCgYKDhBsoQg==?="  # bytes that are not ISO-2022-JP


def test_the_reported_failure_is_real():
    with pytest.raises(UnicodeDecodeError):
        str(make_header(decode_header(BROKEN_JIS)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=", "テスト"),
        ("Hello =?utf-8?q?W=C3=B6rld?=", "Hello Wörld"),
        ("[CRITICAL] plain", "[CRITICAL] plain"),
        ("=?x-no-such-charset?q?abc?=", "abc"),
        (None, ""),
    ],
)
def test_header_text_decodes(value, expected):
    assert header_text(value) == expected


@pytest.mark.parametrize(
    "value", [BROKEN_JIS, "=?utf-8?b?////?=", "=?iso-2022-jp?q?=1B=24=42=FF?= tail", "=?bad"]
)
def test_header_text_never_raises(value):
    assert isinstance(header_text(value), str)


def test_headers_look_only_at_matching_mail_and_skip_nothing_else():
    reader = Pop3Reader.__new__(Pop3Reader)  # no server: tops() is replaced
    tops = {
        "1": b"To: someone@example.org\r\nSubject: " + BROKEN_JIS.encode() + b"\r\n",
        "2": b"To: alerts@example.com\r\nSubject: [CRITICAL] probe\r\n",
        "3": b"To: alerts@example.com\r\nSubject: \xff\xfe raw 8-bit\r\n",
    }
    reader.tops = lambda *a, **k: tops
    got = [header_text(m["Subject"]) for m in reader.headers(contains=b"alerts@example.com")]
    assert got[0] == "[CRITICAL] probe"
    assert len(got) == 2 and isinstance(got[1], str)
    assert len(reader.headers()) == 3
