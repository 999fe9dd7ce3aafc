"""The hardening policy on the merged `docker compose config`, for the canonical file and for the
offline override: each rule of stackcheck.policy a parametrised test per service. Static: needs
the Compose CLI, not a running stack."""

import configparser
import subprocess
from functools import cache
from pathlib import Path

import pytest

from stackcheck import policy
from stackcheck.compose import Compose

pytestmark = [pytest.mark.security, pytest.mark.reads]

STACK = Path(__file__).resolve().parents[2] / "stack"
VARIANTS = {"canonical": ("compose.yml",), "offline": ("compose.yml", "compose.offline.yml")}


@cache
def merged(variant: str) -> dict:
    # every profile: the optional minio obeys the policy too
    return Compose("stackcheck-policy", STACK, VARIANTS[variant]).config(profiles=["*"])


def rule_params(variants, rules, services_of) -> list:
    """One case per variant, rule and service, marked with the rule's requirement."""
    return [
        pytest.param(
            variant,
            name,
            rule,
            marks=pytest.mark.req(rule.requirement),
            id=f"{variant}-{rule.id}-{name}",
        )
        for variant in variants
        for rule in rules
        for name in services_of(variant)
    ]


def pytest_generate_tests(metafunc):
    if {"variant", "service", "rule"} <= set(metafunc.fixturenames):
        params = rule_params(VARIANTS, policy.RULES, lambda v: merged(v)["services"])
        metafunc.parametrize(("variant", "service", "rule"), params)


def test_service_obeys_rule(variant, service, rule):
    problems = policy.check(rule, service, merged(variant)["services"][service])
    assert not problems, f"{service} ({variant}) breaks {rule.id}: {rule.doc}\n  " + "\n  ".join(
        problems
    )


@pytest.mark.req("D5")
@pytest.mark.parametrize("variant", VARIANTS)
def test_no_traefik_and_named_networks(variant):
    """D5: the review's corrections: no reverse proxy, explicit networks."""
    cfg = merged(variant)
    images = {n: s.get("image", "") for n, s in cfg["services"].items()}
    assert not [n for n, i in images.items() if "traefik" in i.lower() or "traefik" in n]
    assert set(cfg.get("networks") or {}) - {"default"}, "no explicit networks"


@pytest.mark.req("S1")
@pytest.mark.parametrize("variant", VARIANTS)
def test_secrets_are_files(variant):
    """S1: every secret the stack declares is a file secret (or external in a swarm)."""
    secrets = merged(variant).get("secrets") or {}
    assert secrets, "the stack declares no secrets"
    not_files = [n for n, s in secrets.items() if not (s.get("file") or s.get("external"))]
    assert not not_files, f"secrets without a file: {not_files}"


@pytest.mark.req("S1")
def test_no_secret_file_is_in_the_repository():
    """Secret files are generated per checkout (./run setup), never committed: a value in the
    repository is known to everyone who can read it."""
    if not (STACK.parent / ".git").exists():
        pytest.skip("needs a git checkout: this copy has no .git")
    tracked = subprocess.run(
        ["git", "-C", str(STACK.parent), "ls-files", "--", "stack/secrets"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert not tracked, f"secret files tracked by git: {tracked}"


@pytest.mark.req("S10")
def test_pull_policy_rule_catches_a_built_image_without_it():
    """The rule itself: a service that builds its image without `pull_policy: build` is caught,
    whether the policy is missing (Compose then pulls first) or another value; an image we only
    pull is not its business."""
    built = {"image": "stackcheck/mailer:0.1.0", "build": {"context": "./images/mailer"}}
    assert policy.rule_pull_policy_build(built)
    assert policy.rule_pull_policy_build({**built, "pull_policy": "missing"})
    assert policy.rule_pull_policy_build({**built, "pull_policy": "always"})
    assert not policy.rule_pull_policy_build({**built, "pull_policy": "build"})
    assert not policy.rule_pull_policy_build({"image": "postgres:18.6"})


@pytest.mark.req("S10")
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_built_image_is_built_not_pulled(variant):
    """S10 over the whole merged file: the list of built images is not empty (so the per-service
    rule above is not vacuous) and each of them has pull_policy build."""
    services = merged(variant)["services"]
    built = {n: s.get("pull_policy") for n, s in services.items() if s.get("build")}
    assert {"praxis-mailer", "ecom-mailer", "backup"} <= set(built), built
    assert all(p == "build" for p in built.values()), built


@pytest.mark.req("S1")
def test_grafana_reads_its_admin_password_itself():
    """S1 for the official Grafana image, statically (it has no offline stand-in): its run.sh
    turns every GF_*__FILE variable into an exported GF_* variable before `exec grafana server`,
    so the password would sit in the server's environment. Instead grafana.ini, mounted at the
    image's GF_PATHS_CONFIG, names the secret file with Grafana's own $__file{} expansion, and
    no __FILE variable is left for run.sh to export."""
    svc = merged("canonical")["services"]["grafana"]
    exported = [k for k in svc.get("environment") or {} if k.endswith("__FILE")]
    assert not exported, f"run.sh would export these into grafana's environment: {exported}"
    ini = next(
        (v for v in svc.get("volumes") or [] if v.get("target") == "/etc/grafana/grafana.ini"),
        None,
    )
    assert ini and ini.get("read_only"), "grafana.ini is not mounted read-only at GF_PATHS_CONFIG"
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    parser.read_string(Path(ini["source"]).read_text(encoding="utf-8"))
    targets = {Path(s.get("target") or s["source"]).name for s in svc.get("secrets") or []}
    want = "$__file{/run/secrets/grafana_admin_password}"
    assert parser.get("security", "admin_password", fallback=None) == want
    assert "grafana_admin_password" in targets, f"the file it names is not mounted: {targets}"


@pytest.mark.req("S2", "S9", "A6")
def test_minio_volume_is_handed_to_its_uid_by_a_chown_only_job():
    """The pinned MinIO image declares VOLUME /data root:root 0755 (Dockerfile.release, ubi-micro,
    no USER): with `user: 1004` MinIO cannot create /data/.minio.sys and never becomes healthy.
    A one-shot job chowns the volume first, with CAP_CHOWN as its only capability, a read-only
    root, no network; MinIO starts only after it exited 0."""
    services = merged("canonical")["services"]
    minio, init = services["minio"], services["minio-volume-init"]
    assert minio["depends_on"]["minio-volume-init"]["condition"] == (
        "service_completed_successfully"
    )
    data = next(v for v in minio["volumes"] if v["target"] == "/data")
    init_data = [v for v in init["volumes"] if v["type"] == "volume"]
    assert [(v["source"], v["target"]) for v in init_data] == [(data["source"], "/data")]
    assert init["cap_drop"] == ["ALL"] and init["cap_add"] == ["CHOWN"]
    assert init["read_only"] and init["network_mode"] == "none"
    assert not init.get("ports") and not init.get("secrets")
    assert init["entrypoint"] == ["chown", minio["user"], "/data"], init["entrypoint"]
    assert init["image"] == minio["image"] and policy.is_one_shot(init)
    assert init["profiles"] == minio["profiles"] == ["minio"]


@pytest.mark.req("S11", "S9")
@pytest.mark.parametrize("variant", VARIANTS)
def test_only_the_read_only_api_proxy_holds_the_docker_socket(variant):
    """S11: cAdvisor and Alloy mount no Docker socket; the socket is mounted by the HAProxy API
    proxy alone, which only cAdvisor reaches (internal docker-api network) and cAdvisor talks to
    it over TCP."""
    cfg = merged(variant)
    services = cfg["services"]
    holders = sorted(
        n
        for n, s in services.items()
        for v in s.get("volumes") or []
        if str(v.get("source", "")).endswith("docker.sock")
    )
    assert holders == ["docker-api-proxy"], holders
    for name in ("cadvisor", "alloy"):
        if name in services:  # online only
            mounts = [v.get("source") for v in services[name].get("volumes") or []]
            assert not [m for m in mounts if "docker.sock" in str(m)], (name, mounts)
    members = sorted(n for n, s in services.items() if "docker-api" in (s.get("networks") or {}))
    assert set(members) <= {"docker-api-proxy", "cadvisor"} and "docker-api-proxy" in members
    assert cfg["networks"]["docker-api"].get("internal") is True
    if "cadvisor" in services:
        assert "--docker=tcp://docker-api-proxy:2375" in services["cadvisor"]["command"]


@pytest.mark.req("S10")
@pytest.mark.parametrize("variant", VARIANTS)
def test_compose_pull_skips_every_built_image(variant):
    """What the policy buys, asked of Compose itself: `docker compose pull` of every service we
    build skips it ("Skipped") instead of asking a registry for the stackcheck/* name."""
    built = sorted(n for n, s in merged(variant)["services"].items() if s.get("build"))
    compose = Compose("stackcheck-policy", STACK, VARIANTS[variant])
    proc = compose.run("pull", *built, check=False, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    skipped = {ln.split()[0] for ln in out.splitlines() if ln.strip().endswith("Skipped")}
    assert skipped == set(built), f"not skipped: {set(built) - skipped}\n{out}"
    assert "Pulling" not in out and "Pulled" not in out, out


# --- the Swarm overlay (issue 15): the rendered `docker stack deploy` file, as deployed -------
SWARM_VARIANTS = {
    "swarm-canonical": ("compose.yml", "compose.swarm.yml"),
    "swarm-offline": ("compose.yml", "compose.offline.yml", "compose.swarm.yml"),
}


@cache
def swarm_stack(variant: str) -> dict:
    """What `./run deploy swarm` hands to `docker stack deploy` (secret versions: 1)."""
    from stackcheck.ops import swarm

    model = Compose("stackcheck-policy", STACK, SWARM_VARIANTS[variant]).config()
    versions = {name: 1 for name in swarm.secret_files(model)}
    return swarm.render(model, versions, ns="stackcheck-policy")


@pytest.mark.parametrize(
    ("swarm_variant", "name", "swarm_rule"),
    rule_params(SWARM_VARIANTS, policy.SWARM_RULES, lambda v: swarm_stack(v)["services"]),
)
def test_swarm_service_obeys_rule(swarm_variant, name, swarm_rule):
    svc = swarm_stack(swarm_variant)["services"][name]
    problems = policy.check_swarm(swarm_rule, name, svc)
    assert not problems, (
        f"{name} ({swarm_variant}) breaks {swarm_rule.id}: {swarm_rule.doc}\n  "
        + "\n  ".join(problems)
    )


@pytest.mark.req("S3")
@pytest.mark.parametrize("variant", SWARM_VARIANTS)
def test_swarm_networks_are_overlays_internal_where_compose_is(variant):
    base = merged("offline" if "offline" in variant else "canonical")
    problems = policy.swarm_network_problems(swarm_stack(variant), base)
    assert not problems, problems
    assert swarm_stack(variant)["networks"], "no networks"


@pytest.mark.req("S1")
@pytest.mark.parametrize("variant", SWARM_VARIANTS)
def test_swarm_secrets_are_external_and_versioned(variant):
    """Every secret of the Swarm stack is an external Docker secret named `<name>_v<N>` (created
    by `./run deploy swarm`, rotated by `./run rotate NAME --swarm`), never a file of the host."""
    secrets = swarm_stack(variant)["secrets"]
    assert secrets
    wrong = {n: s for n, s in secrets.items() if s != {"external": True, "name": f"{n}_v1"}}
    assert not wrong, wrong


@pytest.mark.req("H3")
def test_swarm_rules_catch_what_compose_alone_would_deploy():
    """The Swarm rules are not vacuous: compose.yml's own postgres, rendered without the
    overlay, has no restart policy, no update order, no secret owner, and publishes a port."""
    from stackcheck.ops import swarm

    model = Compose("stackcheck-policy", STACK, ("compose.yml",)).config()
    raw = dict(model["services"]["postgres"])
    rendered = swarm.render(
        {"services": {"postgres": raw}, "configs": model["configs"]},
        {n: 1 for n in swarm.secret_files(model)},
    )["services"]["postgres"]
    assert policy.rule_swarm_restart(rendered)
    assert policy.rule_swarm_update(rendered, "postgres")
    assert policy.rule_swarm_no_ports(raw)
    assert policy.rule_swarm_secret_mounts(raw)
    assert policy.rule_swarm_placement(rendered)
    assert policy.rule_swarm_image_source({"image": "stackcheck/mailer:0.1.0"})
    assert not policy.rule_swarm_image_source({"image": "127.0.0.1:5000/stackcheck/mailer:0.1.0"})
