"""S3: the networks let a service reach what it needs and nothing it does not, tested by
connecting from inside the running containers' network namespaces.

The probe is a throwaway container sharing the source container's network (`--network
container:<id>`), so it works whatever tools the source image lacks; it resolves names with the
source's DNS view, exactly as the service would.
"""

from __future__ import annotations

import json
from itertools import groupby

import pytest

pytestmark = pytest.mark.security

PROBE_IMAGE = "stackcheck/mailer:0.1.0"  # any image with python3; this one is always built
PROBE = """
import json, socket, sys
out = []
for host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        out.append("open")
    except socket.gaierror:
        out.append("unresolvable")
    except OSError as exc:
        out.append("refused" if isinstance(exc, ConnectionRefusedError) else f"unreachable: {exc}")
print(json.dumps(out))
"""

# (source, target, port): what each service needs ...
ALLOWED = [
    ("praxis-mailer", "postgres", 5432),
    ("praxis-mailer", "redis", 6379),
    ("praxis-mailer", "clamav", 3310),
    ("praxis-mailer", "mailpit", 1025),
    ("ecom-mailer", "postgres", 5432),
    ("ecom-mailer", "redis", 6379),
    ("ecom-mailer", "clamav", 3310),
    ("ecom-mailer", "mailpit", 1110),
    ("n8n", "postgres", 5432),
    ("backup", "postgres", 5432),
    ("postgres-exporter", "postgres", 5432),
    ("alertmanager", "mailpit", 1025),
    ("prometheus", "praxis-mailer", 8000),
    ("prometheus", "postgres-exporter", 9187),
]
# ... and paths that must not exist: the mail server and the data services never meet
FORBIDDEN = [
    ("mailpit", "postgres", 5432),
    ("mailpit", "redis", 6379),
    ("postgres", "mailpit", 1025),
    ("redis", "mailpit", 1110),
    ("redis", "mailpit", 1025),
]


def probe(stack, source: str, targets: list[tuple[str, int]]) -> list[str]:
    """TCP connects to `targets` from `source`'s network namespace, by one hardened throwaway
    container (read-only, no capabilities, nobody): one answer per target."""
    proc = stack.engine.run(
        PROBE_IMAGE,
        ["-c", PROBE, json.dumps(targets)],
        entrypoint=["python3"],
        network_mode=f"container:{stack.service(source).container.id}",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        user="65534:65534",
        timeout=60 + 5 * len(targets),
    )
    assert proc.exit_code == 0, f"the probe in {source}'s namespace failed: {proc.stderr[-500:]}"
    return json.loads(proc.stdout)


def probe_all(stack, pairs: list[tuple[str, str, int]]) -> dict[tuple[str, str, int], str]:
    """Every (source, target, port) probed, one container per source."""
    results = {}
    for source, group in groupby(sorted(pairs), key=lambda p: p[0]):
        group = list(group)
        answers = probe(stack, source, [(t, port) for _, t, port in group])
        results.update(zip(group, answers, strict=True))
    return {p: results[p] for p in pairs}


def _present(stack, *names: str) -> bool:
    return all(stack.has(n) for n in names)


@pytest.mark.req("S3")
def test_allowed_paths_connect(stack, sla):
    pairs = [p for p in ALLOWED if _present(stack, p[0], p[1])]
    results = probe_all(stack, pairs)
    closed = {f"{s}->{t}:{p}": r for (s, t, p), r in results.items() if r != "open"}
    sla.record(
        "S3",
        f"{len(pairs) - len(closed)}/{len(pairs)} needed paths open",
        how="TCP connect from each source's network namespace: "
        + ", ".join(f"{s}->{t}:{p}" for s, t, p in pairs),
    )
    assert pairs, "no pair of the matrix is in this stack"
    assert not closed, closed


@pytest.mark.req("S3")
def test_forbidden_paths_do_not_connect(stack, sla):
    pairs = [p for p in dict.fromkeys(FORBIDDEN) if _present(stack, p[0], p[1])]
    results = probe_all(stack, pairs)
    open_ = [f"{s}->{t}:{p}" for (s, t, p), r in results.items() if r == "open"]
    sla.record(
        "S3",
        f"{len(pairs) - len(open_)}/{len(pairs)} forbidden paths closed",
        how="; ".join(f"{s}->{t}:{p} {r}" for (s, t, p), r in results.items()),
    )
    assert pairs, "no pair of the matrix is in this stack"
    assert not open_, f"reachable although not needed: {open_}"


@pytest.mark.req("S3")
def test_backend_is_internal(stack):
    """No egress from the data network: checked on the network itself, never by sending traffic
    to an outside address."""
    net = stack.docker.networks.get(f"{stack.config.project}_backend")
    assert net.attrs["Internal"] is True, net.attrs["Name"]
