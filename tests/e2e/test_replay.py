"""RW1: real mail nobody here wrote, replayed through the running stack, is kept, every mail.

The corpus is `--mail-corpus DIR` ($STACKCHECK_MAIL_CORPUS; `./run replay DIR` for an operator's
own mailbox export), else `../shared/corpus/realmail` beside the checkout (857 mails from other
mail parsers' test data, never copied into this project). Each file goes to both profiles over
SMTP; each delivery must end stored, stored with its defects flagged, stored raw as
`unprocessed`, or recorded as a duplicate. Afterwards: no mailer restarted or was OOM-killed,
nothing stalled, and the mailers' peak RSS stays under 256 MiB. What the replay added to the
mailbox is deleted again, so the tests after it see the mailbox they expect.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stackcheck.mailflow import PROFILES
from stackcheck.ops.replay import Replay, corpus_files
from stackcheck.waits import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.alone,  # 1,714 deliveries: under -n N no other test shares the stack meanwhile
    pytest.mark.whole_stack,  # its clean-up removes every message that arrived meanwhile
    pytest.mark.needs("mailpit", "postgres", "praxis-mailer", "ecom-mailer"),
]

MAILERS = {"praxis": "praxis-mailer", "ecom": "ecom-mailer"}
RSS_LIMIT_MIB = 256  # the bound for the worker on the corpus (the container has 512)


def corpus_dir(config: pytest.Config) -> Path:
    given = config.getoption("stackcheck_mail_corpus") or os.environ.get("STACKCHECK_MAIL_CORPUS")
    if given:
        path = Path(given).expanduser()
        if not path.is_dir():
            raise pytest.UsageError(f"--mail-corpus {given}: no such folder")
        return path
    shared = config.rootpath.parent / "shared" / "corpus" / "realmail"
    if not shared.is_dir():
        pytest.skip(f"needs a mail corpus: {shared} is absent and no --mail-corpus DIR was given")
    return shared


@pytest.mark.req("RW1")
def test_every_replayed_mail_is_kept(request, stack, mail, praxis_db, ecom_db, ollama, sla):
    # `ollama`: the classification path runs as in production (the real Ollama, else the double)
    root = corpus_dir(request.config)
    files = corpus_files(root)
    assert files, f"{root} holds no files"
    dbs = {"praxis": praxis_db, "ecom": ecom_db}
    reader = stack.service("mailpit").reader()
    before_uids = reader.uids()
    before = {p: stack.service(s).restarts() for p, s in MAILERS.items()}
    since = datetime.now(UTC) - timedelta(seconds=5)  # clock skew between host and database

    def query(profile: str, sql: str, params: dict) -> list[tuple]:
        return dbs[profile].query(sql, params)

    def read_head(profile: str, raw_path: str) -> bytes:
        code, out = stack.service(MAILERS[profile]).container.exec_run(
            ["head", "-c", "65536", f"/app/data/{raw_path}"]
        )
        return out if code == 0 else b""

    smtp = None

    def send(address: str, data: bytes) -> None:
        """A refusal of this mail raises (recorded per mail); a session that broke or a server
        that is restarting is waited for (up to 2 minutes), as an MTA queues and retries."""
        nonlocal smtp
        deadline = time.monotonic() + 120
        while True:
            try:
                if smtp is None:
                    smtp = mail.connect()
                mail.send_raw(address, data, smtp=smtp)
                return
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code >= 500 or time.monotonic() > deadline:
                    raise  # a permanent refusal of this mail
                smtp = None  # 4xx/421: the server is busy or closing; a new session
            except smtplib.SMTPRecipientsRefused:
                raise
            except (OSError, smtplib.SMTPException):
                if time.monotonic() > deadline:
                    raise
                smtp = None
            time.sleep(1)

    # Mailpit's POP3 lists only its newest 100 messages: with it at most 60 deliveries are in
    # flight, so the replies landing meanwhile never push one out of the ecom mailer's view.
    # The offline stand-in (Dovecot) lists every message: 120 there, which the POP3 mailer
    # fetches per poll (the corpus in 26-27 s instead of 31-32 s, measured alone)
    image = stack.service("mailpit").container.attrs["Config"]["Image"]
    window = 120 if image.startswith("stackcheck/mailserver:") else 60
    try:
        replay = Replay(send, query, read_head, dict(PROFILES), window=window, progress=print)
        report = replay.run(root, since)
    finally:
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.quit()

    counts = report.counts()
    sent = sum(d.sent for d in report.deliveries)
    refused = [d for d in report.deliveries if d.refused]
    missing = report.missing()
    after = {p: stack.service(s).restarts() for p, s in MAILERS.items()}
    crashes = {p: after[p][0] - before[p][0] for p in MAILERS if after[p] != before[p]}
    rss = {p: stack.service(s).peak_rss_mib() for p, s in MAILERS.items()}
    slowest = ", ".join(f"{d.file} ({d.profile}) {d.processing_ms} ms" for d in report.slowest(5))
    summary = (
        f"{len(files)} files x {len(PROFILES)} profiles from {root}: {sent} delivered in "
        f"{report.seconds:.0f} s; outcomes {dict(sorted(counts.items()))}; worker restarts "
        f"{crashes or 0}; peak RSS {', '.join(f'{p} {v:.0f} MiB' for p, v in rss.items())}; "
        f"slowest: {slowest}"
    )
    print(summary)

    # The mailers answer what they stored (acknowledgements, staff notices: thousands of mails):
    # their outboxes are waited for, so the replies land before the clean-up and do not flood
    # the mailbox, and the mailers' polls, of the tests after this one. Only the replay's own:
    # a reply an earlier test's killed mailer had claimed waits out its 5-minute lease (189 s of
    # this test once), and one reply is no flood.
    def unsent() -> int:
        return sum(
            dbs[p].query(
                "SELECT count(*) FROM outbox o JOIN emails e ON e.id = o.email_id "
                "WHERE o.status IN ('pending', 'sending') AND e.received_at >= %s",
                (since,),
            )[0][0]
            for p in dbs
        )

    _, drained_in = wait_for(
        unsent, timeout=600, interval=2, ok=lambda n: n == 0, what="the mailers' outboxes drained"
    )
    # what the replay added to the mailbox (the mails, the mailers' replies) goes again
    removed = reader.delete_except(before_uids)
    print(
        f"outboxes drained {drained_in:.0f} s after the replay; removed {removed} messages "
        "the replay added to the mailbox"
    )

    sla.check(
        "RW1",
        report.kept_percent(),
        how=summary + "; kept = stored, stored with defects flagged, stored raw as "
        "unprocessed, or recorded as a duplicate, found by a marker header in the raw mail",
    )
    assert not missing, "left behind: " + ", ".join(f"{d.file} ({d.profile})" for d in missing[:20])
    assert not refused, "the mail server refused: " + ", ".join(
        f"{d.file}: {d.refused}" for d in refused[:10]
    )
    assert not crashes, f"mailer restarts or OOM kills during the replay: {after} (before {before})"
    assert all(v < RSS_LIMIT_MIB for v in rss.values()), f"peak RSS {rss} MiB"
    assert not stack.unhealthy(), stack.unhealthy()
