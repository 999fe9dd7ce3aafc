"""The backup service against the running stack: T3 (the backup container can pg_dump), X1 (exit
codes 0/1/2, and 3 for an overlap), B1-B6 and SLA-R4 (a restore into a fresh database, compared
and timed).

Runs of the real service go through `docker exec` into the `backup` container (its volume, its
secret, its network). The failure cases (database unreachable, disk full, rotation with planted
old files) run the same image as throwaway containers with the stack's hardening flags
(--read-only, --cap-drop ALL, no-new-privileges, uid 1003, a tmpfs /tmp) on the stack's backend
network, with the backup secret mounted read-only and a tmpfs as /backups: the stack's own volume
and services are not touched by them.

The tests write a schema `stackcheck_backup` with ~20k rows of incompressible data into the
`praxis` database (so its dump is larger than a small tmpfs and a restore has something to
compare), and drop it at the end. The runs they start through the service are real backups and
are logged as such in its backup.log, including one deliberate failure (B1).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from backup import naming, runlog
from backup.verify import TABLE_STATS_SQL, parse_stats
from stackcheck.waits import wait_for

pytestmark = [
    pytest.mark.recovery,
    pytest.mark.disrupts("backup"),  # its runs, metrics, files; no other service touched
    pytest.mark.needs("postgres", "backup"),
]

SECRET = "backup_db_password"
UID = 1003
SCHEMA = "stackcheck_backup"
ROWS = 20_000
MARK = "--- stackcheck: after the run ---"


# --- helpers -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ran:
    exit_code: int
    output: str
    seconds: float
    log: list[runlog.RunRecord]
    files: dict[str, tuple[int, int, int]]  # name -> (uid, mode, size) in /backups after the run


def backup(stack, *args: str, env: dict[str, str] | None = None):
    """`python3 -m backup ARGS` inside the stack's backup container, timed."""
    return stack.service("backup").run(*args, env=env)


def events(output: str) -> list[dict]:
    """The JSON log lines a command printed."""
    out = []
    for ln in output.splitlines():
        try:
            obj = json.loads(ln)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def this_run(stack, output: str) -> runlog.RunRecord:
    """The backup.log line of the run that printed `output` (found by its dump's time stamp, so
    a scheduled run finishing meanwhile cannot be taken for it)."""
    files = [e["file"] for e in events(output) if e.get("message") == "dump written"]
    assert files, f"the run wrote no dump:\n{output[-3000:]}"
    started = naming.parse(Path(files[0])).created
    recs = [r for r in service_log(stack) if r.started == started and r.result == "success"]
    assert recs, f"no success line in backup.log for the run started {started}"
    return recs[-1]


def service_log(stack) -> list[runlog.RunRecord]:
    res = stack.service("backup").exec(["cat", f"/backups/{runlog.LOG_NAME}"])
    assert res.exit_code == 0, res.output
    return _records(res.output)


def service_files(stack) -> dict[str, tuple[int, int, int]]:
    res = stack.service("backup").exec(
        ["sh", "-c", "cd /backups && stat -c '%n %u %a %s' * .[!.]*"]
    )
    return _parse_stat(res.output)


def _parse_stat(text: str) -> dict[str, tuple[int, int, int]]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[1].isdigit():
            out[parts[0]] = (int(parts[1]), int(parts[2], 8), int(parts[3]))
    return out


def throwaway(
    stack,
    *,
    env: dict[str, str] | None = None,
    backups_tmpfs: str = "size=64m",
    before: str = "",
    secret: Path | None = None,
    timeout: float = 300,
) -> Ran:
    """Run `python3 -m backup run` in a throwaway container of the backup image, hardened like the
    service, on the stack's backend network, with a tmpfs as /backups. `before` is shell run
    first (as uid 1003, to plant files). Returns the exit code, the output, backup.log and the
    files left in /backups."""
    svc = stack.service("backup")
    image = svc.image
    networks = svc.networks
    network = next((n for n in networks if n.endswith("_backend")), networks[0])
    run_env = {k: v for k, v in svc.env.items() if k.startswith(("PG", "BACKUP_"))}
    run_env.update(env or {})
    secret = secret or stack.config.stack_dir / "secrets" / SECRET
    script = (
        f"{before}\npython3 -m backup run; rc=$?\necho '{MARK}'\n"
        f"cat /backups/{runlog.LOG_NAME}\necho '{MARK}'\n"
        "cd /backups && stat -c '%n %u %a %s' * .[!.]* 2>/dev/null\nexit $rc\n"
    )
    container = stack.docker.containers.create(
        image,
        entrypoint=["sh", "-c"],
        command=[script],
        user=f"{UID}:{UID}",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        tmpfs={
            "/tmp": f"uid={UID},gid={UID},mode=0700,size=16m",
            "/backups": f"uid={UID},gid={UID},mode=0750,{backups_tmpfs}",
        },
        network=network,
        volumes={str(secret): {"bind": f"/run/secrets/{SECRET}", "mode": "ro"}},
        environment=run_env,
        mem_limit="256m",
        nano_cpus=500_000_000,
        labels={"org.stackcheck.throwaway": "backup-test"},
    )
    try:
        start = time.monotonic()
        container.start()
        code = container.wait(timeout=timeout)["StatusCode"]
        took = time.monotonic() - start
        output = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    finally:
        container.remove(force=True)
    parts = output.split(MARK + "\n")
    assert len(parts) == 3, f"the throwaway run did not finish its script:\n{output[-3000:]}"
    return Ran(code, parts[0], took, _records(parts[1]), _parse_stat(parts[2]))


def _records(text: str) -> list[runlog.RunRecord]:
    """backup.log run lines (a line planted by a test is skipped)."""
    out = []
    for ln in text.splitlines():
        try:
            out.append(runlog.parse_line(ln))
        except ValueError:
            continue
    return out


def final_dumps(files: dict) -> list[str]:
    return [n for n in files if naming.parse(Path(n)) is not None]


def table_stats(stack, db: str) -> dict:
    with stack.service("postgres").connect(db) as conn:
        rows = conn.execute(TABLE_STATS_SQL).fetchall()
    return parse_stats([[str(c) for c in r] for r in rows])


def ours(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k.startswith(f"{SCHEMA}.")}


# --- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _owned_stack_with_backup(stack) -> None:
    """Module-wide, before the module's seeded data: skip at once (nothing written) where the
    stack has no backup service (the plugin's needs() check runs per test, after module
    fixtures), or where the stack is not ours to write to."""
    if not stack.has("backup"):
        how = "offline mode" if stack.config.offline else "this stack"
        pytest.skip(f"needs service backup, which {how} does not run")


@pytest.fixture(scope="module")
def seeded(stack) -> Iterator[dict]:
    """~20k rows of random hex (compresses poorly: the praxis dump is far above 64 KiB) and a
    small table with non-ASCII text, in their own schema of the praxis database."""
    with stack.service("postgres").connect("praxis") as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(
            f"CREATE TABLE {SCHEMA}.items (id bigint PRIMARY KEY, code text NOT NULL, "
            "amount numeric(12,2), created timestamptz, doc jsonb)"
        )
        conn.execute(
            f"INSERT INTO {SCHEMA}.items SELECT g, md5(random()::text) || md5(random()::text), "
            "round((random() * 10000)::numeric, 2), now() - g * interval '1 minute', "
            f"jsonb_build_object('n', g, 'tag', md5(g::text)) FROM generate_series(1, {ROWS}) g"
        )
        conn.execute(f"CREATE TABLE {SCHEMA}.notes (id int PRIMARY KEY, body text NOT NULL)")
        conn.execute(
            f"INSERT INTO {SCHEMA}.notes SELECT g, 'Grüße, Praxis ' || g || ' · Zeile € ' "
            "FROM generate_series(1, 50) g"
        )
        conn.commit()
    stats = ours(table_stats(stack, "praxis"))
    assert stats[f"{SCHEMA}.items"].rows == ROWS
    yield stats
    with stack.service("postgres").connect("praxis") as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.commit()


@pytest.fixture
def backup_secret(stack) -> Path:
    path = stack.config.stack_dir / "secrets" / SECRET
    if not path.exists():
        pytest.fail(
            f"{path} is missing: `./run setup` creates it (a copy of postgres_password "
            f"owned by uid {UID})",
            pytrace=False,
        )
    return path


# --- T3, X1 (0), B3, B5 ------------------------------------------------------------------------
@pytest.mark.req("T3", "X1", "B3", "B5")
def test_run_dumps_every_database_verified_logged_and_private(stack, sla, seeded):
    res, took = backup(stack, "run")
    assert res.exit_code == 0, f"backup run exited {res.exit_code}:\n{res.output[-3000:]}"
    rec = this_run(stack, res.output)
    assert (rec.result, rec.exit_code) == ("success", 0), rec
    configured = tuple(rec.databases)
    assert set(rec.sizes) == {*configured, "globals"}, rec.sizes

    files = service_files(stack)
    names = {db: naming.dump_name(db, rec.started) for db in configured}
    names["globals"] = naming.globals_name(rec.started)
    for db, name in names.items():
        assert name in files, f"{name} missing from /backups ({sorted(files)})"
        assert f"{name}.sha256" in files
        assert files[name][2] == rec.sizes[db], f"{name}: size differs from the log line"
    # B5: every file of the backup dir is the backup uid's and not world-readable
    loose = {n: (u, oct(m)) for n, (u, m, _) in files.items() if u != UID or m & 0o007}
    assert not loose, f"files not owned by {UID} or world-readable: {loose}"

    # T3: the dump is a PostgreSQL custom-format archive of this server
    praxis = f"/backups/{names['praxis']}"
    magic = stack.service("backup").exec(["head", "-c", "5", praxis]).output
    listing = stack.service("backup").exec(["pg_restore", "--list", praxis])
    assert magic == "PGDMP" and listing.exit_code == 0, listing.output[:500]
    with stack.service("postgres").connect() as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
        version = conn.execute("SELECT version()").fetchone()[0]
    assert f"Dumped from database version: {server}" in listing.output
    check = stack.service("backup").exec(["python3", "-m", "backup", "list", "--json"])
    listed = {e["name"]: e["checksum"] for e in json.loads(check.output.strip().splitlines()[-1])}
    assert all(listed[n] == "ok" for n in names.values()), listed

    sizes = ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in rec.sizes.items())
    sla.record(
        "T3",
        f"pg_dump -Fc of {len(configured)} databases + globals in {rec.duration:.2f} s",
        how=f"`docker exec backup python3 -m backup run`; {sizes}; archive magic PGDMP, "
        f"pg_restore --list header 'Dumped from database version: {server}' "
        f"({version.split(' on ')[0]})",
    )
    sla.record("X1", "0 on success", how=f"backup run exit {res.exit_code} ({took:.1f} s)")
    sla.record("B3", "one line per run", how=f"backup.log: {runlog.format_line(rec).strip()}")
    sla.record(
        "B5",
        f"{len(files)} files, owner uid {UID}, no world bits",
        how="stat of every file in the backups volume after a run (dumps 0640, log 0640)",
    )


# T3 as the review types it: the operator's pg_dump inside the container asks for no password
REVIEW_T3 = (
    'exec backup bash -c "pg_dump -h postgres -U \\$POSTGRES_USER \\$POSTGRES_DB | head -5" '
    '| grep -q "PostgreSQL" && echo "PASS: Backup working" || echo "FAIL: Backup broken"'
)


@pytest.mark.req("T3", "S1")
def test_review_t3_pg_dump_in_the_backup_container_needs_no_password(stack, sla):
    """The review's line, typed into a shell on the host (`docker compose` with this suite's
    project and files instead of the bare command): pg_dump finds the password in the .pgpass
    that `serve` wrote at start (PGPASSFILE), on the /tmp tmpfs, mode 0600, owned by the backup
    uid; the environment holds only the file's path."""
    compose = shlex.join(stack.compose.argv())
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", "-c", f"{compose} {REVIEW_T3}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=stack.config.stack_dir,
    )
    took = time.monotonic() - start
    assert proc.stdout.strip() == "PASS: Backup working", proc.stdout + proc.stderr
    svc = stack.service("backup")
    env = svc.exec(["sh", "-c", 'echo "$PGPASSFILE|$POSTGRES_USER|$POSTGRES_DB|${PGPASSWORD-}"'])
    pgpassfile, user, db, pgpassword = env.output.strip().split("|")
    assert (user, pgpassword) == ("postgres", ""), env.output
    head = svc.exec(["bash", "-c", "pg_dump -h postgres -U $POSTGRES_USER $POSTGRES_DB | head -5"])
    assert "-- PostgreSQL database dump" in head.output, head.output
    stat = svc.exec(["stat", "-c", "%u %a %F", pgpassfile]).output.strip()
    assert stat == f"{UID} 600 regular file", f"{pgpassfile}: {stat}"
    mounts = svc.exec(["sh", "-c", "awk '$2 == \"/tmp\" {print $3}' /proc/mounts"]).output
    assert mounts.strip() == "tmpfs", f"/tmp is {mounts.strip()!r}, not a tmpfs"
    secret = stack.secret(SECRET, service="backup")
    assert secret not in json.dumps(svc.inspect()), "the password is in docker inspect"
    environ = svc.exec(["sh", "-c", "tr '\\0' '\\n' < /proc/1/environ"]).output
    assert secret not in environ, "the password is in the environment of PID 1"
    sla.record(
        "T3",
        f"review's line: PASS in {took:.1f} s, database {db}",
        how=f"bash -c '{compose} {REVIEW_T3}' on the host; PGPASSFILE {pgpassfile} "
        f"({stat}, tmpfs), the password not in docker inspect or /proc/1/environ",
    )


# --- B6, SLA-R4 ------------------------------------------------------------------------------
@pytest.mark.req("B6", "SLA-R4", "D3")
def test_restore_into_a_fresh_database_equals_the_source(stack, sla, seeded):
    res, dump_took = backup(stack, "run")
    assert res.exit_code == 0, res.output[-3000:]
    rec = this_run(stack, res.output)
    dump = naming.dump_name("praxis", rec.started)
    source_after = table_stats(stack, "praxis")
    target = f"stackcheck_restore_{uuid.uuid4().hex[:8]}"
    try:
        res, restore_took = backup(stack, "restore", dump, "--target-db", target, "--json")
        summary = json.loads(res.output.strip().splitlines()[-1])
        assert "compared_with" in summary, f"restore failed ({res.exit_code}): {res.output}"
        # 6 only when the live source changed after the dump (a mailer stored a mail)
        assert res.exit_code in (0, 6), res.output
        assert summary["compared_with"] == "source database" and summary["source"] == "praxis"
        assert not summary["missing"] and not summary["extra"], summary
        assert not [t for t in summary["differ"] if t.startswith(f"{SCHEMA}.")], summary

        # the test's own comparison: tables, row counts and content checksums, table by table
        restored = table_stats(stack, target)
        assert restored.keys() == source_after.keys()
        assert ours(restored) == seeded, "the seeded tables differ after the restore"
        changed = {t for t in restored if restored[t] != source_after[t]}
        assert changed <= set(summary["differ"]), (changed, summary["differ"])
        again, _ = backup(stack, "restore", dump, "--target-db", target)
        assert again.exit_code == 4 and "not empty" in again.output, again.output
    finally:
        with psycopg.connect(**_dsn(stack), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
    rows = sum(s.rows for s in restored.values())
    sla.check(
        "SLA-R4",
        round(restore_took, 2),
        how=f"`python3 -m backup restore {dump} --target-db NEW` end to end (checksum, create, "
        f"pg_restore {summary['restore_seconds']:.2f} s, compare {summary['verify_seconds']:.2f} "
        f"s): {len(restored)} tables, {rows} rows, {rec.sizes['praxis'] / 1024:.0f} KiB dump",
    )
    sla.record(
        "B6",
        f"{len(summary['equal'])}/{len(restored)} tables equal (rows + content md5)",
        how=f"dump ({dump_took:.1f} s) -> restore into fresh {target} -> per-table count(*) and "
        f"md5 of sorted row md5s vs the source; seeded {ROWS + 50} rows identical; "
        f"exit {res.exit_code}",
    )


def _dsn(stack) -> dict:
    port = stack.service("postgres").port(5432)
    return {
        "host": port.host,
        "port": port.port,
        "dbname": "postgres",
        "user": "postgres",
        "password": stack.secret("postgres_password", service="postgres"),
        "connect_timeout": 10,
    }


# --- B4 --------------------------------------------------------------------------------------
@pytest.mark.req("B4", "X1")
def test_two_overlapping_runs_the_second_exits_3(stack, sla, seeded):
    """Run 1 is held inside pg_dump by a table lock the test takes, so it is certainly running
    (and holding the run lock) when run 2 starts."""
    with stack.service("postgres").connect("praxis") as conn:
        conn.execute(f"LOCK TABLE {SCHEMA}.items IN ACCESS EXCLUSIVE MODE")
        first = stack.service("backup").start_run("run")
        try:
            with stack.service("postgres").connect() as watch:
                wait_for(
                    lambda: watch.execute(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                        "WHERE NOT l.granted AND a.application_name = 'backup'"
                    ).fetchone()[0],
                    timeout=60,
                    interval=0.2,
                    ok=lambda n: n > 0,
                    what="run 1 to wait for the table lock inside pg_dump",
                )
            second, took = backup(stack, "run")
        finally:
            conn.rollback()  # releases the table lock: run 1 goes on
        run1 = first.wait(timeout=300)
    assert second.exit_code == 3, second.output
    assert "another backup run holds" in second.output
    assert run1.exit_code == 0, run1.output[-3000:]
    results = [r.result for r in service_log(stack)[-2:]]
    assert sorted(results) == ["overlap", "success"], results
    sla.record(
        "B4",
        "second run refused (exit 3) while the first ran; the first succeeded",
        how="flock on /backups/.backup.lock; run 1 held in pg_dump by a table lock, run 2 "
        f"`docker exec backup python3 -m backup run` answered in {took:.1f} s",
    )


# --- X1 (1), B1 ------------------------------------------------------------------------------
@pytest.mark.req("X1", "B1", "B3")
@pytest.mark.parametrize(
    ("case", "env", "cause"),
    [
        pytest.param("connection refused", {"PGPORT": "5999"}, "Connection refused", id="refused"),
        pytest.param(
            "no such host",
            {"PGHOST": "stackcheck-no-such-host"},
            "could not translate host name",
            id="no-host",
        ),
        pytest.param("wrong password", {}, "password authentication failed", id="auth"),
    ],
)
def test_database_error_exits_1_with_a_log_line(
    stack, sla, backup_secret, tmp_path, case, env, cause
):
    secret = None
    if case == "wrong password":
        secret = tmp_path / "wrong_password"
        secret.write_text("not-the-password\n")
        secret.chmod(0o444)  # a wrong password is no secret; uid 1003 must read it
    ran = throwaway(stack, env={**env, "BACKUP_MIN_FREE_BYTES": "0"}, secret=secret)
    assert ran.exit_code == 1, f"{case}: exit {ran.exit_code}\n{ran.output[-2000:]}"
    (line,) = ran.log
    assert (line.result, line.exit_code) == ("db_error", 1)
    assert cause in line.message, line.message
    assert not final_dumps(ran.files), ran.files
    sla.record("X1", f"1 on a database error ({case})", how=f"backup.log: {line.message[:160]}")


@pytest.mark.req("B1", "X1")
def test_a_failed_run_is_counted_in_the_service_metrics(stack, sla, seeded):
    """B1 end to end inside the service: a run that cannot reach the database exits 1, writes its
    line, and the service's /metrics counts it; a good run afterwards leaves the state clean."""

    def metrics() -> dict[str, float]:
        return stack.service("backup").metrics()

    before = metrics()
    failed, _ = backup(stack, "run", env={"PGPORT": "5999"})
    assert failed.exit_code == 1, failed.output
    after = metrics()
    key = 'backup_runs_total{result="db_error"}'
    assert after[key] == before[key] + 1
    assert after["backup_last_exit_code"] == 1
    assert (
        after["backup_last_success_timestamp_seconds"]
        == before["backup_last_success_timestamp_seconds"]
    )
    good, _ = backup(stack, "run")
    assert good.exit_code == 0, good.output
    final = metrics()
    assert final["backup_last_exit_code"] == 0
    assert (
        final["backup_last_success_timestamp_seconds"]
        > after["backup_last_success_timestamp_seconds"]
    )
    health = stack.service("backup").health()
    assert health == "healthy", health
    sla.record(
        "B1",
        "failed run: exit 1, backup.log line, backup_runs_total{result=db_error} +1, "
        "backup_last_exit_code 1",
        how="`docker exec -e PGPORT=5999 backup python3 -m backup run`, then /metrics of the "
        "service (alerts: stack/config/prometheus/rules/backup.yml)",
    )


# --- X1 (2) ----------------------------------------------------------------------------------
@pytest.mark.req("X1", "B1")
@pytest.mark.parametrize(
    ("case", "env", "cause"),
    [
        pytest.param("free-space check", {}, "needs an estimated", id="precheck"),
        pytest.param(
            "ENOSPC while writing",
            {"BACKUP_SIZE_FACTOR": "0", "BACKUP_MIN_FREE_BYTES": "0"},
            "errno ENOSPC",
            id="enospc",
        ),
    ],
)
def test_disk_full_exits_2_and_leaves_no_partial_dump(
    stack, sla, seeded, backup_secret, case, env, cause
):
    ran = throwaway(stack, env=env, backups_tmpfs="size=64k")
    assert ran.exit_code == 2, f"{case}: exit {ran.exit_code}\n{ran.output[-2000:]}"
    (line,) = ran.log
    assert (line.result, line.exit_code) == ("disk_full", 2)
    assert cause in line.message, line.message
    assert not final_dumps(ran.files), f"a dump under its final name: {ran.files}"
    assert not [n for n in ran.files if n.endswith(".partial")], ran.files
    sla.record(
        "X1",
        f"2 on a full disk ({case})",
        how=f"64 KiB tmpfs as /backups; backup.log: {line.message[:160]}",
    )


# --- B2 --------------------------------------------------------------------------------------
@pytest.mark.req("B2")
def test_rotation_deletes_only_dumps_older_than_7_days(stack, sla, seeded, backup_secret):
    old = [
        "praxis-20200101T023000Z.dump",
        "praxis-20200101T023000Z.dump.sha256",
        "globals-20200101T023000Z.sql",
        "globals-20200101T023000Z.sql.sha256",
    ]
    kept_old = ["backup.log", "notes.txt", "praxis-20200101T023000Z.dump.bak"]
    young = ["ecom-20200102T023000Z.dump", "ecom-20200102T023000Z.dump.sha256"]
    plant = "\n".join(
        [
            f"cd /backups && for f in {' '.join(old + kept_old)}; do echo x >$f; "
            "touch -d '8 days ago' $f; done",
            f"for f in {' '.join(young)}; do echo y >$f; touch -d '6 days ago' $f; done",
            "cd /",
        ]
    )
    ran = throwaway(stack, env={"BACKUP_MIN_FREE_BYTES": "0"}, before=plant)
    assert ran.exit_code == 0, ran.output[-2000:]
    for name in old:
        assert name not in ran.files, f"{name} (8 days old) was not deleted"
    for name in kept_old + young:
        assert name in ran.files, f"{name} was deleted"
    line = ran.log[-1]
    assert line.result == "success" and line.rotated == len(old)
    assert "backup.log" in ran.files  # the planted old log got the new line appended
    sla.check(
        "B2",
        6.0,
        how=f"planted 8-day-old dumps, checksums, log and foreign files, 6-day-old dumps: a run "
        f"deleted exactly the {len(old)} expired backup files; the oldest kept dump is 6 days old",
    )
