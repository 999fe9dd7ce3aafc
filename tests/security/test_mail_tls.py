"""Mail over TLS with authentication, as Gmail requires (issue 11), proven against the running
mail server (Mailpit, or the offline stand-in) from the host, as any mail client would connect:

- SMTP 1025: STARTTLS is required and AUTH is never offered or accepted before it; after it,
  nothing is accepted without AUTH; a wrong password is refused with 535.
- POP3 1110 is implicit TLS (Mailpit's POP3 with a certificate): a plaintext client gets no
  greeting; a wrong password is refused.
- The certificate verifies only against the stack's own CA (setup made it), for every name the
  stack and the suite use (mailpit, localhost, 127.0.0.1); a client trusting other CAs, or
  expecting another host name, refuses the connection.
- Offline stand-in only (Mailpit has no IMAP and one SMTP port): IMAP 1143 refuses LOGIN before
  STARTTLS, IMAPS 1993 and POP3 STLS 1111 work, SMTP 1465 is implicit TLS with AUTH.
"""

from __future__ import annotations

import imaplib
import json
import poplib
import smtplib
import socket
import ssl

import pytest

from stackcheck.ops.mailtls import make_ca
from stackcheck.services.base import ServiceError

pytestmark = [pytest.mark.security, pytest.mark.needs("mailpit")]

TIMEOUT = 15


@pytest.fixture(scope="module")
def tls(stack) -> ssl.SSLContext:
    return stack.service("mailpit").tls()


@pytest.fixture(scope="module")
def login(stack) -> tuple[str, str]:
    return stack.service("mailpit").login("praxis")


@pytest.fixture(scope="module")
def other_ca() -> ssl.SSLContext:
    """A client that trusts a CA of its own, not the stack's (a man in the middle's view)."""
    _, cert = make_ca("not the stack's CA")
    return ssl.create_default_context(cadata=cert)


def addr(stack, port: int) -> tuple[str, int]:
    p = stack.service("mailpit").port(port)
    return p.host, p.port


def extra(stack, port: int, what: str) -> tuple[str, int]:
    """A port only the offline stand-in has: skipped, naming it, where Mailpit runs."""
    try:
        return addr(stack, port)
    except ServiceError:
        pytest.skip(f"mailpit publishes no {port} ({what}): the offline stand-in's extra")


# --- SMTP 1025: STARTTLS, then AUTH ---------------------------------------------------------------
@pytest.mark.req("S12")
def test_smtp_offers_no_auth_before_starttls(stack):
    host, port = addr(stack, 1025)
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as s:
        code, _ = s.ehlo()
        assert code == 250
        assert s.has_extn("starttls"), s.esmtp_features
        assert not s.has_extn("auth"), f"AUTH offered in plain text: {s.esmtp_features}"
        code, reply = s.docmd("AUTH", "PLAIN AHByYXhpcwB4")  # \0praxis\0x, never accepted here
        assert code in (530, 538), (code, reply)
        code, reply = s.docmd("MAIL", "FROM:<probe@stackcheck.test>")
        assert code == 530, (code, reply)  # STARTTLS required before any mail


@pytest.mark.req("S12")
def test_smtp_requires_auth_after_starttls(stack, tls):
    host, port = addr(stack, 1025)
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as s:
        s.starttls(context=tls)
        s.ehlo()
        assert {"PLAIN", "LOGIN"} <= set(s.esmtp_features.get("auth", "").split())
        code, reply = s.docmd("MAIL", "FROM:<probe@stackcheck.test>")
        assert code == 530, (code, reply)  # authentication required


@pytest.mark.req("S12")
def test_smtp_wrong_password_is_refused(stack, tls, login):
    host, port = addr(stack, 1025)
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as s:
        s.starttls(context=tls)
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            s.login(login[0], login[1] + "-wrong")
    assert err.value.smtp_code == 535, err.value


@pytest.mark.req("S12")
def test_smtp_submission_over_starttls_with_auth(stack, tls, login):
    host, port = addr(stack, 1025)
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as s:
        s.starttls(context=tls)
        s.login(*login)
        refused = s.sendmail(
            "probe@stackcheck.test",
            ["tls-probe@stackcheck.test"],
            b"Subject: TLS probe\r\nFrom: probe@stackcheck.test\r\n\r\nissue 11\r\n",
        )
    assert refused == {}


# --- the certificate ------------------------------------------------------------------------------
@pytest.mark.req("S12")
@pytest.mark.parametrize("name", ["mailpit", "localhost", "127.0.0.1"])
def test_certificate_verifies_for_the_stacks_names(stack, tls, name):
    host, port = addr(stack, 1110)
    with (
        socket.create_connection((host, port), timeout=TIMEOUT) as raw,
        tls.wrap_socket(raw, server_hostname=name) as conn,
    ):
        assert conn.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.req("S12")
def test_another_ca_is_refused(stack, other_ca):
    host, port = addr(stack, 1025)
    with (
        smtplib.SMTP(host, port, timeout=TIMEOUT) as s,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        s.starttls(context=other_ca)
    host, port = addr(stack, 1110)
    with pytest.raises(ssl.SSLCertVerificationError):
        poplib.POP3_SSL(host, port, timeout=TIMEOUT, context=other_ca)
    # and the system CAs (what a client would trust by default) do not know the stack's CA
    with pytest.raises(ssl.SSLCertVerificationError):
        poplib.POP3_SSL(host, port, timeout=TIMEOUT, context=ssl.create_default_context())


@pytest.mark.req("S12")
def test_another_host_name_is_refused(stack, tls):
    host, port = addr(stack, 1110)
    with (
        socket.create_connection((host, port), timeout=TIMEOUT) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        tls.wrap_socket(raw, server_hostname="imap.gmail.com")


# --- POP3 1110: implicit TLS ----------------------------------------------------------------------
@pytest.mark.req("S12")
def test_pop3_speaks_no_plain_text(stack):
    """A plaintext client gets no greeting: the server waits for a TLS handshake."""
    host, port = addr(stack, 1110)
    with pytest.raises((TimeoutError, poplib.error_proto, ConnectionError, EOFError)):
        poplib.POP3(host, port, timeout=3)


@pytest.mark.req("S12")
def test_pop3_over_tls_logs_in_and_refuses_a_wrong_password(stack, tls, login):
    host, port = addr(stack, 1110)
    conn = poplib.POP3_SSL(host, port, timeout=TIMEOUT, context=tls)
    try:
        conn.user(login[0])
        conn.pass_(login[1])
        assert conn.stat()[0] >= 0
    finally:
        conn.quit()
    conn = poplib.POP3_SSL(host, port, timeout=TIMEOUT, context=tls)
    try:
        conn.user(login[0])
        with pytest.raises(poplib.error_proto, match=r"(?i)auth"):
            conn.pass_(login[1] + "-wrong")
    finally:
        conn.close()


# --- the offline stand-in's extras ----------------------------------------------------------------
@pytest.mark.req("S12")
def test_pop3_stls_refuses_login_before_stls(stack, tls, login):
    host, port = extra(stack, 1111, "POP3 with STLS")
    conn = poplib.POP3(host, port, timeout=TIMEOUT)
    try:
        assert "STLS" in conn.capa()
        # Dovecot refuses already the USER command; no password is ever sent in plain text
        with pytest.raises(poplib.error_proto, match=r"(?i)plaintext authentication disallowed"):
            conn.user(login[0])
            conn.pass_(login[1])
    finally:
        conn.close()
    conn = poplib.POP3(host, port, timeout=TIMEOUT)
    try:
        conn.stls(context=tls)
        conn.user(login[0])
        conn.pass_(login[1])
        assert conn.stat()[0] >= 0
    finally:
        conn.quit()


@pytest.mark.req("S12")
def test_imap_refuses_login_before_starttls(stack, tls, login):
    host, port = extra(stack, 1143, "IMAP")
    conn = imaplib.IMAP4(host, port, timeout=TIMEOUT)
    try:
        assert "LOGINDISABLED" in conn.capabilities, conn.capabilities
        assert "STARTTLS" in conn.capabilities, conn.capabilities
        with pytest.raises(imaplib.IMAP4.error, match=r"(?i)plaintext authentication disallowed"):
            conn.login(*login)
    finally:
        conn.shutdown()
    conn = imaplib.IMAP4(host, port, timeout=TIMEOUT)
    try:
        conn.starttls(ssl_context=tls)
        assert conn.login(*login)[0] == "OK"
        assert conn.select("INBOX", readonly=True)[0] == "OK"
    finally:
        conn.logout()


@pytest.mark.req("S12")
def test_imaps_logs_in_and_refuses_a_wrong_password(stack, tls, login, other_ca):
    host, port = extra(stack, 1993, "IMAPS")
    conn = imaplib.IMAP4_SSL(host, port, timeout=TIMEOUT, ssl_context=tls)
    try:
        assert conn.login(*login)[0] == "OK"
    finally:
        conn.logout()
    conn = imaplib.IMAP4_SSL(host, port, timeout=TIMEOUT, ssl_context=tls)
    try:
        with pytest.raises(imaplib.IMAP4.error, match=r"(?i)authentication failed"):
            conn.login(login[0], login[1] + "-wrong")
    finally:
        conn.shutdown()
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(host, port, timeout=TIMEOUT, ssl_context=other_ca)


@pytest.mark.req("S12")
def test_smtp_implicit_tls_with_auth(stack, tls, login):
    host, port = extra(stack, 1465, "SMTP with implicit TLS")
    with smtplib.SMTP_SSL(host, port, timeout=TIMEOUT, context=tls) as s:
        s.ehlo()
        assert {"PLAIN", "LOGIN"} <= set(s.esmtp_features.get("auth", "").split())
        assert not s.has_extn("starttls")  # already TLS
        code, reply = s.docmd("MAIL", "FROM:<probe@stackcheck.test>")
        assert code == 530, (code, reply)  # authentication required
        s.rset()
    with (
        smtplib.SMTP_SSL(host, port, timeout=TIMEOUT, context=tls) as s,
        pytest.raises(smtplib.SMTPAuthenticationError),
    ):
        s.login(login[0], login[1] + "-wrong")
    with smtplib.SMTP_SSL(host, port, timeout=TIMEOUT, context=tls) as s:
        s.login(*login)
        assert s.noop()[0] == 250


# --- the mailers' own client code, from inside the stack ------------------------------------------
# Runs in praxis-mailer with its configuration, each variant overriding only protocol and port:
# the mailer's own source and SMTP classes, its MAIL_CA_FILE, the host name `mailpit`.
MAILER_PROBE = r"""
import json, os, sys
from mailer.config import load_config
from mailer.outbox import SmtpSender
from mailer.app import check_smtp
from mailer.sources import build_source
out = {}
for name, over in json.loads(sys.argv[1]).items():
    try:
        cfg = load_config({**os.environ, **over})
        if "SMTP_SECURITY" in over:
            out[name] = "ok" if check_smtp(SmtpSender(cfg.smtp, cfg.mail_ca_file)) else "refused"
            continue
        src = build_source(cfg.source, cfg.addresses, cfg.mail_ca_file)
        try:
            src.check()
            out[name] = "ok"
        finally:
            getattr(src, "close", lambda: None)()
    except Exception as e:
        out[name] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


@pytest.mark.req("S12")
@pytest.mark.needs("praxis-mailer")
def test_every_mailer_protocol_works_over_tls_and_a_foreign_ca_is_refused(stack, sla):
    variants = {
        "pop3s 1110": {"SOURCE_PROTOCOL": "pop3s", "SOURCE_PORT": "1110"},
        "smtp starttls 1025": {"SMTP_SECURITY": "starttls", "SMTP_PORT": "1025"},
    }
    standin = bool(stack.service("mailpit").published(1143))
    if standin:  # Mailpit has no IMAP, no STLS and one SMTP port
        variants |= {
            "imaps 1993": {"SOURCE_PROTOCOL": "imaps", "SOURCE_PORT": "1993"},
            "imap+starttls 1143": {"SOURCE_PROTOCOL": "imap+starttls", "SOURCE_PORT": "1143"},
            "pop3+starttls 1111": {"SOURCE_PROTOCOL": "pop3+starttls", "SOURCE_PORT": "1111"},
            "smtp tls 1465": {"SMTP_SECURITY": "tls", "SMTP_PORT": "1465"},
        }
    system_cas = {"MAIL_CA_FILE": "/etc/ssl/certs/ca-certificates.crt"}
    variants["pop3s with the system CAs"] = {**variants["pop3s 1110"], **system_cas}
    res = stack.service("praxis-mailer").exec(["python3", "-c", MAILER_PROBE, json.dumps(variants)])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output.strip().splitlines()[-1])
    foreign = got.pop("pop3s with the system CAs")
    assert "certificate" in foreign.lower(), foreign
    assert got == {name: "ok" for name in got}, got
    sla.record(
        "S1",
        f"mailer over TLS with AUTH: {', '.join(sorted(got))} ok; a CA other than the stack's "
        "refused",
        how="the mailer's own source/SMTP classes run inside praxis-mailer against mailpit",
    )
