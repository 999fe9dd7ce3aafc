"""Generate the stack's secret files: random, mode 0400, owned by the uid of the service that
reads them. Existing secrets are kept (a new postgres password would lock out an initialised
database); only their mode and owner are repaired.

Run as `python -m stackcheck.ops.secretfiles [stack/secrets]`.
"""

from __future__ import annotations

import hashlib
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stackcheck import project_root
from stackcheck.ops import mailtls  # the mail CA and server certificate (issue 11)
from stackcheck.ops.mailtls import MAILPIT_UID
from stackcheck.ops.secretio import (
    SecretSetupError,
    chown_secret,
    read_secret,
    write_secret,
)


def random_password() -> str:
    # URL-safe: no quoting trouble in DSNs, config files or htpasswd lines
    return secrets.token_urlsafe(32)


def copy(*values: str) -> str:
    """The same value for a second reader: a secret file is mode 0400 and has one owner, so a
    password two services need exists twice, each copy owned by its reader."""
    return values[0] + "\n"


# What a mailer does with Redis (src/mailer/queue.py): its stream with a consumer group, and
# guard keys, all under `mailer:<profile>:`. Nothing else: no other keys, no channels, no
# KEYS/SCAN/FLUSHALL/CONFIG/ACL, so one mailer's credentials cannot read or wipe the other's mail.
# (No `client|setinfo`: Redis 7.0 refuses to start on a subcommand it does not know; redis-py
# ignores the refusal of the library name it sends.)
MAILER_REDIS_COMMANDS = (
    "+ping +hello +auth +multi +exec +discard "
    "+get +set +del +exists +expire "
    "+xadd +xreadgroup +xack +xdel +xautoclaim +xpending +xrange +xlen +xinfo|groups +xgroup|create"
)
# Redis ACL user per mailer secret (the mailers' REDIS_USER in compose.yml)
REDIS_MAILER_USERS = {
    "praxis_mailer_redis_password": "praxis",
    "ecom_mailer_redis_password": "ecom",
}


def _sha(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def redis_acl(admin: str, praxis: str, ecom: str) -> str:
    """The ACL file: `default` (the administrator: health check, suite, rotation) and one user
    per mailer limited to its own key prefix and the commands it needs. Only SHA-256 hashes of
    the passwords are stored."""
    lines = [f"user default on sanitize-payload #{_sha(admin)} ~* &* +@all"]
    for profile, password in (("praxis", praxis), ("ecom", ecom)):
        lines.append(
            f"user {profile} on sanitize-payload #{_sha(password)} resetkeys "
            f"~mailer:{profile}:* resetchannels -@all {MAILER_REDIS_COMMANDS}"
        )
    return "\n".join(lines) + "\n"


def kms_key() -> str:
    """MinIO's MINIO_KMS_SECRET_KEY: `<key name>:<base64 of 32 random bytes>`."""
    import base64

    return "stackcheck-sse:" + base64.b64encode(secrets.token_bytes(32)).decode()


def mailpit_auth(praxis: str, ecom: str) -> str:
    """Mailpit's MP_POP3_AUTH_FILE: one `user:password` entry per mailer."""
    return f"praxis:{praxis}\necom:{ecom}\n"


def mailpit_smtp_auth(praxis: str, ecom: str, alertmanager: str) -> str:
    """Mailpit's MP_SMTP_AUTH_FILE: the mailers with their mailbox passwords (one password for
    reading and sending, as Gmail's app password), and Alertmanager, which may only send."""
    return mailpit_auth(praxis, ecom) + f"alertmanager:{alertmanager}\n"


@dataclass(frozen=True)
class SecretSpec:
    name: str
    uid: int
    gid: int
    # generated from other secrets (in this order) instead of at random, by `derive`
    derive_from: str | tuple[str, ...] | None = None
    derive: Callable[..., str] = copy
    make: Callable[[], str] = random_password  # for secrets not derived from others
    # a secret that must differ from this one: made anew where an older setup left a copy of it
    distinct_from: str | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        if self.derive_from is None:
            return ()
        return (self.derive_from,) if isinstance(self.derive_from, str) else self.derive_from


POSTGRES_UID = REDIS_UID = 999  # the official images' postgres and redis users
PRAXIS_UID, ECOM_UID, MAILER_GID = 1001, 1002, 1000  # our mailer image's users
N8N_UID = 1000  # the official n8n image's node user
MINIO_UID = 1004
BACKUP_UID = 1003
NOBODY_UID = 65534  # the Prometheus images' user
GRAFANA_UID = 472

SPECS: tuple[SecretSpec, ...] = (
    SecretSpec("postgres_password", POSTGRES_UID, POSTGRES_UID),
    SecretSpec("praxis_db_password", POSTGRES_UID, POSTGRES_UID),
    SecretSpec("ecom_db_password", POSTGRES_UID, POSTGRES_UID),
    SecretSpec("n8n_db_password", POSTGRES_UID, POSTGRES_UID),
    SecretSpec("redis_password", REDIS_UID, REDIS_UID),
    # each mailer has its own Redis user (until 2026-12 both used copies of redis_password)
    SecretSpec(
        "praxis_mailer_redis_password", PRAXIS_UID, MAILER_GID, distinct_from="redis_password"
    ),
    SecretSpec("ecom_mailer_redis_password", ECOM_UID, MAILER_GID, distinct_from="redis_password"),
    SecretSpec(
        "redis_acl",
        REDIS_UID,
        REDIS_UID,
        ("redis_password", "praxis_mailer_redis_password", "ecom_mailer_redis_password"),
        redis_acl,
    ),
    SecretSpec("praxis_pop3_password", PRAXIS_UID, MAILER_GID),
    SecretSpec("ecom_pop3_password", ECOM_UID, MAILER_GID),
    SecretSpec(
        "mailpit_pop3_auth",
        MAILPIT_UID,
        MAILPIT_UID,
        ("praxis_pop3_password", "ecom_pop3_password"),
        mailpit_auth,
    ),
    # SMTP submission needs TLS and AUTH (issue 11): Alertmanager's own password
    SecretSpec("alertmanager_smtp_password", NOBODY_UID, NOBODY_UID),
    SecretSpec(
        "mailpit_smtp_auth",
        MAILPIT_UID,
        MAILPIT_UID,
        ("praxis_pop3_password", "ecom_pop3_password", "alertmanager_smtp_password"),
        mailpit_smtp_auth,
    ),
    SecretSpec("praxis_mailer_db_password", PRAXIS_UID, MAILER_GID, "praxis_db_password"),
    SecretSpec("ecom_mailer_db_password", ECOM_UID, MAILER_GID, "ecom_db_password"),
    SecretSpec("n8n_app_db_password", N8N_UID, N8N_UID, "n8n_db_password"),
    SecretSpec("backup_db_password", BACKUP_UID, BACKUP_UID, "postgres_password"),
    # monitoring: postgres-exporter's role (created by initdb/20-monitoring.sh), grafana's admin
    SecretSpec("monitoring_db_password", POSTGRES_UID, POSTGRES_UID),
    SecretSpec("postgres_exporter_password", NOBODY_UID, NOBODY_UID, "monitoring_db_password"),
    SecretSpec("grafana_admin_password", GRAFANA_UID, 0),
    # n8n also writes the key into its volume: a new key for an existing volume is refused
    SecretSpec("n8n_encryption_key", N8N_UID, N8N_UID),
    # the optional MinIO archive (compose profile `minio`)
    SecretSpec("minio_root_user", MINIO_UID, MINIO_UID),
    SecretSpec("minio_root_password", MINIO_UID, MINIO_UID),
    SecretSpec("minio_kms_key", MINIO_UID, MINIO_UID, make=kms_key),
)


def ensure(directory: Path, specs: tuple[SecretSpec, ...] = SPECS) -> list[str]:
    """Create missing secrets, re-derive stale derived ones, fix modes; return what changed."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    changed = []
    for spec in specs:
        path = directory / spec.name
        if spec.sources:
            content = spec.derive(*(read_secret(directory / n).strip() for n in spec.sources))
            if not path.exists() or read_secret(path) != content:
                if path.exists():
                    path.chmod(0o600)
                write_secret(path, content)
                changed.append(f"{spec.name} (derived from {', '.join(spec.sources)})")
        elif not path.exists() or (
            spec.distinct_from
            and read_secret(path).strip() == read_secret(directory / spec.distinct_from).strip()
        ):
            if path.exists():
                path.chmod(0o600)
            write_secret(path, spec.make())
            changed.append(spec.name)
        if path.stat().st_mode & 0o777 != 0o400:
            path.chmod(0o400)
        chown_secret(path, spec.uid, spec.gid)
    return changed


def main(argv: list[str]) -> int:
    directory = Path(argv[0]) if argv else project_root() / "stack" / "secrets"
    try:
        changed = ensure(directory)
        changed += mailtls.ensure(directory)
    except (SecretSetupError, OSError) as exc:
        print(f"secrets: {exc}", file=sys.stderr)
        return 1
    print(
        f"secrets in {directory}: {len(SPECS) + len(mailtls.FILES)} present"
        + (f", created {', '.join(changed)}" if changed else ", none new")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
