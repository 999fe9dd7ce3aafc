"""mailer.attachments: safe names, type by content, the accept/refuse policy, storage paths."""

import io
import unicodedata
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailer.attachments import (
    ALLOWED_KINDS,
    Decision,
    decide,
    detect_kind,
    quarantine_path,
    sanitize_filename,
    sanitize_key,
    sniff,
    storage_path,
)

pytestmark = pytest.mark.unit

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 20
JPG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20
EXE = b"MZ\x90\x00" + b"\x00" * 60
MB = 1024 * 1024


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


CT = (
    b'<?xml version="1.0"?>'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'
)
DOCX = make_zip({"[Content_Types].xml": CT, "word/document.xml": b"<w:document/>"})
XLSX = make_zip({"[Content_Types].xml": CT, "xl/workbook.xml": b"<workbook/>"})


# --- sanitize_filename ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Befund.pdf", "Befund.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/abs/path.pdf", "path.pdf"),
        ("C:\\Users\\x\\Rechnung.pdf", "Rechnung.pdf"),
        ("dir/", "dir"),
        ("a\x00b.pdf", "ab.pdf"),
        ("evil\x01\x1b[31mname\x7f.pdf", "evil[31mname.pdf"),
        ("tab\tand\nnewline.pdf", "tabandnewline.pdf"),
        ("Rechnung\u202efdp.exe", "Rechnungfdp.exe"),  # right-to-left override removed
        ("zero\u200bwidth.pdf", "zerowidth.pdf"),
        (".htaccess", "htaccess"),
        ("...pdf", "pdf"),
        ("report..final.pdf", "report.final.pdf"),
        ("trailing dots...", "trailing dots"),
        ("  spaced   out  .pdf", "spaced out .pdf"),
        ('a<b>c:d"e|f?g*h.pdf', "a_b_c_d_e_f_g_h.pdf"),
        ("CON.pdf", "_CON.pdf"),
        ("nul", "_nul"),
        ("lpt1.txt", "_lpt1.txt"),
        ("Befund_Mu\u0308ller.pdf", "Befund_Müller.pdf"),  # NFD -> NFC
        ("non\u00a0breaking.pdf", "non breaking.pdf"),
    ],
)
def test_sanitize_filename(name, expected):
    assert sanitize_filename(name) == expected


@pytest.mark.parametrize(
    "name", [None, "", ".", "..", "...", "/", "\\", "../..", " . ", "\x00\x01"]
)
def test_sanitize_filename_falls_back(name):
    assert sanitize_filename(name) == "attachment"
    assert sanitize_filename(name, fallback="scan.pdf") == "scan.pdf"


def test_sanitize_filename_fallback_is_sanitised_too():
    assert sanitize_filename(None, fallback="../x.pdf") == "x.pdf"
    assert sanitize_filename(None, fallback="..") == "attachment"


def test_sanitize_filename_truncates_to_200_bytes_keeping_extension():
    name = "ä" * 300 + ".pdf"  # 2 bytes per ä
    out = sanitize_filename(name)
    assert out.endswith(".pdf")
    assert len(out.encode("utf-8")) <= 200
    assert out == "ä" * 98 + ".pdf"  # 196 + 4 bytes


def test_sanitize_filename_truncation_never_splits_a_character():
    out = sanitize_filename("a" + "€" * 100 + ".xlsx")  # € is 3 bytes
    out.encode("utf-8").decode("utf-8")  # valid UTF-8
    assert len(out.encode("utf-8")) <= 200
    assert out.endswith(".xlsx")


def test_sanitize_filename_long_name_without_extension():
    out = sanitize_filename("x" * 500)
    assert out == "x" * 200


def test_sanitize_filename_long_fake_extension_is_part_of_the_name():
    out = sanitize_filename("a." + "b" * 400)
    assert len(out.encode("utf-8")) <= 200
    assert out.startswith("a.bbb")


NASTY = [
    "../../etc/passwd",
    "..\\..\\boot.ini",
    "/abs/path.pdf",
    "a\x00b/../c.pdf",
    "." * 7,
    "x" * 300 + ".docx",
    "ä" * 150,
    "CON",
    " .hidden. ",
    "a/b\\c/..\\..\\d",
    "\u202e\u200b",
    "Befund_Müller.pdf",
    "a" + "é" * 120 + ".tar.gz",
]


@pytest.mark.parametrize("name", NASTY)
def test_sanitize_filename_invariants(name):
    out = sanitize_filename(name)
    assert out and out not in (".", "..")
    assert "/" not in out and "\\" not in out
    assert ".." not in out
    assert not out.startswith(".")
    assert all(unicodedata.category(c)[0] != "C" for c in out)
    assert len(out.encode("utf-8")) <= 200
    assert unicodedata.is_normalized("NFC", out)
    assert sanitize_filename(out) == out  # idempotent


def test_sanitize_key_keeps_safe_ids_and_disambiguates_changed_ones():
    assert sanitize_key("order-4711@customer.example") == "order-4711@customer.example"
    a, b = sanitize_key("a/b@x"), sanitize_key("a_b@x")
    assert a != b
    assert "/" not in a and a.startswith("a_b@x-")
    assert sanitize_key("a_b@x") == "a_b@x"
    long = sanitize_key("k" * 500)
    assert len(long.encode()) <= 200
    assert long != sanitize_key("k" * 499)
    assert sanitize_key("..").startswith("key-")
    with pytest.raises(ValueError):
        sanitize_key("")


# --- detect_kind / sniff ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (PDF, "pdf"),
        (PNG, "png"),
        (JPG, "jpg"),
        (DOCX, "docx"),
        (XLSX, "xlsx"),
        (b"", None),
        (b"%PDF", None),  # too short for the signature
        (b" %PDF-1.4", None),  # must be at the start
        (b"\x89PNG\r\n", None),
        (b"\xff\xd8", None),
        (EXE, None),
        (b"GIF89a....", None),
        (b"hello world", None),
        (make_zip({"readme.txt": b"hi"}), None),  # a plain zip is not docx
        (make_zip({"word/document.xml": b"x"}), None),  # no [Content_Types].xml
        (make_zip({"[Content_Types].xml": CT}), None),  # neither word/ nor xl/
        (make_zip({"[Content_Types].xml": CT, "word/a.xml": b"", "xl/b.xml": b""}), None),
        (b"PK\x03\x04garbage that is no zip", None),
    ],
)
def test_detect_kind(data, kind):
    assert detect_kind(data) == kind


def test_detect_kind_refuses_macro_enabled_office_files():
    macro = b"application/vnd.ms-word.document.macroEnabled.main+xml"
    docm_ct = CT.replace(b"/>", b"><Override ContentType='" + macro + b"'/></Types>")
    docm = make_zip({"[Content_Types].xml": docm_ct, "word/document.xml": b"x"})
    xlsm = make_zip({"[Content_Types].xml": CT, "xl/workbook.xml": b"x", "xl/vbaProject.bin": b"x"})
    assert detect_kind(docm) is None and sniff(docm) == "docm"
    assert detect_kind(xlsm) is None and sniff(xlsm) == "xlsm"


@pytest.mark.parametrize(
    ("data", "label"),
    [
        (b"", "empty"),
        (EXE, "exe"),
        (b"\x7fELF\x02\x01", "elf"),
        (make_zip({"a.txt": b"a"}), "zip"),
        (b"GIF87a", "gif"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"),
        (b"just text", "unknown"),
    ],
)
def test_sniff_labels(data, label):
    assert sniff(data) == label


def test_allowed_kinds():
    assert ALLOWED_KINDS == ("pdf", "png", "jpg", "docx", "xlsx", "calendar")


ICS = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//y//EN\r\nEND:VCALENDAR\r\n"


@pytest.mark.parametrize(
    "data",
    [ICS, b"\xef\xbb\xbf" + ICS, b"\r\n  " + ICS, ICS.lower(), ICS.replace(b"\r\n", b"\n")],
)
def test_calendar_detected_by_content(data):
    """Issue 10: calendar invites were nameless refused attachments; they are a kind of their
    own, accepted whatever the name, refused when a .ics name holds something else."""
    assert sniff(data) == "calendar"
    assert detect_kind(data) == "calendar"
    assert decide("invite.ics", data, 1000) == Decision(True, "calendar", None)
    assert decide("Einladung", data, 1000) == Decision(True, "calendar", None)
    assert decide("invite.pdf", data, 1000).accepted is False


@pytest.mark.parametrize(
    "data", [b"BEGIN:VCALENDARX\r\n", b"X BEGIN:VCALENDAR\r\n", b"BEGIN:VCARD\r\n", b"BEGIN"]
)
def test_not_calendar(data):
    assert sniff(data) != "calendar"


def test_ics_name_with_other_content_is_refused():
    assert decide("invite.ics", EXE, 1000) == Decision(False, None, "type not allowed: exe")
    assert decide("invite.ics", PDF, 10_000) == Decision(
        False, "pdf", "name says .ics but content is pdf"
    )


def test_calendar_on_disk(tmp_path):
    path = tmp_path / "big.ics"
    path.write_bytes(ICS + b"X-PAD:" + b"a" * 100_000 + b"\r\n")
    assert detect_kind(path) == "calendar"


# --- decide -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("filename", "data", "expected"),
    [
        ("Rechnung.pdf", PDF, Decision(True, "pdf", None)),
        ("RECHNUNG.PDF", PDF, Decision(True, "pdf", None)),
        ("photo.jpeg", JPG, Decision(True, "jpg", None)),
        ("photo.JPG", JPG, Decision(True, "jpg", None)),
        ("scan.png", PNG, Decision(True, "png", None)),
        ("Bestellung.docx", DOCX, Decision(True, "docx", None)),
        ("Liste.xlsx", XLSX, Decision(True, "xlsx", None)),
        # another or no extension, allowed content: accepted by content
        ("scan", PDF, Decision(True, "pdf", None)),
        ("scan.dat", PNG, Decision(True, "png", None)),
        ("export.bin", XLSX, Decision(True, "xlsx", None)),
        # the name promises an allowed kind the content is not
        ("invoice.pdf", PNG, Decision(False, "png", "name says .pdf but content is png")),
        ("photo.jpg", PNG, Decision(False, "png", "name says .jpg but content is png")),
        ("report.docx", XLSX, Decision(False, "xlsx", "name says .docx but content is xlsx")),
        ("image.PNG", PDF, Decision(False, "pdf", "name says .png but content is pdf")),
        # content not allowed, whatever the name
        ("invoice.pdf", EXE, Decision(False, None, "type not allowed: exe")),
        ("tool.exe", EXE, Decision(False, None, "type not allowed: exe")),
        ("archive.zip", make_zip({"a": b"a"}), Decision(False, None, "type not allowed: zip")),
        ("report.docx", make_zip({"a": b"a"}), Decision(False, None, "type not allowed: zip")),
        ("eicar.txt", b"X5O!P%@AP", Decision(False, None, "type not allowed: unknown")),
        ("empty.pdf", b"", Decision(False, None, "type not allowed: empty")),
    ],
)
def test_decide(filename, data, expected):
    assert decide(filename, data, 50 * MB) == expected


def test_decide_size_limit_is_inclusive():
    limit = 1000
    at = PDF + b"\0" * (limit - len(PDF))
    over = at + b"\0"
    assert decide("a.pdf", at, limit).accepted
    refused = decide("a.pdf", over, limit)
    assert refused == Decision(False, "pdf", "too large: 1001 bytes > 1000")


def test_decide_reports_size_before_type():
    assert decide("x.exe", EXE * 100, 10).reason == f"too large: {len(EXE) * 100} bytes > 10"


def test_decide_50_mb_message_matches_the_documented_wording():
    data = PDF + b"\0" * (50 * MB + 1 - len(PDF))
    assert decide("big.pdf", data, 50 * MB).reason == "too large: 52428801 bytes > 52428800"


# --- paths ------------------------------------------------------------------------------------
def test_storage_path_layout(tmp_path):
    received = datetime(2024, 3, 4, 9, 15, tzinfo=UTC)
    path = storage_path(tmp_path, received, "order-4711@customer.example", "Rechnung.pdf")
    assert path == tmp_path / "attachments/2024/03/order-4711@customer.example/Rechnung.pdf"


def test_storage_path_uses_utc_month(tmp_path):
    # 00:30 on 1 April in Berlin is still March in UTC
    received = datetime(2024, 4, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    path = storage_path(tmp_path, received, "k", "a.pdf")
    assert path.relative_to(tmp_path).parts[:3] == ("attachments", "2024", "03")


def test_storage_path_naive_datetime_taken_as_is(tmp_path):
    path = storage_path(tmp_path, datetime(2025, 12, 31, 23, 59), "k", "a.pdf")
    assert path.relative_to(tmp_path).parts[:3] == ("attachments", "2025", "12")


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("../../..", "../../etc/passwd"),
        ("/etc", "/etc/shadow"),
        ("a/../../b", "..\\..\\x"),
        ("..", ".."),
        ("<id@x>", "C:\\x.pdf"),
    ],
)
def test_paths_stay_inside_root(tmp_path, key, name):
    root = tmp_path / "data"
    for path in (
        storage_path(root, datetime(2024, 1, 1, tzinfo=UTC), key, name),
        quarantine_path(root, key, name),
    ):
        resolved = path.resolve()
        assert resolved.is_relative_to(root.resolve())
        assert resolved != root.resolve()
        assert path.parent.parent.parent in (root / "attachments" / "2024", root)


def test_quarantine_path_layout():
    root = Path("/app/data")
    assert quarantine_path(root, "eicar-txt@example.org", "eicar.txt") == Path(
        "/app/data/quarantine/eicar-txt@example.org/eicar.txt"
    )


def test_quarantine_key_is_sanitised():
    path = quarantine_path(Path("/app/data"), "a/b", "x.pdf")
    assert path.parent.parent == Path("/app/data/quarantine")
    assert "/" not in path.parent.name
