"""Mail the size the review allows (A2: 50 MB per attachment) must not take a mailer down or be
lost. (A mailer killed in the middle of such a mail, and a mail that crashes processing again and
again: tests/e2e/test_faults.py.)

A 50 MB attachment is ~68 MB of base64 on the wire. The mailers (512 MB limit) spool such mail to
their data volume and parse it from there in bounded memory; these tests send it through the real
mail server to both mailers (POP3 for ecom, IMAP for praxis) and check the rows, the files, the
containers' restart counts and their peak memory.
"""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest

from stackcheck.mailflow import PROFILES, pdf_of_size

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.alone,  # 70 MB mails: peak RSS is measured, so no other mail may share the run
    pytest.mark.needs("mailpit", "praxis-mailer", "ecom-mailer"),
]

MIB = 1024 * 1024
MAILERS = {"praxis": "praxis-mailer", "ecom": "ecom-mailer"}


@pytest.mark.req("A2", "A4")
def test_attachment_size_limit_on_both_mailers(stack, mail, praxis_db, ecom_db, sla):
    """49 MiB is scanned and stored; 51 MiB is refused and recorded while its mail, a small
    attachment beside it and the raw bytes are kept. Both mailers, one submission each."""
    limit_mb = sla.threshold("A2").value
    limit = int(limit_mb * MIB)  # MAX_ATTACHMENT_MB counts MiB
    under, over = pdf_of_size(limit - MIB), pdf_of_size(limit + MIB)
    small = pdf_of_size(4096)
    before = {p: stack.service(s).restarts() for p, s in MAILERS.items()}
    refused_before = {
        p: stack.service(s).metric(
            "attachments_refused_total", {"profile": p, "reason": "too large"}
        )
        for p, s in MAILERS.items()
    }
    to_both = f"{PROFILES['praxis']}, {PROFILES['ecom']}"
    tag = uuid.uuid4().hex[:8]
    start = time.monotonic()
    sent_under = mail.mail(
        to_both,
        f"Scan {tag} (49 MiB)",
        "Befund im Anhang.",
        sender="labor@example.org",
        attachments=[("befund.pdf", under, "application/pdf")],
    )
    sent_over = mail.mail(
        to_both,
        f"Scan {tag} (51 MiB)",
        "Two files: one too large.",
        sender="labor@example.org",
        attachments=[
            ("huge.pdf", over, "application/pdf"),
            ("note.pdf", small, "application/pdf"),
        ],
    )
    submitted = time.monotonic() - start

    measured = {}
    for profile, db in (("ecom", ecom_db), ("praxis", praxis_db)):
        service = MAILERS[profile]
        row_under, _ = db.wait_stored(sent_under, timeout=300)
        row_over, _ = db.wait_stored(sent_over, timeout=300)
        took = time.monotonic() - start
        for row in (row_under, row_over):
            assert len(db.rows(row["message_id"])) == 1, "stored more than once"
            assert row["status"] in ("processed", "processed_without_ai"), row["status"]

        (a_under,) = db.query(
            "SELECT filename, kind, size_bytes, sha256, virus_scan_status, storage_path "
            "FROM attachments WHERE email_id = %s ORDER BY position",
            (row_under["id"],),
        )
        assert a_under[:5] == (
            "befund.pdf",
            "pdf",
            len(under),
            hashlib.sha256(under).hexdigest(),
            "clean",
        ), a_under[:5]
        res = stack.service(service).exec(["sha256sum", f"/app/data/{a_under[5]}"])
        assert res.exit_code == 0 and hashlib.sha256(under).hexdigest() in res.output, res.output

        atts = db.query(
            "SELECT filename, size_bytes, sha256, virus_scan_status, refused_reason, "
            "storage_path FROM attachments WHERE email_id = %s ORDER BY position",
            (row_over["id"],),
        )
        assert [(a[0], a[3]) for a in atts] == [("huge.pdf", "refused"), ("note.pdf", "clean")]
        huge = atts[0]
        assert huge[1] == len(over) and huge[2] == hashlib.sha256(over).hexdigest()
        assert huge[4].startswith("too large") and huge[5] is None, huge
        # the mail itself is not lost: its raw bytes are kept, with the refused file inside
        ((raw_path, raw_size),) = db.query(
            "SELECT raw_path, size_bytes FROM raw_messages WHERE email_id = %s",
            (row_over["id"],),
        )
        assert raw_path and raw_size > len(over), (raw_path, raw_size)
        res = stack.service(service).exec(["stat", "-c", "%s", f"/app/data/{raw_path}"])
        assert res.exit_code == 0 and int(res.output.strip()) == raw_size, res.output

        refused_after = stack.service(service).metric(
            "attachments_refused_total", {"profile": profile, "reason": "too large"}
        )
        assert refused_after >= refused_before[profile] + 1
        count, oom = stack.service(service).restarts()
        assert (count, oom) == (before[profile][0], False), (
            f"{service} restarted or was OOM-killed while handling the large mails"
        )
        measured[profile] = (took, stack.service(service).peak_rss_mib())

    how = "; ".join(
        f"{MAILERS[p]}: both stored {t:.0f} s after submission, peak RSS {m:.0f} MiB of 512"
        for p, (t, m) in measured.items()
    )
    sla.record(
        "A2",
        f"{(limit - MIB) / MIB:g} MiB stored clean, {(limit + MIB) / MIB:g} MiB refused "
        "and recorded, mail and raw kept",
        how=f"two mails to both mailers over SMTP (submitted in {submitted:.1f} s); {how}; "
        "no restart, no OOM kill",
    )
