"""The PostgreSQL client tools (pg_dump, pg_dumpall, pg_restore, psql) as the backup uses them.

Connection settings come from PGHOST/PGPORT/PGUSER; the password is written to a temporary
.pgpass (mode 0600, in TMPDIR, which the image mounts as a tmpfs) named by PGPASSFILE, and removed
when the work is done. It is never in an argv, never in an environment variable, never logged.
Every failure of a tool is a DatabaseError carrying the tail of its stderr.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from backup.config import Config
from backup.errors import ConfigError, DatabaseError, Interrupted, from_os_error

_FS, _RS = "\x1f", "\x1e"
_DROP_ENV = {"PGPASSWORD", "PGPASSFILE", "PGDATABASE", "PGSERVICE", "PGSERVICEFILE"}


def pgpass_line(user: str, password: str) -> str:
    """A .pgpass line for `user` on any host, port and database (`:` and `\\` escaped)."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace(":", "\\:")

    return f"*:*:*:{esc(user)}:{esc(password)}\n"


def write_session_pgpass(cfg: Config) -> Path | None:
    """The operator's .pgpass (T3): with PGPASSFILE set, `serve` writes the password there at start
    (mode 0600, owned by this uid; compose puts it on the /tmp tmpfs, so it never reaches a disk or
    outlives the container), and a `docker compose exec backup pg_dump ...` finds it through the
    same PGPASSFILE in the container's environment, which holds only the path. Replaced atomically,
    so a restart after a rotation (./run rotate backup_db_password) writes the new value."""
    path = cfg.session_pgpass
    if path is None:
        return None
    line = pgpass_line(cfg.pguser, cfg.password())
    try:
        fd, name = tempfile.mkstemp(prefix=".pgpass-", dir=path.parent)  # mode 0600
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(line)
        os.replace(name, path)
    except OSError as exc:
        raise from_os_error(exc, f"writing PGPASSFILE {path}") from exc
    return path


def _tail(text: str, lines: int = 6) -> str:
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(kept) or "(no message)"


class PgTools:
    """Use as a context manager: the .pgpass exists between __enter__ and __exit__."""

    def __init__(self, cfg: Config, stop: threading.Event | None = None):
        self.cfg = cfg
        self.stop = stop or threading.Event()
        self._pgpass: Path | None = None
        self.env: dict[str, str] = {}

    # --- credentials ------------------------------------------------------------------
    def __enter__(self) -> PgTools:
        password = self.cfg.password()
        try:
            fd, name = tempfile.mkstemp(prefix=".pgpass-", dir=self.cfg.tmp_dir)  # mode 0600
        except OSError as exc:
            raise from_os_error(exc, f"creating a .pgpass in {self.cfg.tmp_dir}") from exc
        self._pgpass = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(pgpass_line(self.cfg.pguser, password))
        except OSError as exc:
            self.__exit__()
            raise from_os_error(exc, f"writing {name}") from exc
        self.env = self.environment(os.environ)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pgpass is not None:
            self._pgpass.unlink(missing_ok=True)
            self._pgpass = None

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in base.items() if k not in _DROP_ENV}
        env.update(
            PGHOST=self.cfg.pghost,
            PGPORT=str(self.cfg.pgport),
            PGUSER=self.cfg.pguser,
            PGPASSFILE=str(self._pgpass),
            PGCONNECT_TIMEOUT=str(self.cfg.connect_timeout),
            PGAPPNAME="backup",
            PGDATABASE="postgres",
        )
        return env

    # --- running tools ------------------------------------------------------------------
    def _run(
        self, argv: list[str], what: str, *, stdin: str | None = None, timed: bool = True
    ) -> str:
        timeout = self.cfg.dump_timeout if timed else None
        try:
            proc = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                env=self.env,
                timeout=timeout,
            )
        except FileNotFoundError:
            raise ConfigError(f"{argv[0]} is not installed in this image") from None
        except subprocess.TimeoutExpired:
            raise DatabaseError(f"{what}: no answer within {self.cfg.dump_timeout:g} s") from None
        if proc.returncode != 0:
            raise DatabaseError(f"{what} failed (exit {proc.returncode}): {_tail(proc.stderr)}")
        return proc.stdout

    def query(
        self, sql: str, *, db: str = "postgres", variables: Mapping[str, str] | None = None
    ) -> list[list[str]]:
        """Rows of a query, fields as text. `:'name'`/`:"name"` in `sql` take `variables`,
        quoted by psql itself."""
        argv = ["psql", "-X", "-q", "-A", "-t", "-F", _FS, "-R", _RS]
        argv += ["-v", "ON_ERROR_STOP=1", "-d", db, "-f", "-"]
        for k, v in (variables or {}).items():
            argv += ["-v", f"{k}={v}"]
        out = self._run(argv, f"psql on {db}", stdin=sql)
        out = out.rstrip("\n")
        return [rec.split(_FS) for rec in out.split(_RS) if rec.strip("\n")] if out else []

    @contextmanager
    def stream(self, argv: list[str], what: str) -> Iterator[BinaryIO]:
        """A tool's stdout to read from; on leaving, its exit is checked (DatabaseError). It is
        killed when the body fails, after the dump timeout, or when `stop` is set."""
        with tempfile.TemporaryFile(dir=self.cfg.tmp_dir) as err:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    env=self.env,
                )
            except FileNotFoundError:
                raise ConfigError(f"{argv[0]} is not installed in this image") from None
            done = threading.Event()
            why: list[str] = []

            def watchdog() -> None:
                deadline = time.monotonic() + self.cfg.dump_timeout
                while not done.wait(0.2):
                    if self.stop.is_set() or time.monotonic() > deadline:
                        why.append("stop" if self.stop.is_set() else "timeout")
                        proc.kill()
                        return

            dog = threading.Thread(target=watchdog, name=f"watchdog-{argv[0]}", daemon=True)
            dog.start()
            try:
                assert proc.stdout is not None
                yield proc.stdout
            except BaseException:
                proc.kill()
                raise
            finally:
                done.set()
                dog.join()
                assert proc.stdout is not None
                proc.stdout.close()
                rc = proc.wait()
            if why == ["stop"]:
                raise Interrupted(f"{what}: stopped by a signal")
            if why == ["timeout"]:
                raise DatabaseError(f"{what}: killed after {self.cfg.dump_timeout:g} s")
            if rc != 0:
                err.seek(0)
                msg = err.read().decode("utf-8", "replace")
                raise DatabaseError(f"{what} failed (exit {rc}): {_tail(msg)}")

    # --- what the backup needs -----------------------------------------------------------
    def database_sizes(self, databases: tuple[str, ...]) -> dict[str, int]:
        """pg_database_size of each named database that exists; the first connection of a run,
        so an unreachable server or a refused login fails here."""
        rows = self.query(
            "SELECT datname, pg_database_size(datname) FROM pg_database "
            "WHERE datname = ANY (string_to_array(:'dbs', ','))",
            variables={"dbs": ",".join(databases)},
        )
        return {name: int(size) for name, size in rows}

    def dump(self, database: str):
        return self.stream(["pg_dump", "-Fc", "-w", "-d", database], f"pg_dump of {database}")

    def dump_globals(self):
        return self.stream(
            ["pg_dumpall", "--globals-only", "-w", "-l", "postgres"], "pg_dumpall --globals-only"
        )

    def archive_list(self, path: Path) -> str:
        """`pg_restore --list`: the archive's header and table of contents."""
        return self._run(["pg_restore", "--list", str(path)], f"pg_restore --list {path.name}")

    def restore(self, path: Path, target: str, *, no_owner: bool = False) -> None:
        argv = ["pg_restore", "-w", "--exit-on-error", "--single-transaction", "-d", target]
        argv += ["--no-owner"] if no_owner else []
        # no timeout: an operator runs a restore and watches it; a large one may take hours
        self._run([*argv, str(path)], f"pg_restore of {path.name} into {target}", timed=False)
