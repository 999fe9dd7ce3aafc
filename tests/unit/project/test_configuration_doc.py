"""docs/configuration.md lists every variable the code and the compose files read, with the
default the code really uses: a variable added without a line there fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backup.config import VARIABLES as BACKUP_VARIABLES

pytestmark = [pytest.mark.unit, pytest.mark.req("D4")]

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "configuration.md"
_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|", re.M)
_MAILER_READ = re.compile(
    r"r\.(choice|email|flag|host|integer|number|port|text|required|secret|raw)"
    r"\(\s*\"([A-Z][A-Z0-9_]*)\"(?:,\s*([^,)]+))?"
)
_ENV_GET = re.compile(r"os\.environ\.get\(\s*\"([A-Z][A-Z0-9_]*)\"(?:,\s*\"([^\"]*)\")?")
_COMPOSE_DEFAULT = re.compile(r"\$\{([A-Z][A-Z0-9_]*):-([^}]*)\}")
_SUITE = re.compile(r"\bSTACKCHECK_[A-Z_]+\b")


@pytest.fixture(scope="module")
def documented() -> dict[str, str]:
    rows: dict[str, str] = {}
    for name, default in _ROW.findall(DOC.read_text(encoding="utf-8")):
        rows.setdefault(name, "")
        rows[name] += " " + default
    return rows


def _literal(arg: str | None) -> str | None:
    """The default as the doc writes it, when the code gives a literal one."""
    if arg is None:
        return None
    arg = arg.strip()
    if re.fullmatch(r'"[^"]*"', arg):
        return arg.strip('"')
    if re.fullmatch(r"-?\d+(\.\d+)?|True|False", arg):
        return arg
    return None  # computed (the profile, the host name, a lookup): described in words


def mailer_reads() -> list[tuple[str, str | None]]:
    source = (ROOT / "src" / "mailer" / "config.py").read_text(encoding="utf-8")
    out = []
    for kind, name, arg in _MAILER_READ.findall(source):
        if kind == "secret":
            out.append((f"{name}_FILE", None))  # secrets are only read from files
        elif kind in ("integer", "number", "text", "flag", "port"):
            out.append((name, _literal(arg)))
        else:
            out.append((name, None))
    for path in sorted((ROOT / "src" / "mailer").glob("*.py")):  # read outside config.py
        for name, default in _ENV_GET.findall(path.read_text(encoding="utf-8")):
            out.append((name, default or None))
    return sorted(set(out))


def compose_defaults() -> list[tuple[str, str]]:
    found = set()
    for f in ("compose.yml", "compose.offline.yml"):
        found |= set(_COMPOSE_DEFAULT.findall((ROOT / "stack" / f).read_text(encoding="utf-8")))
    return sorted(found)


def suite_variables() -> list[str]:
    files = [ROOT / "run", *sorted((ROOT / "src" / "stackcheck").glob("*.py"))]
    return sorted({m for f in files for m in _SUITE.findall(f.read_text(encoding="utf-8"))})


def test_the_sources_are_found():
    """Guards the guards: the scans below must see a sensible number of variables."""
    assert len(mailer_reads()) >= 35
    assert len(compose_defaults()) >= 20
    assert len(suite_variables()) >= 4


@pytest.mark.parametrize(("name", "default"), mailer_reads(), ids=lambda v: str(v))
def test_every_mailer_variable_is_documented(documented, name, default):
    assert name in documented, f"{name} (src/mailer/config.py) is missing in {DOC.name}"
    if default is not None:
        assert f"`{default}`" in documented[name], (
            f"{name}: the code's default {default!r} is not what {DOC.name} says: "
            f"{documented[name].strip()}"
        )


@pytest.mark.parametrize(("name", "default"), sorted(BACKUP_VARIABLES.items()))
def test_every_backup_variable_is_documented(documented, name, default):
    assert name in documented, f"{name} (src/backup/config.py) is missing in {DOC.name}"
    if default[0]:
        assert f"`{default[0]}`" in documented[name], documented[name]
    else:  # an empty default is written "empty", as for compose's variables
        assert "empty" in documented[name], documented[name]


@pytest.mark.parametrize(("name", "default"), compose_defaults(), ids=lambda v: str(v))
def test_every_compose_variable_is_documented(documented, name, default):
    assert name in documented, f"${{{name}}} (stack/compose*.yml) is missing in {DOC.name}"
    if default:
        assert f"`{default}`" in documented[name], (
            f"{name}: compose's default {default!r} is not in {DOC.name}: {documented[name]}"
        )
    else:
        assert "empty" in documented[name], documented[name]


@pytest.mark.parametrize("name", suite_variables())
def test_every_suite_variable_is_documented(documented, name):
    assert name in documented, f"{name} (run, src/stackcheck) is missing in {DOC.name}"
