"""T7: the Mailpit API answers /api/v1/messages with a numeric total (the offline mail server
answers the same call in Mailpit's shape). The review's check pipes the body through
`jq -r '.total'`; the same jq program runs here (the jq binding), so the check an operator types
and the suite's cannot disagree about what the API returns."""

import jq
import pytest

pytestmark = [pytest.mark.infra, pytest.mark.needs("mailpit"), pytest.mark.reads]

REVIEW_FILTER = ".total"  # OPTIMIZATION.md's T7: curl .../api/v1/messages | jq -r '.total'


@pytest.mark.req("T7")
def test_messages_api_answers_numeric_total(stack, sla):
    with stack.service("mailpit").api() as http:
        res = http.get("/api/v1/messages", params={"limit": 1})
    assert res.status_code == 200, res.text[:500]
    total = jq.compile(REVIEW_FILTER).input_text(res.text).first()
    assert isinstance(total, int) and total >= 0, res.text[:500]
    assert jq.compile(".messages | type").input_text(res.text).first() == "array"
    sla.record(
        "T7",
        total,
        unit="messages",
        how=f"GET /api/v1/messages on the loopback port, jq {REVIEW_FILTER!r} as in the review",
    )
