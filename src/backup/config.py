"""The backup service's configuration, from environment variables (every name and default is in
VARIABLES, and in docs/backup-restore.md).

The database password is only ever read from the file named by BACKUP_DB_PASSWORD_FILE (S1): a
PGPASSWORD in the environment is refused, and the value never reaches argv, env or a log line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from pathlib import Path

from backup.errors import ConfigError
from backup.schedule import parse_times

DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_MAX_SECRET_BYTES = 4096

# name -> (default, meaning); the one list of variables, also printed by `python -m backup --help`
VARIABLES: dict[str, tuple[str, str]] = {
    "BACKUP_DIR": ("/backups", "where dumps, checksums, backup.log and the lock file live"),
    "BACKUP_DATABASES": ("praxis,ecom,n8n", "databases to dump (comma or space separated)"),
    "BACKUP_RETENTION_DAYS": ("7", "dumps older than this (by mtime) are deleted after a success"),
    "BACKUP_SCHEDULE": ("02:30", "serve: daily run time(s), UTC, HH:MM[,HH:MM...]"),
    "BACKUP_STARTUP_MAX_AGE_HOURS": (
        "26",
        "serve: run at start if the last success is older than this (0: never at start)",
    ),
    "BACKUP_METRICS_PORT": ("9102", "serve: Prometheus /metrics and /healthz"),
    "BACKUP_SIZE_FACTOR": ("0.5", "free-space estimate: sum of pg_database_size x this factor"),
    "BACKUP_MIN_FREE_BYTES": ("67108864", "free space that must remain after the estimated dump"),
    "BACKUP_DUMP_TIMEOUT_SECONDS": ("3600", "a pg_dump running longer is killed (database error)"),
    "BACKUP_DB_PASSWORD_FILE": ("/run/secrets/backup_db_password", "the PGUSER's password file"),
    "PGHOST": ("postgres", "database server"),
    "PGPORT": ("5432", "database port"),
    "PGUSER": ("postgres", "a superuser: pg_dumpall --globals-only reads pg_authid"),
    "PGCONNECT_TIMEOUT": ("10", "seconds to wait for a connection"),
    "TMPDIR": ("/tmp", "the temporary .pgpass (mode 0600) and tool output; a tmpfs"),
    "PGPASSFILE": (
        "",
        "serve: at start, a .pgpass at this path (mode 0600) for an operator's "
        "`docker compose exec backup pg_dump ...`; on a tmpfs; empty: none",
    ),
}


@dataclass(frozen=True)
class Config:
    backup_dir: Path
    databases: tuple[str, ...]
    retention_days: float
    schedule: tuple[time, ...]
    startup_max_age_hours: float
    metrics_port: int
    size_factor: float
    min_free_bytes: int
    dump_timeout: float
    password_file: Path
    pghost: str
    pgport: int
    pguser: str
    connect_timeout: int
    tmp_dir: Path
    session_pgpass: Path | None = None  # PGPASSFILE: written by serve for operators' tools

    def password(self) -> str:
        """The database password, read from its file when needed (never logged)."""
        return read_secret(self.password_file, "BACKUP_DB_PASSWORD_FILE")


def read_secret(path: Path, variable: str) -> str:
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_SECRET_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{variable} points at {path}, which does not exist") from None
    except PermissionError:
        raise ConfigError(
            f"{variable} points at {path}, which this user (uid {os.getuid()}) cannot read"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{variable} points at {path}, which is a directory") from None
    if len(raw) > _MAX_SECRET_BYTES:
        raise ConfigError(f"{path} ({variable}) is larger than {_MAX_SECRET_BYTES} bytes")
    value = raw.decode("utf-8", "strict").strip("\r\n")
    if not value:
        raise ConfigError(f"{path} ({variable}) is empty")
    if "\n" in value:
        raise ConfigError(f"{path} ({variable}) has more than one line")
    return value


def _get(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    return VARIABLES[name][0] if value is None or value.strip() == "" else value.strip()


def load(env: Mapping[str, str] | None = None) -> Config:
    """Check every variable and raise one ConfigError listing every problem."""
    env = os.environ if env is None else env
    problems: list[str] = []

    def number(name: str, kind: type, *, minimum: float = 0) -> float | int:
        raw = _get(env, name)
        try:
            value = kind(raw)
        except ValueError:
            problems.append(f"{name}={raw!r} is not a {kind.__name__}")
            return kind(VARIABLES[name][0])
        if value < minimum:
            problems.append(f"{name}={raw!r} must be at least {minimum}")
        return value

    if env.get("PGPASSWORD"):
        problems.append(
            "PGPASSWORD is set: the password must come from a file (BACKUP_DB_PASSWORD_FILE), "
            "never from the environment"
        )
    databases = tuple(d for d in re.split(r"[\s,]+", _get(env, "BACKUP_DATABASES")) if d)
    bad = [d for d in databases if not DB_NAME.fullmatch(d)]
    if bad:
        problems.append(f"BACKUP_DATABASES: not plain database names: {', '.join(bad)}")
    if not databases:
        problems.append("BACKUP_DATABASES names no database")
    if len(set(databases)) != len(databases):
        problems.append("BACKUP_DATABASES names a database twice")
    try:
        schedule = parse_times(_get(env, "BACKUP_SCHEDULE"))
    except ValueError as exc:
        problems.append(f"BACKUP_SCHEDULE: {exc}")
        schedule = parse_times(VARIABLES["BACKUP_SCHEDULE"][0])
    port = number("PGPORT", int, minimum=1)
    metrics_port = number("BACKUP_METRICS_PORT", int, minimum=1)
    for name, value in (("PGPORT", port), ("BACKUP_METRICS_PORT", metrics_port)):
        if value > 65535:
            problems.append(f"{name}={value} is not a port")
    cfg = Config(
        backup_dir=Path(_get(env, "BACKUP_DIR")),
        databases=databases,
        retention_days=number("BACKUP_RETENTION_DAYS", float, minimum=1),
        schedule=schedule,
        startup_max_age_hours=number("BACKUP_STARTUP_MAX_AGE_HOURS", float),
        metrics_port=int(metrics_port),
        size_factor=number("BACKUP_SIZE_FACTOR", float),
        min_free_bytes=int(number("BACKUP_MIN_FREE_BYTES", int)),
        dump_timeout=number("BACKUP_DUMP_TIMEOUT_SECONDS", float, minimum=1),
        password_file=Path(_get(env, "BACKUP_DB_PASSWORD_FILE")),
        pghost=_get(env, "PGHOST"),
        pgport=int(port),
        pguser=_get(env, "PGUSER"),
        connect_timeout=int(number("PGCONNECT_TIMEOUT", int, minimum=1)),
        tmp_dir=Path(_get(env, "TMPDIR")),
        session_pgpass=Path(_get(env, "PGPASSFILE")) if _get(env, "PGPASSFILE") else None,
    )
    if problems:
        raise ConfigError(
            f"invalid configuration ({len(problems)} problem{'s' * (len(problems) != 1)}): "
            + "; ".join(problems)
        )
    return cfg


def help_text() -> str:
    width = max(map(len, VARIABLES))
    return "\n".join(
        f"  {name:<{width}}  {meaning} (default {default or 'empty'})"
        for name, (default, meaning) in VARIABLES.items()
    )
