"""The MinIO entrypoint guard (stack/config/minio/entrypoint.sh): MinIO itself ignores a missing
*_FILE secret and starts with default credentials, so the guard must refuse (S6). Plain sh, run
here without MinIO."""

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[3] / "stack" / "config" / "minio" / "entrypoint.sh"


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(SCRIPT), "server", "/data"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=10,
    )


@pytest.fixture
def secrets(tmp_path) -> dict[str, str]:
    env = {}
    for var in ("MINIO_ROOT_USER_FILE", "MINIO_ROOT_PASSWORD_FILE", "MINIO_KMS_SECRET_KEY_FILE"):
        f = tmp_path / var.lower()
        f.write_text("value-of-" + var)
        env[var] = str(f)
    return env


@pytest.mark.parametrize(
    "var", ["MINIO_ROOT_USER_FILE", "MINIO_ROOT_PASSWORD_FILE", "MINIO_KMS_SECRET_KEY_FILE"]
)
def test_missing_secret_file_refused(secrets, var, tmp_path):
    secrets[var] = str(tmp_path / "absent")
    proc = run(secrets)
    assert proc.returncode == 1
    assert var in proc.stderr and "refusing to start" in proc.stderr


def test_empty_secret_file_refused(secrets):
    Path(secrets["MINIO_ROOT_PASSWORD_FILE"]).write_text("")
    assert run(secrets).returncode == 1


def test_all_secrets_present_execs_minio_and_logs_no_value(secrets):
    proc = run(secrets)
    # no minio binary here: exec fails with 127 only after every check passed
    assert proc.returncode == 127, proc.stderr
    assert proc.stdout.count("loaded") == 3
    assert "value-of-" not in proc.stdout + proc.stderr
