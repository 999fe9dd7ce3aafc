"""SLA-P1 as a pytest-benchmark in pedantic mode: a fixed number of rounds, each one mail from
SMTP submission to its committed row (AI failing fast, so the rules classify), the mail built
outside the timed part. The plugin keeps every round in reports/runs/<run>/benchmark.json and
the evidence compares the median with the previous run's (stackcheck.evidence.history)."""

from __future__ import annotations

from itertools import count

import pytest

from stackcheck.mailflow import PROFILES

pytestmark = [pytest.mark.perf, pytest.mark.needs("mailpit", "praxis-mailer")]

ROUNDS = 10


@pytest.mark.req("SLA-P1")
def test_one_mail_without_ai_benchmark(stack, mail, praxis_db, ollama, sla, benchmark):
    if ollama is None:
        pytest.skip("needs the Ollama double to switch AI off; a real Ollama is configured")
    timeout = sla.threshold("SLA-P1").value * 4
    serial = count()

    def setup():
        return (
            mail.build(PROFILES["praxis"], f"Benchmark {next(serial)}", "Bitte um Rückruf."),
        ), {}

    def one_mail(msg):
        praxis_db.wait_stored(mail.send(msg), timeout=timeout)

    benchmark.group = "SLA-P1 mail latency"
    benchmark.extra_info["mode"] = "pedantic"
    ollama.control(status=500)
    try:
        benchmark.pedantic(one_mail, setup=setup, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    finally:
        ollama.control(status=200)
    if benchmark.disabled or benchmark.stats is None:
        pytest.skip("pytest-benchmark is disabled (--benchmark-disable): nothing was timed")
    st = benchmark.stats.stats
    sla.samples("SLA-P1", st.data, unit="s", how="benchmark rounds")
    sla.record(
        "SLA-P1",
        st.median,
        unit="s",
        how=f"benchmark median of {st.rounds} pedantic rounds (pytest-benchmark, 1 warm-up): "
        f"SMTP submission including the SMTP session to the committed row, 50 ms polling; "
        f"min {st.min:.3f} s, max {st.max:.3f} s",
    )
