"""The pure parts of stackcheck.ops.legacy_engine: the .env setup writes on an engine before 25, the
files it chooses, and how a cold start is read from `docker inspect` and a JUnit report."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stackcheck.mode import read_env_file
from stackcheck.ops import legacy_engine as le

pytestmark = pytest.mark.unit

HOST_ENV = {
    "COMPOSE_PROJECT_NAME": "stackcheck-f2af6c09",
    "COMPOSE_FILE": "compose.yml:compose.offline.yml",
    "STACKCHECK_OFFLINE": "1",
    "PROMETHEUS_HOST_PORT": "9090",
    "MAILPIT_SMTP_HOST_PORT": "",
    "DOCKER_SOCKET_GID": "105",
}


def test_engine_major():
    assert le.engine_major("20.10.24+dfsg1") == 20
    assert le.engine_major("26.1.5+dfsg1") == 26
    assert le.engine_major("") is None
    assert le.engine_major("dev") is None


@pytest.mark.parametrize(
    ("offline", "legacy", "files"),
    [
        ("1", True, ["compose.yml", "compose.offline.yml", "compose.legacy-engine.yml"]),
        ("1", False, ["compose.yml", "compose.offline.yml"]),
        ("0", True, ["compose.yml", "compose.legacy-engine.yml"]),
        ("", False, ["compose.yml"]),
    ],
)
def test_stack_files_as_setup_chooses_them(offline, legacy, files):
    assert le.stack_files({"STACKCHECK_OFFLINE": offline}, legacy=legacy) == files


def test_legacy_dotenv_is_what_setup_writes_on_an_old_engine(tmp_path):
    values = le.legacy_dotenv(HOST_ENV, socket_gid=101)
    assert values["COMPOSE_PROJECT_NAME"] == "stackcheck-legacy"  # never the host's project
    assert values["COMPOSE_FILE"] == "compose.yml:compose.offline.yml:compose.legacy-engine.yml"
    assert values["DOCKER_SOCKET_GID"] == "101"  # the inner engine's socket group
    assert values["PROMETHEUS_HOST_PORT"] == "9090"
    assert HOST_ENV["COMPOSE_PROJECT_NAME"] == "stackcheck-f2af6c09"  # input untouched
    (tmp_path / ".env").write_text(le.render_dotenv(values), encoding="utf-8")
    assert read_env_file(tmp_path / ".env") == values  # what the suite and compose read back


def test_the_engine_image_tag_follows_the_dockerfile():
    assert le.engine_image_tag().startswith("stackcheck-legacy/engine:")
    assert le.engine_image_tag("FROM a\n") != le.engine_image_tag("FROM b\n")
    assert "docker.io" in le.DOCKERFILE and le.DOCKERFILE.startswith("FROM debian:bookworm-slim")


def test_parse_time_keeps_docker_nanoseconds_as_microseconds():
    t = le.parse_time("2026-12-02T15:11:13.169096965Z")
    assert t == datetime(2026, 12, 2, 15, 11, 13, 169096, tzinfo=UTC)
    assert le.parse_time("2026-12-02T15:11:13Z") == datetime(2026, 12, 2, 15, 11, 13, tzinfo=UTC)
    assert le.parse_time("2026-12-02T16:11:13.5+01:00") == datetime(
        2026, 12, 2, 15, 11, 13, 500000, tzinfo=UTC
    )
    assert le.parse_time("0001-01-01T00:00:00Z") is None  # never started
    assert le.parse_time("") is None


def inspect(service, started, log, status="healthy"):
    return {
        "Name": f"/stackcheck-legacy-{service}-1",
        "Config": {"Labels": {"com.docker.compose.service": service}},
        "State": {
            "Status": "running",
            "StartedAt": started,
            "Health": {
                "Status": status,
                "Log": [{"Start": s, "End": e, "ExitCode": rc} for s, e, rc in log],
            },
        },
    }


T0 = datetime(2026, 12, 2, 15, 10, 31, 657817, tzinfo=UTC)


def test_service_start_reads_the_first_passing_probe():
    # as measured on Engine 20.10: postgres started 7 s after `up`, first probe after 30 s
    pg = le.service_start(
        inspect(
            "postgres",
            "2026-12-02T15:10:38.925398508Z",
            [
                ("2026-12-02T15:11:08.926664206Z", "2026-12-02T15:11:09.1Z", 0),
                ("2026-12-02T15:11:39.045160132Z", "2026-12-02T15:11:39.2Z", 0),
            ],
        ),
        T0,
    )
    assert (pg.service, pg.started_at, pg.healthy_at, pg.failed_probes) == (
        "postgres",
        7.3,
        37.4,
        0,
    )
    assert pg.healthy_after == pytest.approx(30.1)


def test_a_probe_that_failed_first_costs_another_interval():
    n8n = le.service_start(
        inspect(
            "n8n",
            "2026-12-02T15:11:12.480945658Z",
            [
                ("2026-12-02T15:11:42.48Z", "2026-12-02T15:11:43.0Z", 1),
                ("2026-12-02T15:12:14.38Z", "2026-12-02T15:12:14.9Z", 0),
            ],
        ),
        T0,
    )
    assert n8n.failed_probes == 1
    assert n8n.healthy_after == pytest.approx(62.4, abs=0.1)


def test_a_container_never_healthy_has_no_healthy_time():
    c = le.service_start(inspect("clamav", "2026-12-02T15:10:39Z", [("x", "y", 1)], "starting"), T0)
    assert c.healthy_at is None and c.healthy_after is None and c.status == "starting"


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0"
failures="1" skipped="2" tests="5"><testcase classname="tests.infra.test_a" name="test_ok"/>
<testcase classname="tests.infra.test_a" name="test_bad"><failure message="x"/></testcase>
<testcase classname="tests.infra.test_b" name="test_s1"><skipped/></testcase>
<testcase classname="tests.infra.test_b" name="test_s2"><skipped/></testcase>
<testcase classname="tests.infra.test_b" name="test_ok2"/></testsuite></testsuites>"""


def test_junit_counts():
    c = le.junit_counts(JUNIT)
    assert (c["passed"], c["failed"], c["errors"], c["skipped"]) == (2, 1, 0, 2)
    assert c["failed_tests"] == ["tests.infra.test_a::test_bad"]


def result(**kw):
    r = le.CheckResult(
        engine_version="20.10.24+dfsg1",
        setup_legacy=True,
        setup_message="engine 20 is older than 25: ...",
        error_without_override="can't set healthcheck.start_interval as feature require "
        "Docker Engine v25 or later",
        cold_up_s=103.5,
        cold_up_ok=True,
        services=[
            le.ServiceStart("postgres", 7.3, 37.4, 0, "healthy"),
            le.ServiceStart("n8n", 40.8, 103.2, 1, "healthy"),
        ],
        infra={"passed": 35, "failed": 0, "errors": 0, "skipped": 12, "failed_tests": []},
    )
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_ok_needs_the_error_a_healthy_cold_start_and_green_infra():
    assert result().ok
    assert not result(setup_legacy=False).ok  # ./run would not add the override
    assert not result(error_without_override="").ok  # the override would not be needed
    assert not result(cold_up_ok=False).ok
    assert not result(services=[le.ServiceStart("n8n", 1, None, 3, "unhealthy")]).ok
    assert not result(infra={"passed": 1, "failed": 1, "errors": 0, "skipped": 0}).ok
    assert result(infra={}).ok  # --no-infra


def test_the_report_and_setup_sentence_carry_the_measured_figures():
    r = result()
    text = "\n".join(r.lines())
    assert "20.10.24" in text and "103.5 s" in text and "35 passed" in text
    sentence = le.cost_sentence(r)
    assert "~100 s instead of ~35-60 s" in sentence and "Engine 20.10.24:" in sentence
    assert "compose.legacy-engine.yml" in sentence
    data = r.to_json()
    assert data["ok"] and data["services"][1]["healthy_after"] == pytest.approx(62.4)


RUN = Path(__file__).resolve().parents[4] / "run"


@pytest.mark.parametrize(("version", "legacy"), [("20.10.24+dfsg1", "1"), ("26.1.5", "0")])
def test_runs_engine_check_lifted_out_of_run_decides_on_the_server_version(
    tmp_path, version, legacy
):
    script = le.setup_detection_script(RUN.read_text(encoding="utf-8"))
    fake = tmp_path / "docker"  # answers `docker version --format ...` like that engine
    fake.write_text(f"#!/bin/sh\necho {version}\n", encoding="utf-8")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    out = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=10, check=True
    ).stdout
    assert f"LEGACY_ENGINE={legacy}" in out
    if legacy == "1":
        assert "compose.legacy-engine.yml" in out and "30 s" in out


def test_the_lifted_script_needs_all_three_parts():
    with pytest.raises(le.LegacyEngineError):
        le.setup_detection_script("engine_compat() {\n  :\n}\n")
