"""`python -m backup restore DUMP --target-db NAME`: restore one dump into a fresh database and
compare it with its source (B6, SLA-R4).

1. the dump's checksum is verified (a mismatch refuses the restore) and pg_restore reads its
   table of contents;
2. the target database is created (TEMPLATE template0, owned like the source when that role
   exists, CONNECT revoked from PUBLIC as the stack's init script does); an existing database is
   used only if it is empty, or dropped and recreated with --force (never the dump's own
   database);
3. pg_restore --single-transaction --exit-on-error: all or nothing;
4. every table's row count and content checksum is compared with the source database when it
   is reachable (else: the dump's list of tables must all be there); a summary is printed.

Exit codes: 0 restored and equal, 1 database error, 4 refused (usage, checksum, target not
empty), 6 restored but different from the source.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backup import checksum, logs, verify
from backup.config import DB_NAME, Config
from backup.errors import BackupError, ConfigError, DatabaseError, Mismatch
from backup.pgtools import PgTools

PROTECTED = {"postgres", "template0", "template1"}


@dataclass
class RestoreSummary:
    dump: str
    target: str
    source: str | None
    compared_with: str  # "source database" | "dump table list"
    tables: int = 0
    rows: int = 0
    restore_seconds: float = 0.0
    verify_seconds: float = 0.0
    equal: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    differ: dict[str, str] = field(default_factory=dict)
    result: str = "success"
    exit_code: int = 0

    def text(self) -> str:
        lines = [
            f"restored {self.dump} into database {self.target} in {self.restore_seconds:.2f} s",
            f"  compared with: {self.compared_with}" + (f" ({self.source})" if self.source else ""),
            f"  tables: {self.tables}, rows: {self.rows}, equal: {len(self.equal)}",
        ]
        lines += [f"  MISSING {t}" for t in self.missing]
        lines += [f"  EXTRA   {t}" for t in self.extra]
        lines += [f"  DIFFERS {t}: {why}" for t, why in self.differ.items()]
        lines.append(f"  verification took {self.verify_seconds:.2f} s; result: {self.result}")
        return "\n".join(lines)


def resolve_dump(cfg: Config, name: str) -> Path:
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = cfg.backup_dir / name
    if not path.is_file():
        raise ConfigError(f"no dump file {name} (looked in {cfg.backup_dir} too)")
    if path.suffix != ".dump":
        raise ConfigError(
            f"{path.name} is not a pg_dump -Fc file (*.dump); a globals file is restored with "
            "psql -f (docs/backup-restore.md)"
        )
    return path


def _relations(pg: PgTools, db: str) -> int:
    rows = pg.query(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname !~ '^pg_(toast|temp)'",
        db=db,
    )
    return int(rows[0][0])


def _exists(pg: PgTools, db: str) -> bool:
    rows = pg.query("SELECT 1 FROM pg_database WHERE datname = :'db'", variables={"db": db})
    return bool(rows)


def _owner(pg: PgTools, db: str) -> str | None:
    """The owner of the dump's source database, if it still exists (the target gets the same)."""
    rows = pg.query(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :'db'",
        variables={"db": db},
    )
    return rows[0][0] if rows else None


def _role_exists(pg: PgTools, role: str) -> bool:
    return bool(pg.query("SELECT 1 FROM pg_roles WHERE rolname = :'r'", variables={"r": role}))


def prepare_target(pg: PgTools, target: str, owner: str | None, force: bool) -> bool:
    """Create the target (or accept an empty one); return True if this call created it."""
    if _exists(pg, target):
        used = _relations(pg, target)
        if used and not force:
            raise ConfigError(
                f"database {target} exists and is not empty ({used} relations); choose a new "
                "name, or --force to drop and recreate it (never the dump's own database: "
                "restore beside it and rename, docs/backup-restore.md)"
            )
        if not used:
            logs.info("restoring into the existing empty database", target=target)
            return False
        logs.warning("--force: dropping the existing database", target=target, relations=used)
        pg.query('DROP DATABASE :"db" WITH (FORCE)', variables={"db": target})
    sql = 'CREATE DATABASE :"db" TEMPLATE template0'
    variables = {"db": target}
    if owner and _role_exists(pg, owner):
        sql += ' OWNER :"owner"'
        variables["owner"] = owner
    pg.query(sql, variables=variables)
    # database-level grants are not in a dump made without --create: apply the stack's rule
    # (stack/config/postgres/initdb: only the owner connects)
    pg.query('REVOKE ALL ON DATABASE :"db" FROM PUBLIC', variables={"db": target})
    logs.info("target database created", target=target, owner=variables.get("owner"))
    return True


def restore(
    cfg: Config,
    dump_name: str,
    target: str,
    *,
    force: bool = False,
    no_owner: bool = False,
    source_db: str | None = None,
    as_json: bool = False,
) -> int:
    try:
        summary = _restore(cfg, dump_name, target, force, no_owner, source_db)
    except BackupError as exc:
        logs.error("restore failed", dump=dump_name, target=target, error=str(exc))
        if as_json:
            print(
                json.dumps({"result": exc.result, "exit_code": exc.exit_code, "error": str(exc)}),
                flush=True,
            )
        return exc.exit_code
    print(json.dumps(asdict(summary)) if as_json else summary.text(), flush=True)
    return summary.exit_code


def _restore(
    cfg: Config, dump_name: str, target: str, force: bool, no_owner: bool, source_db: str | None
) -> RestoreSummary:
    if not DB_NAME.fullmatch(target) or target in PROTECTED:
        raise ConfigError(f"--target-db {target!r} is not a name a restore may use")
    path = resolve_dump(cfg, dump_name)
    status = checksum.status(path)
    if status in {"mismatch", "malformed"}:
        raise ConfigError(f"{path.name}: checksum {status}; refusing to restore it")
    if status == "missing":
        logs.warning("no checksum file; restoring unverified", dump=path.name)
    with PgTools(cfg) as pg:
        listing = pg.archive_list(path)
        source = source_db or verify.dump_database_name(listing)
        owner = None if no_owner or not source else _owner(pg, source)
        same = source == target
        created = prepare_target(pg, target, owner, force and not same)
        t0 = time.monotonic()
        try:
            pg.restore(path, target, no_owner=no_owner)
        except DatabaseError:
            if created:
                pg.query('DROP DATABASE IF EXISTS :"db"', variables={"db": target})
            raise
        restore_seconds = time.monotonic() - t0
        logs.info("restored", dump=path.name, target=target, seconds=round(restore_seconds, 3))

        t1 = time.monotonic()
        restored = verify.parse_stats(pg.query(verify.TABLE_STATS_SQL, db=target))
        reference: verify.Stats | None = None
        if source and not same:
            try:
                reference = verify.parse_stats(pg.query(verify.TABLE_STATS_SQL, db=source))
            except DatabaseError as exc:
                logs.warning(
                    "source database not reachable; comparing with the dump's list",
                    source=source,
                    error=str(exc),
                )
    summary = RestoreSummary(
        dump=path.name,
        target=target,
        source=source,
        compared_with="source database" if reference is not None else "dump table list",
        tables=len(restored),
        rows=sum(s.rows for s in restored.values()),
        restore_seconds=round(restore_seconds, 3),
    )
    if reference is not None:
        cmp = verify.compare(reference, restored)
        summary.equal, summary.missing = cmp.equal, cmp.missing
        summary.extra, summary.differ = cmp.extra, cmp.differ
    else:
        expected = verify.dump_tables(listing)
        summary.missing = sorted(expected - restored.keys())
        summary.equal = sorted(expected & restored.keys())
    summary.verify_seconds = round(time.monotonic() - t1, 3)
    if summary.missing or summary.extra or summary.differ:
        err = Mismatch("restored database differs from its reference")
        summary.result, summary.exit_code = err.result, err.exit_code
    return summary
