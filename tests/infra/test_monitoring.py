"""Monitoring against the running stack: Prometheus, Alertmanager, the exporters, Grafana and Loki
(T4, E5, M1, M3, M4, M5, S7, SLA-AV4, SLA-D1, SLA-D2).

Prometheus is read over its published loopback port; the exporters and Alertmanager, which
publish nothing, from inside their own containers (their images carry wget and amtool).
Grafana, Loki, Alloy and cAdvisor have no offline image: their tests skip in offline mode,
naming the service.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from stackcheck.mailflow import header_text
from stackcheck.services.prometheus import query, scalar
from stackcheck.waits import wait_for

pytestmark = [pytest.mark.infra, pytest.mark.reads]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "stack" / "config"
PROM_CONFIG = CONFIG / "prometheus" / "prometheus.yml"
RULE_FILES = sorted((CONFIG / "prometheus" / "rules").glob("*.yml"))
DASHBOARDS = sorted((CONFIG / "grafana" / "dashboards").glob("*.json"))
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "6h"}
GIB = 2**30


# --- clients ------------------------------------------------------------------------------------
# Function-scoped on purpose: the `needs` skip (an autouse fixture of the plugin) must run
# before a client is made for a service the stack may not have.
@pytest.fixture
def prom(stack) -> httpx.Client:
    with stack.service("prometheus").client() as client:
        yield client


@pytest.fixture
def grafana(stack) -> httpx.Client:
    with stack.service("grafana").client() as client:
        yield client


def in_container(stack, service: str, url: str) -> str:
    res = stack.service(service).exec(["wget", "-qO-", url])
    assert res.exit_code == 0, f"{service}: wget {url} failed: {res.output[-500:]}"
    return res.output


def prometheus_jobs() -> list[str]:
    return [job["job_name"] for job in yaml.safe_load(PROM_CONFIG.read_text())["scrape_configs"]]


def all_queries() -> list[tuple[str, str]]:
    found = [
        (f"rule {rule['alert']}", rule["expr"])
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for var, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(var, value)
                found.append((f"{board['title']}: {panel['title']} [{target['refId']}]", expr))
    return found


# --- T4: health -----------------------------------------------------------------------------
@pytest.mark.req("T4")
@pytest.mark.needs("prometheus")
def test_prometheus_healthy_and_ready(prom, sla):
    healthy = prom.get("/-/healthy")
    ready = prom.get("/-/ready")
    assert (healthy.status_code, healthy.text) == (200, "Prometheus Server is Healthy.\n")
    assert (ready.status_code, ready.text) == (200, "Prometheus Server is Ready.\n")
    sla.record("T4", f"Prometheus /-/healthy: {healthy.text.strip()}", how="GET /-/healthy")


@pytest.mark.req("T4")
@pytest.mark.needs("grafana")
def test_grafana_api_health(grafana, sla):
    res = grafana.get("/api/health")
    assert res.status_code == 200, res.text
    assert res.json().get("database") == "ok", res.text
    sla.record("T4", f"Grafana /api/health: {res.text.strip()}", how="GET /api/health")


# --- E5: exporters, dashboards, logs -----------------------------------------------------------
@pytest.mark.req("E5")
@pytest.mark.needs("prometheus")
def test_prometheus_serves_metrics(prom):
    res = prom.get("/metrics")
    assert res.status_code == 200 and "prometheus_build_info" in res.text


@pytest.mark.req("E5")
@pytest.mark.parametrize(
    ("service", "port", "needle"),
    [
        pytest.param(
            "node-exporter", 9100, re.compile(r"^node_cpu_seconds_total\{", re.M),
            marks=pytest.mark.needs("node-exporter"), id="node-exporter",
        ),
        pytest.param(
            "postgres-exporter", 9187, re.compile(r"^pg_up 1$", re.M),
            marks=pytest.mark.needs("postgres-exporter", "postgres"), id="postgres-exporter",
        ),
        pytest.param(
            "cadvisor", 8080, re.compile(r"^container_cpu_usage_seconds_total\{", re.M),
            marks=pytest.mark.needs("cadvisor"), id="cadvisor",
        ),
    ],
)  # fmt: skip
def test_exporter_answers_metrics(stack, service, port, needle, sla):
    text = in_container(stack, service, f"http://localhost:{port}/metrics")
    assert needle.search(text), f"{service}:{port}/metrics lacks {needle.pattern}"
    sla.record(
        "E5",
        f"{service}:{port}/metrics answers ({len(text.splitlines())} lines, {needle.pattern})",
        how="wget inside the exporter's container",
    )


@pytest.mark.req("E5", "M5")
@pytest.mark.needs("grafana")
def test_grafana_has_the_provisioned_dashboards(grafana, sla):
    res = grafana.get("/api/search", params={"type": "dash-db", "tag": "stackcheck"})
    assert res.status_code == 200, res.text
    titles = sorted(d["title"] for d in res.json())
    sla.record("E5", f"Grafana dashboards: {', '.join(titles)}", how="GET /api/search")
    assert {"Mailer", "Database", "System"} <= set(titles), titles


@pytest.mark.req("E5")
@pytest.mark.needs("loki", "alloy", "grafana")
def test_loki_holds_the_containers_logs(stack, sla):
    want = {s for s in ("postgres", "redis", "praxis-mailer", "ecom-mailer") if stack.has(s)}

    def services_in_loki() -> set[str]:
        streams = stack.service("loki").query(
            'sum by (service) (count_over_time({service=~".+"}[1h]))'
        )
        return {s["metric"].get("service") for s in streams}

    seen, took = wait_for(
        services_in_loki, timeout=120, interval=5, ok=lambda got: want <= got,
        what=f"Loki streams of {sorted(want)}",
    )  # fmt: skip
    sla.record(
        "E5", f"Loki has logs of {len(seen)} services: {', '.join(sorted(seen))}",
        how=f"LogQL count_over_time by service over 1 h (waited {took:.0f} s)",
    )  # fmt: skip


# --- S7: the log pipeline scrubs ---------------------------------------------------------------
@pytest.mark.req("S7")
@pytest.mark.needs("loki", "alloy", "grafana")
def test_loki_holds_no_email_address_or_secret_value(stack, sla):
    """No line in Loki has an e-mail address, and none has the value of any of the stack's
    secrets (searched literally, each file of stack/secrets this user can read)."""
    email_lines = stack.service("loki").query(
        '{service=~".+"} |~ "[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\\\\.[A-Za-z0-9-]+)+"', limit=5
    )
    assert not email_lines, f"e-mail addresses in Loki: {email_lines}"
    checked, leaked = 0, []
    for path in sorted((stack.config.stack_dir / "secrets").glob("*")):
        try:
            values = path.read_text().split()
        except PermissionError:
            continue
        if len(values) != 1 or len(values[0]) < 8:
            continue  # derived files (ACL hashes, user:password lists) repeat a base secret
        for value in values:
            checked += 1
            needle = json.dumps(value)[1:-1]
            if stack.service("loki").query(f'{{service=~".+"}} |= "{needle}"', limit=1):
                leaked.append(path.name)
    sla.record(
        "S7", f"Loki: no e-mail address, none of {checked} secret values found",
        how="LogQL line filters over the last hour, all services",
    )  # fmt: skip
    assert checked, "no secret file readable: nothing was searched"
    assert not leaked, f"secret values in Loki: {leaked}"


# --- M1: effective Prometheus settings ------------------------------------------------------------
def _bytes(size: str) -> int:
    """Prometheus sizes are powers of 2 whether written GB or GiB."""
    n, unit = re.fullmatch(r"(\d+)\s*([KMGTPE]?i?B)", size).groups()
    return int(n) * 1024 ** "BKMGTPE".index(unit[0])


@pytest.mark.req("M1")
@pytest.mark.needs("prometheus")
def test_prometheus_effective_retention_intervals_and_wal_compression(prom, sla):
    """Retention from the loaded config (Prometheus >= 3.8) or, on the offline stand-in
    (2.42, no such block), from the flags its entrypoint derives from the same file; the size
    limit as the TSDB applies it (prometheus_tsdb_retention_limit_bytes)."""
    flags = prom.get("/api/v1/status/flags").json()["data"]
    config = yaml.safe_load(prom.get("/api/v1/status/config").json()["data"]["yaml"])
    retention = ((config.get("storage") or {}).get("tsdb") or {}).get("retention") or {}
    r_time = retention.get("time") or flags.get("storage.tsdb.retention.time")
    r_size = retention.get("size") or flags.get("storage.tsdb.retention.size")
    limit_bytes = scalar(prom, "max(prometheus_tsdb_retention_limit_bytes)")
    limit_seconds = scalar(prom, "max(prometheus_tsdb_retention_limit_seconds)")
    got = {
        "scrape_interval": config["global"]["scrape_interval"],
        "evaluation_interval": config["global"]["evaluation_interval"],
        "retention.time": r_time,
        "retention.size": r_size,
        "wal-compression": flags.get("storage.tsdb.wal-compression"),
    }
    sla.record(
        "M1",
        ", ".join(f"{k} {v}" for k, v in got.items())
        + f"; TSDB size limit {limit_bytes:g} B"
        + (f", time limit {limit_seconds:g} s" if limit_seconds is not None else ""),
        how="/api/v1/status/config, /api/v1/status/flags, prometheus_tsdb_retention_limit_*",
    )
    assert got["scrape_interval"] == got["evaluation_interval"] == "15s", got
    assert r_time == "30d", got
    assert r_size and _bytes(r_size) == 10 * GIB, got
    assert got["wal-compression"] == "true", got
    assert limit_bytes == 10 * GIB
    if limit_seconds is not None:  # Prometheus 3.x exports it; 2.42 does not
        assert limit_seconds == 30 * 86400


# --- M4: service discovery ----------------------------------------------------------------------
@pytest.mark.req("M4")
@pytest.mark.needs("prometheus")
def test_targets_are_discovered_and_up(stack, prom, sla):
    expected = {job for job in prometheus_jobs() if stack.has(job)}

    def targets() -> list[dict]:
        return prom.get("/api/v1/targets", params={"state": "active"}).json()["data"][
            "activeTargets"
        ]

    def all_up(found: list[dict]) -> bool:
        up = {t["labels"]["job"] for t in found if t["health"] == "up"}
        return expected <= up

    found, _ = wait_for(
        targets, timeout=90, interval=2, ok=all_up, what=f"targets of {sorted(expected)} up"
    )
    static = [t["scrapeUrl"] for t in found if "__meta_dns_name" not in t["discoveredLabels"]]
    jobs = sorted({t["labels"]["job"] for t in found})
    sla.record(
        "M4",
        f"{len(found)} targets, all by DNS discovery: "
        + ", ".join(f"{t['labels']['instance']}={t['health']}" for t in found),
        how="/api/v1/targets: discoveredLabels.__meta_dns_name on every active target",
    )
    assert not static, f"targets not found by DNS service discovery: {static}"
    assert set(jobs) <= set(prometheus_jobs()), jobs
    assert all(t["labels"]["instance"].startswith(t["labels"]["job"] + ":") for t in found)


@pytest.mark.req("M3", "M4")
@pytest.mark.needs("prometheus", "alertmanager")
def test_alertmanager_discovered_and_rules_loaded(prom):
    ams = prom.get("/api/v1/alertmanagers").json()["data"]["activeAlertmanagers"]
    assert ams, "Prometheus has discovered no Alertmanager"
    groups = prom.get("/api/v1/rules", params={"type": "alert"}).json()["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    want = {name.removeprefix("rule ") for name, _ in all_queries() if name.startswith("rule ")}
    assert want <= set(loaded), f"alert rules not loaded: {sorted(want - set(loaded))}"
    unhealthy = {n: r.get("lastError") for n, r in loaded.items() if r["health"] != "ok"}
    assert not unhealthy, unhealthy


@pytest.mark.req("M3", "M5")
@pytest.mark.needs("prometheus")
def test_every_rule_and_dashboard_query_runs(prom, sla):
    """Every alert expression and every dashboard query is accepted by the running Prometheus
    (Grafana's interval variables replaced); an empty result is fine, an error is not."""
    errors, empty = [], []
    queries = all_queries()
    for where, expr in queries:
        res = prom.post("/api/v1/query", data={"query": expr})
        body = res.json()
        if res.status_code != 200 or body.get("status") != "success":
            errors.append(f"{where}: {body.get('error')}")
        elif not body["data"]["result"]:
            empty.append(where)
    sla.record(
        "M5",
        f"{len(queries)} queries run without error ({len(empty)} empty on this stack)",
        how="POST /api/v1/query for every alert rule and dashboard target",
    )
    assert not errors, errors


# --- M3: an alert reaches the mailbox -------------------------------------------------------------
@pytest.mark.req("M3")
@pytest.mark.needs("alertmanager", "mailpit")
@pytest.mark.writes  # posts a critical alert: it pages whoever Alertmanager pages
def test_alert_mail_reaches_the_mailbox(stack, sla):
    """A critical alert posted to Alertmanager arrives as mail for alerts@example.com in the
    stack's mail server, read over POP3 as any mail client would (without deleting anything)."""
    probe = uuid.uuid4().hex[:12]
    end = (datetime.now(UTC) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stack.service("alertmanager").add_alert(
        {"alertname": f"StackcheckProbe{probe}", "severity": "critical", "probe": probe},
        end=end,
        summary="stackcheck delivery probe",
    )
    sent = time.monotonic()
    box = stack.service("mailpit").reader()

    def subjects() -> list[tuple[str, str]]:
        # only the alert mails (issue 10 case 7: the mailbox also holds real-world mail this
        # suite did not write, whose headers need not decode); decoded without raising
        return [
            (header_text(m["Subject"]), header_text(m["To"]))
            for m in box.headers(contains=b"alerts@example.com")
        ]

    found, _ = wait_for(
        subjects, timeout=120, interval=3, what=f"alert mail with probe {probe}",
        ok=lambda got: any(probe in s for s, _ in got),
    )  # fmt: skip
    subject, to = next((s, t) for s, t in found if probe in s)
    took = time.monotonic() - sent
    sla.record(
        "M3",
        f"alert delivered by mail in {took:.1f} s: {subject!r} to {to}",
        how="amtool alert add (severity=critical) -> Alertmanager -> SMTP mailpit:1025 -> POP3",
    )
    assert "alerts@example.com" in to
    assert subject.startswith("[CRITICAL]"), subject


# --- SLA-AV4, SLA-D2: scrape success and freshness ------------------------------------------------
@pytest.mark.req("SLA-AV4")
@pytest.mark.needs("prometheus")
def test_scrape_success_over_24h(prom, sla):
    """Share of successful scrapes of all targets over the last 24 h, or over the history
    Prometheus has if that is shorter (stated in the evidence)."""
    share = scalar(prom, "100 * sum(sum_over_time(up[24h])) / sum(count_over_time(up[24h]))")
    assert share is not None, "Prometheus has no `up` samples yet"
    hours = scalar(prom, "max(count_over_time(up[24h])) * 15 / 3600")
    worst = query(prom, "sort(avg by (job) (avg_over_time(up[24h])))")
    detail = ", ".join(f"{r['metric']['job']} {100 * float(r['value'][1]):.1f}%" for r in worst)
    sla.check(
        "SLA-AV4",
        share,
        how=f"sum_over_time(up)/count_over_time(up) over the last "
        f"{f'{hours * 60:.0f} min' if hours < 1 else f'{min(hours, 24):.1f} h'} of history; "
        f"per job: {detail}",
    )


@pytest.mark.req("SLA-D2")
@pytest.mark.needs("prometheus")
def test_metrics_lag_behind_real_time(prom, sla):
    """Age of the newest sample of the stalest target: scrape interval plus scrape duration."""
    lag = scalar(prom, "max(time() - timestamp(up))")
    assert lag is not None, "Prometheus has no `up` samples yet"
    per_job = query(prom, "max by (job) (time() - timestamp(up))")
    sla.check(
        "SLA-D2",
        lag,
        how="max(time() - timestamp(up)) over all targets: "
        + ", ".join(f"{r['metric']['job']} {float(r['value'][1]):.1f}s" for r in per_job),
    )


# --- SLA-D1: dashboard load time ---------------------------------------------------------------
@pytest.mark.req("SLA-D1")
@pytest.mark.needs("grafana", "prometheus")
@pytest.mark.parametrize("uid", ["stackcheck-mailer", "stackcheck-database", "stackcheck-system"])
def test_dashboard_loads_within_target(grafana, uid, sla):
    """What a browser does to show a dashboard: fetch its JSON, then run all its panel queries
    (over 6 hours, as the dashboard's default range) through Grafana's query API."""
    start = time.monotonic()
    res = grafana.get(f"/api/dashboards/uid/{uid}")
    assert res.status_code == 200, res.text
    board = res.json()["dashboard"]
    queries = [
        {
            "refId": f"{p['id']}{t['refId']}",
            "datasource": t["datasource"],
            "expr": t["expr"],
            "range": True,
            "intervalMs": 15000,
            "maxDataPoints": 1000,
        }
        for p in board["panels"]
        for t in p.get("targets", [])
    ]
    res = grafana.post("/api/ds/query", json={"queries": queries, "from": "now-6h", "to": "now"})
    took = time.monotonic() - start
    assert res.status_code == 200, res.text[:500]
    failed = {k: v.get("error") for k, v in res.json()["results"].items() if v.get("error")}
    sla.check(
        "SLA-D1",
        took,
        how=f"GET /api/dashboards/uid/{uid} + POST /api/ds/query ({len(queries)} queries, 6 h)",
    )
    assert not failed, failed
