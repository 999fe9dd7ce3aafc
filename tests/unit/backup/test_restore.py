"""backup.restore without a server: which targets a restore accepts, creates or refuses."""

import re
from pathlib import Path

import pytest

from backup import config, restore
from backup.errors import ConfigError

pytestmark = pytest.mark.unit


class FakePg:
    """Answers the catalogue queries of restore.prepare_target and records the statements."""

    def __init__(self, databases: dict[str, int], roles=("praxis",)):
        self.databases = dict(databases)  # name -> number of relations
        self.roles = set(roles)
        self.statements: list[str] = []

    def query(self, sql, *, db="postgres", variables=None):
        v = variables or {}
        text = re.sub(r":\"(\w+)\"|:'(\w+)'", lambda m: v[m[1] or m[2]], sql)
        self.statements.append(text)
        if "FROM pg_database WHERE datname" in sql:
            return [["1"]] if v["db"] in self.databases else []
        if "FROM pg_roles" in sql:
            return [["1"]] if v["r"] in self.roles else []
        if "count(*) FROM pg_class" in sql:
            return [[str(self.databases[db])]]
        if sql.startswith("DROP DATABASE"):
            self.databases.pop(v["db"])
        if sql.startswith("CREATE DATABASE"):
            self.databases[v["db"]] = 0
        return []


def test_a_new_target_is_created_owned_like_the_source_and_closed_to_public():
    pg = FakePg({"praxis": 5})
    assert restore.prepare_target(pg, "praxis_restore", "praxis", force=False) is True
    assert "CREATE DATABASE praxis_restore TEMPLATE template0 OWNER praxis" in pg.statements
    assert "REVOKE ALL ON DATABASE praxis_restore FROM PUBLIC" in pg.statements


def test_an_unknown_owner_role_is_left_out():
    pg = FakePg({}, roles=())
    restore.prepare_target(pg, "x_restore", "praxis", force=False)
    assert "CREATE DATABASE x_restore TEMPLATE template0" in pg.statements


def test_an_existing_empty_target_is_used_as_it_is():
    pg = FakePg({"praxis": 0})
    assert restore.prepare_target(pg, "praxis", "praxis", force=False) is False
    assert not [s for s in pg.statements if s.startswith(("CREATE", "DROP"))]


def test_a_non_empty_target_is_refused_unless_forced():
    pg = FakePg({"old": 3})
    with pytest.raises(ConfigError, match="exists and is not empty"):
        restore.prepare_target(pg, "old", None, force=False)
    assert restore.prepare_target(pg, "old", None, force=True) is True
    assert "DROP DATABASE old WITH (FORCE)" in pg.statements


@pytest.mark.parametrize("target", ["postgres", "template1", "bad-name", "x;drop"])
def test_protected_or_odd_target_names_are_refused(tmp_path: Path, target):
    cfg = config.load({"BACKUP_DIR": str(tmp_path)})
    assert restore.restore(cfg, "praxis-20250131T023000Z.dump", target) == 4


def test_a_dump_with_a_wrong_checksum_is_not_restored(tmp_path: Path, capsys):
    dump = tmp_path / "praxis-20250131T023000Z.dump"
    dump.write_bytes(b"PGDMP damaged")
    (tmp_path / f"{dump.name}.sha256").write_text(f"{'0' * 64}  {dump.name}\n")
    cfg = config.load({"BACKUP_DIR": str(tmp_path)})
    assert restore.restore(cfg, dump.name, "praxis_restore", as_json=True) == 4
    assert "checksum mismatch" in capsys.readouterr().out


def test_a_globals_file_is_not_a_restore_input(tmp_path: Path):
    (tmp_path / "globals-20250131T023000Z.sql").write_text("--")
    cfg = config.load({"BACKUP_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="psql -f"):
        restore.resolve_dump(cfg, "globals-20250131T023000Z.sql")
