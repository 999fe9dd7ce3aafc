"""stackcheck.services.base.Service: the typed accessors read what tests used to dig out of
`container.attrs` (a sample `docker inspect`, trimmed)."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from stackcheck.compose import PublishedPort
from stackcheck.services.base import Engine, Service, parse_time, port_bindings

pytestmark = pytest.mark.unit

INSPECT = {
    "Id": "abc",
    "RestartCount": 2,
    "LogPath": "/var/lib/docker/containers/abc/abc-json.log",
    "State": {
        "Status": "running",
        "Pid": 4242,
        "ExitCode": 0,
        "OOMKilled": False,
        "StartedAt": "2026-12-02T18:01:02.123456789Z",
        "Health": {"Status": "healthy", "Log": [{"ExitCode": 0, "Output": "ok"}]},
    },
    "Config": {
        "User": "10001:10001",
        "Image": "stackcheck/mailer:0.1.0",
        "Env": ["PATH=/usr/bin", "DB_POOL_MAX=5", "EQ=a=b"],
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 10_000_000_000},
    },
    "HostConfig": {
        "RestartPolicy": {"Name": "unless-stopped"},
        "ReadonlyRootfs": True,
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
        "Memory": 268435456,
    },
    "NetworkSettings": {
        "Networks": {"p_backend": {}, "p_frontend": {}},
        "Ports": {
            "8025/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18025"}],
            "1025/tcp": [{"HostIp": "", "HostPort": "11025"}],
            "8000/tcp": None,
        },
    },
}


def svc(attrs: dict = INSPECT) -> Service:
    container = SimpleNamespace(status=attrs["State"]["Status"], attrs=attrs)
    docker = SimpleNamespace(containers=SimpleNamespace(list=lambda **kw: [container]))
    return Service(Engine(docker=docker, project="p"), "praxis-mailer")


def test_state():
    s = svc()
    assert (s.pid, s.restart_count, s.exit_code, s.oom_killed) == (4242, 2, 0, False)
    assert s.started_at == datetime(2026, 12, 2, 18, 1, 2, 123456, tzinfo=UTC)
    assert (s.state(), s.health()) == ("running", "healthy")


def test_config():
    s = svc()
    assert s.env == {"PATH": "/usr/bin", "DB_POOL_MAX": "5", "EQ": "a=b"}
    assert (s.user, s.image) == ("10001:10001", "stackcheck/mailer:0.1.0")
    assert s.healthcheck["Interval"] == 10_000_000_000


def test_host_config():
    s = svc()
    assert (s.restart_policy, s.read_only_rootfs) == ("unless-stopped", True)
    assert s.log_config["Config"]["max-size"] == "10m"
    assert s.log_path.endswith("-json.log")
    assert s.host_config["Memory"] == 268435456


def test_network():
    s = svc()
    assert s.networks == ["p_backend", "p_frontend"]
    assert s.port_bindings() == {
        "8025/tcp": [PublishedPort("127.0.0.1", 18025)],
        "1025/tcp": [PublishedPort("0.0.0.0", 11025)],
        "8000/tcp": [],
    }
    assert s.port(8025) == PublishedPort("127.0.0.1", 18025)
    assert s.port(1025) == PublishedPort("127.0.0.1", 11025)  # any address: reach it on loopback


def test_inspect_is_the_whole_document():
    assert svc().inspect() is INSPECT


def test_defaults_where_docker_leaves_fields_out():
    bare = {
        "RestartCount": 0,
        "State": {"Status": "exited", "Pid": 0, "ExitCode": 0, "OOMKilled": False},
        "Config": {"User": "", "Image": "x", "Env": None},
        "HostConfig": {},
        "NetworkSettings": {"Networks": None, "Ports": None},
    }
    s = svc(bare)
    assert (s.user, s.env, s.healthcheck, s.restart_policy) == ("root", {}, {}, "no")
    assert (s.read_only_rootfs, s.log_config, s.log_path) == (False, {}, "")
    assert (s.networks, s.port_bindings(), s.health()) == ([], {}, "none")


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("2026-12-02T18:01:02.123456789Z", datetime(2026, 12, 2, 18, 1, 2, 123456, tzinfo=UTC)),
        ("2026-12-02T18:01:02.5Z", datetime(2026, 12, 2, 18, 1, 2, 500000, tzinfo=UTC)),
        ("2026-12-02T18:01:02Z", datetime(2026, 12, 2, 18, 1, 2, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),  # never started
    ],
)
def test_parse_time(raw, want):
    assert parse_time(raw) == want


def test_port_bindings_of_nothing():
    assert port_bindings(None) == {}
