"""RW2/RW3: hostile and merely unusual mail against the running stack. Each case is one that
stalled, dropped, overwrote or crashed something before (issue 10); each ends with the mailer
healthy and an ordinary mail sent after it stored, so nothing stalls behind it.

Mail is submitted as bytes (`MailClient.send_raw`), never re-serialised by the email package,
so the server and the mailers see exactly the hostile shape.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import pytest

from stackcheck.mailflow import PROFILES
from stackcheck.waits import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.alone,  # floods and 100 kB lines load the mailers; others' timings would suffer
    pytest.mark.needs("mailpit", "postgres", "praxis-mailer", "ecom-mailer", "clamav"),
]

MAILERS = {"praxis": "praxis-mailer", "ecom": "ecom-mailer"}
TIMEOUT = 60  # s: a mail through fetch, queue, scan and commit, with room for a slow CI


def mid() -> str:
    return f"hostile-{uuid.uuid4().hex[:16]}@stackcheck.test"


def raw_mail(to: str, message_id: str, headers: str = "", body: bytes = b"Hallo.\r\n", *,
             content_type: str = "text/plain; charset=utf-8") -> bytes:  # fmt: skip
    head = (
        f"From: Sender <sender@example.org>\r\nTo: {to}\r\nSubject: hostile case\r\n"
        f"Message-ID: <{message_id}>\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n{headers}"
    )
    return head.encode("utf-8", "surrogateescape") + b"\r\n" + body


def db_of(profile, praxis_db, ecom_db):
    return praxis_db if profile == "praxis" else ecom_db


def stored(db, message_id: str, timeout: float = TIMEOUT) -> dict:
    rows, _ = wait_for(
        lambda: db.rows(message_id), timeout=timeout, interval=0.2, what=f"mail <{message_id}>"
    )
    assert len(rows) == 1, rows
    return rows[0]


def still_flowing(stack, mail, db, profile: str, before: tuple[int, bool]) -> None:
    """The mailer did not restart and an ordinary mail after the hostile one is stored."""
    m = mid()
    mail.send_raw(PROFILES[profile], raw_mail(PROFILES[profile], m))
    stored(db, m)
    assert stack.service(MAILERS[profile]).restarts() == before, (
        "the mailer restarted or was OOM-killed"
    )
    assert stack.service(MAILERS[profile]).health() == "healthy"


@pytest.mark.req("RW2")
@pytest.mark.parametrize("profile", ["ecom", "praxis"])  # POP3 and (offline) IMAP
@pytest.mark.parametrize("length", [2_048, 3_000, 100_000])
def test_a_long_header_line_does_not_stall_the_mailbox(stack, mail, praxis_db, ecom_db, profile,
                                                       length):  # fmt: skip
    """Case 1: one 3,000-byte header line made every POP3 poll fail ('line too long') forever."""
    db = db_of(profile, praxis_db, ecom_db)
    before = stack.service(MAILERS[profile]).restarts()
    m = mid()
    mail.send_raw(PROFILES[profile], raw_mail(PROFILES[profile], m, f"X-Long: {'a' * length}\r\n"))
    stored(db, m)
    still_flowing(stack, mail, db, profile, before)


@pytest.mark.req("RW2")
def test_a_display_name_that_is_an_address_is_still_ours(stack, mail, praxis_db, ecom_db):
    """Case 2: `To: info@shop.example <info@shop.example>` beside `Cc: praxis@...` emptied the
    whole recipient list on the image's Python: the mail was never fetched, nothing said so."""
    before = stack.service("praxis-mailer").restarts()
    m = mid()
    headers = f"Cc: {PROFILES['praxis']}\r\n"
    data = raw_mail("info@shop.example <info@shop.example>", m, headers)
    data = data.replace(
        b"From: Sender <sender@example.org>",
        b"From: patient@example.org <patient@example.org>",
    )
    mail.send_raw(PROFILES["praxis"], data)
    row = stored(praxis_db, m)
    assert row["sender"] == "patient@example.org", row["sender"]
    assert PROFILES["praxis"] in row["recipients"], row["recipients"]
    still_flowing(stack, mail, praxis_db, "praxis", before)


def _pdf(tag: bytes) -> bytes:
    return (
        b"%PDF-1.4\n% " + tag + b"\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )


def _with_pdf(to: str, message_id: str, pdf: bytes) -> bytes:
    import base64

    b = "stackcheck-boundary"
    body = (
        f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAnbei die Rechnung.\r\n"
        f"--{b}\r\nContent-Type: application/pdf\r\n"
        f'Content-Disposition: attachment; filename="rechnung.pdf"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{base64.encodebytes(pdf).decode()}\r\n"
        f"--{b}--\r\n"
    ).encode()
    return raw_mail(to, message_id, body=body, content_type=f'multipart/mixed; boundary="{b}"')


@pytest.mark.req("RW2", "A1")
def test_a_reused_message_id_never_replaces_the_stored_attachment(stack, mail, ecom_db):
    """Case 3: the second mail's rechnung.pdf was written over the first's before the duplicate
    check: the stored first mail then pointed at the second mail's bytes."""
    before = stack.service("ecom-mailer").restarts()
    m = mid()
    first, second = _pdf(b"the real invoice"), _pdf(b"a forged invoice")
    mail.send_raw(PROFILES["ecom"], _with_pdf(PROFILES["ecom"], m, first))
    row = stored(ecom_db, m)
    mail.send_raw(PROFILES["ecom"], _with_pdf(PROFILES["ecom"], m, second))
    wait_for(
        lambda: ecom_db.query("SELECT count(*) FROM duplicates WHERE message_id = %s", (m,))[0][0],
        timeout=TIMEOUT,
        interval=0.2,
        what="the second mail recorded as a duplicate",
    )
    (path, sha), *_ = ecom_db.query(
        "SELECT storage_path, sha256 FROM attachments WHERE email_id = %s", (row["id"],)
    )
    assert sha == hashlib.sha256(first).hexdigest()
    res = stack.service("ecom-mailer").exec(["sha256sum", f"/app/data/{path}"])
    assert res.exit_code == 0, res.output
    assert res.output.split()[0] == sha, "the stored file no longer holds the first mail's bytes"
    listing = stack.service("ecom-mailer").exec(
        ["sh", "-c", f'ls -1 "$(dirname "/app/data/{path}")"']
    )
    assert listing.output.split() == ["rechnung.pdf"], listing.output  # nothing else written
    still_flowing(stack, mail, ecom_db, "ecom", before)


FLOODS = {
    # a Content-Type parameter run of 400 KB cost 14 s and 1.2 GB: OOM on every delivery
    "parameter flood": lambda to, m: raw_mail(
        to, m, content_type="text/plain; " + "; ".join(f"p{i}=v{i}" for i in range(40_000))
    ),
    "disposition flood": lambda to, m: raw_mail(
        to, m, "Content-Disposition: attachment; " + "x=" * 200_000 + "\r\n"
    ),
    "200 nested multiparts": lambda to, m: raw_mail(
        to,
        m,
        body=b"".join(
            f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n'.encode()
            for i in range(200)
        )
        + b"--b200\r\nContent-Type: text/plain\r\n\r\ndeep\r\n--b200--\r\n",
        content_type='multipart/mixed; boundary="b0"',
    ),
    "200 nested message/rfc822": lambda to, m: raw_mail(
        to,
        m,
        body=b"Content-Type: message/rfc822\r\n\r\n" * 200 + b"Subject: inner\r\n\r\ndeep\r\n",
        content_type="message/rfc822",
    ),
    "10,000 parts": lambda to, m: raw_mail(
        to,
        m,
        body=b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(10_000))
        + b"--p--\r\n",
        content_type='multipart/mixed; boundary="p"',
    ),
    "1,000 headers": lambda to, m: raw_mail(
        to, m, "".join(f"X-H{i}: {'v' * 60}\r\n" for i in range(1_000))
    ),
    "one 1 MB body line": lambda to, m: raw_mail(to, m, body=b"z" * 1_000_000 + b"\r\n"),
    "NUL bytes and bare CR": lambda to, m: raw_mail(to, m, body=b"a\x00b\rc\r\n\x00\r\n"),
}


@pytest.mark.req("RW2")
@pytest.mark.parametrize("case", list(FLOODS))
def test_hostile_structure_is_stored_and_flagged_not_fatal(stack, mail, ecom_db, case, sla):
    """Case 6 and the limits: each shape is kept (stored, with defects where it broke a rule),
    in bounded time, the worker stays under its memory limit, the next mail flows."""
    before = stack.service("ecom-mailer").restarts()
    m = mid()
    t0 = time.monotonic()
    mail.send_raw(PROFILES["ecom"], FLOODS[case](PROFILES["ecom"], m))
    row = stored(ecom_db, m)
    took = time.monotonic() - t0
    assert row["status"] in ("processed", "processed_without_ai", "unprocessed"), row["status"]
    still_flowing(stack, mail, ecom_db, "ecom", before)
    rss = stack.service("ecom-mailer").peak_rss_mib()
    assert rss < 512, rss
    sla.record(
        "RW2",
        f"{case}: stored in {took:.1f} s, {len(row['defects'])} defects, peak RSS {rss:.0f} MiB",
        how="raw bytes over SMTP to ecom (POP3); then an ordinary mail stored; no restart",
    )


@pytest.mark.req("RW3")
@pytest.mark.parametrize("service", ["praxis-mailer", "ecom-mailer"])
def test_idle_peers_cannot_stall_readyz(stack, service, sla):
    """Case 4: one idle TCP connection held open to :8000 stalled the single-threaded server;
    three failed health checks then restarted the mailer. Here 20 idle connections are held
    from inside the container's network namespace while /readyz is asked."""
    before = stack.service(service).restarts()
    probe = r"""
import json, socket, time, urllib.request
idle = [socket.create_connection(("127.0.0.1", 8000), timeout=5) for _ in range(20)]
idle[0].sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")  # a request never finished
t0 = time.monotonic()
status = urllib.request.urlopen("http://127.0.0.1:8000/readyz", timeout=10).status
took = time.monotonic() - t0
t1 = time.monotonic()
metrics = urllib.request.urlopen("http://127.0.0.1:8000/metrics", timeout=10).status
print(json.dumps({"status": status, "took": took, "metrics": metrics,
                  "metrics_took": time.monotonic() - t1}))
"""
    res = stack.service(service).exec(["python3", "-c", probe])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output.strip().splitlines()[-1])
    assert got["status"] == 200 and got["metrics"] == 200, got
    sla.check(
        "RW3",
        max(got["took"], got["metrics_took"]),
        how=f"{service}: /readyz and /metrics while 20 idle connections (one with a half-sent "
        "request) are held open to :8000",
    )
    assert stack.service(service).restarts() == before
