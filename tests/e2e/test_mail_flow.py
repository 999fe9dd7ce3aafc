"""End-to-end mail flows through the running stack, submitted over SMTP like any sender would."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from stackcheck.mailflow import EICAR, PROFILES, zipped
from stackcheck.waits import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.needs("mailpit", "praxis-mailer", "ecom-mailer")]

PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]"
    b"/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


@pytest.mark.req("T6")
def test_praxis_mailer_logs_service_running(stack):
    logs = stack.service("praxis-mailer").logs()
    assert '"msg": "Service running"' in logs or "Service running" in logs, logs[-2000:]


@pytest.mark.req("E1", "SLA-P2", "O1")
def test_praxis_mail_flow(stack, mail, praxis_db, ollama, sla):
    """Fetched, logged as "Processing email: <external_id>", stored once, classified by Ollama
    ("Ollama response"), counted in emails_processed_total."""
    before = stack.service("praxis-mailer").metric(
        "emails_processed_total",
        {"profile": "praxis", "status": "processed"},
    )
    sent = mail.mail(
        PROFILES["praxis"],
        "Terminanfrage",
        "Guten Tag, ich brauche einen Termin für nächste Woche wegen meines Rezepts.",
    )
    row, took = praxis_db.wait_stored(sent, timeout=sla.threshold("SLA-P2").value)
    rows = praxis_db.rows(sent.message_id)
    assert len(rows) == 1, f"stored {len(rows)} times"
    logs = stack.service("praxis-mailer").logs(tail=500)
    assert f"Processing email: {row['external_id']}" in logs
    assert row["ai_source"] == "ollama" and row["status"] == "processed", row
    assert "Ollama response" in logs
    after = stack.service("praxis-mailer").metric(
        "emails_processed_total",
        {"profile": "praxis", "status": "processed"},
    )
    assert after >= before + 1, (before, after)
    where = "the Ollama double" if ollama else "the real Ollama"
    sla.check("SLA-P2", took, how=f"SMTP submission to committed row, one mail, AI by {where}")
    sla.record(
        "E1",
        took,
        unit="s",
        how=f"external_id {row['external_id']}, category "
        f"{row['category']}, emails_processed_total {before:g} -> {after:g}",
    )


@pytest.mark.req("E1", "T7")
def test_mail_flow_through_mailpit_send_api(stack, ecom_db, sla):
    """The review's E1 as written: a mail injected with Mailpit's send API; the ID the API
    returns is the id the mailer logs ("Processing email: <ID>") and stores as external_id. Sent
    to the ecom mailer, which reads POP3, where Mailpit's UIDL is that ID."""
    with stack.service("mailpit").api() as http:
        res = http.post(
            "/api/v1/send",
            json={
                "From": {"Email": "test@example.com", "Name": "Test"},
                "To": [{"Email": PROFILES["ecom"]}],
                "Subject": "Test Kunde Anfrage",
                "Text": "Where is my order 4711?",
            },
        )
        refused = http.post("/api/v1/send", json={"To": [{"Email": PROFILES["ecom"]}]})
    assert res.status_code == 200, res.text
    assert refused.status_code == 400, f"a send without From was accepted: {refused.text}"
    mail_id = res.json()["ID"]
    start = time.monotonic()
    rows, _ = wait_for(
        lambda: ecom_db.query("SELECT id FROM emails WHERE external_id = %s", (mail_id,)),
        timeout=sla.threshold("SLA-P2").value,
        interval=0.1,
        what=f"mail {mail_id} stored by the ecom mailer",
    )
    took = time.monotonic() - start
    assert len(rows) == 1, f"stored {len(rows)} times"
    logs = stack.service("ecom-mailer").logs(tail=500)
    assert f"Processing email: {mail_id}" in logs
    sla.record(
        "E1",
        took,
        unit="s",
        how=f"POST /api/v1/send -> ID {mail_id} -> ecom-mailer over POP3: logged and stored "
        "under that external_id",
    )


@pytest.mark.req("E2", "A1", "A3", "A4", "A5")
def test_attachment_flow_clean_pdf_and_eicar(stack, mail, ecom_db, sla):
    infected_before = stack.service("ecom-mailer").metric(
        "attachments_infected_total", {"profile": "ecom"}
    )
    clean = mail.mail(
        PROFILES["ecom"],
        "Order 4711 with invoice",
        "Invoice attached.",
        sender="customer@example.org",
        attachments=[("invoice.pdf", PDF, "application/pdf")],
    )
    dirty = mail.mail(
        PROFILES["ecom"],
        "Rechnung",
        "Siehe Anhang.",
        sender="x@example.org",
        attachments=[
            ("eicar.txt", EICAR, "text/plain"),
            ("eicar.zip", zipped({"eicar.com": EICAR}), "application/zip"),
        ],
    )
    row, _ = ecom_db.wait_stored(clean, timeout=60)
    atts = ecom_db.query(
        "SELECT filename, kind, virus_scan_status, storage_path FROM attachments "
        "WHERE email_id = %s ORDER BY position",
        (row["id"],),
    )
    assert [(a[0], a[1], a[2]) for a in atts] == [("invoice.pdf", "pdf", "clean")], atts
    path = atts[0][3]
    year, month = time.strftime("%Y"), time.strftime("%m")
    assert path.startswith(f"attachments/{year}/{month}/") and path.endswith("/invoice.pdf")
    res = stack.service("ecom-mailer").exec(["sha256sum", f"/app/data/{path}"])
    import hashlib

    assert res.exit_code == 0 and hashlib.sha256(PDF).hexdigest() in res.output, res.output

    drow, _ = ecom_db.wait_stored(dirty, timeout=60)
    datts = ecom_db.query(
        "SELECT filename, virus_scan_status, virus_signature, storage_path "
        "FROM attachments WHERE email_id = %s ORDER BY position",
        (drow["id"],),
    )
    assert [a[1] for a in datts] == ["infected", "infected"], datts
    for _name, _status, signature, qpath in datts:
        assert signature, "no signature recorded"
        assert qpath.startswith("quarantine/"), qpath
        assert (
            stack.service("ecom-mailer").exec(["test", "-f", f"/app/data/{qpath}"]).exit_code == 0
        )
    infected_after = stack.service("ecom-mailer").metric(
        "attachments_infected_total", {"profile": "ecom"}
    )
    assert infected_after >= infected_before + 2
    sla.record("A1", path, how="storage_path of the clean PDF; the file's sha256 checked inside")
    sla.record(
        "A4",
        f"3 of 3 attachments scanned: 1 clean, 2 infected ({datts[0][2]})",
        how="clamd INSTREAM from the ecom mailer; rows in attachments.virus_scan_status",
    )
    sla.record(
        "A5",
        f"{len(datts)} files in quarantine/, signature recorded, attachments_infected_total "
        f"{infected_before:g} -> {infected_after:g}",
        how="EICAR plain and zipped; the counter feeds the InfectedAttachment alert",
    )
    sla.record(
        "E2",
        f"pdf clean at {path}; EICAR plain and zipped quarantined ({datts[0][2]})",
        how="SMTP with attachments; rows in ecom.attachments, files checked in the "
        "container, attachments_infected_total for the alert",
    )


def ooxml(folder: str, content_type: str) -> bytes:
    """The smallest zip a docx (folder "word") or xlsx ("xl") is recognised as, by content."""
    types = (
        '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
        f'content-types"><Override PartName="/{folder}/main.xml" ContentType="{content_type}"/>'
        "</Types>"
    )
    return zipped({"[Content_Types].xml": types.encode(), f"{folder}/main.xml": b"<x/>"})


@pytest.mark.req("A3")
def test_attachment_types_decided_by_content(stack, mail, ecom_db, sla):
    """The allowed kinds are stored whatever their name says; a file whose name promises an
    allowed kind its content is not, a macro document and a type outside the list are refused
    with their reason and counted; the mail itself is stored."""
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 20
    jpg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20
    docx_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
    xlsx_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
    docm_type = "application/vnd.ms-word.document.macroEnabled.main+xml"
    files = [
        ("scan.png", png, "image/png", "png", None),
        ("photo", jpg, "application/octet-stream", "jpg", None),  # no name extension
        ("letter.docx", ooxml("word", docx_type), "application/octet-stream", "docx", None),
        ("sheet.xlsx", ooxml("xl", xlsx_type), "application/octet-stream", "xlsx", None),
        ("invoice.pdf", png, "application/pdf", None, "name says .pdf but content is png"),
        ("setup.pdf", b"MZ\x90\x00" + b"\x00" * 60, "application/pdf", None, "type not allowed"),
        ("macro.docx", ooxml("word", docm_type), "application/octet-stream", None, "type not"),
        ("notes.txt", b"just text\n", "application/octet-stream", None, "type not allowed"),
    ]
    sent = mail.mail(
        PROFILES["ecom"],
        "Documents",
        "Eight files attached.",
        sender="types@example.org",
        attachments=[(name, data, ctype) for name, data, ctype, _, _ in files],
    )
    row, _ = ecom_db.wait_stored(sent, timeout=60)
    got = ecom_db.query(
        "SELECT filename, kind, virus_scan_status, refused_reason, storage_path "
        "FROM attachments WHERE email_id = %s ORDER BY position",
        (row["id"],),
    )
    assert len(got) == len(files), got
    for (name, _data, _ctype, kind, refusal), (fname, gkind, status, reason, stored) in zip(
        files, got, strict=True
    ):
        where = f"{name}: {gkind}, {status}, {reason}"
        if kind is not None:
            assert status == "clean" and gkind == kind and stored, where
            assert fname.startswith(name), where
        else:
            assert status == "refused" and reason and reason.startswith(refusal), where
            assert stored is None, where
    refused = [f"{g[0]} ({g[3]})" for g in got if g[2] == "refused"]
    sla.record(
        "A3",
        f"{len(got) - len(refused)} of {len(got)} accepted by content (png, jpg without an "
        f"extension, docx, xlsx); refused: {'; '.join(refused)}",
        how="one mail with eight attachments to the ecom mailer; rows in ecom.attachments",
    )


@pytest.mark.req("E4", "SLA-P3")
@pytest.mark.alone  # the burst's queue depth and timeline are measured
def test_fifty_mails_at_once(stack, mail, praxis_db, sla):
    limit = sla.threshold("E4").value
    msgs = [
        mail.build(
            PROFILES["praxis"],
            f"Lasttest {i}",
            f"Lasttest Nachricht {i}",
            sender=f"load-test-{i}@example.org",
        )
        for i in range(50)
    ]
    db_start = praxis_db.query("SELECT extract(epoch FROM clock_timestamp())")[0][0]
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=10) as pool:
        sent = list(pool.map(mail.send, msgs))
    submitted = time.monotonic() - start
    ids = [s.message_id for s in sent]
    peak_depth = 0.0

    def count() -> int:
        nonlocal peak_depth
        peak_depth = max(
            peak_depth,
            stack.service("praxis-mailer").metric("email_queue_depth", {"profile": "praxis"}),
        )
        return praxis_db.query("SELECT count(*) FROM emails WHERE message_id = ANY(%s)", (ids,))[0][
            0
        ]

    n, _ = wait_for(
        count, timeout=limit, interval=0.5, ok=lambda c: c >= 50, what="50 mails stored"
    )
    took = time.monotonic() - start
    per_id = praxis_db.query(
        "SELECT message_id, count(*) FROM emails WHERE message_id = ANY(%s) "
        "GROUP BY message_id HAVING count(*) > 1",
        (ids,),
    )
    assert not per_id, f"stored twice: {per_id}"
    assert n == 50
    sla.check(
        "E4",
        took,
        how=f"50 mails over 10 SMTP connections (submitted in "
        f"{submitted:.1f} s) until all 50 rows committed; none duplicated",
    )
    sla.check("SLA-P3", peak_depth, how="peak email_queue_depth seen during the 50-mail burst")
    stored_at = praxis_db.query(
        "SELECT extract(epoch FROM received_at) - %s FROM emails WHERE message_id = ANY(%s)",
        (db_start, ids),
    )
    sla.samples(
        "E4",
        sorted(float(s.at - start) for s in sent),
        kind="timeline",
        how="each mail's SMTP submission completed, seconds after the burst started",
    )
    sla.samples(
        "E4",
        sorted(float(r[0]) for r in stored_at),
        kind="timeline",
        how="each mail's row committed (database clock), seconds after the burst started",
    )
