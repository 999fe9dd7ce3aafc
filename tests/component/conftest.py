"""Real PostgreSQL, Redis and clamd servers as local processes (Debian's packages, no Docker) for
the mailer pipeline's component tests: each on 127.0.0.1 on a free port, in a temporary folder,
started once per session in a second or two and stopped afterwards. Missing binaries skip the
tests, naming the package."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0  # s: each server answers within a second or two on these machines


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    password: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} in {START_TIMEOUT:g} s")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-1500:]
    except OSError:
        return "(no log)"


@contextmanager
def _serving(cmd: list[str], port: int, what: str, log: Path) -> Iterator[None]:
    """Run a server process until the block ends; its output in `log`."""
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        _wait_port(port, proc, what, log)
        yield
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="stackcheck-component-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --- PostgreSQL ------------------------------------------------------------------------------
def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    return found[-1] if found and found[-1] else None


@pytest.fixture(scope="session")
def local_postgres(workdir: Path) -> Iterator[Server]:
    """A PostgreSQL server owned by the `postgres` user when run as root (it refuses root)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("needs PostgreSQL's server binaries (Debian: postgresql): initdb, pg_ctl")
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root needs the `postgres` user (Debian's postgresql makes it)")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = workdir / "pg", workdir / "pg.log"
    data.mkdir()
    password = secrets.token_hex(12)
    pwfile = workdir / "pg.pw"
    pwfile.write_text(password)
    if as_user:
        for p in (data, pwfile):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        log.touch()
        os.chown(log, pw.pw_uid, pw.pw_gid)
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
         f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8", "--locale=C"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = free_port()
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    cmd = [*as_user, _pg_bin("postgres") or "postgres", "-D", str(data), *opts.split()]
    with _serving(cmd, port, "postgres", log):
        yield Server("127.0.0.1", port, password)


# --- Redis -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def local_redis(workdir: Path) -> Iterator[Server]:
    exe = shutil.which("redis-server")
    if not exe:
        pytest.skip("needs redis-server (Debian: redis-server)")
    port, password, log = free_port(), secrets.token_hex(12), workdir / "redis.log"
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--requirepass", password, "--dir", str(workdir)]  # fmt: skip
    with _serving(cmd, port, "redis-server", log):
        yield Server("127.0.0.1", port, password)


# --- clamd -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def local_clamd(workdir: Path) -> Iterator[Server]:
    """clamd with the stack's offline signature set (the EICAR test signature only)."""
    exe = shutil.which("clamd") or "/usr/sbin/clamd"
    if not Path(exe).is_file():
        pytest.skip("needs clamd (Debian: clamav-daemon)")
    db, log = workdir / "clamav", workdir / "clamd.log"
    db.mkdir()
    shutil.copy(ROOT / "stack" / "images" / "clamav" / "eicar.ndb", db / "eicar.ndb")
    port = free_port()
    conf = workdir / "clamd.conf"
    conf.write_text(
        "\n".join(
            [
                "Foreground yes",
                f"TCPSocket {port}",
                "TCPAddr 127.0.0.1",
                f"DatabaseDirectory {db}",
                f"TemporaryDirectory {workdir}",
                "OfficialDatabaseOnly no",
                "Bytecode no",
                "SelfCheck 0",
                "StreamMaxLength 64M",
                "LogSyslog no",
                f"PidFile {workdir / 'clamd.pid'}",
            ]
        )
        + "\n"
    )
    with _serving([exe, "--config-file", str(conf)], port, "clamd", log):
        yield Server("127.0.0.1", port)
