"""How `./run` names the compose project (project_name in `run`): after the path and the
checkout's id (stack/secrets/.stack-id, made with the first secrets), so a fresh clone at the
same path, as CI makes one, never meets volumes initialised with secrets it does not have; a
checkout whose secrets predate the id keeps its old name (its stack stays its own). The function
is taken from `run` itself and run in bash in a temporary checkout."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.req("SC3")]

RUN = Path(__file__).resolve().parents[3] / "run"


def _function() -> str:
    text = RUN.read_text(encoding="utf-8")
    start = text.index("project_name() {")
    return text[start : text.index("\n}\n", start) + 3]


def project_name(root: Path, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "STACKCHECK_PROJECT"}
    proc = subprocess.run(
        ["bash", "-c", f'set -Eeuo pipefail\nROOT="$PWD"\n{_function()}\nproject_name'],
        cwd=root, env={**clean, **env}, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return proc.stdout.strip()


def legacy(root: Path) -> str:
    return "stackcheck-" + hashlib.sha256(str(root).encode()).hexdigest()[:8]


def test_a_fresh_checkout_gets_an_id_and_keeps_its_name(tmp_path):
    name = project_name(tmp_path)
    assert re.fullmatch(r"stackcheck-[0-9a-f]{8}", name)
    assert name != legacy(tmp_path)
    ident = tmp_path / "stack/secrets/.stack-id"
    assert re.fullmatch(r"[0-9a-f]{16}", ident.read_text())
    assert (tmp_path / "stack/secrets").stat().st_mode & 0o777 == 0o700
    assert project_name(tmp_path) == name  # the same checkout: the same stack, run after run


def test_a_fresh_clone_at_the_same_path_gets_another_project(tmp_path):
    first = project_name(tmp_path)
    shutil.rmtree(tmp_path / "stack")  # the checkout is deleted and cloned again here
    assert project_name(tmp_path) != first


def test_a_checkout_whose_secrets_predate_the_id_keeps_its_name(tmp_path):
    secrets = tmp_path / "stack/secrets"
    secrets.mkdir(parents=True)
    (secrets / "postgres_password").write_text("made before the id existed")
    assert project_name(tmp_path) == legacy(tmp_path)
    assert not (secrets / ".stack-id").exists()


def test_stackcheck_project_wins(tmp_path):
    assert project_name(tmp_path, STACKCHECK_PROJECT="mine") == "mine"
    assert not (tmp_path / "stack").exists()
