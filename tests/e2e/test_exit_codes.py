"""X2: the mailer's exit codes, from its real image: 1 for a configuration error, 2 for a
dependency still unreachable after bounded retries. (0 on SIGTERM is proven on the running
praxis-mailer in test_faults.py.)"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.needs("praxis-mailer")]

IMAGE = "stackcheck/mailer:0.1.0"
# --read-only --cap-drop ALL --security-opt no-new-privileges --tmpfs /tmp --network none
HARDENING = {
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "tmpfs": {"/tmp": ""},
    "network_mode": "none",
}


def run_mailer(stack, env: dict[str, str], mounts: list[str] = (), timeout: float = 120):
    """The mailer image run once, hardened as in the stack, on no network."""
    return stack.engine.run(
        IMAGE, environment=env, volumes=list(mounts), timeout=timeout, **HARDENING
    )


@pytest.mark.req("X2", "S6")
def test_configuration_error_exits_1_naming_the_problem(stack):
    proc = run_mailer(stack, {"MAILER_PROFILE": "praxis"})
    assert proc.exit_code == 1, proc.output
    out = proc.output
    assert "configuration error" in out and "SOURCE_PASSWORD_FILE" in out, out


@pytest.mark.req("X2", "S6")
def test_plain_secret_in_environment_is_refused(stack):
    proc = run_mailer(stack, {"MAILER_PROFILE": "praxis", "DB_PASSWORD": "hunter2-in-env"})
    assert proc.exit_code == 1
    assert "DB_PASSWORD_FILE" in proc.output
    assert "hunter2-in-env" not in proc.output, "a secret value reached the log"


@pytest.mark.req("X2")
def test_unreachable_dependencies_exit_2_after_bounded_retries(stack, tmp_path, sla):
    secret = tmp_path / "pw"
    secret.write_text("dummy-not-a-real-secret\n")
    secret.chmod(0o444)
    env = {
        "MAILER_PROFILE": "praxis",
        "MAILER_ADDRESSES": "praxis@example.com",
        "SOURCE_PROTOCOL": "pop3s",
        "SOURCE_HOST": "mailpit",
        "SOURCE_USER": "praxis",
        "SOURCE_PASSWORD_FILE": "/run/secrets/pw",
        "REDIS_HOST": "redis",
        "REDIS_PASSWORD_FILE": "/run/secrets/pw",
        "DB_HOST": "postgres",
        "DB_PASSWORD_FILE": "/run/secrets/pw",
        "CLAMD_HOST": "clamav",
        "SMTP_HOST": "mailpit",
        "SMTP_FROM": "praxis@example.com",
        "STAFF_ADDRESS": "team@example.com",
        "MAILER_START_ATTEMPTS": "3",
        "MAILER_START_DELAY_SECONDS": "0.5",
    }
    proc = run_mailer(stack, env, [f"{secret}:/run/secrets/pw:ro"])
    out = proc.output
    assert proc.exit_code == 2, out[-2000:]
    assert "still unreachable after 3 attempts" in out, out[-2000:]
    assert "dummy-not-a-real-secret" not in out
    sla.record(
        "X2",
        "config error -> 1, unreachable redis after 3 attempts -> 2",
        how="the mailer image run with --network none",
    )


@pytest.mark.req("X2")
def test_a_refused_database_login_exits_2_at_once_naming_it(stack, tmp_path, sla):
    """What a fresh clone met beside an earlier clone's volumes: PostgreSQL refuses the
    password. Retrying cannot help, so the start gives up at once with exit code 2 and says
    why, instead of thirty attempts logged as "unreachable" (before: PoolTimeout, then
    PoolClosed, about six minutes). The praxis-mailer's own configuration, mounts, user and
    backend network, with a wrong database password and the start's default retries."""
    mailer = stack.service("praxis-mailer").container
    attrs = mailer.attrs
    env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-database-password\n")
    wrong.chmod(0o444)
    env["DB_PASSWORD_FILE"] = "/run/secrets/wrong_db_password"
    for knob in ("MAILER_START_ATTEMPTS", "MAILER_START_DELAY_SECONDS"):
        env.pop(knob, None)  # the defaults: 30 attempts
    mounts = [
        f"{m['Source']}:{m['Destination']}:ro" for m in attrs["Mounts"] if m["Type"] == "bind"
    ] + [f"{wrong}:/run/secrets/wrong_db_password:ro"]
    backend = [n for n in attrs["NetworkSettings"]["Networks"] if n.endswith("_backend")]
    assert backend, f"praxis-mailer is on no backend network: {attrs['NetworkSettings']}"
    proc = stack.engine.run(
        IMAGE, environment=env, volumes=mounts, timeout=60, user=attrs["Config"]["User"],
        **{**HARDENING, "network_mode": backend[0]},
    )  # fmt: skip
    out = proc.output
    assert proc.exit_code == 2, (
        f"exit {proc.exit_code} (None: still retrying after 60 s)\n" + out[-2000:]
    )
    assert "PostgreSQL refused the login" in out and "password authentication failed" in out, out[
        -2000:
    ]
    assert "retrying cannot help" in out, out[-2000:]
    assert "not-the-database-password" not in out, "a secret value reached the log"
    sla.record(
        "X2",
        "a refused database login -> 2 at the first attempt, naming the refusal",
        how="the mailer image with praxis-mailer's configuration on the backend network",
    )
