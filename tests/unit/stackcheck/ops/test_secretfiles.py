"""stackcheck.ops.secretfiles: random secrets, mode 0400, the derived redis ACL."""

import dataclasses
import hashlib
import os
import stat

import pytest

from stackcheck.ops import secretfiles
from stackcheck.ops.secretfiles import SecretSpec, ensure, random_password, redis_acl

pytestmark = pytest.mark.unit


@pytest.fixture
def specs() -> tuple[SecretSpec, ...]:
    """The real set of secrets, but owned by this user so no chown (or sudo) is needed."""
    uid, gid = os.getuid(), os.getgid()
    return tuple(dataclasses.replace(s, uid=uid, gid=gid) for s in secretfiles.SPECS)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def contents(directory) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(directory.iterdir())}


def rewrite(path, text: str) -> None:
    path.chmod(0o600)
    path.write_text(text, encoding="utf-8")


def test_ensure_creates_every_secret_mode_0400(tmp_path, specs):
    d = tmp_path / "secrets"
    changed = ensure(d, specs)
    names = [s.name for s in specs]
    expected = [
        f"{s.name} (derived from {', '.join(s.sources)})" if s.sources else s.name for s in specs
    ]
    assert changed == expected
    assert (
        "redis_acl (derived from redis_password, praxis_mailer_redis_password, "
        "ecom_mailer_redis_password)" in changed
    )
    assert sorted(p.name for p in d.iterdir()) == sorted(names)  # no temp files left
    for name in names:
        path = d / name
        assert mode(path) == 0o400, name
        assert path.stat().st_uid == os.getuid()
        assert path.read_text(encoding="utf-8").strip(), name


def test_random_secrets_differ(tmp_path, specs):
    d = tmp_path / "secrets"
    ensure(d, specs)
    values = [(d / s.name).read_text() for s in specs if not s.sources]
    assert len(set(values)) == len(values)
    assert all(len(v) >= 32 for v in values)


def test_ensure_is_idempotent(tmp_path, specs):
    d = tmp_path / "secrets"
    ensure(d, specs)
    before = contents(d)
    mtimes = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    assert ensure(d, specs) == []
    assert contents(d) == before
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == mtimes


def test_ensure_keeps_existing_secret_and_creates_missing(tmp_path, specs):
    d = tmp_path / "secrets"
    d.mkdir()
    (d / "postgres_password").write_text("kept-as-it-is")
    changed = ensure(d, specs)
    assert "postgres_password" not in changed
    assert (d / "postgres_password").read_text() == "kept-as-it-is"
    assert mode(d / "postgres_password") == 0o400  # mode repaired
    assert "praxis_db_password" in changed


def test_ensure_repairs_mode_without_reporting_a_change(tmp_path, specs):
    d = tmp_path / "secrets"
    ensure(d, specs)
    (d / "n8n_db_password").chmod(0o644)
    assert ensure(d, specs) == []
    assert mode(d / "n8n_db_password") == 0o400


def test_redis_acl_rederived_when_password_changes(tmp_path, specs):
    d = tmp_path / "secrets"
    ensure(d, specs)
    old_acl = (d / "redis_acl").read_text()
    rewrite(d / "redis_password", "a-new-password\n")

    changed = ensure(d, specs)

    # only the ACL follows: the mailers have passwords of their own
    assert [c.split(" ")[0] for c in changed] == ["redis_acl"]
    acl = (d / "redis_acl").read_text()
    assert acl != old_acl
    praxis = (d / "praxis_mailer_redis_password").read_text().strip()
    ecom = (d / "ecom_mailer_redis_password").read_text().strip()
    assert acl == redis_acl("a-new-password", praxis, ecom)  # trailing newline stripped
    assert (d / "redis_password").read_text() == "a-new-password\n"  # not regenerated
    assert mode(d / "redis_acl") == 0o400
    assert mode(d / "redis_password") == 0o400


def test_tampered_redis_acl_is_rederived(tmp_path, specs):
    d = tmp_path / "secrets"
    ensure(d, specs)
    rewrite(d / "redis_acl", "user default on nopass ~* +@all\n")
    assert [c.split(" ")[0] for c in ensure(d, specs)] == ["redis_acl"]
    values = [
        (d / n).read_text().strip()
        for n in ("redis_password", "praxis_mailer_redis_password", "ecom_mailer_redis_password")
    ]
    assert (d / "redis_acl").read_text() == redis_acl(*values)


def test_mailer_copies_of_the_admin_password_are_replaced(tmp_path, specs):
    """Setups before per-mailer Redis users left copies of redis_password for the mailers."""
    d = tmp_path / "secrets"
    ensure(d, specs)
    admin = (d / "redis_password").read_text()
    rewrite(d / "praxis_mailer_redis_password", admin)
    changed = ensure(d, specs)
    assert changed[0] == "praxis_mailer_redis_password"
    assert (d / "praxis_mailer_redis_password").read_text() != admin
    assert mode(d / "praxis_mailer_redis_password") == 0o400


def test_mailer_users_are_confined_to_their_prefix():
    acl = redis_acl("admin-pw", "praxis-pw", "ecom-pw").splitlines()
    assert acl[0].startswith("user default on ")
    for line, profile, other in ((acl[1], "praxis", "ecom"), (acl[2], "ecom", "praxis")):
        words = line.split()
        assert words[:3] == ["user", profile, "on"]
        assert f"~mailer:{profile}:*" in words and f"~mailer:{other}:*" not in words
        assert "~*" not in words and "+@all" not in words and "-@all" in words
        assert "resetkeys" in words and "resetchannels" in words
        for forbidden in ("+flushall", "+flushdb", "+keys", "+scan", "+config", "+acl"):
            assert forbidden not in words


def test_redis_acl_stores_sha256_not_password():
    password = "s3cret-Passw0rd"
    line = redis_acl(password, "p", "e")
    digest = hashlib.sha256(password.encode()).hexdigest()
    assert f"#{digest}" in line
    assert password not in line
    assert line.startswith("user default on ")
    assert line.endswith("\n")


def test_redis_acl_of_generated_password(tmp_path, specs):
    d = tmp_path / "secrets"
    ensure(d, specs)
    password = (d / "redis_password").read_text()
    acl = (d / "redis_acl").read_text()
    assert hashlib.sha256(password.encode()).hexdigest() in acl
    assert password not in acl


def test_random_password_is_long_and_random():
    values = {random_password() for _ in range(20)}
    assert len(values) == 20
    assert all(len(v) >= 32 for v in values)
    assert all(v.replace("-", "").replace("_", "").isalnum() for v in values)  # URL-safe
