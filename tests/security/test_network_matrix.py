"""S3: the networks let a service reach what it needs and nothing it does not, tested by
connecting from inside the running containers' network namespaces.

The probe is a throwaway container sharing the source container's network (`--network
container:<id>`), so it works whatever tools the source image lacks; it resolves names with the
source's DNS view, exactly as the service would.
"""

from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.security

PROBE_IMAGE = "stackcheck/mailer:0.1.0"  # any image with python3; this one is always built
PROBE = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    socket.create_connection((host, port), timeout=3).close()
    print("open")
except socket.gaierror:
    print("unresolvable")
except OSError as exc:
    print("refused" if isinstance(exc, ConnectionRefusedError) else f"unreachable: {exc}")
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


def probe(stack, source: str, target: str, port: int) -> str:
    cid = stack.service(source).container.id
    proc = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            f"container:{cid}",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--user",
            "65534:65534",
            "--entrypoint",
            "python3",
            PROBE_IMAGE,
            "-c",
            PROBE,
            target,
            str(port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _present(stack, *names: str) -> bool:
    return all(stack.has(n) for n in names)


@pytest.mark.req("S3")
def test_allowed_paths_connect(stack, sla):
    pairs = [p for p in ALLOWED if _present(stack, p[0], p[1])]
    results = {p: probe(stack, *p) for p in pairs}
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
    results = {p: probe(stack, *p) for p in pairs}
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
