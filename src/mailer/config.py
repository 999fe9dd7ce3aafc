"""The mailer's configuration, read from environment variables (the readers `_source`, `_redis`,
... below name them; docs/configuration.md lists them).

Config holds the profile, its addresses and one frozen section per component: `source`
(SourceConfig: the fetcher and its mailbox), `redis`, `db`, `clamd`, `ollama`, `smtp` (the outbox
and the worker's staff notifications and acknowledgements), `storage` (the data volume, its
limits and housekeeping) and `process`; MAIL_CA_FILE and ALLOW_PLAINTEXT_AUTH, which several
parts share, stay on Config. Each part is built from its own section (mailer.app).

Secrets are only ever read from files named by `*_FILE` variables (requirement S1): a plain
`SOURCE_PASSWORD` (etc.) is refused. A password never travels unencrypted: plaintext IMAP/POP3,
and SMTP AUTH without TLS, are refused unless ALLOW_PLAINTEXT_AUTH is set (the test stack only).
`load_config` checks everything and raises one ConfigError listing every problem; messages name
variables and paths, never a secret value.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROFILES = ("praxis", "ecom")
# protocol -> (mail protocol, transport security, default port); imaps first: the safe choice
SOURCE_PROTOCOLS = {
    "imaps": ("imap", "tls", 993),
    "imap+starttls": ("imap", "starttls", 143),
    "pop3s": ("pop3", "tls", 995),
    "pop3+starttls": ("pop3", "starttls", 110),
    "imap": ("imap", "none", 143),
    "pop3": ("pop3", "none", 110),
}
SMTP_SECURITY = {"none": 25, "starttls": 587, "tls": 465}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_MAX_SECRET_BYTES = 64 * 1024
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_HOST = re.compile(r"[A-Za-z0-9_.:\[\]-]{1,253}")
_WORKER_ID = re.compile(r"[A-Za-z0-9_.@:-]{1,128}")
_HH_MM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


class ConfigError(Exception):
    """The configuration is unusable. `problems` lists every problem found (also in str())."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        n = len(self.problems)
        head = f"invalid configuration ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


def _secret() -> Any:
    """A field holding a secret: left out of repr, shown as "set"/"unset" by describe."""
    return field(repr=False, metadata={"secret": True})


@dataclass(frozen=True)
class SourceConfig:
    """The mailbox (SOURCE_*): what the fetcher polls."""

    protocol: str
    host: str
    port: int
    user: str
    password: str = _secret()
    mailbox: str
    poll_seconds: float
    delete_after_store: bool

    @property
    def kind(self) -> str:
        """`pop3` or `imap`."""
        return SOURCE_PROTOCOLS[self.protocol][0]

    @property
    def security(self) -> str:
        """`tls`, `starttls` or `none`."""
        return SOURCE_PROTOCOLS[self.protocol][1]


@dataclass(frozen=True)
class RedisConfig:
    """The queue's Redis (REDIS_*)."""

    host: str
    port: int
    password: str = _secret()
    user: str


@dataclass(frozen=True)
class DatabaseConfig:
    """PostgreSQL (DB_*)."""

    host: str
    port: int
    name: str
    user: str
    password: str = _secret()
    pool_max: int


@dataclass(frozen=True)
class ClamdConfig:
    """The virus scanner (CLAMD_*)."""

    host: str
    port: int
    timeout: float


@dataclass(frozen=True)
class OllamaConfig:
    """The classifier's model (OLLAMA_*); no url: rules only."""

    url: str | None
    model: str
    timeout: float
    num_ctx: int


@dataclass(frozen=True)
class SmtpConfig:
    """Outbound mail (SMTP_*): the server, our sender address, the staff's address and whether
    senders get an acknowledgement."""

    host: str
    port: int
    security: str
    user: str | None
    password: str | None = _secret()
    from_address: str
    staff_address: str
    send_acknowledgement: bool


@dataclass(frozen=True)
class StorageConfig:
    """The data volume: where files go, size limits, retention and the housekeeping time."""

    data_dir: Path
    max_attachment_bytes: int
    spool_threshold_bytes: int
    quarantine_retention_days: int
    attachment_retention_days: int
    housekeeping_at: str


@dataclass(frozen=True)
class ProcessConfig:
    """The process itself: HTTP port, log level, the worker's consumer name."""

    http_port: int
    log_level: str
    worker_id: str


@dataclass(frozen=True)
class Config:
    """The profile and its addresses, one section per component, and what several share:
    ALLOW_PLAINTEXT_AUTH and MAIL_CA_FILE (the CA trusted for the mailbox and the SMTP server)."""

    profile: str
    addresses: tuple[str, ...]
    source: SourceConfig
    redis: RedisConfig
    db: DatabaseConfig
    clamd: ClamdConfig
    ollama: OllamaConfig
    smtp: SmtpConfig
    storage: StorageConfig
    process: ProcessConfig
    allow_plaintext_auth: bool = False
    mail_ca_file: Path | None = None

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for log scrubbing (scrub.setup_logging)."""
        return tuple(v for v in _secret_values(self) if v)


def _secret_values(obj: object) -> list[str | None]:
    values = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("secret"):
            values.append(value)
        elif is_dataclass(value):
            values.extend(_secret_values(value))
    return values


def describe(config: object) -> dict[str, object]:
    """A loggable summary: every field, one nested dict per section, secrets replaced by
    "set"/"unset", paths as str."""
    out: dict[str, object] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.metadata.get("secret"):
            out[f.name] = "set" if value else "unset"
        elif is_dataclass(value):
            out[f.name] = describe(value)
        elif isinstance(value, Path):
            out[f.name] = str(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def tls_context(ca_file: Path | str | None = None) -> ssl.SSLContext:
    """Client TLS: certificates always verified and host names checked. With `ca_file` only that
    bundle is trusted (our stack's own CA), else the system store."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class _Reader:
    """Reads variables from `env`, collecting problems instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            self.problems.append(f"{name} is required")
            return ""
        return value

    def text(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self.raw(name)
        if value is None:
            if default is None:
                self.problems.append(f"{name} is required (one of: {', '.join(choices)})")
                return choices[0]
            return default
        if value.lower() not in choices:
            self.problems.append(f"{name}={value!r} is not one of: {', '.join(choices)}")
            return default if default is not None else choices[0]
        return value.lower()

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value, 10)
        except ValueError:
            self.problems.append(f"{name}={value!r} is not an integer")
            return default
        if not lo <= number <= hi:
            self.problems.append(f"{name}={number} is out of range {lo}..{hi}")
            return default
        return number

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, 1, 65535)

    def number(self, name: str, default: float, lo: float, hi: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            self.problems.append(f"{name}={value!r} is not a number")
            return default
        if not lo < number <= hi:  # NaN fails this too
            self.problems.append(f"{name}={value} is out of range (>{lo:g} and <={hi:g})")
            return default
        return number

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        self.problems.append(f"{name}={value!r} is not a boolean (true/false, 1/0, yes/no)")
        return default

    def problems_about(self, prefix: str) -> bool:
        return any(p.startswith(prefix) for p in self.problems)

    def host(self, name: str) -> str:
        value = self.required(name)
        if value and not _HOST.fullmatch(value):
            self.problems.append(f"{name}={value!r} is not a valid host name or address")
        return value

    def email(self, name: str, value: str) -> str:
        value = value.strip().lower()
        if value and not _EMAIL.fullmatch(value):
            self.problems.append(f"{name}: {value!r} is not a valid e-mail address")
        return value

    def refuse_plain_secret(self, name: str) -> None:
        """S1: secrets come from files. A non-empty `X` is refused; with `X_FILE` too."""
        if self.raw(name) is None:
            return
        if self.raw(f"{name}_FILE") is not None:
            self.problems.append(
                f"both {name} and {name}_FILE are set: remove {name}, secrets come from files only"
            )
        else:
            self.problems.append(
                f"{name} is not accepted (no secrets in the environment): write the secret to a "
                f"file and set {name}_FILE to its path"
            )

    def secret(self, name: str, required: bool = True) -> str | None:
        self.refuse_plain_secret(name)
        var = f"{name}_FILE"
        path = self.raw(var)
        if path is None:
            if required:
                self.problems.append(f"{var} is required (path of the file holding {name})")
            return None
        try:
            with open(path, "rb") as fh:
                data = fh.read(_MAX_SECRET_BYTES + 1)
        except FileNotFoundError:
            self.problems.append(f"{var}: file {path} does not exist")
            return None
        except IsADirectoryError:
            self.problems.append(f"{var}: {path} is a directory, not a file")
            return None
        except PermissionError:
            self.problems.append(f"{var}: file {path} is not readable (permission denied)")
            return None
        except OSError as exc:
            self.problems.append(f"{var}: file {path} cannot be read ({exc.strerror or exc})")
            return None
        if len(data) > _MAX_SECRET_BYTES:
            self.problems.append(f"{var}: file {path} is larger than {_MAX_SECRET_BYTES} bytes")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.problems.append(f"{var}: file {path} is not UTF-8 text")
            return None
        text = text.rstrip("\r\n")
        if not text.strip():
            self.problems.append(f"{var}: file {path} is empty")
            return None
        return text


def _ca_file(r: _Reader) -> Path | None:
    value = r.raw("MAIL_CA_FILE")
    if value is None:
        return None
    try:
        tls_context(value)
    except FileNotFoundError:
        r.problems.append(f"MAIL_CA_FILE: file {value} does not exist")
        return None
    except IsADirectoryError:
        r.problems.append(f"MAIL_CA_FILE: {value} is a directory, not a PEM file")
        return None
    except PermissionError:
        r.problems.append(f"MAIL_CA_FILE: file {value} is not readable (permission denied)")
        return None
    except (ssl.SSLError, OSError) as exc:
        r.problems.append(f"MAIL_CA_FILE: file {value} holds no usable PEM certificate ({exc})")
        return None
    return Path(value)


def _smtp_password(r: _Reader) -> str | None:
    """SMTP_PASS_FILE (the review's name; Gmail: the same app password as the mailbox), or its
    older name SMTP_PASSWORD_FILE. Both set is accepted only when they name the same file."""
    new = r.secret("SMTP_PASS", required=False)
    old = r.secret("SMTP_PASSWORD", required=False)
    both = r.raw("SMTP_PASS_FILE"), r.raw("SMTP_PASSWORD_FILE")
    if None not in both and both[0] != both[1]:
        r.problems.append(
            "SMTP_PASS_FILE and SMTP_PASSWORD_FILE name different files: set only SMTP_PASS_FILE "
            "(SMTP_PASSWORD_FILE is its older name)"
        )
    return new if new is not None else old


def _ollama_url(r: _Reader) -> str | None:
    value = r.raw("OLLAMA_URL")
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.problems.append(f"OLLAMA_URL={value!r} is not an http(s) URL")
        return None
    if parts.username or parts.password:
        r.problems.append("OLLAMA_URL must not contain credentials")
        return None
    if parts.query or parts.fragment:
        r.problems.append(f"OLLAMA_URL={value!r} must not have a query or fragment")
        return None
    return value.rstrip("/")


def load_config(env: Mapping[str, str]) -> Config:
    """Build the Config from `env` (usually os.environ); ConfigError lists every problem.
    Read section by section, in the order the problems are reported."""
    r = _Reader(env)
    profile = r.choice("MAILER_PROFILE", PROFILES)
    addresses = _addresses(r, env)
    # the dev/test overlay only: lets a password cross the network unencrypted
    allow_plaintext = r.flag("ALLOW_PLAINTEXT_AUTH", False)
    source = _source(r, allow_plaintext)
    redis = _redis(r)
    db = _database(r, profile)
    clamd = _clamd(r)
    ollama = _ollama(r)
    smtp, mail_ca_file = _smtp(r, allow_plaintext)
    storage = _storage(r)
    process = _process(r)
    if r.problems:
        raise ConfigError(r.problems)
    return Config(
        profile=profile,
        addresses=tuple(addresses),
        source=source,
        redis=redis,
        db=db,
        clamd=clamd,
        ollama=ollama,
        smtp=smtp,
        storage=storage,
        process=process,
        allow_plaintext_auth=allow_plaintext,
        mail_ca_file=mail_ca_file,
    )


def _addresses(r: _Reader, env: Mapping[str, str]) -> list[str]:
    addresses: list[str] = []
    for item in r.required("MAILER_ADDRESSES").split(","):
        if item.strip():
            address = r.email("MAILER_ADDRESSES", item)
            if address not in addresses:
                addresses.append(address)
    if "MAILER_ADDRESSES" in env and not addresses:
        r.problems.append("MAILER_ADDRESSES lists no address")
    return addresses


def _source(r: _Reader, allow_plaintext: bool) -> SourceConfig:
    protocol = r.choice("SOURCE_PROTOCOL", tuple(SOURCE_PROTOCOLS))
    if r.raw("SOURCE_PROTOCOL") and SOURCE_PROTOCOLS[protocol][1] == "none" and not allow_plaintext:
        r.problems.append(
            f"SOURCE_PROTOCOL={protocol} sends the mailbox password unencrypted: use {protocol}s "
            f"or {protocol}+starttls (ALLOW_PLAINTEXT_AUTH=1 permits it, for a test stack only)"
        )
    return SourceConfig(
        protocol=protocol,
        host=r.host("SOURCE_HOST"),
        port=r.port("SOURCE_PORT", SOURCE_PROTOCOLS[protocol][2]),
        user=r.required("SOURCE_USER"),
        password=r.secret("SOURCE_PASSWORD") or "",
        mailbox=r.text("SOURCE_MAILBOX", "INBOX"),
        poll_seconds=r.number("SOURCE_POLL_SECONDS", 5.0, 0.0, 3600.0),
        delete_after_store=r.flag("SOURCE_DELETE_AFTER_STORE", False),
    )


def _redis(r: _Reader) -> RedisConfig:
    return RedisConfig(
        host=r.host("REDIS_HOST"),
        port=r.port("REDIS_PORT", 6379),
        password=r.secret("REDIS_PASSWORD") or "",
        user=r.text("REDIS_USER", "default"),  # the stack gives each profile its own
    )


def _database(r: _Reader, profile: str) -> DatabaseConfig:
    return DatabaseConfig(
        host=r.host("DB_HOST"),
        port=r.port("DB_PORT", 5432),
        name=r.text("DB_NAME", profile),
        user=r.text("DB_USER", profile),
        password=r.secret("DB_PASSWORD") or "",
        pool_max=r.integer("DB_POOL_MAX", 5, 1, 20),
    )


def _clamd(r: _Reader) -> ClamdConfig:
    return ClamdConfig(
        host=r.host("CLAMD_HOST"),
        port=r.port("CLAMD_PORT", 3310),
        timeout=r.number("CLAMD_TIMEOUT_SECONDS", 30.0, 0.0, 600.0),
    )


def _ollama(r: _Reader) -> OllamaConfig:
    return OllamaConfig(
        url=_ollama_url(r),
        model=r.text("OLLAMA_MODEL", "llama3.2:3b"),
        timeout=r.number("OLLAMA_TIMEOUT_SECONDS", 20.0, 0.0, 600.0),
        num_ctx=r.integer("OLLAMA_NUM_CTX", 4096, 512, 131072),
    )


def _smtp(r: _Reader, allow_plaintext: bool) -> tuple[SmtpConfig, Path | None]:
    """The SMTP section, and MAIL_CA_FILE (read between the server and the addresses, the order
    its problems have always been listed in)."""
    smtp_host = r.host("SMTP_HOST")
    smtp_security = r.choice("SMTP_SECURITY", tuple(SMTP_SECURITY), default="none")
    smtp_port = r.port("SMTP_PORT", SMTP_SECURITY[smtp_security])
    smtp_user = r.raw("SMTP_USER")
    smtp_password = _smtp_password(r)
    if (smtp_user is None) != (smtp_password is None) and not r.problems_about("SMTP_PASS"):
        r.problems.append("SMTP_USER and SMTP_PASS_FILE must be set together (or neither)")
    if smtp_user is not None and smtp_security == "none" and not allow_plaintext:
        r.problems.append(
            "SMTP_SECURITY=none with SMTP_USER set sends the SMTP password unencrypted: use "
            "starttls or tls (ALLOW_PLAINTEXT_AUTH=1 permits it, for a test stack only)"
        )
    mail_ca_file = _ca_file(r)
    smtp = SmtpConfig(
        host=smtp_host,
        port=smtp_port,
        security=smtp_security,
        user=smtp_user,
        password=smtp_password,
        from_address=r.email("SMTP_FROM", r.required("SMTP_FROM")),
        staff_address=r.email("STAFF_ADDRESS", r.required("STAFF_ADDRESS")),
        send_acknowledgement=r.flag("SEND_ACKNOWLEDGEMENT", True),
    )
    return smtp, mail_ca_file


def _storage(r: _Reader) -> StorageConfig:
    data_dir = Path(r.text("DATA_DIR", "/app/data"))
    if not data_dir.is_absolute():
        r.problems.append(f"DATA_DIR={str(data_dir)!r} must be an absolute path")
    max_attachment_mb = r.integer("MAX_ATTACHMENT_MB", 50, 1, 1024)
    # larger mails go from the mailbox to a file on the data volume, not through memory and Redis
    spool_threshold_mb = r.integer("MAIL_SPOOL_THRESHOLD_MB", 4, 1, 1024)
    # housekeeping (M7): quarantined files are deleted after this many days (their records stay);
    # stored attachments only when a retention is set, i.e. where an archive keeps them (A6)
    storage = StorageConfig(
        data_dir=data_dir,
        max_attachment_bytes=max_attachment_mb * 1024 * 1024,
        spool_threshold_bytes=spool_threshold_mb * 1024 * 1024,
        quarantine_retention_days=r.integer("QUARANTINE_RETENTION_DAYS", 30, 1, 3650),
        attachment_retention_days=r.integer("ATTACHMENT_LOCAL_RETENTION_DAYS", 0, 0, 3650),
        housekeeping_at=r.text("HOUSEKEEPING_AT", "02:00"),
    )
    if not _HH_MM.fullmatch(storage.housekeeping_at):
        r.problems.append(f"HOUSEKEEPING_AT={storage.housekeeping_at!r} is not a time HH:MM (UTC)")
    return storage


def _process(r: _Reader) -> ProcessConfig:
    http_port = r.port("HTTP_PORT", 8000)
    log_level = r.choice("LOG_LEVEL", tuple(x.lower() for x in LOG_LEVELS), "info").upper()
    worker_id = r.text("WORKER_ID", socket.gethostname() or "worker")
    if not _WORKER_ID.fullmatch(worker_id):
        r.problems.append(f"WORKER_ID={worker_id!r} may only use letters, digits and ._@:-")
    return ProcessConfig(http_port=http_port, log_level=log_level, worker_id=worker_id)
