"""backup.config and the credentials of backup.pgtools: every problem at once, the password only
from a file, and never in argv or the environment of the client tools."""

import os
from pathlib import Path

import pytest

from backup import cli, config
from backup.errors import ConfigError
from backup.pgtools import PgTools, pgpass_line

pytestmark = pytest.mark.unit

PASSWORD = "s3cr:et\\pw"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    p = tmp_path / "backup_db_password"
    p.write_text(PASSWORD + "\n")
    p.chmod(0o400)
    return p


def test_defaults():
    cfg = config.load({})
    assert cfg.databases == ("praxis", "ecom", "n8n")
    assert cfg.retention_days == 7 and cfg.backup_dir == Path("/backups")
    assert [t.strftime("%H:%M") for t in cfg.schedule] == ["02:30"]
    assert cfg.metrics_port == 9102 and cfg.startup_max_age_hours == 26
    assert cfg.password_file == Path("/run/secrets/backup_db_password")
    assert (cfg.pghost, cfg.pgport, cfg.pguser) == ("postgres", 5432, "postgres")


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        config.load(
            {
                "PGPASSWORD": "oops",
                "BACKUP_DATABASES": "praxis, bad;name",
                "BACKUP_SCHEDULE": "25:00",
                "BACKUP_RETENTION_DAYS": "x",
                "PGPORT": "70000",
            }
        )
    msg = str(exc.value)
    assert "5 problems" in msg
    for part in ("PGPASSWORD", "bad;name", "BACKUP_SCHEDULE", "BACKUP_RETENTION_DAYS", "PGPORT"):
        assert part in msg
    assert "oops" not in msg


def test_password_comes_from_its_file(secret: Path):
    cfg = config.load({"BACKUP_DB_PASSWORD_FILE": str(secret)})
    assert cfg.password() == PASSWORD
    assert PASSWORD not in repr(cfg)


def test_missing_or_empty_password_file_fails_clearly(tmp_path: Path):
    cfg = config.load({"BACKUP_DB_PASSWORD_FILE": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match=r"BACKUP_DB_PASSWORD_FILE points at .*does not exist"):
        cfg.password()
    (tmp_path / "empty").write_text("\n")
    cfg = config.load({"BACKUP_DB_PASSWORD_FILE": str(tmp_path / "empty")})
    with pytest.raises(ConfigError, match="is empty"):
        cfg.password()


def test_pgpass_line_escapes_colons_and_backslashes():
    assert pgpass_line("postgres", PASSWORD) == "*:*:*:postgres:s3cr\\:et\\\\pw\n"


def test_client_tools_get_a_private_pgpass_and_no_password_in_env(secret: Path, tmp_path: Path):
    cfg = config.load({"BACKUP_DB_PASSWORD_FILE": str(secret), "TMPDIR": str(tmp_path)})
    with PgTools(cfg) as pg:
        env = pg.environment({"PGPASSWORD": "inherited", "PATH": "/usr/bin", "PGDATABASE": "x"})
        pgpass = Path(env["PGPASSFILE"])
        assert pgpass.parent == tmp_path
        assert pgpass.stat().st_mode & 0o777 == 0o600
        assert pgpass.read_text() == pgpass_line("postgres", PASSWORD)
        assert "PGPASSWORD" not in env and PASSWORD not in "".join(env.values())
        assert env["PGDATABASE"] == "postgres" and env["PATH"] == "/usr/bin"
    assert not pgpass.exists(), "the .pgpass outlives its use"


def test_usage_errors_exit_4_not_argparse_2(capsys):
    # argparse's own exit code 2 would read as "disk full"
    with pytest.raises(SystemExit) as exc:
        cli.main(["restore"])
    assert exc.value.code == 4
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 4


def test_a_configuration_error_exits_4(monkeypatch, capsys):
    monkeypatch.setenv("PGPASSWORD", "oops")
    assert cli.main(["list"]) == 4
    out = capsys.readouterr().out
    assert "PGPASSWORD is set" in out and "oops" not in out


def test_help_lists_exit_codes_and_variables(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "2  disk full" in out and "BACKUP_RETENTION_DAYS" in out
    assert os.environ.get("PGPASSWORD") is None
