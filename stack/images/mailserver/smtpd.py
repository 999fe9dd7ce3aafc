#!/usr/bin/python3
"""SMTP and HTTP side of the offline Mailpit stand-in (/usr/local/bin/mailserver-smtpd).

SMTP on 1025, like Mailpit's: any sender, any recipient, no relaying. Every message goes
into ONE catch-all Maildir ($MAILSERVER_MAILDIR from the entrypoint: `maildir` beside
MP_DATABASE, default /data/maildir), written atomically (tmp/, fsync, rename into new/), where
Dovecot serves it over POP3 and IMAP. The message is stored as received; like Mailpit this
server only adds, on top of it:
  Return-Path: <envelope sender>   (RFC 5321 4.4; only when the message has none)
  Received: from <helo> ([<ip>]) by <host> ...   (trace header, RFC 5321 4.4)
  Message-ID: <...@mailpit>         (only when the message has none; Mailpit does the same)
  Bcc: <envelope recipients in no To/Cc/Bcc header>   (only then, and only when there is no Bcc
                                    header yet; Mailpit does this so such recipients stay visible)

Why aiosmtpd and not a Debian MTA: Postfix and Exim are built around root (setuid drop, a
privileged master, queue directories owned by other system users) and would need a relay and a
local delivery agent configured just to drop every mail into one Maildir. aiosmtpd (Debian's
python3-aiosmtpd) is a complete RFC 5321 server library; the catch-all delivery is the few lines
below, runs as any user and needs nothing writable but the Maildir.

HTTP on 8025: the part of Mailpit's HTTP API the stack uses (requirement T7) and its probes:
  GET /livez, GET /readyz              200 when serving
  GET /api/v1/messages?start=&limit=   {"total", "unread", "count", ..., "messages": [...]},
                                       newest first; a message's ID is its Maildir base name,
                                       which is also its POP3 UIDL (as in Mailpit)
  DELETE /api/v1/messages              body {"IDs": [...]} deletes those, no body deletes all
  POST /api/v1/send                    Mailpit's JSON send API (From{Email,Name}, To[], Cc[],
                                       Bcc[] strings, ReplyTo[], Subject, Text, HTML,
                                       Attachments[]{Content base64, Filename, ContentType},
                                       Headers{}); stores the message like one received over
                                       SMTP and answers {"ID": <id>}; 400 {"Error": ...}
No web UI, no other endpoint (404).

TLS and authentication, Mailpit's variables and semantics (mailpit.axllent.org/docs, SMTP):
  MP_SMTP_TLS_CERT, MP_SMTP_TLS_KEY   PEM files: STARTTLS is offered on 1025
  MP_SMTP_REQUIRE_STARTTLS=true       nothing but EHLO/HELO/STARTTLS/NOOP/RSET/QUIT before STARTTLS
  MP_SMTP_REQUIRE_TLS=true            1025 speaks TLS from the first byte (implicit TLS, "SSL/TLS");
                                      no STARTTLS then, as in Mailpit
  MP_SMTP_AUTH_FILE, MP_SMTP_AUTH     user:password entries (the MP_POP3_AUTH_FILE format): AUTH
                                      PLAIN/LOGIN is required before MAIL, and offered only over
                                      TLS (RFC 4954) unless MP_SMTP_AUTH_ALLOW_INSECURE=true;
                                      auth without a certificate and that flag: refused at start
  MP_SMTP_AUTH_ACCEPT_ANY=true        any user and password (or none) is accepted
Extra of the stand-in (Mailpit has one SMTP port): when a certificate is set, 1465 also serves
SMTP with implicit TLS, so STARTTLS and implicit TLS can both be tested against one server.
Any file named by these variables that is unreadable ends the start with one line naming it.

Mailpit settings honoured: MP_MAX_MESSAGE_SIZE (MiB, default 50, 0 = no limit),
MP_SMTP_MAX_RECIPIENTS (default 100), MP_MAX_MESSAGES (default 500, oldest pruned every minute,
0 = keep all), MP_LABEL (shown in the SMTP banner). Logs name no e-mail address (S7).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.header
import email.message
import email.utils
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import signal
import socket
import ssl
import sys
import time
import uuid
from datetime import UTC, datetime
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

MAILDIR = os.environ.get("MAILSERVER_MAILDIR", "/data/maildir")
SMTP_PORT = 1025
SMTPS_PORT = 1465  # the stand-in's extra implicit-TLS port
HTTP_PORT = 8025
PRUNE_EVERY = 60.0

log = logging.getLogger("smtpd")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        sys.exit(f"mailserver-smtpd: {name}={raw!r} is not a whole number")
    if value < 0:
        sys.exit(f"mailserver-smtpd: {name} must not be negative")
    return value


def env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def read_file(var: str) -> str:
    path = os.environ.get(var, "").strip()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        sys.exit(f"mailserver-smtpd: {var}={path} is missing or unreadable ({e})")


# --- SMTP authentication -----------------------------------------------------------------------
def parse_auth(text: str) -> dict[str, str]:
    """user -> stored password, from Mailpit's user:password entries (separated by whitespace,
    split at the first colon; the last entry of a user wins)."""
    users = {}
    for token in text.split():
        user, sep, password = token.partition(":")
        if sep and user and password:
            users[user] = password
    return users


def password_ok(stored: str, given: str) -> bool:
    """Mailpit's htpasswd forms: plain, {PLAIN}, {SHA}, {SSHA} and crypt(3) hashes ($1$, $5$,
    $6$, bcrypt $2a$/$2b$/$2y$ through libxcrypt)."""
    g = given.encode("utf-8")
    if stored.startswith("{SHA}"):
        return hmac.compare_digest(base64.b64encode(hashlib.sha1(g).digest()).decode(), stored[5:])
    if stored.startswith("{SSHA}"):
        try:
            raw = base64.b64decode(stored[6:])
        except binascii.Error:
            return False
        digest, salt = raw[:20], raw[20:]
        return hmac.compare_digest(hashlib.sha1(g + salt).digest(), digest)
    if stored.startswith("$"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # deprecated in 3.11, present in Debian's 3.11

        hashed = crypt.crypt(given, stored)
        return bool(hashed) and hmac.compare_digest(hashed, stored)
    if stored.startswith("{PLAIN}"):
        stored = stored[7:]
    return hmac.compare_digest(stored.encode("utf-8"), g)


class Authenticator:
    def __init__(self, users: dict[str, str] | None):
        self.users = users  # None: accept any

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        ok = self.users is None or (user in self.users and password_ok(self.users[user], password))
        if not ok:
            # the user name is often an e-mail address (S7): never logged
            peer = session.peer[0] if session.peer else "?"
            log.warning("AUTH %s refused from %s", mechanism, peer)
        return AuthResult(success=ok, handled=False)


def tls_context(var_cert: str, var_key: str) -> ssl.SSLContext | None:
    cert = os.environ.get(var_cert, "").strip()
    key = os.environ.get(var_key, "").strip()
    if not cert and not key:
        return None
    if not (cert and key):
        sys.exit(f"mailserver-smtpd: set both {var_cert} and {var_key}, or neither")
    read_file(var_cert)
    read_file(var_key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        sys.exit(f"mailserver-smtpd: {var_cert}/{var_key} are not a matching PEM pair ({e})")
    return ctx


# --- Maildir -----------------------------------------------------------------------------------
class Maildir:
    """One Maildir, written by this process only through deliver(), read by Dovecot."""

    def __init__(self, root: str):
        self.root = root
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(root, sub), mode=0o700, exist_ok=True)
        host = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:16] or "mailserver"
        self._suffix = "." + host
        self._counter = 0

    def _unique(self) -> str:
        # The classic Maildir name <sec>.M<usec>P<pid>Q<n>R<random>.<host>: unique, made of
        # [A-Za-z0-9.] only and at most 70 characters, so it is a valid POP3 UIDL (RFC 1939).
        self._counter += 1
        now = time.time()
        sec, usec = int(now), int((now % 1) * 1_000_000)
        return f"{sec}.M{usec}P{os.getpid()}Q{self._counter}R{secrets.token_hex(4)}{self._suffix}"

    def deliver(self, data: bytes) -> str:
        """Store one message atomically; return its ID (Maildir base name = POP3 UIDL)."""
        name = self._unique()
        tmp = os.path.join(self.root, "tmp", name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.rename(tmp, os.path.join(self.root, "new", name))  # atomic: Dovecot never sees half
        dfd = os.open(os.path.join(self.root, "new"), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return name

    def entries(self) -> list[tuple[str, str, bool]]:
        """(id, path, read) of every message, newest first. Dovecot may move a file from new/ to
        cur/ or rename it (flags) at any time, so each path is only a snapshot."""
        found = {}
        for sub in ("new", "cur"):
            d = os.path.join(self.root, sub)
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for fname in names:
                if fname.startswith("."):
                    continue
                base, _, info = fname.partition(":")
                read = sub == "cur" and "S" in info.partition(",")[2]
                found[base] = (base, os.path.join(d, fname), read)
        return sorted(found.values(), key=lambda e: _order_key(e[0]), reverse=True)

    def delete(self, ids: set[str] | None) -> int:
        n = 0
        for base, path, _ in self.entries():
            if ids is None or base in ids:
                try:
                    os.unlink(path)
                    n += 1
                except FileNotFoundError:  # Dovecot renamed it (flags) or moved it to cur/
                    n += self._unlink_by_base(base)
        return n

    def find(self, base: str) -> str | None:
        """The current path of message `base`, or None when it is gone."""
        for sub in ("cur", "new"):
            d = os.path.join(self.root, sub)
            for fname in os.listdir(d):
                if fname.partition(":")[0] == base:
                    return os.path.join(d, fname)
        return None

    def _unlink_by_base(self, base: str) -> int:
        path = self.find(base)
        try:
            if path:
                os.unlink(path)
                return 1
        except FileNotFoundError:
            pass
        return 0

    def prune(self, keep: int) -> int:
        if keep <= 0:
            return 0
        old = self.entries()[keep:]
        return self.delete({e[0] for e in old}) if old else 0


def _order_key(base: str) -> tuple[int, int, str]:
    m = re.match(r"(\d+)\.M(\d+)", base)
    return (int(m.group(1)), int(m.group(2)), base) if m else (0, 0, base)


# --- SMTP --------------------------------------------------------------------------------------
def _header_block(data: bytes) -> bytes:
    """The header section of a message (up to the first empty line)."""
    if data.startswith(b"\r\n") or data.startswith(b"\n"):
        return b""
    m = re.search(rb"\r?\n\r?\n", data)
    return data[: m.start() + 1] if m else data


def _clean(text: str, limit: int = 255) -> str:
    """A client-supplied word for a header: printable ASCII without spaces, bounded."""
    return re.sub(r"[^\x21-\x7e]", "?", text)[:limit] or "unknown"


class CatchAllHandler:
    def __init__(self, maildir: Maildir, hostname: str, max_recipients: int):
        self.maildir = maildir
        self.hostname = hostname
        self.max_recipients = max_recipients

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.max_recipients and len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        body = envelope.original_content or b""
        loop = asyncio.get_running_loop()
        try:
            message = await loop.run_in_executor(None, self._with_headers, session, envelope, body)
            msg_id = await loop.run_in_executor(None, self.maildir.deliver, message)
        except OSError as e:
            log.error("storing a message failed: %s", e.strerror or e)
            if e.errno in (28, 122):  # ENOSPC, EDQUOT
                return "452 4.3.1 Insufficient system storage"
            return "451 4.3.0 Requested action aborted: local error in processing"
        log.info(
            "stored %s (%d bytes, %d recipient(s)) from %s",
            msg_id,
            len(message),
            len(envelope.rcpt_tos),
            session.peer[0] if session.peer else "?",
        )
        return "250 2.0.0 Ok: queued as " + msg_id

    def _with_headers(self, session, envelope, body: bytes) -> bytes:
        headers = BytesHeaderParser(policy=compat32).parsebytes(_header_block(body))
        add = []
        if headers.get("Return-Path") is None:
            sender = envelope.mail_from or ""
            add.append("Return-Path: " + (sender if sender == "<>" else f"<{sender}>"))
        ip = session.peer[0] if session.peer else "unknown"
        proto = "ESMTP" if session.extended_smtp else "SMTP"
        received = (
            f"Received: from {_clean(session.host_name or 'unknown')} ([{ip}])\r\n"
            f"\tby {self.hostname} (Mailpit offline stand-in) with {proto}"
        )
        if len(envelope.rcpt_tos) == 1:
            received += f"\r\n\tfor <{envelope.rcpt_tos[0]}>"
        received += "; " + email.utils.format_datetime(datetime.now().astimezone())
        add.append(received)
        if not (headers.get("Message-ID") or "").strip():
            add.append(f"Message-ID: <{uuid.uuid4().hex}@mailpit>")
        if headers.get("Bcc") is None:
            try:
                listed = {
                    a.lower()
                    for _, a in email.utils.getaddresses(
                        [str(v) for k in ("To", "Cc", "Bcc") for v in headers.get_all(k) or []]
                    )
                }
            except (RecursionError, ValueError, TypeError, IndexError):
                # address headers Python's parser cannot take (a To of thousands of encoded
                # words recurses too deep): stored as received, no Bcc added, never refused
                listed = {r.lower() for r in envelope.rcpt_tos}
            missing = [r for r in envelope.rcpt_tos if r.lower() not in listed]
            if missing:
                add.append("Bcc: " + ", ".join(missing))
        return ("\r\n".join(add) + "\r\n").encode("utf-8", "surrogateescape") + body


class MailpitSMTP(SMTP):
    """aiosmtpd's SMTP without its 1000-octet line limit: Mailpit limits only the message size,
    so long (unfolded) lines are accepted here too."""

    # AUTH LOGIN's challenges as Mailpit (and most servers) send them; aiosmtpd's own ("User
    # Name\0", "Password\0") make Go's and Alertmanager's LOGIN clients give up
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, handler, *, data_size_limit, implicit_tls=False, **kwargs):
        self.line_length_limit = max(1001, (data_size_limit or 2**30) + 2)
        self.implicit_tls = implicit_tls
        super().__init__(handler, data_size_limit=data_size_limit, **kwargs)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self.implicit_tls and self._tls_protocol is None:
            # aiosmtpd knows TLS only from STARTTLS: on an implicit-TLS port the whole
            # connection is encrypted, so AUTH is allowed (and advertised) at once
            self._auth_require_tls = False
            self.session.ssl = transport.get_extra_info("ssl_object")


# --- HTTP --------------------------------------------------------------------------------------
class Api:
    def __init__(self, maildir: Maildir):
        self.maildir = maildir
        self._summaries: dict[str, dict] = {}

    def _summary(self, base: str, path: str, read: bool) -> dict | None:
        s = self._summaries.get(base)
        if s is None:
            msg = size = None
            for _ in range(3):  # Dovecot may rename the file (new/ -> cur/, flags) meanwhile
                try:
                    with open(path, "rb") as f:
                        msg = BytesParser(policy=compat32).parse(f)
                        size = os.fstat(f.fileno()).st_size
                    break
                except FileNotFoundError:
                    path = self.maildir.find(base)
                    if path is None:
                        return None  # deleted meanwhile
            if msg is None:
                return None
            s = {
                "ID": base,
                "MessageID": (msg.get("Message-ID") or "").strip().strip("<>"),
                "Read": False,
                "From": (_addrs(msg.get_all("From")) or [None])[0],
                "To": _addrs(msg.get_all("To")),
                "Cc": _addrs(msg.get_all("Cc")),
                "Bcc": _addrs(msg.get_all("Bcc")),
                "ReplyTo": _addrs(msg.get_all("Reply-To")),
                "Subject": _decode(msg.get("Subject") or ""),
                "Created": _created(base),
                "Username": "",
                "Tags": [],
                "Size": size,
                "Attachments": sum(
                    1 for p in msg.walk() if p.get_content_disposition() == "attachment"
                ),
                "Snippet": "",
            }
            if len(self._summaries) > 5000:
                self._summaries.clear()
            self._summaries[base] = s
        return dict(s, Read=read)

    def messages(self, query: dict) -> dict:
        start = _qint(query, "start", 0)
        limit = _qint(query, "limit", 50)
        entries = self.maildir.entries()
        page = []
        for base, path, read in entries[start : start + limit]:
            s = self._summary(base, path, read)
            if s is not None:
                page.append(s)
        unread = sum(1 for e in entries if not e[2])
        return {
            "total": len(entries),
            "unread": unread,
            "count": len(page),
            "messages_count": len(entries),
            "messages_unread": unread,
            "start": start,
            "tags": [],
            "messages": page,
        }


class SendError(ValueError):
    """A send request Mailpit would refuse with 400."""


# Headers the send API sets itself; Mailpit refuses them in "Headers" too.
_RESTRICTED = frozenset(
    {"from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version"}
    | {"content-type", "content-transfer-encoding", "content-disposition", "return-path"}
)


def build_send(req: object, hostname: str) -> bytes:
    """The message a POST /api/v1/send body describes (Mailpit's server/apiv1/send.go)."""
    if not isinstance(req, dict):
        raise SendError("request body must be a JSON object")

    def one(a: object, field: str) -> str:
        if not isinstance(a, dict) or not str(a.get("Email") or "").strip():
            raise SendError(f"{field}: an Email is required")
        return email.utils.formataddr((str(a.get("Name") or ""), str(a["Email"]).strip()))

    msg = email.message.EmailMessage()
    msg["From"] = one(req.get("From"), "From")
    for field, header in (("To", "To"), ("Cc", "Cc"), ("ReplyTo", "Reply-To")):
        values = [one(a, field) for a in req.get(field) or []]
        if values:
            msg[header] = ", ".join(values)
    bcc = [str(b).strip() for b in req.get("Bcc") or [] if str(b).strip()]
    if bcc:
        msg["Bcc"] = ", ".join(bcc)
    if not (msg["To"] or msg["Cc"] or bcc):
        raise SendError("no recipients (To, Cc or Bcc)")
    msg["Subject"] = str(req.get("Subject") or "")
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname or "mailpit")
    for name, value in (req.get("Headers") or {}).items():
        if str(name).lower() in _RESTRICTED:
            raise SendError(f"header {name!r} is restricted")
        msg[str(name)] = str(value)
    msg.set_content(str(req.get("Text") or ""))
    if req.get("HTML"):
        msg.add_alternative(str(req["HTML"]), subtype="html")
    for att in req.get("Attachments") or []:
        try:
            data = base64.b64decode(str(att.get("Content") or ""), validate=True)
        except (binascii.Error, ValueError, AttributeError) as e:
            raise SendError("Attachments: Content must be base64") from e
        ctype = str(att.get("ContentType") or "application/octet-stream")
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(
            data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=str(att.get("Filename") or "attachment"),
        )
    return msg.as_bytes()


def _qint(query: dict, key: str, default: int) -> int:
    try:
        return max(0, int(query.get(key, [default])[0]))
    except ValueError:
        return default


def _decode(value: str) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:
        return value


def _addrs(values) -> list[dict]:
    try:
        pairs = email.utils.getaddresses([str(v) for v in values or []])
    except (RecursionError, ValueError, TypeError, IndexError):  # see _with_headers
        return []
    return [{"Name": _decode(n), "Address": a} for n, a in pairs if a]


def _created(base: str) -> str:
    sec, usec, _ = _order_key(base)
    t = datetime.fromtimestamp(sec + usec / 1e6, tz=UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def http_handler(api: Api, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    status, ctype, payload = 500, "text/plain", b"error\n"
    try:
        line = await asyncio.wait_for(reader.readline(), 10)
        parts = line.decode("latin-1").split()
        length = 0
        while True:
            h = await asyncio.wait_for(reader.readline(), 10)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip() or 0)
        if len(parts) < 2 or length > 1_048_576:
            status, payload = 400, b"bad request\n"
        else:
            method, target = parts[0].upper(), urlsplit(parts[1])
            body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
            status, ctype, payload = await route(api, method, target, body)
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
        status, payload = 400, b"bad request\n"
    except Exception:  # an API error must not take the server down: log it, answer 500
        log.exception("HTTP request failed")
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'Internal Server Error')}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    try:
        writer.write(head.encode() + payload)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    except ConnectionError:
        pass


async def route(api: Api, method: str, target, body: bytes):
    path = target.path.rstrip("/") or "/"
    loop = asyncio.get_running_loop()
    if path in ("/livez", "/readyz"):
        return (200, "text/plain", b"") if method in ("GET", "HEAD") else (405, "text/plain", b"")
    if path == "/api/v1/messages":
        if method == "GET":
            data = await loop.run_in_executor(None, api.messages, parse_qs(target.query))
            return 200, "application/json", json.dumps(data).encode()
        if method == "DELETE":
            ids = None
            if body.strip():
                req = json.loads(body)
                if req.get("IDs"):
                    ids = {str(i) for i in req["IDs"]}
            n = await loop.run_in_executor(None, api.maildir.delete, ids)
            log.info("HTTP API deleted %d message(s)", n)
            return 200, "text/plain", b"ok"
        return 405, "text/plain", b"method not allowed\n"
    if path == "/api/v1/send":
        if method != "POST":
            return 405, "text/plain", b"method not allowed\n"
        try:
            message = build_send(json.loads(body or b"null"), socket.getfqdn())
        except (SendError, ValueError) as e:  # json.JSONDecodeError is a ValueError
            return 400, "application/json", json.dumps({"Error": str(e)}).encode()
        msg_id = await loop.run_in_executor(None, api.maildir.deliver, message)
        log.info("stored %s (%d bytes) from the send API", msg_id, len(message))
        return 200, "application/json", json.dumps({"ID": msg_id}).encode()
    return 404, "text/plain", b"not found\n"


# --- main --------------------------------------------------------------------------------------
async def prune_loop(maildir: Maildir, keep: int):
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(PRUNE_EVERY)
        try:
            n = await loop.run_in_executor(None, maildir.prune, keep)
            if n:
                log.info("pruned %d oldest message(s) (MP_MAX_MESSAGES=%d)", n, keep)
        except OSError as e:
            log.error("pruning failed: %s", e)


async def main() -> int:
    max_size = env_int("MP_MAX_MESSAGE_SIZE", 50) * 1024 * 1024
    max_rcpt = env_int("MP_SMTP_MAX_RECIPIENTS", 100)
    keep = env_int("MP_MAX_MESSAGES", 500)
    label = os.environ.get("MP_LABEL", "").strip()
    maildir = Maildir(MAILDIR)
    hostname = socket.gethostname()  # never getfqdn(): no DNS lookup at start
    handler = CatchAllHandler(maildir, hostname, max_rcpt)
    ident = "Mailpit" + (f" ({_clean(label, 64)})" if label else "")
    ident += " ESMTP Service ready (offline stand-in)"
    loop = asyncio.get_running_loop()

    tls = tls_context("MP_SMTP_TLS_CERT", "MP_SMTP_TLS_KEY")
    require_tls = env_bool("MP_SMTP_REQUIRE_TLS")
    require_starttls = env_bool("MP_SMTP_REQUIRE_STARTTLS")
    if (require_tls or require_starttls) and tls is None:
        sys.exit(
            "mailserver-smtpd: MP_SMTP_REQUIRE_TLS/MP_SMTP_REQUIRE_STARTTLS need "
            "MP_SMTP_TLS_CERT and MP_SMTP_TLS_KEY"
        )
    users = None
    accept_any = env_bool("MP_SMTP_AUTH_ACCEPT_ANY")
    if os.environ.get("MP_SMTP_AUTH_FILE", "").strip():
        users = parse_auth(read_file("MP_SMTP_AUTH_FILE"))
        if not users:
            sys.exit("mailserver-smtpd: MP_SMTP_AUTH_FILE holds no user:password entry")
    elif os.environ.get("MP_SMTP_AUTH", "").strip():
        users = parse_auth(os.environ["MP_SMTP_AUTH"])
    auth = users is not None or accept_any
    insecure = env_bool("MP_SMTP_AUTH_ALLOW_INSECURE")
    if auth and tls is None and not insecure:
        sys.exit(
            "mailserver-smtpd: SMTP authentication needs TLS (MP_SMTP_TLS_CERT/KEY) or "
            "MP_SMTP_AUTH_ALLOW_INSECURE=true (RFC 4954)"
        )
    authenticator = Authenticator(None if accept_any else users) if auth else None

    def factory(implicit: bool):
        def make():
            kw = {}
            if authenticator is not None:
                kw.update(
                    authenticator=authenticator,
                    auth_required=True,
                    auth_require_tls=not insecure,
                )
            if tls is not None and not implicit:
                kw.update(tls_context=tls, require_starttls=require_starttls)
            return MailpitSMTP(
                handler,
                data_size_limit=max_size or None,
                enable_SMTPUTF8=True,
                hostname=hostname,
                ident=ident,
                implicit_tls=implicit,
                **kw,
            )

        return make

    servers = []
    smtp = await loop.create_server(
        factory(require_tls),
        host=None,  # every address, IPv4 and IPv6, like Mailpit's [::]:1025
        port=SMTP_PORT,
        reuse_address=True,
        ssl=tls if require_tls else None,
    )
    servers.append(smtp)
    if tls is not None:
        servers.append(
            await loop.create_server(
                factory(True), host=None, port=SMTPS_PORT, reuse_address=True, ssl=tls
            )
        )
    log.info(
        "SMTP %s on %d%s, authentication %s",
        "implicit TLS"
        if require_tls
        else ("STARTTLS required" if require_starttls else "STARTTLS offered" if tls else "plain"),
        SMTP_PORT,
        f", implicit TLS on {SMTPS_PORT}" if tls is not None else "",
        ("any accepted" if accept_any else f"required ({len(users)} user(s))") if auth else "off",
    )
    api = Api(maildir)
    http = await asyncio.start_server(
        lambda r, w: http_handler(api, r, w), host=None, port=HTTP_PORT, reuse_address=True
    )
    log.info(
        "SMTP on %d, HTTP API on %d, Maildir %s (max message %s, max messages %s)",
        SMTP_PORT,
        HTTP_PORT,
        MAILDIR,
        f"{max_size // 1048576} MiB" if max_size else "unlimited",
        keep or "unlimited",
    )

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pruner = asyncio.create_task(prune_loop(maildir, keep))
    await stop.wait()
    log.info("stopping")
    pruner.cancel()
    for server in (*servers, http):
        server.close()
    await asyncio.wait_for(asyncio.gather(*(s.wait_closed() for s in (*servers, http))), 5)
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(name)s: %(levelname)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    # aiosmtpd logs every peer and command (with addresses) at INFO: warnings and errors only
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # ... and a deprecation notice of its own for every successful AUTH: not ours to fix
    logging.getLogger("mail.log").addFilter(
        lambda r: "login_data is deprecated" not in r.getMessage()
    )
    try:
        sys.exit(asyncio.run(main()))
    except OSError as e:  # e.g. the Maildir is not writable or a port is taken
        sys.exit(f"mailserver-smtpd: {e}")
