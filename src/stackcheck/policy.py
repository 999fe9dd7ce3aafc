"""The stack's hardening policy as rules over the merged `docker compose config` (JSON).

One function a rule, each returning the problems it finds in one service (empty: compliant), so
a rule is tested on small dicts in tests/unit and applied per service in tests/security. Justified
exceptions live in EXCEPTIONS with their reason, never as silent skips.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

ServiceModel = dict  # one service of the merged `docker compose config` model
Problems = list[str]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT_S = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def seconds(duration: str | int | float | None) -> float | None:
    """A Go/compose duration ("1m0s", "30s", "1h2m") in seconds."""
    if duration is None:
        return None
    if isinstance(duration, int | float):
        return float(duration)
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


HEALTHCHECK_BASELINE = {"interval": 30.0, "timeout": 10.0, "retries": 3, "start_period": 60.0}
ONE_SHOT_RESTART = {"no", "on-failure", "on-failure:3"}
LONG_RUNNING_RESTART = {"unless-stopped", "always"}
SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|ENCRYPTION_KEY)", re.IGNORECASE
)


def is_one_shot(svc: ServiceModel) -> bool:
    """One-shot jobs (init jobs, backup runs) say so with the label `org.stackcheck.kind=job`."""
    return (svc.get("labels") or {}).get("org.stackcheck.kind") == "job"


# service -> (baseline keys it may exceed, why). A longer start_period only delays when a failing
# check starts to count; it never hides a failure after it.
HEALTHCHECK_OVERRIDES: dict[str, tuple[dict[str, float], str]] = {
    "clamav": (
        {"start_period": 360.0},
        "the official clamav image loads the full signature database (~1 GB) before clamd "
        "answers; its own HEALTHCHECK uses start-period 6m",
    ),
}


def rule_healthcheck(svc: ServiceModel, name: str = "") -> Problems:
    """H1: a health check with a real command and the baseline timing."""
    hc = svc.get("healthcheck") or {}
    baseline = {**HEALTHCHECK_BASELINE, **HEALTHCHECK_OVERRIDES.get(name, ({}, ""))[0]}
    test = hc.get("test") or []
    if hc.get("disable") or not test or test[0] == "NONE":
        return ["no health check"]
    problems = []
    for key, want in baseline.items():
        got = hc.get(key)
        got = seconds(got) if key != "retries" else got
        if got is None or got > want:
            problems.append(f"healthcheck {key} {hc.get(key)!r}, baseline {want:g}")
    return problems


def rule_resources(svc: ServiceModel) -> Problems:
    """H2: memory and CPU limits, memory reservation."""
    res = (svc.get("deploy") or {}).get("resources") or {}
    limits, reservations = res.get("limits") or {}, res.get("reservations") or {}
    problems = [f"no {k} limit" for k in ("memory", "cpus") if not limits.get(k)]
    if not reservations.get("memory"):
        problems.append("no memory reservation")
    return problems


def rule_restart(svc: ServiceModel) -> Problems:
    """H3: long-running services come back (unless-stopped); one-shot jobs retry boundedly."""
    restart = svc.get("restart") or "no"
    allowed = ONE_SHOT_RESTART if is_one_shot(svc) else LONG_RUNNING_RESTART
    if restart not in allowed:
        kind = "one-shot job" if is_one_shot(svc) else "long-running service"
        return [f"restart {restart!r} for a {kind}; allowed: {sorted(allowed)}"]
    return []


def rule_depends_on(svc: ServiceModel) -> Problems:
    """H4: a dependency is waited for by health (or successful completion of a job)."""
    problems = []
    for dep, spec in (svc.get("depends_on") or {}).items():
        cond = (spec or {}).get("condition")
        if cond not in {"service_healthy", "service_completed_successfully"}:
            problems.append(f"depends_on {dep} with condition {cond!r}")
    return problems


def rule_secrets_not_in_env(svc: ServiceModel) -> Problems:
    """S1: a secret-looking variable is only ever a *_FILE path."""
    return [
        f"environment {k} looks like a secret value; use {k}_FILE and a secret"
        for k, v in (svc.get("environment") or {}).items()
        if SECRET_NAME.search(k)
        and not k.endswith("_FILE")
        and not k.endswith("__FILE")
        and v not in (None, "")
    ]


def rule_non_root(svc: ServiceModel) -> Problems:
    """S2: an explicit non-root user."""
    user = str(svc.get("user") or "")
    if not user or user.split(":")[0] in {"root", "0"}:
        return [f"user {user or '(image default)'!r} is root or unset"]
    return []


def rule_ports_loopback(svc: ServiceModel) -> Problems:
    """S4: published ports bind 127.0.0.1 only."""
    return [
        f"port {p.get('target')} published on {p.get('host_ip') or 'all addresses'}"
        for p in svc.get("ports") or []
        if p.get("host_ip") not in {"127.0.0.1", "::1"}
    ]


def rule_read_only(svc: ServiceModel) -> Problems:
    """S5: read-only root filesystem."""
    return [] if svc.get("read_only") else ["root filesystem is writable"]


def rule_privileges(svc: ServiceModel) -> Problems:
    """S9: capabilities dropped, no-new-privileges, nothing privileged or host-shared."""
    problems = []
    if "ALL" not in (svc.get("cap_drop") or []):
        problems.append("cap_drop lacks ALL")
    if not any(
        o.replace("=", ":") in {"no-new-privileges:true", "no-new-privileges"}
        for o in svc.get("security_opt") or []
    ):
        problems.append("no no-new-privileges")
    if svc.get("privileged"):
        problems.append("privileged")
    for ns in ("network_mode", "pid", "ipc"):
        if svc.get(ns) == "host":
            problems.append(f"{ns}: host")
    if any(o.startswith("seccomp") and "unconfined" in o for o in svc.get("security_opt") or []):
        problems.append("seccomp disabled")
    for v in svc.get("volumes") or []:
        if str(v.get("source", "")).endswith("docker.sock"):
            problems.append("mounts the Docker socket")
    return problems


def rule_logging(svc: ServiceModel) -> Problems:
    """M6: json-file logs rotated at 50m x 3."""
    log = svc.get("logging") or {}
    opts = log.get("options") or {}
    want = {"driver": "json-file", "max-size": "50m", "max-file": "3"}
    got = {
        "driver": log.get("driver"),
        "max-size": opts.get("max-size"),
        "max-file": str(opts.get("max-file")) if opts.get("max-file") is not None else None,
    }
    return [f"logging {k} {got[k]!r}, want {v!r}" for k, v in want.items() if got[k] != v]


def rule_pull_policy_build(svc: ServiceModel) -> Problems:
    """S10: an image built here is never pulled (`pull_policy: build`): `docker compose pull` and
    `up` would otherwise ask a registry for our image name first, and whoever registered it there
    would run with our secrets."""
    if svc.get("build") and svc.get("pull_policy") != "build":
        return [
            f"builds {svc.get('image') or '(unnamed image)'} but pull_policy is "
            f"{svc.get('pull_policy') or 'unset (missing: a registry is asked first)'!r}, "
            "want 'build'"
        ]
    return []


_PINNED = re.compile(r".+:(?!latest$)[^:/]*\d[^:/]*$|.+@sha256:[0-9a-f]{64}$")


def rule_image_pinned(svc: ServiceModel) -> Problems:
    """Images pinned to an exact version (no `latest`, no bare name)."""
    image = svc.get("image") or ""
    return [] if _PINNED.match(image) else [f"image {image!r} is not pinned to a version"]


def rule_networks(svc: ServiceModel) -> Problems:
    """S3/D5: every service on explicitly named networks, never the implicit default."""
    if svc.get("network_mode") == "none":  # no network at all: stricter than any segment
        return []
    nets = set(svc.get("networks") or {})
    if not nets or "default" in nets:
        return ["not on an explicit network"]
    return []


@dataclass(frozen=True)
class Rule:
    id: str
    requirement: str
    check: Callable[[ServiceModel], Problems]

    @property
    def doc(self) -> str:
        return (self.check.__doc__ or "").strip()


RULES: tuple[Rule, ...] = (
    Rule("healthcheck", "H1", rule_healthcheck),
    Rule("resources", "H2", rule_resources),
    Rule("restart", "H3", rule_restart),
    Rule("depends-on-healthy", "H4", rule_depends_on),
    Rule("secrets-not-in-env", "S1", rule_secrets_not_in_env),
    Rule("non-root", "S2", rule_non_root),
    Rule("ports-loopback", "S4", rule_ports_loopback),
    Rule("read-only", "S5", rule_read_only),
    Rule("privileges", "S9", rule_privileges),
    Rule("logging", "M6", rule_logging),
    Rule("image-pinned", "D5", rule_image_pinned),
    Rule("networks", "S3", rule_networks),
    Rule("pull-policy-build", "S10", rule_pull_policy_build),
)

# (rule id, service) -> why the rule cannot hold for that service. Keep each reason specific.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("non-root", "cadvisor"): "uid 0 owns /var/lib/docker (0710), where cAdvisor finds each "
    "container's layer for its disk metrics; with every capability dropped it reads it as its "
    "owner and nothing more; the Docker API only through the read-only proxy (S11)",
    ("privileges", "docker-api-proxy"): "the one holder of the Docker socket (S11): HAProxy "
    "forwards only GET/HEAD of /_ping, /version, /info, /containers/json and /containers/<id>/json "
    "and answers 403 to the rest; reached only by cAdvisor on the internal docker-api network",
    ("non-root", "minio-volume-init"): "a one-shot chown of the new minio_data volume (root:root "
    "0755 from the image's VOLUME /data) to uid 1004: uid 0 with CAP_CHOWN only, read-only, no "
    "network; it exits before MinIO starts",
    ("non-root", "alloy"): "uid 0 owns the json-file logs (0640 in 0710 directories; uid 65534 is "
    "refused, tested); every capability is dropped",
}


def check(rule: Rule, name: str, svc: ServiceModel) -> Problems:
    """The problems of one service under one rule, unless an exception with a reason applies."""
    if (rule.id, name) in EXCEPTIONS:
        return []
    if rule.check is rule_healthcheck:
        return rule_healthcheck(svc, name)
    return rule.check(svc)


# --- the Swarm stack (issue 15) -----------------------------------------------------------
# The rendered `docker stack deploy` file (stackcheck.ops.swarm.render) under rules that hold the
# same hardening in Swarm's terms. Rules of RULES that Swarm cannot express are replaced here;
# what stands in is in docs/swarm.md and swarm.TRANSLATIONS.
SWARM_RESTART = {"condition": "any", "max_attempts": 3}
# services that own their volume exclusively: the new task may start only after the old stopped
SWARM_STOP_FIRST: dict[str, str] = {
    name: "owns its data volume exclusively: a second copy on it would corrupt it or refuse "
    "to start on its lock"
    for name in (
        "postgres", "redis", "mailpit", "n8n", "backup", "prometheus", "alertmanager",
        "grafana", "loki", "minio",
    )
}  # fmt: skip
PUBLIC_SECRET_MODES = {"mail_ca_cert": 0o444}


def rule_swarm_restart(svc: ServiceModel) -> Problems:
    """H3 on Swarm: deploy.restart_policy restarts on any exit, at most 3 times in a window."""
    rp = (svc.get("deploy") or {}).get("restart_policy") or {}
    problems = [
        f"restart_policy {k} {rp.get(k)!r}, want {v!r}"
        for k, v in SWARM_RESTART.items()
        if rp.get(k) != v
    ]
    if not rp.get("window"):
        problems.append("restart_policy has no window (max_attempts would count forever)")
    return problems


def rule_swarm_update(svc: ServiceModel, name: str = "") -> Problems:
    """Rolling updates: one task at a time, rolled back on failure, start-first unless the
    service owns its volume (SWARM_STOP_FIRST)."""
    deploy = svc.get("deploy") or {}
    uc, rc = deploy.get("update_config") or {}, deploy.get("rollback_config") or {}
    want = "stop-first" if name in SWARM_STOP_FIRST else "start-first"
    problems = []
    if uc.get("failure_action") != "rollback":
        problems.append(f"update_config failure_action {uc.get('failure_action')!r}, want rollback")
    if uc.get("order") != want:
        problems.append(f"update_config order {uc.get('order')!r}, want {want}")
    if not uc.get("monitor"):
        problems.append("update_config has no monitor period (a failing task is not noticed)")
    if not rc:
        problems.append("no rollback_config")
    return problems


def rule_swarm_placement(svc: ServiceModel) -> Problems:
    """A service that bind-mounts host paths runs on a manager, where the checkout is."""
    binds = [v.get("source") for v in svc.get("volumes") or [] if v.get("type") == "bind"]
    constraints = ((svc.get("deploy") or {}).get("placement") or {}).get("constraints") or []
    if binds and "node.role == manager" not in constraints:
        return [f"bind-mounts {', '.join(map(str, binds))} but is not placed on a manager"]
    return []


def rule_swarm_secret_mounts(svc: ServiceModel) -> Problems:
    """S1 on Swarm: every secret mount is owned by the service's own uid/gid, mode 0400 (the
    public CA certificate 0444): Swarm sets owner and mode per mount, not from the file."""
    uid, _, gid = str(svc.get("user") or "0").partition(":")
    gid = gid or uid
    problems = []
    for ref in svc.get("secrets") or []:
        if isinstance(ref, str):
            problems.append(f"secret {ref} has no uid/gid/mode")
            continue
        src = ref.get("source")
        want_mode = PUBLIC_SECRET_MODES.get(src, 0o400)
        got = (str(ref.get("uid")), str(ref.get("gid")), ref.get("mode"))
        if got != (uid, gid, want_mode):
            problems.append(
                f"secret {src} mounted {got[0]}:{got[1]} mode {oct(got[2] or 0)}, want "
                f"{uid}:{gid} mode {oct(want_mode)}"
            )
    return problems


def rule_swarm_no_ports(svc: ServiceModel) -> Problems:
    """S4 on Swarm: nothing published (Swarm binds every address); the loopback gateway
    publishes on 127.0.0.1."""
    return [f"publishes {p}" for p in svc.get("ports") or []]


def rule_swarm_privileges(svc: ServiceModel) -> Problems:
    """S9 on Swarm: every capability dropped, nothing privileged, no host namespaces, no
    socket (no-new-privileges has no Swarm option: docs/swarm.md)."""
    problems = [p for p in rule_privileges(svc) if p != "no no-new-privileges"]
    if svc.get("cap_add"):
        problems.append(f"cap_add {svc['cap_add']}")
    return problems


_REGISTRY_QUALIFIED = re.compile(r"^[^/]+[.:][^/]*/|^localhost/")


def rule_swarm_image_source(svc: ServiceModel) -> Problems:
    """S10 on Swarm: an image we build carries a registry-qualified name, so a node's pull at
    task start never asks Docker Hub for a stackcheck/* name."""
    image = svc.get("image") or ""
    if "stackcheck/" in image and not _REGISTRY_QUALIFIED.match(image):
        return [f"image {image!r} would be pulled from Docker Hub by a node"]
    return []


def rule_swarm_networks(svc: ServiceModel) -> Problems:
    """S3 on Swarm: on explicit networks only (overlays: see swarm_network_problems)."""
    return rule_networks(svc)


SWARM_RULES: tuple[Rule, ...] = (
    Rule("healthcheck", "H1", rule_healthcheck),
    Rule("resources", "H2", rule_resources),
    Rule("swarm-restart", "H3", rule_swarm_restart),
    Rule("swarm-update", "H3", rule_swarm_update),
    Rule("swarm-placement", "H3", rule_swarm_placement),
    Rule("secrets-not-in-env", "S1", rule_secrets_not_in_env),
    Rule("swarm-secret-mounts", "S1", rule_swarm_secret_mounts),
    Rule("non-root", "S2", rule_non_root),
    Rule("swarm-no-ports", "S4", rule_swarm_no_ports),
    Rule("read-only", "S5", rule_read_only),
    Rule("swarm-privileges", "S9", rule_swarm_privileges),
    Rule("logging", "M6", rule_logging),
    Rule("image-pinned", "D5", rule_image_pinned),
    Rule("swarm-networks", "S3", rule_swarm_networks),
    Rule("swarm-image-source", "S10", rule_swarm_image_source),
)


def check_swarm(rule: Rule, name: str, svc: ServiceModel) -> Problems:
    """As `check`, for the rendered Swarm stack (the same exceptions, by rule id)."""
    if (rule.id, name) in EXCEPTIONS or (rule.id.replace("swarm-", ""), name) in EXCEPTIONS:
        return []
    if rule.check in (rule_healthcheck, rule_swarm_update):
        return rule.check(svc, name)
    return rule.check(svc)


def swarm_network_problems(stack_file: dict, compose_model: dict) -> Problems:
    """S3 on Swarm: every network an overlay, internal wherever compose.yml's bridge is."""
    problems = []
    for name, net in (stack_file.get("networks") or {}).items():
        net = net or {}
        if net.get("driver") != "overlay":
            problems.append(f"network {name}: driver {net.get('driver')!r}, want overlay")
        if ((compose_model.get("networks") or {}).get(name) or {}).get("internal") and not net.get(
            "internal"
        ):
            problems.append(f"network {name} is internal in compose.yml but not on Swarm")
    return problems
