"""stackcheck.services: one table maps every service of the stack to its handle; a Swarm stack
gets the same kinds with SwarmService's way of finding task containers."""

from pathlib import Path

import pytest
import yaml

from stackcheck.services import HANDLES, handle, handle_class
from stackcheck.services.base import Engine, Service, SwarmService
from stackcheck.services.mailer import Mailer
from stackcheck.services.mailserver import MailServer
from stackcheck.services.postgres import Postgres

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[4]
COMPOSE = yaml.safe_load((ROOT / "stack" / "compose.yml").read_text())


@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_every_compose_service_has_a_handle(name):
    cls = handle_class(name)
    assert issubclass(cls, Service)
    assert cls is HANDLES.get(name, Service)


def test_the_table_names_only_services_the_stack_defines_or_the_ollama_double_stands_for():
    assert set(HANDLES) - set(COMPOSE["services"]) <= {"ollama"}


@pytest.mark.parametrize(
    ("name", "kind"),
    [("postgres", Postgres), ("mailpit", MailServer), ("praxis-mailer", Mailer)],
)
def test_kinds(name, kind):
    assert handle_class(name) is kind


def test_an_unknown_service_gets_the_base():
    engine = Engine(docker=None, project="p")
    got = handle(engine, "something-new")
    assert type(got) is Service
    assert (got.name, got.engine) == ("something-new", engine)


def test_swarm_handles_keep_their_kind_and_find_tasks_the_swarm_way():
    cls = handle_class("postgres", swarm=True)
    assert issubclass(cls, SwarmService) and issubclass(cls, Postgres)
    # SwarmService's lookups win over the base's, the kind's clients stay
    assert cls.containers is SwarmService.containers
    assert cls.connect is Postgres.connect
    assert handle_class("postgres", swarm=True) is cls  # one class per kind, not per call
    assert handle_class("clamav", swarm=True) is SwarmService


def test_handle_follows_the_engine():
    swarm = handle(Engine(docker=None, project="ns", swarm=True), "ecom-mailer")
    assert isinstance(swarm, SwarmService) and isinstance(swarm, Mailer)
    assert swarm.full_name == "ns_ecom-mailer"
    assert not isinstance(handle(Engine(docker=None, project="p"), "ecom-mailer"), SwarmService)
