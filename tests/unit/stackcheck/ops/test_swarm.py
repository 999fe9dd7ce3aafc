"""stackcheck.ops.swarm: rendering the merged compose model for `docker stack deploy`, secret
versions, the loopback gateway, and which tests run on Swarm (swarm_plugin). No Docker."""

from pathlib import Path

import pytest

from stackcheck import policy, swarm_plugin
from stackcheck.mode import Mode, ModeError, resolve
from stackcheck.ops import swarm

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[4] / "docs" / "swarm.md"


def _model(**svc) -> dict:
    base = {
        "image": "stackcheck/mailer:0.1.0",
        "user": "1001:1000",
        "build": {"context": "./images/mailer"},
        "pull_policy": "build",
        "restart": "unless-stopped",
        "security_opt": ["no-new-privileges:true"],
        "depends_on": {"postgres": {"condition": "service_healthy"}},
        "ports": [{"target": 8000, "host_ip": "127.0.0.1", "published": ""}],
        "tmpfs": ["/tmp:uid=1001,gid=1000,mode=1777,size=16m"],
        "secrets": [
            {"source": "praxis_pop3_password", "target": "/run/secrets/x"},
            {"source": "mail_ca_cert"},
        ],
        "deploy": {"resources": {"limits": {"cpus": 0.5, "memory": "512M"}}},
        "entrypoint": None,
        "volumes": [{"type": "volume", "source": "praxis_data", "target": "/app/data"}],
        "networks": {"backend": None},
    }
    base.update(svc)
    return {
        "services": {"praxis-mailer": base},
        "networks": {"backend": {"name": "p_backend", "internal": True}, "unused": {}},
        "volumes": {"praxis_data": {"name": "p_praxis_data"}, "other": {}},
    }


def test_render_drops_what_swarm_refuses_and_keeps_the_rest():
    out = swarm.render(_model(), {"praxis_pop3_password": 2, "mail_ca_cert": 1}, ns="ns")
    svc = out["services"]["praxis-mailer"]
    for key in ("build", "pull_policy", "restart", "security_opt", "depends_on", "ports", "tmpfs"):
        assert key not in svc, key
    assert "entrypoint" not in svc  # null: the image's own, as leaving it out
    assert svc["image"] == "127.0.0.1:5000/stackcheck/mailer:0.1.0"
    assert svc["deploy"]["resources"]["limits"]["cpus"] == "0.5"
    assert "cpus" not in (svc["deploy"]["resources"].get("reservations") or {})
    tmp = {
        "type": "volume",
        "source": "tmpfs-praxis-mailer-tmp",
        "target": "/tmp",
        "volume": {"nocopy": True},
    }
    assert tmp in svc["volumes"]
    assert svc["secrets"] == [
        {
            "source": "praxis_pop3_password",
            "target": "/run/secrets/x",
            "uid": "1001",
            "gid": "1000",
            "mode": 0o400,
        },
        {
            "source": "mail_ca_cert",
            "target": "mail_ca_cert",
            "uid": "1001",
            "gid": "1000",
            "mode": 0o444,
        },
    ]
    assert out["secrets"] == {
        "mail_ca_cert": {"external": True, "name": "mail_ca_cert_v1"},
        "praxis_pop3_password": {"external": True, "name": "praxis_pop3_password_v2"},
    }
    # names left to `docker stack deploy`, which prefixes them with the namespace
    assert out["networks"] == {"backend": {"internal": True}}
    assert out["volumes"] == {
        "praxis_data": {},
        "tmpfs-praxis-mailer-tmp": {
            "driver": "local",
            "driver_opts": {
                "type": "tmpfs",
                "device": "tmpfs",
                "o": "nosuid,nodev,noexec,uid=1001,gid=1000,mode=1777,size=16m",
            },
        },
    }


def test_render_refuses_a_secret_without_a_version():
    with pytest.raises(swarm.SwarmError, match="praxis_pop3_password"):
        swarm.render(_model(), {"mail_ca_cert": 1})


def test_render_keeps_official_images_and_sizes_shm():
    out = swarm.render(
        _model(image="postgres:18.6", shm_size="268435456", secrets=[]), {}, registry_prefix="r:1"
    )
    svc = out["services"]["praxis-mailer"]
    assert svc["image"] == "postgres:18.6"
    assert {"type": "tmpfs", "target": "/dev/shm", "tmpfs": {"size": 268435456}} in svc["volumes"]


def test_latest_versions_take_the_highest_per_secret():
    names = ["a_v1", "a_v3", "a_v2", "b_c_v10", "plain", "x_vy"]
    assert swarm.latest_versions(names) == {"a": 3, "b_c": 10}


def test_tmpfs_volume_keeps_owner_mode_and_size():
    name, volume, mount = swarm.tmpfs_volume("mailpit", "/run/dovecot:uid=1025,gid=1025,mode=0755")
    assert name == "tmpfs-mailpit-run-dovecot"
    assert volume["driver_opts"]["o"] == "nosuid,nodev,noexec,uid=1025,gid=1025,mode=0755"
    assert mount == {
        "type": "volume",
        "source": name,
        "target": "/run/dovecot",
        "volume": {"nocopy": True},
    }


def test_gateway_forwards_each_published_port_to_its_service():
    cfg = swarm.gateway_config({5432: "postgres", 1025: "mailpit"})
    assert "mode tcp" in cfg and "nameserver dns 127.0.0.11:53" in cfg
    assert "bind :5432\n    server postgres postgres:5432" in cfg
    assert "bind :1025\n    server mailpit mailpit:1025" in cfg


def test_published_ports_refuse_one_port_for_two_services():
    model = {
        "services": {
            "a": {"ports": [{"target": 80}]},
            "b": {"ports": [{"target": 80}]},
        }
    }
    with pytest.raises(swarm.SwarmError, match="a and b"):
        swarm.published_ports(model)


def test_docs_name_every_translation_and_stop_first_service():
    """docs/swarm.md says what stands in for every key the render drops, and why each
    stop-first service is one."""
    text = DOCS.read_text(encoding="utf-8")
    missing = [k for k in swarm.TRANSLATIONS if f"`{k}`" not in text]
    assert not missing, f"docs/swarm.md does not explain: {missing}"
    assert not [s for s in policy.SWARM_STOP_FIRST if f"`{s}`" not in text]


def test_swarm_mode_uses_the_namespace_and_the_overlay(tmp_path):
    (tmp_path / ".env").write_text("COMPOSE_PROJECT_NAME=p\nSTACKCHECK_OFFLINE=1\n")
    cfg = resolve(option_mode="swarm", option_teardown=False, env={}, stack_dir=tmp_path)
    assert cfg.mode is Mode.SWARM and cfg.project == "stackcheck-swarm"
    assert cfg.files == ("compose.yml", "compose.offline.yml", "compose.swarm.yml")
    env = {"STACKCHECK_SWARM_STACK": "other"}
    assert (
        resolve(option_mode="swarm", option_teardown=False, env=env, stack_dir=tmp_path).project
        == "other"
    )
    with pytest.raises(ModeError, match="undeploy swarm"):
        resolve(option_mode="swarm", option_teardown=True, env={}, stack_dir=tmp_path)


@pytest.mark.parametrize(
    ("nodeid", "impact", "skips"),
    [
        ("tests/infra/test_health.py::test_every_service_running_and_healthy", "reads", False),
        ("tests/e2e/test_mail_flow.py::test_x", "writes", False),
        ("tests/recovery/test_stack_recovery.py::test_down_up", "disrupts", True),
        ("tests/swarm/test_reschedule.py::test_killed_task", "disrupts", False),
    ],
)
def test_which_tests_skip_on_swarm(nodeid, impact, skips):
    assert (swarm_plugin.reason_on_swarm(nodeid, impact) is not None) is skips


def test_every_test_named_not_on_swarm_exists():
    """A renamed test must not leave a stale entry behind (it would silently run on Swarm)."""
    root = DOCS.parents[1]
    for nodeid in swarm_plugin.NOT_ON_SWARM:
        path, _, name = nodeid.partition("::")
        func = name.split("[")[0]
        assert f"def {func}(" in (root / path).read_text(encoding="utf-8"), nodeid


class _FakeDocker:
    def __init__(self, containers, task_states):
        self._containers, self._tasks = containers, task_states
        self.containers = self
        self.services = self

    def list(self, **kw):
        return list(self._containers)

    def get(self, name):
        return self

    def tasks(self, filters=None):
        return [{"Status": {"State": s}} for s in self._tasks]


def _swarm_service(containers, task_states):

    from stackcheck.services.base import Engine, ServiceError, SwarmService

    engine = Engine(
        docker=_FakeDocker(containers, task_states), project="stackcheck-swarm", swarm=True
    )
    return SwarmService(engine, "ecom-mailer"), ServiceError


def test_a_task_running_on_another_node_counts_as_running_and_healthy():
    """T1 across nodes: no container on this engine, but a running task elsewhere (Swarm marks a
    task with a health check running only once it is healthy)."""
    svc, _ = _swarm_service([], ["running"])
    assert (svc.state(), svc.health()) == ("running", "healthy")


def test_an_exited_local_container_does_not_hide_the_task_on_another_node():
    from types import SimpleNamespace

    exited = SimpleNamespace(status="exited", attrs={"State": {"Status": "exited"}})
    svc, _ = _swarm_service([exited], ["running"])
    assert (svc.state(), svc.health()) == ("running", "healthy")


def test_a_service_without_a_running_task_anywhere_is_missing():
    svc, service_error = _swarm_service([], ["starting"])
    with pytest.raises(service_error, match="no task container"):
        svc.health()
