"""M7 on the running stack: the mailers' housekeeping is scheduled and ran at start; a run deletes
quarantined files past their retention (keeping the record), keeps what has no retention, and
container logs are capped by the logging options of every service."""

from __future__ import annotations

import json
import uuid

import pytest

from stackcheck.mailflow import EICAR, PROFILES

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.disrupts,  # deletes files in the mailers' volumes
    pytest.mark.needs("ecom-mailer", "clamav", "mailpit"),
]


@pytest.mark.req("M7")
def test_housekeeping_expires_quarantine_keeps_records_and_attachments(stack, mail, ecom_db, sla):
    svc = stack.service("ecom-mailer")
    assert "housekeeping scheduled" in svc.logs(), "no housekeeping schedule in the log"
    assert (
        stack.service("ecom-mailer").metric(
            "housekeeping_last_run_timestamp_seconds", {"profile": "ecom"}
        )
        > 0
    ), "the housekeeping did not run at start"

    sent = mail.mail(
        PROFILES["ecom"],
        "Old virus",
        "see attachment",
        sender="housekeeping@example.org",
        attachments=[("eicar.txt", EICAR, "text/plain")],
    )
    row, _ = ecom_db.wait_stored(sent, timeout=60)
    ((qpath, signature),) = ecom_db.query(
        "SELECT storage_path, virus_signature FROM attachments WHERE email_id = %s", (row["id"],)
    )
    tag = uuid.uuid4().hex[:8]
    fresh = f"quarantine/hk-{tag}/0-fresh.bin"
    kept = f"attachments/2000/01/hk-{tag}/old.pdf"  # no local retention set: stays
    script = (
        f"set -e; cd /app/data; touch -d '40 days ago' '{qpath}'; "
        f"mkdir -p $(dirname '{fresh}') $(dirname '{kept}'); echo x > '{fresh}'; "
        f"echo x > '{kept}'; touch -d '400 days ago' '{kept}'"
    )
    res = svc.exec(["sh", "-c", script])
    assert res.exit_code == 0, res.output

    res = svc.exec(["python3", "-m", "mailer", "housekeeping"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output.strip().splitlines()[-1])
    assert qpath in report["removed"]["quarantine"], report
    assert fresh not in report["removed"]["quarantine"] and "attachments" not in report["removed"]
    for path, exists in ((qpath, False), (fresh, True), (kept, True)):
        found = svc.exec(["test", "-f", f"/app/data/{path}"]).exit_code == 0
        assert found == exists, f"{path}: {'missing' if exists else 'still there'}"
    ((removed_at, sig_after),) = ecom_db.query(
        "SELECT file_removed_at, virus_signature FROM attachments WHERE email_id = %s",
        (row["id"],),
    )
    assert removed_at is not None and sig_after == signature, (removed_at, sig_after)
    svc.exec(["rm", "-rf", f"/app/data/quarantine/hk-{tag}", "/app/data/attachments/2000"])

    model = stack.compose.config()
    uncapped = [
        name
        for name, s in model["services"].items()
        if not {"max-size", "max-file"} <= set(((s.get("logging") or {}).get("options")) or {})
    ]
    assert not uncapped, f"container logs without size cap: {uncapped}"
    sla.record(
        "M7",
        f"quarantine older than 30 d deleted ({len(report['removed']['quarantine'])} file(s), "
        "record kept with file_removed_at); attachments kept (no local retention without an "
        "archive); logs capped (max-size, max-file) for every service",
        how="`python -m mailer housekeeping` in ecom-mailer (the same run the daily schedule "
        "makes; it also ran at start) on an aged EICAR quarantine file, a fresh one and an old "
        "attachment",
    )
