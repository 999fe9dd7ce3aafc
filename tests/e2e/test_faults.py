"""Faults during mail processing, each ending with every mail stored exactly once. Destructive
(kills, restarts, stops), so marked `recovery` and run last; each leaves the stack healthy."""

from __future__ import annotations

import hashlib
import math
import os
import signal
import time
import uuid

import pytest

from stackcheck.mailflow import PROFILES, pdf_of_size
from stackcheck.waits import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.recovery,
    pytest.mark.needs("mailpit", "praxis-mailer", "ecom-mailer"),
]

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


def burst(mail, profile: str, n: int, tag: str):
    msgs = [
        mail.build(
            PROFILES[profile],
            f"{tag} {i}",
            f"{tag} Nachricht {i}",
            sender=f"{tag.lower()}-{i}@example.org",
        )
        for i in range(n)
    ]
    return [mail.send(m) for m in msgs]


def stored_counts(db, sent) -> dict[str, int]:
    ids = [s.message_id for s in sent]
    rows = db.query(
        "SELECT message_id, count(*) FROM emails WHERE message_id = ANY(%s) GROUP BY message_id",
        (ids,),
    )
    return {mid: n for mid, n in rows}


def wait_all_once(db, sent, timeout: float) -> float:
    start = time.monotonic()
    counts, _ = wait_for(
        lambda: stored_counts(db, sent),
        timeout=timeout,
        interval=0.5,
        ok=lambda c: len(c) == len(sent),
        what=f"all {len(sent)} mails stored",
    )
    assert all(n == 1 for n in counts.values()), {k: v for k, v in counts.items() if v != 1}
    return time.monotonic() - start


def crash(svc) -> None:
    """SIGKILL the container's main process from the host, as a crash would (a `docker kill`
    counts as a manual stop, which a restart policy respects)."""
    pid = svc.pid
    try:
        os.kill(pid, signal.SIGKILL)
    except PermissionError:  # not root, or the engine runs in a VM (Docker Desktop)
        svc.kill()
        svc.start()


@pytest.fixture
def slow_ai(ollama):
    """Ollama answering in 0.3 s, so a 30-mail burst takes ~10 s and a fault lands mid-burst."""
    if ollama is None:
        pytest.skip("needs the Ollama double to pace the burst; a real Ollama is configured")
    ollama.control(delay_s=0.3)
    yield
    ollama.control(delay_s=0)


@pytest.mark.req("E4", "SLA-R2")
@pytest.mark.disrupts("ecom-mailer")
def test_mailer_killed_in_the_middle_of_a_burst(stack, mail, ecom_db, slow_ai, sla):
    svc = stack.service("ecom-mailer")
    sent = burst(mail, "ecom", 30, "Crash")
    wait_for(
        lambda: len(stored_counts(ecom_db, sent)),
        timeout=60,
        interval=0.2,
        ok=lambda n: n >= 3,
        what="the first mails of the burst stored",
    )
    restarts = svc.restart_count
    crash(svc)
    at_crash = len(stored_counts(ecom_db, sent))
    assert at_crash < len(sent), "the burst was done before the crash: no fault exercised"
    wait_for(
        lambda: svc.restart_count > restarts or svc.state() != "running",
        timeout=30,
        what="the crash to register",
    )
    took = wait_all_once(ecom_db, sent, timeout=180)
    back = svc.wait_healthy(timeout=sla.threshold("SLA-R2").value)
    sla.record(
        "SLA-R2",
        back,
        unit="s",
        how="ecom-mailer SIGKILLed mid-burst, restarted by its restart policy, until healthy again",
    )
    sla.record(
        "E4",
        took,
        unit="s",
        how=f"30-mail burst, mailer SIGKILLed with {at_crash} stored: seconds until all 30 "
        "were stored, each once",
    )


@pytest.mark.req("A2", "SLA-R2")
@pytest.mark.disrupts("ecom-mailer")
def test_mailer_killed_in_the_middle_of_a_large_mail(stack, mail, ecom_db, ollama, sla):
    """A 49 MiB attachment (spooled to the data volume, parsed from there) with the worker
    killed while it holds the mail: after the restart the mail is processed again, from the
    spool, and stored once; nothing is left in the spool."""
    if ollama is None:
        pytest.skip("needs the Ollama double to hold the mail in processing")
    svc = stack.service("ecom-mailer")
    data = pdf_of_size(49 * 1024 * 1024)
    ollama.control(delay_s=8)  # the mail sits in classification, after spill and scan
    try:
        since = time.time() - 1
        sent = mail.mail(
            PROFILES["ecom"],
            "Large scan, crash",
            "see attachment",
            sender="crash-large@example.org",
            attachments=[("scan.pdf", data, "application/pdf")],
        )
        wait_for(
            lambda: svc.logs(since=since),
            timeout=120,
            interval=0.2,
            ok=lambda logs: "Processing email" in logs and '"spooled": true' in logs,
            what="the large mail spooled and taken by the worker",
        )
        restarts = svc.restart_count
        crash(svc)
        assert ecom_db.rows(sent.message_id) == [], "stored before the crash: no fault exercised"
    finally:
        ollama.control(delay_s=0)
    wait_for(
        lambda: svc.restart_count > restarts or svc.state() != "running",
        timeout=30,
        what="the crash to register",
    )
    took = wait_all_once(ecom_db, [sent], timeout=180)
    row = ecom_db.rows(sent.message_id)[0]
    atts = ecom_db.query(
        "SELECT size_bytes, sha256, virus_scan_status FROM attachments WHERE email_id = %s",
        (row["id"],),
    )
    assert atts == [(len(data), hashlib.sha256(data).hexdigest(), "clean")], atts
    svc.wait_healthy(timeout=sla.threshold("SLA-R2").value)
    left = svc.exec(["find", "/app/data/spool", "-type", "f"])
    assert left.exit_code == 0 and not left.output.strip(), f"left in the spool: {left.output}"
    sla.record(
        "A2",
        took,
        unit="s",
        how="49 MiB attachment, ecom-mailer SIGKILLed while processing it: processed again "
        "from the spool after the restart and stored once (seconds from the crash)",
    )


@pytest.mark.req("E4", "SLA-R2")
@pytest.mark.disrupts("postgres")
def test_postgres_restarted_during_a_burst(stack, mail, praxis_db, slow_ai, sla):
    pg = stack.service("postgres")
    sent = burst(mail, "praxis", 30, "Neustart")
    wait_for(
        lambda: len(stored_counts(praxis_db, sent)),
        timeout=60,
        interval=0.2,
        ok=lambda n: n >= 3,
        what="the first mails of the burst stored",
    )
    start = time.monotonic()
    at_restart = len(stored_counts(praxis_db, sent))
    pg.restart(timeout=30)
    assert at_restart < len(sent), "the burst was done before the restart: no fault exercised"
    wait_all_once(praxis_db, sent, timeout=180)
    pg.wait_healthy(timeout=sla.threshold("SLA-R2").value)
    sla.record(
        "SLA-R2",
        time.monotonic() - start,
        unit="s",
        how="postgres restarted mid-burst until healthy again and every mail stored once",
    )


@pytest.mark.req("A4", "E2")
@pytest.mark.disrupts("clamav")
def test_clamd_down_mail_waits_never_stored_unscanned(stack, mail, ecom_db, sla):
    clam = stack.service("clamav")
    clam.stop(timeout=10)
    try:
        sent = mail.mail(
            PROFILES["ecom"],
            "Invoice while clamd is down",
            "see attachment",
            sender="waiting@example.org",
            attachments=[("invoice.pdf", PDF, "application/pdf")],
        )
        # the mailer fetches it at once; it must wait: no row, no stored attachment
        time.sleep(5)  # a negative check needs a window: 5 fetch cycles of the ecom mailer
        assert ecom_db.rows(sent.message_id) == [], "stored while clamd was down"
    finally:
        clam.start()
    start = time.monotonic()
    row, _ = ecom_db.wait_stored(sent, timeout=120)
    atts = ecom_db.query(
        "SELECT virus_scan_status FROM attachments WHERE email_id = %s", (row["id"],)
    )
    assert atts == [("clean",)], atts
    sla.record(
        "A4",
        time.monotonic() - start,
        unit="s",
        how="clamd stopped: the mail waited unstored; after clamd came back it was "
        "scanned and stored (seconds from restart to commit)",
    )


@pytest.mark.req("O1", "SLA-P2")
@pytest.mark.disrupts("ollama")  # the double, outside the stack: the mailers see its faults
@pytest.mark.parametrize(
    "fault",
    [{"delay_s": 25}, {"status": 500}, {"garbage": True}],
    ids=["slow", "http-error", "garbage"],
)
def test_ollama_faults_fall_back_to_rules(stack, mail, praxis_db, ollama, fault, sla):
    if ollama is None:
        pytest.skip("needs the Ollama double to inject faults; a real Ollama is configured")
    ollama.control(**fault)
    try:
        sent = mail.mail(PROFILES["praxis"], "Rezept bitte", "Ich brauche ein neues Rezept.")
        row, took = praxis_db.wait_stored(sent, timeout=sla.threshold("SLA-P2").value)
    finally:
        ollama.control(delay_s=0, status=200, garbage=False)
    assert row["status"] == "processed_without_ai" and row["ai_source"] == "rules", row
    assert row["ai_error"], "the fallback does not say why"
    assert row["category"] == "prescription", row["category"]
    sla.check("SLA-P2", took, how=f"Ollama double {fault}: rule fallback; {row['ai_error']}")


@pytest.mark.req("E1")
@pytest.mark.disrupts("mailpit")
def test_smtp_unreachable_outbox_sends_once_later(stack, mail, praxis_db, ollama, sla):
    """While the mail server is down the acknowledgement waits in the outbox; afterwards it is
    sent exactly once."""
    if ollama is None:
        pytest.skip("needs the Ollama double to hold the mail in processing")
    mp = stack.service("mailpit")
    ollama.control(delay_s=4)
    # only lines logged after the send count: an earlier test's mail (a hostile flood just
    # before) left "Processing email" lines that would let the mail server stop too early
    after = math.ceil(time.time())
    time.sleep(max(0.0, after - time.time()))
    try:
        sent = mail.mail(
            PROFILES["praxis"],
            "Terminabsage",
            "Ich muss den Termin absagen.",
            sender="outbox-test@example.org",
        )
        wait_for(
            lambda: "Processing email" in stack.service("praxis-mailer").logs(since=after),
            timeout=30,
            interval=0.2,
            what="the mail being processed",
        )
        mp.stop(timeout=10)
        row, _ = praxis_db.wait_stored(sent, timeout=60)
        wait_for(
            lambda: praxis_db.query(
                "SELECT count(*) FROM outbox WHERE email_id = %s AND last_error IS NOT NULL",
                (row["id"],),
            )[0][0],
            timeout=60,
            what="a failed send attempt recorded",
        )
    finally:
        ollama.control(delay_s=0)
        if mp.state() != "running":
            mp.start()
    mp.wait_healthy(timeout=120)
    outbox, took = wait_for(
        lambda: praxis_db.query(
            "SELECT kind, status, attempts, message_id FROM outbox WHERE email_id = %s "
            "ORDER BY kind",
            (row["id"],),
        ),
        timeout=180,
        interval=1,
        ok=lambda rows: rows and all(r[1] == "sent" for r in rows),
        what="the outbox sent after the mail server came back",
    )
    ack = next(r for r in outbox if r[0] == "acknowledgement")
    assert ack[2] >= 2, f"sent on attempt {ack[2]}: the fault was not exercised"
    ids = [str(m["Message-ID"]).strip() for m in stack.service("mailpit").reader().headers()]
    assert ids.count(ack[3]) == 1, f"acknowledgement {ack[3]} arrived {ids.count(ack[3])} times"
    sla.record(
        "E1",
        f"acknowledgement sent once, on attempt {ack[2]}",
        how="outbox: mail server stopped during processing, then started again; sent "
        f"{took:.0f} s after it was healthy",
    )


@pytest.mark.req("X2")
@pytest.mark.disrupts("praxis-mailer")
def test_sigterm_is_a_clean_shutdown_exit_0(stack, sla):
    svc = stack.service("praxis-mailer")
    svc.stop(timeout=60)
    code = svc.exit_code
    try:
        assert code == 0, f"exit code {code} after docker stop: {svc.logs(tail=20)}"
        assert "stopped cleanly" in svc.logs(tail=20)
    finally:
        svc.start()
    took = svc.wait_healthy(timeout=120)
    sla.record(
        "X2", "SIGTERM -> 0", how=f"docker stop of praxis-mailer; healthy again in {took:.0f} s"
    )


# Atomically: queue the entry, take everything not yet delivered as a "dead worker" (so the
# mailer cannot take it first), and mark every taken entry idle past the claim timeout; ours also
# with 3 deliveries. The mailer then claims them at once; others get their normal processing.
_DEAD_WORKER = """
local id = redis.call('XADD', KEYS[1], '*', 'source', ARGV[3], 'source_id', ARGV[4],
                      'external_id', ARGV[4], 'raw', ARGV[5])
redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 10000, 'STREAMS', KEYS[1], '>')
local pel = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 10000, ARGV[2])
for _, p in ipairs(pel) do
  local deliveries = (p[1] == id) and 3 or p[4]
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, p[1], 'IDLE', 600000,
             'RETRYCOUNT', deliveries)
end
return id
"""


@pytest.mark.req("A2")
@pytest.mark.disrupts("praxis-mailer")  # a poison entry in its queue
def test_crashing_mail_is_stored_raw_not_looped(stack, praxis_db):
    """A queue entry taken 3 times without a commit (its worker died each time) is stored raw,
    flagged 'unprocessed' and reported to the staff address on the next take, not processed a
    fourth time. The dead worker is simulated in Redis: a consumer that took the entry and never
    acknowledged it, with 3 deliveries recorded."""
    r = stack.service("redis").client()
    stream, group = "mailer:praxis:incoming", "praxis-workers"
    sid = f"poison-{uuid.uuid4().hex[:12]}"
    raw = (
        f"From: someone@example.org\r\nTo: {PROFILES['praxis']}\r\nSubject: crashes\r\n"
        f"Message-ID: <{sid}@stackcheck.test>\r\n\r\nbody\r\n"
    ).encode()
    ghost = f"dead-worker-{sid}"
    entry_id = r.eval(_DEAD_WORKER, 1, stream, group, ghost, "test://poison", sid, raw)
    try:
        found, _ = wait_for(
            lambda: praxis_db.query(
                "SELECT e.id, e.status, e.defects, r.raw FROM emails e "
                "JOIN raw_messages r ON r.email_id = e.id WHERE e.source_id = %s",
                (sid,),
            ),
            timeout=60,
            interval=0.5,
            what=f"poison entry {sid} stored raw",
        )
        ((email_id, status, defects, stored_raw),) = found
        assert status == "unprocessed" and bytes(stored_raw) == raw, (status, defects)
        assert any("stored raw" in d for d in defects), defects
        outbox = praxis_db.query(
            "SELECT kind, subject FROM outbox WHERE email_id = %s", (email_id,)
        )
        assert [k for k, _ in outbox] == ["notification"] and sid in outbox[0][1], outbox
        assert not r.xrange(stream, entry_id, entry_id), "entry still queued"
    finally:
        r.xdel(stream, entry_id)
        r.xgroup_delconsumer(stream, group, ghost)
