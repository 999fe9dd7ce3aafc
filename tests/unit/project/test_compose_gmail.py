"""stack/compose.gmail.yml, the production overlay (issue 11): rendered by `docker compose config`
on top of compose.yml, the mailers read Gmail over IMAPS 993 and send over SMTP with implicit TLS
on 465, logging in as their own account with the app password mounted at /run/secrets/smtp_pass
(mode 0400), trusting the system CAs, never in plain text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stackcheck.compose import Compose

pytestmark = pytest.mark.unit

STACK = Path(__file__).resolve().parents[3] / "stack"
USERS = {"praxis-mailer": "praxis.example@gmail.com", "ecom-mailer": "shop.example@gmail.com"}
SECRET = {"praxis-mailer": "gmail_app_password", "ecom-mailer": "ecom_gmail_app_password"}


def render(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if not shutil.which("docker"):
        pytest.skip("needs the docker CLI with Compose v2 to render the overlay")
    clean = {k: v for k, v in os.environ.items() if not k.endswith(("_GMAIL_USER", "_ADDRESS"))}
    compose = Compose(
        "stackcheck-gmail-render",
        STACK,
        files=("compose.yml", "compose.gmail.yml"),
        env={**clean, "COMPOSE_FILE": "", **env},
    )
    return compose.run("config", "--format", "json", check=False, timeout=60)


@pytest.fixture(scope="module")
def model() -> dict:
    proc = render(
        {"PRAXIS_GMAIL_USER": USERS["praxis-mailer"], "ECOM_GMAIL_USER": USERS["ecom-mailer"]}
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("service", ["praxis-mailer", "ecom-mailer"])
def test_reads_gmail_over_imaps_and_sends_over_implicit_tls(model, service):
    env = model["services"][service]["environment"]
    assert (env["SOURCE_PROTOCOL"], env["SOURCE_HOST"], env["SOURCE_PORT"]) == (
        "imaps",
        "imap.gmail.com",
        "993",
    )
    assert (env["SMTP_SECURITY"], env["SMTP_HOST"], env["SMTP_PORT"]) == (
        "tls",
        "smtp.gmail.com",
        "465",
    )
    assert "ALLOW_PLAINTEXT_AUTH" not in env
    # the system CAs of the mailer image, not the test stack's own CA
    assert env["MAIL_CA_FILE"] == "/etc/ssl/certs/ca-certificates.crt"


@pytest.mark.parametrize("service", ["praxis-mailer", "ecom-mailer"])
def test_logs_in_as_its_own_account_with_the_app_password(model, service):
    env = model["services"][service]["environment"]
    assert env["SOURCE_USER"] == env["SMTP_USER"] == USERS[service]
    assert env["SOURCE_PASSWORD_FILE"] == env["SMTP_PASS_FILE"] == "/run/secrets/smtp_pass"
    assert env["MAILER_ADDRESSES"] == env["SMTP_FROM"] == USERS[service]
    assert not any(k.endswith("PASSWORD") or k.endswith("_PASS") for k in env), env
    mounts = {s["source"]: s for s in model["services"][service]["secrets"]}
    app = mounts[SECRET[service]]
    assert app["target"] in ("smtp_pass", "/run/secrets/smtp_pass")
    assert app["mode"] == 0o400
    # one account, one app password: the other profile's is not mounted here
    other = next(v for k, v in SECRET.items() if k != service)
    assert other not in mounts
    assert model["secrets"][SECRET[service]]["file"].endswith(f"/secrets/{SECRET[service]}")


@pytest.mark.parametrize("missing", ["PRAXIS_GMAIL_USER", "ECOM_GMAIL_USER"])
def test_the_accounts_are_required(missing):
    """Compose names the first missing variable it meets, in no fixed order: one at a time."""
    given = {"PRAXIS_GMAIL_USER": "praxis@gmail.example", "ECOM_GMAIL_USER": "shop@gmail.example"}
    given.pop(missing)
    proc = render(given)
    assert proc.returncode != 0
    assert missing in proc.stderr
