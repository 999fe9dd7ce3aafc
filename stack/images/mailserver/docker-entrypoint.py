#!/usr/bin/python3
"""PID 1 of the offline Mailpit stand-in (installed as /usr/local/bin/docker-entrypoint).

1. Fail fast (exit 1, one line naming the variable) unless MP_POP3_AUTH_FILE names a readable
   file with at least one user:password entry, Mailpit's format: entries separated by any
   whitespace, each split at its first colon, the password plain text (or an htpasswd hash:
   {SHA}, {SSHA}, bcrypt $2a$/$2b$/$2y$, $1$, $5$, $6$; Apache's $apr1$ Dovecot cannot check).
   The entries become Dovecot's passwd-file on the /run/dovecot tmpfs, plain passwords as salted
   SSHA512, mode 0600. Only the number of users is logged, never a name or a password.
1b. TLS (issue 11): with MP_POP3_TLS_CERT and MP_POP3_TLS_KEY (Mailpit's variables, readable PEM
   files, else exit 1 naming them) Dovecot requires TLS: POP3 1110 implicit TLS (as Mailpit's
   POP3 with a certificate), POP3 1111 with STLS, IMAP 1143 with STARTTLS, IMAPS 1993; plaintext
   authentication before TLS is refused. Without them: POP3 1110 and IMAP 1143 in plain text.
   Written as /run/dovecot/tls.conf, which dovecot.conf includes. SMTP's TLS and authentication
   (MP_SMTP_*) are mailserver-smtpd's.
2. Make sure the catch-all Maildir exists and is writable: `maildir` beside Mailpit's database,
   i.e. in the directory of MP_DATABASE (a file, or a directory as Mailpit also allows), so the
   mail lands on whatever volume the stack gives Mailpit; /data/maildir when MP_DATABASE is unset.
3. Start Dovecot (POP3 1110, IMAP 1143) and mailserver-smtpd (SMTP 1025, HTTP 8025) and supervise
   them: when either exits, the other is stopped and the container exits non-zero, so Docker's
   restart policy and health status see it (never half alive). SIGTERM/SIGINT are passed to both
   for a clean stop (exit 0). Orphans are reaped. Their logs go to the container's stdout/stderr;
   the two lines Dovecot logs for every health-check probe (a connection from the container's own
   loopback that closes without logging in) are dropped there.

`docker run IMAGE <command>` runs <command> instead (a shell, doveconf -n, ...).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading

PROG = "mailserver"
UID = GID = 1025
DEFAULT_MAILDIR = "/data/maildir"
PASSWD_FILE = "/run/dovecot/mailserver-users"
TLS_CONF = "/run/dovecot/tls.conf"
STOP_TIMEOUT = 8  # seconds for the children after SIGTERM, below Docker's default 10 s

# scheme prefixes of htpasswd hashes Mailpit (go-htpasswd) accepts, as Dovecot schemes
HASHES = {
    "{SHA}": "{SHA}",
    "{SSHA}": "{SSHA}",
    "$2a$": "{BLF-CRYPT}",
    "$2b$": "{BLF-CRYPT}",
    "$2y$": "{BLF-CRYPT}",
    "$1$": "{MD5-CRYPT}",
    "$5$": "{SHA256-CRYPT}",
    "$6$": "{SHA512-CRYPT}",
}
UNSUPPORTED = ("$apr1$", "$2x$")


def say(msg: str, stream=sys.stdout) -> None:
    print(f"{PROG}: {msg}", file=stream, flush=True)


def die(msg: str) -> None:
    say(msg, sys.stderr)
    sys.exit(1)


def dovecot_password(entry_no: int, password: str) -> str | None:
    for prefix in UNSUPPORTED:
        if password.startswith(prefix):
            die(
                f"MP_POP3_AUTH_FILE entry {entry_no}: {prefix} hashes are not supported by this "
                "stand-in; use a plain password or a bcrypt/{SHA}/{SSHA}/$5$/$6$ hash"
            )
    for prefix, scheme in HASHES.items():
        if password.startswith(prefix):
            if prefix.startswith("{"):
                return scheme + password[len(prefix) :]
            return scheme + password
    if password.startswith("{PLAIN}"):  # go-htpasswd's plain matcher accepts this nginx form
        password = password[len("{PLAIN}") :]
    if not password:
        return None
    salt = os.urandom(16)
    digest = hashlib.sha512(password.encode("utf-8") + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode("ascii")


def load_users() -> dict[str, str]:
    """user -> Dovecot password field, from MP_POP3_AUTH_FILE; dies when there is none."""
    path = os.environ.get("MP_POP3_AUTH_FILE", "").strip()
    if not path:
        die(
            "MP_POP3_AUTH_FILE is not set: point it at a file of user:password lines "
            "(a Docker secret, e.g. /run/secrets/mailpit_pop3_auth)"
        )
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except OSError as e:
        die(f"MP_POP3_AUTH_FILE={path} is missing or unreadable ({e.strerror})")
    except UnicodeDecodeError:
        die(f"MP_POP3_AUTH_FILE={path} is not UTF-8 text")

    users: dict[str, str] = {}  # the last entry of a user wins, as in go-htpasswd
    for no, token in enumerate(text.split(), 1):
        user, sep, password = token.partition(":")
        hashed = dovecot_password(no, password) if sep and user else None
        if hashed is None:
            say(f"ignoring MP_POP3_AUTH_FILE entry {no}: not user:password", sys.stderr)
            continue
        users[user] = hashed
    del text
    if not users:
        die(f"MP_POP3_AUTH_FILE={path} holds no user:password entry")
    return users


def maildir_path() -> str:
    db = os.environ.get("MP_DATABASE", "").strip()
    if not db:
        return DEFAULT_MAILDIR
    db = os.path.abspath(db)
    path = os.path.join(db if os.path.isdir(db) else os.path.dirname(db), "maildir")
    if ":" in path or "%" in path:
        die(f"MP_DATABASE={db}: the Maildir path {path} must not contain ':' or '%'")
    return path


def write_passwd_file(users: dict[str, str], maildir: str) -> None:
    """Dovecot's passdb and userdb: user:password:uid:gid::home, home = the one Maildir."""
    tmp = PASSWD_FILE + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(f"{u}:{h}:{UID}:{GID}::{maildir}::\n" for u, h in users.items())
        os.replace(tmp, PASSWD_FILE)
    except OSError as e:
        die(
            f"cannot write {PASSWD_FILE} ({e.strerror}): mount a tmpfs at /run/dovecot "
            f"owned by {UID}:{GID}"
        )
    say(f"loaded {len(users)} POP3/IMAP user(s) from MP_POP3_AUTH_FILE")


def tls_files() -> tuple[str, str] | None:
    """(cert, key) from MP_POP3_TLS_CERT/MP_POP3_TLS_KEY, both readable; None when neither."""
    cert = os.environ.get("MP_POP3_TLS_CERT", "").strip()
    key = os.environ.get("MP_POP3_TLS_KEY", "").strip()
    if not cert and not key:
        return None
    if not (cert and key):
        die("set both MP_POP3_TLS_CERT and MP_POP3_TLS_KEY, or neither")
    for var, path in (("MP_POP3_TLS_CERT", cert), ("MP_POP3_TLS_KEY", key)):
        if any(c in path for c in '\n"<') or not path.startswith("/"):
            die(f"{var}={path} must be an absolute path")
        try:
            with open(path, "rb") as f:
                if b"-----BEGIN " not in f.read():
                    die(f"{var}={path} is not a PEM file")
        except OSError as e:
            die(f"{var}={path} is missing or unreadable ({e.strerror})")
    return cert, key


def write_tls_conf(tls: tuple[str, str] | None) -> None:
    if tls is None:
        body = (
            "ssl = no\n"
            "disable_plaintext_auth = no\n"
            "service pop3-login {\n  chroot =\n"
            "  inet_listener pop3 {\n    port = 1110\n  }\n"
            "  inet_listener pop3s {\n    port = 0\n  }\n}\n"
            "service imap-login {\n  chroot =\n"
            "  inet_listener imap {\n    port = 1143\n  }\n"
            "  inet_listener imaps {\n    port = 0\n  }\n}\n"
        )
    else:
        cert, key = tls
        body = (
            "ssl = required\n"
            f"ssl_cert = <{cert}\n"
            f"ssl_key = <{key}\n"
            "ssl_min_protocol = TLSv1.2\n"
            "disable_plaintext_auth = yes\n"
            "service pop3-login {\n  chroot =\n"
            "  inet_listener pop3 {\n    port = 1111\n  }\n"
            "  inet_listener pop3s {\n    port = 1110\n    ssl = yes\n  }\n}\n"
            "service imap-login {\n  chroot =\n"
            "  inet_listener imap {\n    port = 1143\n  }\n"
            "  inet_listener imaps {\n    port = 1993\n    ssl = yes\n  }\n}\n"
        )
    try:
        with open(TLS_CONF, "w", encoding="utf-8") as f:
            f.write(body)
    except OSError as e:
        die(f"cannot write {TLS_CONF} ({e.strerror})")
    say(
        "POP3 1110 implicit TLS, POP3 1111 STLS, IMAP 1143 STARTTLS, IMAPS 1993: TLS required"
        if tls
        else "POP3 1110 and IMAP 1143 without TLS (MP_POP3_TLS_CERT/KEY not set)"
    )


def prepare_dirs(maildir: str) -> None:
    for d, hint in (
        ("/run/dovecot", f"a tmpfs at /run/dovecot owned by {UID}:{GID}, mode 0755"),
        ("/var/lib/dovecot", f"a tmpfs at /var/lib/dovecot owned by {UID}:{GID}"),
        ("/tmp", "a tmpfs at /tmp (mode 1777)"),
    ):
        if not os.access(d, os.W_OK | os.X_OK):
            die(f"{d} is not writable by uid {os.getuid()}: mount {hint}")
    try:
        for sub in ("", "tmp", "new", "cur"):
            os.makedirs(os.path.join(maildir, sub), mode=0o700, exist_ok=True)
        probe = os.path.join(maildir, "tmp", f".probe.{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        die(
            f"the Maildir {maildir} is not writable ({e.strerror}): mount a volume at "
            f"{os.path.dirname(maildir)} writable by {UID}:{GID}"
        )


def is_probe(line: bytes) -> bool:
    """The line Dovecot logs for a health-check probe: a login process's connection from the
    container's own loopback that ended without an authentication attempt."""
    return (
        b"-login: Info: Disconnected" in line
        and b"(no auth attempts in " in line
        and (b"rip=127.0.0.1, lip=127.0.0.1," in line or b"rip=::1, lip=::1," in line)
    )


def pump(src, dst) -> None:
    """Copy a child's output line by line to ours, dropping the health-check probe lines."""
    for line in iter(src.readline, b""):
        if is_probe(line):
            continue
        try:
            dst.write(line)
            dst.flush()
        except (BrokenPipeError, ValueError):
            pass


def supervise(maildir: str) -> int:
    children: dict[int, tuple[str, subprocess.Popen]] = {}
    state = {"stopping": False, "code": 0}

    def stop_all(sig=signal.SIGTERM) -> None:
        for _, proc in children.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def on_term(signum, _frame) -> None:
        if not state["stopping"]:
            say(f"got {signal.Signals(signum).name}: stopping Dovecot and SMTP")
            state["stopping"] = True
            stop_all()
            signal.alarm(STOP_TIMEOUT)

    def on_alarm(_signum, _frame) -> None:
        say(f"children still running after {STOP_TIMEOUT} s: killing them", sys.stderr)
        stop_all(signal.SIGKILL)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGALRM, on_alarm)

    commands = {
        "dovecot": ["/usr/sbin/dovecot", "-F", "-c", "/etc/dovecot/dovecot.conf"],
        "smtpd": ["/usr/bin/python3", "-u", "/usr/local/bin/mailserver-smtpd"],
    }
    env = dict(os.environ, MAILSERVER_MAILDIR=maildir)
    pumps = []
    for name, argv in commands.items():
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        children[proc.pid] = (name, proc)
        for src, dst in ((proc.stdout, sys.stdout.buffer), (proc.stderr, sys.stderr.buffer)):
            t = threading.Thread(target=pump, args=(src, dst), daemon=True)
            t.start()
            pumps.append(t)

    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue  # an orphan reparented to PID 1: reaped
        name, proc = children.pop(pid)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if state["stopping"]:
            say(f"{name} stopped (exit {code})")
            if code not in (0, -signal.SIGTERM) and state["code"] == 0:
                state["code"] = 1
            continue
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        say(f"{name} {how} unexpectedly: stopping the container", sys.stderr)
        state["code"] = code if code > 0 else 1
        state["stopping"] = True
        stop_all()
        signal.alarm(STOP_TIMEOUT)
    signal.alarm(0)
    for t in pumps:
        t.join(timeout=2)
    return state["code"]


def main() -> int:
    args = sys.argv[1:]
    if args and not args[0].startswith("-"):
        os.execvp(args[0], args)
    if args:
        die(
            "Mailpit command-line flags are not supported by the offline stand-in: "
            "configure it with MP_* variables"
        )
    if os.getuid() != UID:
        die(f"run as {UID}:{GID} (the image's user), not uid {os.getuid()}")
    users = load_users()
    tls = tls_files()
    maildir = maildir_path()
    prepare_dirs(maildir)
    write_passwd_file(users, maildir)
    write_tls_conf(tls)
    del users
    return supervise(maildir)


if __name__ == "__main__":
    sys.exit(main())
