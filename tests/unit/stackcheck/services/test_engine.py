"""stackcheck.services.base.Engine: what a handle gets from the stack; its guard refuses every
mutation of an external stack, and nothing in services/ imports the Stack."""

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest

from stackcheck.services.base import Engine, MutationRefused, Service, ServiceError

pytestmark = pytest.mark.unit

SERVICES = Path(__file__).resolve().parents[4] / "src" / "stackcheck" / "services"


class FakeContainer:
    def __init__(self):
        self.calls = []
        self.status = "running"

    def stop(self, timeout):
        self.calls.append("stop")

    def start(self):
        self.calls.append("start")

    def kill(self, signal):
        self.calls.append("kill")

    def restart(self, timeout):
        self.calls.append("restart")


def service(external: bool) -> tuple[Service, FakeContainer]:
    container = FakeContainer()
    docker = SimpleNamespace(containers=SimpleNamespace(list=lambda **kw: [container]))
    return Service(Engine(docker=docker, project="p", external=external), "redis"), container


@pytest.mark.parametrize("action", ["stop", "start", "kill", "restart"])
def test_external_stack_refuses_every_mutation(action):
    svc, container = service(external=True)
    with pytest.raises(MutationRefused, match="refused, the stack is external"):
        getattr(svc, action)()
    assert container.calls == []


@pytest.mark.parametrize("action", ["stop", "start", "kill", "restart"])
def test_an_owned_stack_allows_them(action):
    svc, container = service(external=False)
    getattr(svc, action)()
    assert container.calls == [action]


def test_the_guard_alone():
    Engine(docker=None, project="p").guard("anything")
    with pytest.raises(MutationRefused, match=r"^down: refused"):
        Engine(docker=None, project="p", external=True).guard("down")


def test_sibling_names_a_missing_service():
    engine = Engine(docker=None, project="p", peer=lambda name: None)
    with pytest.raises(ServiceError, match="no service 'praxis-mailer'"):
        engine.sibling("praxis-mailer")


def test_sibling_is_the_stacks_handle():
    other = Service(Engine(docker=None, project="p"), "postgres")
    engine = Engine(docker=None, project="p", peer={"postgres": other}.get)
    assert engine.sibling("postgres") is other


def test_a_secret_is_read_here_first(tmp_path):
    (tmp_path / "redis_password").write_text("s3cret\n")
    svc = Service(Engine(docker=None, project="p", secrets_dir=tmp_path), "redis")
    assert svc.secret("redis_password") == "s3cret"


def test_services_never_import_the_stack():
    """The stack makes the engine and the handles: an import back would be a cycle."""
    for path in SERVICES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                assert not name.startswith(("stackcheck.stack", "stackcheck.plugin")), (
                    f"{path.name} imports {name}"
                )
