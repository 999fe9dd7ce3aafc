"""The per-service clients that parse what a service answers, without the service: a mailer's
metrics text, Prometheus' query API, Alertmanager's, and where the mail CA comes from."""

import json
from types import SimpleNamespace

import httpx
import pytest

from stackcheck.services.alertmanager import Alertmanager
from stackcheck.services.base import Engine, ExecResult
from stackcheck.services.mailer import Mailer, sample
from stackcheck.services.mailserver import MailServer
from stackcheck.services.prometheus import query, scalar

pytestmark = pytest.mark.unit

METRICS = """# HELP emails_processed_total Mails processed
# TYPE emails_processed_total counter
emails_processed_total{profile="praxis",status="processed"} 3.0
emails_processed_total{profile="praxis",status="unprocessed"} 1.0
emails_processed_total{profile="ecom",status="processed"} 7.0
email_queue_depth 2.0
"""


@pytest.mark.parametrize(
    ("name", "labels", "want"),
    [
        ("emails_processed_total", {"profile": "praxis"}, 4.0),
        ("emails_processed_total", {"profile": "praxis", "status": "processed"}, 3.0),
        ("emails_processed_total", {}, 11.0),
        ("email_queue_depth", {}, 2.0),
        ("emails_processed", {}, 0.0),  # a prefix of a name is not the name
    ],
)
def test_sample(name, labels, want):
    assert sample(METRICS, name, labels) == want


def test_mailer_profile():
    assert Mailer(Engine(docker=None, project="p"), "praxis-mailer").profile == "praxis"


def client(status: int, body) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/query"
        return httpx.Response(status, json=body)

    return httpx.Client(base_url="http://prom", transport=httpx.MockTransport(answer))


def test_query_and_scalar():
    body = {"status": "success", "data": {"result": [{"metric": {}, "value": [0, "1.5"]}]}}
    assert query(client(200, body), "up") == body["data"]["result"]
    assert scalar(client(200, body), "up") == 1.5
    empty = {"status": "success", "data": {"result": []}}
    assert scalar(client(200, empty), "up") is None


def test_query_fails_naming_the_expression():
    bad = {"status": "error", "error": "parse error"}
    with pytest.raises(AssertionError, match=r"rate\(up\): .*parse error"):
        query(client(400, bad), "rate(up)")


class Execs:
    """A handle whose exec answers from a table (command's last word -> output)."""

    def __init__(self, answers: dict[str, ExecResult]):
        self.answers, self.calls = answers, []

    def __call__(self, cmd, **kw):
        self.calls.append(cmd)
        return self.answers[cmd[-1]]


def test_alertmanager_reads_its_api_from_inside():
    am = Alertmanager(Engine(docker=None, project="p"), "alertmanager")
    alerts = [{"labels": {"alertname": "X"}, "endsAt": "2026-12-02T18:00:00Z"}]
    metrics = (
        'alertmanager_notifications_total{integration="email"} 2\n'
        'alertmanager_notifications_total{integration="webhook"} 1\n'
        "alertmanager_alerts 4\n"
    )
    am.exec = Execs(
        {
            "http://localhost:9093/api/v2/alerts?active=true&silenced=true": ExecResult(
                0, json.dumps(alerts)
            ),
            "http://localhost:9093/metrics": ExecResult(0, metrics),
        }
    )
    assert am.alerts() == alerts
    assert am.notifications_total() == 3.0


def test_the_mail_ca_comes_from_a_service_that_mounts_it_when_this_host_has_none(tmp_path):
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    ecom = SimpleNamespace(exec=Execs({"/run/secrets/mail_ca_cert": ExecResult(0, pem)}))
    peers = {"ecom-mailer": ecom}  # no praxis-mailer in this stack: the next one is asked
    engine = Engine(docker=None, project="p", secrets_dir=tmp_path, peer=peers.get)
    assert MailServer(engine, "mailpit").ca_pem() == pem
    (tmp_path / "mail_ca.crt").write_text("here")
    assert MailServer(engine, "mailpit").ca_pem() == "here"


def test_no_mail_ca_anywhere_says_what_to_do(tmp_path):
    engine = Engine(docker=None, project="p", secrets_dir=tmp_path, peer=lambda n: None)
    with pytest.raises(FileNotFoundError, match=r"run \./run setup"):
        MailServer(engine, "mailpit").ca_pem()
