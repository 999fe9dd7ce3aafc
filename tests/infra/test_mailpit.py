"""T7: the Mailpit API answers /api/v1/messages with a numeric total (the offline mail server
answers the same call in Mailpit's shape)."""

import pytest

pytestmark = [pytest.mark.infra, pytest.mark.needs("mailpit"), pytest.mark.reads]


@pytest.mark.req("T7")
def test_messages_api_answers_numeric_total(stack, sla):
    with stack.http("mailpit", 8025) as http:
        res = http.get("/api/v1/messages", params={"limit": 1})
    assert res.status_code == 200, res.text[:500]
    body = res.json()
    assert isinstance(body["total"], int) and body["total"] >= 0, body
    assert isinstance(body["messages"], list)
    sla.record(
        "T7", body["total"], unit="messages", how="GET /api/v1/messages on the loopback port"
    )
