"""The monitoring configuration, checked without a running stack (M1-M5, S7).

The official tools judge the official formats: promtool (rules, rule unit tests, the Prometheus
config, every dashboard query) and amtool (Alertmanager config and routing). They come from
Debian's `prometheus` and `prometheus-alertmanager` packages; a missing tool fails the test with
the command that installs it. The Alloy scrubbing expressions (S7) are evaluated with RE2, the
engine Alloy uses (Go regexp), through PyPI's google-re2, with Alloy's own replace semantics.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.security, pytest.mark.reads]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "stack" / "config"
PROM = CONFIG / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))
ALERTMANAGER = CONFIG / "alertmanager" / "alertmanager.yml"
DASHBOARDS = sorted((CONFIG / "grafana" / "dashboards").glob("*.json"))
PROVISIONING = CONFIG / "grafana" / "provisioning"
LOKI = CONFIG / "loki" / "loki.yml"
ALLOY = CONFIG / "alloy" / "config.alloy"
MAILER_METRICS = ROOT / "stack" / "images" / "mailer" / "build" / "app" / "mailer" / "metrics.py"
COMPOSE = ROOT / "stack" / "compose.yml"

# Grafana's interval variables, replaced by a representative value before promtool parses a query
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "6h"}
INSTALL = {
    "promtool": "apt-get install prometheus (Debian's package ships promtool)",
    "amtool": "apt-get install prometheus-alertmanager (Debian's package ships amtool)",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed on this host: {INSTALL[name]}", pytrace=False)
    return path


def run(*cmd: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def alert_rules() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every Prometheus target of every provisioned dashboard."""
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"]))
    return found


def duration_hours(text: str) -> float:
    units = {"ms": 1 / 3_600_000, "s": 1 / 3600, "m": 1 / 60, "h": 1, "d": 24, "w": 168, "y": 8760}
    parts = re.findall(r"(\d+)(ms|[smhdwy])", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(int(n) * units[u] for n, u in parts)


# --- Prometheus: rules (M3) -------------------------------------------------------------------
@pytest.mark.req("M3")
def test_promtool_check_rules(sla):
    assert RULE_FILES, f"no rule files in {PROM / 'rules'}"
    proc = run(tool("promtool"), "check", "rules", *RULE_FILES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sla.record(
        "M3",
        f"{len(alert_rules())} alert rules in {len(RULE_FILES)} files pass promtool check rules",
        how="promtool check rules stack/config/prometheus/rules/*.yml",
    )


@pytest.mark.req("M3")
def test_promtool_rule_unit_tests_pass(sla):
    assert RULE_TESTS, f"no rule unit tests in {PROM / 'tests'}"
    proc = run(tool("promtool"), "test", "rules", *RULE_TESTS, cwd=PROM)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sla.record(
        "M3",
        f"promtool test rules: {len(RULE_TESTS)} test files pass",
        how="promtool test rules stack/config/prometheus/tests/*.yml",
    )


@pytest.mark.req("M3")
def test_every_alert_rule_is_tested_firing_and_quiet():
    """A unit test per rule where it fires and one where it stays quiet: a rule that can never
    fire, or that always fires, is caught by the pair."""
    cases: dict[str, set[bool]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    missing = {
        rule["alert"]: sorted({"firing", "quiet"} - {"firing" if f else "quiet" for f in got})
        for rule in alert_rules()
        if (got := cases.get(rule["alert"], set())) != {True, False}
    }
    assert not missing, f"rules without a firing and a quiet unit test case: {missing}"


@pytest.mark.req("M3")
def test_alert_rules_cover_the_review_and_carry_severity_and_text():
    rules = {r["alert"]: r for r in alert_rules()}
    required = {
        "ServiceDown": "up == 0",
        "ServiceTargetMissing": "absent(up",
        "BackupFailed": "backup_runs_total",
        "BackupMissing": "backup_last_success_timestamp_seconds",
        "BackupStatusAbsent": "absent(backup_last_success_timestamp_seconds)",
        "DiskNearlyFull": "node_filesystem_avail_bytes",
        "MailQueueBacklog": "email_queue_depth",
        "InfectedAttachment": "attachments_infected_total",
        "AttachmentScanFailing": "attachment_scans_total",
        "MailboxUnreachable": "mailbox_connection_up == 0",
    }
    problems = [f"{name}: missing" for name in required if name not in rules]
    problems += [
        f"{name}: expression lacks {needle!r}"
        for name, needle in required.items()
        if name in rules and needle not in rules[name]["expr"]
    ]
    for name, rule in rules.items():
        if rule.get("labels", {}).get("severity") not in {"critical", "warning"}:
            problems.append(f"{name}: severity {rule.get('labels', {}).get('severity')!r}")
        for key in ("summary", "description"):
            if not rule.get("annotations", {}).get(key, "").strip():
                problems.append(f"{name}: no {key} annotation")
    assert not problems, problems


# --- Prometheus: configuration (M1, M4) -------------------------------------------------------
def _config() -> dict:
    return yaml.safe_load((PROM / "prometheus.yml").read_text())


@pytest.mark.req("M1", "M4")
def test_promtool_check_config(tmp_path):
    """promtool of the host (Debian: 2.42) predates the config file's storage.tsdb.retention
    block (Prometheus >= 3.8), so it checks a copy without that block, next to links to the
    rule files: everything else of the file is checked as written. The block itself is checked
    by test_retention_and_intervals_in_config."""
    config = _config()
    config.get("storage", {}).get("tsdb", {}).pop("retention", None)
    for entry in PROM.iterdir():
        if entry.name != "prometheus.yml":
            (tmp_path / entry.name).symlink_to(entry)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = run(tool("promtool"), "check", "config", tmp_path / "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.req("M1")
def test_retention_and_intervals_in_config(sla):
    config = _config()
    glob = config["global"]
    retention = config["storage"]["tsdb"]["retention"]
    got = {
        "scrape_interval": glob.get("scrape_interval"),
        "evaluation_interval": glob.get("evaluation_interval"),
        "retention.time": retention.get("time"),
        "retention.size": retention.get("size"),
    }
    want = {
        "scrape_interval": "15s",
        "evaluation_interval": "15s",
        "retention.time": "30d",
        "retention.size": "10GB",
    }
    sla.record(
        "M1",
        ", ".join(f"{k} {v}" for k, v in got.items()),
        how="stack/config/prometheus/prometheus.yml (global, storage.tsdb.retention)",
    )
    assert got == want


@pytest.mark.req("M4")
def test_targets_come_from_service_discovery(sla):
    """No static target lists, and no Docker socket: every job and the Alertmanager are found
    by DNS on their compose service names."""
    config = _config()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    static = [name for name, job in jobs.items() if "static_configs" in job]
    socket = [name for name, job in jobs.items() if "docker_sd_configs" in job]
    undiscovered = [
        name
        for name, job in jobs.items()
        if not job.get("dns_sd_configs") and not job.get("file_sd_configs")
    ]
    am = config["alerting"]["alertmanagers"]
    required = {
        "prometheus", "alertmanager", "node-exporter", "postgres-exporter", "cadvisor",
        "praxis-mailer", "ecom-mailer", "backup", "grafana", "loki",
    }  # fmt: skip
    sla.record(
        "M4",
        f"{len(jobs)} jobs, all by dns_sd_configs: {', '.join(jobs)}",
        how="stack/config/prometheus/prometheus.yml scrape_configs and alerting",
    )
    assert not static, f"static target lists: {static}"
    assert not socket, f"jobs needing the Docker socket: {socket}"
    assert not undiscovered, f"jobs without service discovery: {undiscovered}"
    assert all("dns_sd_configs" in a and "static_configs" not in a for a in am), am
    assert required <= set(jobs), f"jobs missing: {sorted(required - set(jobs))}"
    for name, job in jobs.items():
        names = [n for sd in job["dns_sd_configs"] for n in sd["names"]]
        assert names == [name], f"job {name} discovers {names}, not its own service"


def _compose_services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _networks(svc: dict) -> set[str]:
    nets = svc.get("networks") or []
    return set(nets if isinstance(nets, list) else nets.keys())


@pytest.mark.req("M4", "S3")
def test_prometheus_shares_a_network_with_every_service_it_scrapes():
    """DNS discovery only sees services on Prometheus' own networks: a scraped service that
    does not join one is silently never found."""
    services = _compose_services()
    assert "prometheus" in services, "stack/compose.yml has no prometheus service"
    prom_nets = _networks(services["prometheus"])
    jobs = [job["job_name"] for job in _config()["scrape_configs"]]
    unreachable = {
        job: sorted(_networks(services[job]))
        for job in jobs
        if job in services and not (_networks(services[job]) & prom_nets)
    }
    assert not unreachable, f"not on a network of prometheus {sorted(prom_nets)}: {unreachable}"


# --- Alertmanager (M3) --------------------------------------------------------------------------
@pytest.mark.req("M3")
def test_amtool_check_config():
    proc = run(tool("amtool"), "check-config", ALERTMANAGER)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.req("M3")
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=ServiceDown"], "mail-critical"),
        (["severity=warning", "alertname=MailQueueBacklog"], "mail-warning"),
        (["alertname=Unlabelled"], "mail-warning"),
    ],
    ids=["critical", "warning", "no-severity"],
)
def test_alerts_route_by_severity(labels, receiver):
    proc = run(tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == [receiver], proc.stdout


@pytest.mark.req("M3")
def test_alert_mail_goes_to_the_stacks_mail_server():
    config = yaml.safe_load(ALERTMANAGER.read_text())
    glob = config["global"]
    assert glob["smtp_smarthost"] == "mailpit:1025"
    assert glob["smtp_from"] == "alertmanager@example.com"
    # issue 11: the mail server requires STARTTLS and AUTH; the password is a file, never here
    assert glob["smtp_require_tls"] is True
    assert glob["smtp_auth_username"] == "alertmanager"
    assert glob["smtp_auth_password_file"] == "/run/secrets/alertmanager_smtp_password"
    assert "smtp_auth_password" not in glob
    for receiver in config["receivers"]:
        assert [c["to"] for c in receiver["email_configs"]] == ["alerts@example.com"], receiver
        for c in receiver["email_configs"]:
            tls = c["tls_config"]
            assert tls["ca_file"] == "/run/secrets/mail_ca_cert", receiver
            assert tls["server_name"] == "mailpit", receiver
            assert not tls.get("insecure_skip_verify"), receiver


# --- Grafana (M5) -------------------------------------------------------------------------------
@pytest.mark.req("M5")
def test_every_dashboard_query_parses(tmp_path, sla):
    """Each query, Grafana's variables replaced, becomes a recording rule for promtool's parser."""
    queries = dashboard_queries()
    assert queries, "no dashboard queries"
    rules = [
        {"record": f"dashboard:query:{i}", "expr": _substitute(expr)}
        for i, (_, expr) in enumerate(queries)
    ]
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = run(tool("promtool"), "check", "rules", path)
    if proc.returncode != 0:
        where = {f"dashboard:query:{i}": w for i, (w, _) in enumerate(queries)}
        text = proc.stdout + proc.stderr
        for record, w in where.items():
            text = text.replace(record, f"{record} ({w})")
        pytest.fail(text, pytrace=False)
    sla.record(
        "M5",
        f"{len(queries)} queries in {len(DASHBOARDS)} dashboards parse",
        how="promtool check rules on the dashboards' PromQL",
    )


def _substitute(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unhandled Grafana variable in {expr!r}"
    return expr


M5_PANELS = {
    "mailer.json": {
        "processing rate": "emails_processed_total",
        "queue depth": "email_queue_depth",
        "ai processing time p50 / p95 / p99": "ai_processing_seconds_bucket",
        "scan results": "attachment_scans_total",
        "imap": "mailbox_connection_up",
        "smtp send success": "smtp_send_total",
    },
    "database.json": {
        "pool use": "pg_stat_activity_count",
        "slow queries": "pg_stat_activity_max_tx_duration",
        "size growth": "pg_database_size_bytes",
        "backup success": "backup_runs_total",
    },
    "system.json": {
        "cpu": "node_cpu_seconds_total",
        "memory": "node_memory_MemAvailable_bytes",
        "disk use per volume": "node_filesystem_avail_bytes",
        "ollama gpu": "node_drm_gpu_busy_percent",
        "network per service": "container_network_receive_bytes_total",
    },
}


@pytest.mark.req("M5")
@pytest.mark.parametrize("name", sorted(M5_PANELS))
def test_dashboard_has_the_reviews_panels(name):
    board = json.loads((CONFIG / "grafana" / "dashboards" / name).read_text())
    panels = {p["title"].lower(): p for p in board["panels"]}
    problems = []
    for title_part, metric in M5_PANELS[name].items():
        hits = [p for t, p in panels.items() if title_part in t]
        if not hits:
            problems.append(f"no panel titled like {title_part!r}")
        elif not any(metric in t["expr"] for p in hits for t in p.get("targets", [])):
            problems.append(f"panel {title_part!r} does not query {metric}")
    assert not problems, problems
    for p in board["panels"]:
        if p["type"] != "text":
            assert p["datasource"] == {"type": "prometheus", "uid": "prometheus"}, p["title"]
    if name == "system.json":
        gpu = next(p for t, p in panels.items() if "ollama gpu" in t)
        assert "host exporter" in gpu["description"], "the GPU panel must say it needs one"


@pytest.mark.req("M5")
def test_mailer_panels_use_metrics_the_mailer_exports():
    defined = set(
        re.findall(r'(?:Counter|Gauge|Histogram)\(\s*"([a-z_]+)"', MAILER_METRICS.read_text())
    )
    assert "emails_processed_total" in defined, f"could not read metric names: {defined}"
    used = set()
    for _, expr in dashboard_queries():
        for name in re.findall(r"\b((?:emails?|ai|attachments?|mailbox|smtp)_[a-z_]+)\b", expr):
            used.add(re.sub(r"_(bucket|sum|count)$", "", name))
    for rule in alert_rules():
        used.update(
            re.findall(r"\b((?:emails?|attachments?|mailbox|smtp)_[a-z_]+)\b", rule["expr"])
        )
    assert used <= defined, f"not exported by the mailer: {sorted(used - defined)}"


@pytest.mark.req("M5", "E5")
def test_grafana_provisioning():
    sources = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yaml").read_text())
    by_uid = {d["uid"]: d for d in sources["datasources"]}
    assert by_uid["prometheus"]["type"] == "prometheus"
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["loki"]["type"] == "loki"
    assert by_uid["loki"]["url"] == "http://loki:3100"
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yaml").read_text())
    assert [p["options"]["path"] for p in providers["providers"]] == ["/etc/grafana/dashboards"]
    titles = {json.loads(p.read_text())["title"] for p in DASHBOARDS}
    assert {"Mailer", "Database", "System"} <= titles, titles
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids)), uids


# --- Loki (M2) ----------------------------------------------------------------------------------
@pytest.mark.req("M2")
def test_loki_retention_and_limits(sla):
    config = yaml.safe_load(LOKI.read_text())
    limits, compactor = config["limits_config"], config["compactor"]
    retention_h = duration_hours(limits["retention_period"])
    sla.check("M2", retention_h, how="stack/config/loki/loki.yml limits_config.retention_period")
    assert compactor["retention_enabled"] is True, "without it Loki keeps logs forever"
    assert compactor.get("delete_request_store"), "required once retention is enabled"
    schemas = config["schema_config"]["configs"]
    assert all(s["store"] == "tsdb" and s["schema"] == "v13" for s in schemas), schemas
    assert all(s["index"]["period"] == "24h" for s in schemas), "retention needs 24h periods"
    assert duration_hours(limits["max_query_length"]) == 721
    assert duration_hours(limits["max_query_length"]) >= retention_h, "oldest day unqueryable"
    assert limits["max_entries_limit_per_query"] == 5000
    assert config["ingester"]["chunk_target_size"] == 1572864
    assert config["ingester"]["max_chunk_age"] == "2h"


# --- Alloy (S7) ---------------------------------------------------------------------------------
_REPLACE_STAGE = re.compile(
    r'stage\.replace\s*\{\s*expression\s*=\s*`([^`]*)`\s*replace\s*=\s*"([^"]*)"\s*\}'
)


def _scrubber():
    try:
        import re2
    except ImportError:
        pytest.fail(
            "google-re2 is not installed: the S7 check evaluates Alloy's RE2 expressions with "
            "RE2 itself; add google-re2 to the dev dependencies (`pip install google-re2`)",
            pytrace=False,
        )
    stages = [(re2.compile(expr), repl) for expr, repl in _REPLACE_STAGE.findall(ALLOY.read_text())]
    assert len(stages) >= 5, f"found only {len(stages)} stage.replace blocks in {ALLOY}"

    def go_replace(rx, repl: str, text: str) -> str:
        """Alloy's stage.replace (loki/process/stages/replace.go): every participating capture
        group of every match is replaced by `repl`; the rest of the line stays."""
        out, prev, matched = "", 0, False
        for m in rx.finditer(text):
            for i in range(1, rx.groups + 1):
                start, end = m.span(i)
                if start == -1:
                    continue
                matched = True
                if prev == 0 or prev <= start:
                    out += text[prev:start] + repl
                    prev = end
        return out + text[prev:] if matched else text

    def scrub(text: str) -> str:
        for rx, repl in stages:
            text = go_replace(rx, repl, text)
        return text

    return stages, scrub


@pytest.mark.req("S7")
def test_each_scrub_expression_has_exactly_one_capture_group():
    """Alloy replaces every capture group: a second group would replace innocent text."""
    stages, _ = _scrubber()
    assert all(rx.groups == 1 for rx, _ in stages), [rx.pattern for rx, _ in stages]


# (line, secrets that must be gone, text that must stay)
SCRUB_CASES = [
    (
        '{"level": "INFO", "msg": "Processing email from patient@example.org to '
        'praxis@example.com", "mail_id": 42}',
        ["patient@example.org", "praxis@example.com"],
        ['"level": "INFO"', "Processing email from", '"mail_id": 42'],
    ),
    (
        '{"msg": "login failed", "password": "hunter2", "user": "praxis"}',
        ["hunter2"],
        ['"msg": "login failed"', '"user": "praxis"'],
    ),
    ("db_password=s3cr3t!x other=keep", ["s3cr3t!x"], ["db_password=", "other=keep"]),
    (
        "connecting to postgresql://praxis:Sup3r$ecret@postgres:5432/praxis",
        ["Sup3r$ecret"],
        ["postgresql://praxis:", "@postgres:5432/praxis"],
    ),
    ("Authorization: Bearer eyJhbGciOi.abc.def sent", ["eyJhbGciOi.abc.def"], ["sent"]),
    ("C: PASS hunter2", ["hunter2"], ["C: PASS"]),
    ("A001 LOGIN praxis hunter2", ["hunter2"], ["A001 LOGIN praxis"]),
    ('SMTP_PASSWORD="my pass phrase" next=1', ["my", "phrase"], ["SMTP_PASSWORD=", "next=1"]),
    ("api_key='abc def' ok", ["abc", "def"], ["api_key=", "ok"]),
    (
        '{"msg": "cfg", "extra": "{\\"db_password\\": \\"two words\\"}"}',
        ["two words", "two", "words"],
        ['"msg": "cfg"'],
    ),
    ("token=abc123 max_tokens=100", ["abc123"], ["max_tokens=100"]),
    (
        "reply to alice@mail.example.co.uk and <bob.smith+tag@sub.example.com>",
        ["alice", "bob.smith", "example.co.uk", "sub.example.com"],
        ["reply to", "and <"],
    ),
    ("42 mails processed in 1.5 s, queue 0", [], ["42 mails processed in 1.5 s, queue 0"]),
]


@pytest.mark.req("S7")
@pytest.mark.parametrize(("line", "gone", "kept"), SCRUB_CASES, ids=range(len(SCRUB_CASES)))
def test_alloy_scrubs_emails_and_passwords_and_keeps_the_rest(line, gone, kept, sla):
    _, scrub = _scrubber()
    out = scrub(line)
    left = [s for s in gone if s in out]
    assert not left, f"{line!r} -> {out!r} still contains {left}"
    lost = [k for k in kept if k not in out]
    assert not lost, f"{line!r} -> {out!r} lost {lost}"
    assert scrub(out) == out, "scrubbing is not idempotent"
    if not gone:
        assert out == line, f"a line without secrets changed: {out!r}"


@pytest.mark.req("S7", "M6")
def test_container_logs_carry_the_service_name_alloy_reads():
    """Alloy names a line's service from the json-file "attrs", which Docker writes only for
    labels listed in the logging option `labels`."""
    services = _compose_services()
    assert "alloy" in services, "stack/compose.yml has no alloy service (it ships the logs)"
    missing = [
        name
        for name, svc in services.items()
        if "com.docker.compose.service"
        not in str(((svc.get("logging") or {}).get("options") or {}).get("labels", "")).split(",")
    ]
    assert not missing, f"logging.options.labels lacks com.docker.compose.service: {missing}"


@pytest.mark.req("S7")
def test_alloy_scrubs_before_writing_and_reads_logs_without_the_docker_socket():
    text = ALLOY.read_text()
    code = "\n".join(line.split("//", 1)[0] for line in text.splitlines())
    assert "docker.sock" not in code and "discovery.docker" not in code
    assert "/var/lib/docker/containers/*/*-json.log" in code
    source = re.search(r'loki\.source\.file\s+"\w+"\s*\{(.*?)\n\}', code, re.S).group(1)
    assert "loki.process." in source and "loki.write." not in source, "logs must pass the scrub"
    process = re.search(r'loki\.process\s+"\w+"\s*\{(.*?)\n\}', code, re.S).group(1)
    assert "loki.write." in process and "stage.replace" in process
