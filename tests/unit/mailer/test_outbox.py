"""mailer.outbox against a real TLS SMTP server on 127.0.0.1 (issue 11): AUTH only over TLS or
STARTTLS with a verified certificate; a refused login, a server down or an untrusted
certificate defers the outbox rows with backoff (never drops them) with one log line a pass."""

# ruff: noqa: F811 (the fixtures imported from test_sources are parameters here)

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from tests.unit.mailer.test_sources import (  # the PKI and fakes, shared
    OURS,
    PASSWORD,
    Pop3Box,
    SmtpServerFake,
    main_env,  # noqa: F401 (a fixture)
    pki,  # noqa: F401 (a fixture)
    servers,  # noqa: F401 (a fixture)
)

from mailer import app as service
from mailer import metrics, outbox
from mailer.config import SmtpConfig
from mailer.outbox import OutboxWorker, SmtpSender, SmtpTlsError

pytestmark = pytest.mark.unit

USER = "praxis@gmail.example"
PROFILE = "unit-outbox"


def sender(port: int, security: str, ca: Path, password: str = PASSWORD, user: str = USER):
    """The SMTP section for the fake server on 127.0.0.1, trusting `ca`."""
    smtp = SmtpConfig(
        host="127.0.0.1",
        port=port,
        security=security,
        user=user,
        password=password,
        from_address=OURS,
        staff_address="team@praxis.example",
        send_acknowledgement=True,
    )
    return SmtpSender(smtp, ca)


def row(i: int, attempts: int = 1, kind: str = "notification") -> dict:
    return {
        "id": i,
        "kind": kind,
        "recipient": "team@praxis.example",
        "subject": f"note {i}",
        "body": "hello\n",
        "message_id": f"<n{i}@praxis.example>",
        "attempts": attempts,
    }


class FakeStore:
    def __init__(self, rows: list[dict]):
        self.rows, self.sent, self.failed = rows, [], []

    def claim_outbox(self):
        rows, self.rows = self.rows, []
        return rows

    def outbox_sent(self, outbox_id):
        self.sent.append(outbox_id)

    def outbox_failed(self, outbox_id, error, retry_in_s):
        self.failed.append((outbox_id, error, retry_in_s))


@pytest.mark.parametrize(("security", "implicit"), [("tls", True), ("starttls", False)])
def test_sends_with_auth_over_tls(servers, pki, security, implicit):
    fake = SmtpServerFake()
    server = servers(fake.session, pki.server, implicit=implicit)
    store = FakeStore([row(1), row(2)])
    worker = OutboxWorker(PROFILE, sender(server.port, security, pki.ca), store)
    assert worker.run_once() == 2
    assert store.sent == [1, 2] and store.failed == []
    assert fake.logins == [USER]  # one session (TLS, login) a pass, not one a row
    assert b"Subject: note 1" in fake.received[0]
    assert all(conn.tls for conn in server.conns)


def test_wrong_ca_is_refused_naming_the_problem(servers, pki):
    server = servers(SmtpServerFake().session, pki.server, implicit=True)
    untrusting = sender(server.port, "tls", pki.other_ca)
    with pytest.raises(SmtpTlsError, match="unable to get local issuer certificate"):
        untrusting.check()


def test_starttls_with_a_certificate_by_another_ca_is_refused(servers, pki):
    fake = SmtpServerFake()
    server = servers(fake.session, pki.server_by_other, implicit=False)
    with pytest.raises(SmtpTlsError, match="TLS certificate refused"):
        sender(server.port, "starttls", pki.ca).check()
    assert fake.logins == []


def test_starttls_not_offered_is_refused_before_auth(servers, pki):
    fake = SmtpServerFake(starttls=False)
    server = servers(fake.session, pki.server, implicit=False)
    with pytest.raises(SmtpTlsError, match="does not offer STARTTLS"):
        sender(server.port, "starttls", pki.ca).check()
    assert fake.logins == [] and not any(c.startswith("AUTH") for c in server.commands)


def test_wrong_password_defers_every_row_with_backoff_and_logs_once(servers, pki, caplog):
    fake = SmtpServerFake()
    server = servers(fake.session, pki.server, implicit=True)
    rows = [row(1, attempts=outbox.MAX_ATTEMPTS), row(2, attempts=3), row(3)]
    store = FakeStore(rows)
    wrong = sender(server.port, "tls", pki.ca, password="wrong-Secret-77")
    before = metrics.REGISTRY.get_sample_value(
        "smtp_send_total", {"profile": "unit-outbox", "kind": "notification", "result": "retry"}
    )
    caplog.set_level(logging.INFO, logger="mailer.outbox")
    assert OutboxWorker(PROFILE, wrong, store).run_once() == 0
    assert fake.logins == [USER]  # one failed login a pass, not one a row
    assert store.sent == []
    assert [(i, retry) for i, _e, retry in store.failed] == [
        (1, outbox.backoff(outbox.MAX_ATTEMPTS)),  # past MAX_ATTEMPTS, still not dropped
        (2, outbox.backoff(3)),
        (3, outbox.backoff(1)),
    ]
    error = store.failed[0][1]
    assert "login refused (535 5.7.8 Username and Password not accepted)" in error
    assert "SMTP_PASS_FILE" in error
    lines = [r for r in caplog.records if r.name == "mailer.outbox"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    text = lines[0].getMessage() + repr(vars(lines[0])) + repr(store.failed)
    assert "wrong-Secret-77" not in text
    after = metrics.REGISTRY.get_sample_value(
        "smtp_send_total", {"profile": "unit-outbox", "kind": "notification", "result": "retry"}
    )
    assert after - (before or 0) == 3


def test_server_down_defers_rows(pki):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = FakeStore([row(1, attempts=outbox.MAX_ATTEMPTS)])
    OutboxWorker(PROFILE, sender(port, "tls", pki.ca), store).run_once()
    assert store.failed[0][2] == outbox.backoff(outbox.MAX_ATTEMPTS)  # retried, not dropped


def test_a_recipient_refused_counts_towards_the_rows_attempts(servers, pki):
    fake = SmtpServerFake(reject_rcpt=True)
    server = servers(fake.session, pki.server, implicit=True)
    store = FakeStore([row(1, attempts=outbox.MAX_ATTEMPTS), row(2, attempts=1)])
    OutboxWorker(PROFILE, sender(server.port, "tls", pki.ca), store).run_once()
    assert [(i, retry) for i, _e, retry in store.failed] == [(1, None), (2, outbox.backoff(1))]


def test_check_smtp_at_start(servers, pki, caplog):
    caplog.set_level(logging.INFO, logger="mailer")
    good = servers(SmtpServerFake().session, pki.server, implicit=True)
    assert service.check_smtp(sender(good.port, "tls", pki.ca))
    wrong_ca = sender(good.port, "tls", pki.other_ca)
    assert not service.check_smtp(wrong_ca)  # exit code 2
    assert any("exiting with code 2" in r.getMessage() for r in caplog.records)
    bad_password = sender(good.port, "tls", pki.ca, password="nope-nope")
    assert service.check_smtp(bad_password)  # logged; the outbox retries
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert service.check_smtp(sender(port, "tls", pki.ca))  # down: mail waits


def test_smtp_with_an_untrusted_certificate_at_start_exits_2(servers, pki, main_env, caplog):
    mailbox = servers(Pop3Box([]).session, pki.server, implicit=True)
    smtp = servers(SmtpServerFake().session, pki.server_by_other, implicit=True)
    (Path(main_env["SOURCE_PASSWORD_FILE"]).parent / "smtp").write_text(PASSWORD)
    main_env.update(
        {
            "MAIL_CA_FILE": str(pki.ca),
            "SOURCE_PORT": str(mailbox.port),
            "SMTP_PORT": str(smtp.port),
            "SMTP_SECURITY": "tls",
            "SMTP_USER": USER,
            "SMTP_PASS_FILE": str(Path(main_env["SOURCE_PASSWORD_FILE"]).parent / "smtp"),
        }
    )
    caplog.set_level(logging.INFO, logger="mailer")
    assert service.main(main_env) == service.EXIT_CONNECTION
    assert any(
        "SMTP server refused" in r.getMessage()
        and "unable to get local issuer certificate" in r.getMessage()
        for r in caplog.records
    )


def test_one_session_a_pass_and_a_refused_mail_does_not_end_it(servers, pki):
    """A pass sends its rows on one connection (one TLS handshake, one login); the server
    refusing one mail's recipient resets that transaction only, and the rows after it go on the
    same session."""

    class RefusesOne(SmtpServerFake):
        def session(self, conn):
            original = conn.send

            def send(text):
                if text == "250 ok\r\n" and self._last_rcpt_bad:
                    text = "550 5.1.1 no such user\r\n"
                original(text)

            conn.send = send
            readline = conn.readline

            def spy():
                line = readline()
                if line.upper().startswith(b"RCPT"):
                    self._last_rcpt_bad = b"nobody@" in line
                else:
                    self._last_rcpt_bad = False
                return line

            conn.readline = spy
            super().session(conn)

    fake = RefusesOne()
    fake._last_rcpt_bad = False
    server = servers(fake.session, pki.server, implicit=True)
    bad = row(2) | {"recipient": "nobody@praxis.example"}
    store = FakeStore([row(1), bad, row(3)])
    assert OutboxWorker(PROFILE, sender(server.port, "tls", pki.ca), store).run_once() == 3
    assert store.sent == [1, 3]
    assert [(i, retry) for i, _e, retry in store.failed] == [(2, outbox.backoff(1))]
    assert fake.logins == [USER], "one login for the pass"
    assert len(server.conns) == 1, "one connection for the pass"
