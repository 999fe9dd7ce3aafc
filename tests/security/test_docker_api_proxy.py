"""S11: the read-only Docker API proxy (HAProxy, stack/config/docker-api-proxy/haproxy.cfg), the
only container that holds the Docker socket. Requests are sent from inside its own network
namespace (a throwaway probe container sharing it, as in test_network_matrix), so they reach
HAProxy exactly as cAdvisor's do and need no client tool in the image."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.security, pytest.mark.needs("docker-api-proxy")]

PROBE_IMAGE = "stackcheck/mailer:0.1.0"  # any image with python3; this one is always built
PROBE = """
import http.client, json, sys
host, out = sys.argv[1], []
for method, path in json.loads(sys.argv[2]):
    try:
        conn = http.client.HTTPConnection(host, 2375, timeout=10)
        conn.request(method, path, body=b"{}" if method in ("POST", "PUT") else None,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        out.append([resp.status, resp.read().decode("utf-8", "replace")])
        conn.close()
    except Exception as exc:
        out.append([0, f"{type(exc).__name__}: {exc}"])
print(json.dumps(out))
"""

# (method, path, expected status): what cAdvisor reads is served, every write and every other
# read is refused by HAProxy before it reaches the engine. {v}: the engine's own API version
# (an engine before 26 answers 400 to /v1.45, whatever the proxy does)
CASES = [
    ("GET", "/_ping", 200),
    ("GET", "/{v}/version", 200),
    ("GET", "/{v}/info", 200),
    ("GET", "/{v}/containers/json", 200),
    ("HEAD", "/_ping", 200),
    ("POST", "/{v}/containers/create", 403),
    ("POST", "/containers/create", 403),
    ("DELETE", "/{v}/containers/stackcheck-probe", 403),
    ("POST", "/{v}/containers/x/exec", 403),
    ("POST", "/{v}/containers/x/stop", 403),
    ("PUT", "/{v}/containers/x/archive", 403),
    ("GET", "/{v}/containers/x/archive?path=/run/secrets", 403),
    ("GET", "/{v}/containers/x/logs", 403),
    ("GET", "/{v}/secrets", 403),
    ("GET", "/{v}/images/json", 403),
    ("GET", "/{v}/events", 403),
    ("GET", "/{v}/containers/../json", 403),
    ("POST", "/{v}/build", 403),
]


def requests(
    stack, calls: list[tuple[str, str]], via: str = "docker-api-proxy"
) -> list[tuple[int, str]]:
    """HTTP requests to docker-api-proxy:2375 from `via`'s network namespace, each on its own
    connection, all from one probe container (one container start, not one per request).
    Status 0: no answer, with the error as the detail."""
    cid = stack.service(via).container.id
    host = "127.0.0.1" if via == "docker-api-proxy" else "docker-api-proxy"
    proc = stack.engine.run(
        PROBE_IMAGE,
        ["-c", PROBE, host, json.dumps(calls)],
        entrypoint=["python3"],
        network_mode=f"container:{cid}",
        timeout=120,
    )
    assert proc.exit_code == 0, f"the probe did not run: {proc.exit_code} {proc.stderr[-500:]}"
    return [(int(status), body) for status, body in json.loads(proc.stdout)]


@pytest.mark.req("S11")
def test_proxy_serves_reads_cadvisor_needs_and_refuses_the_rest(stack, sla):
    v = "v" + stack.docker.version()["ApiVersion"]
    cases = [(m, p.format(v=v), want) for m, p, want in CASES]
    answers = requests(stack, [(m, p) for m, p, _ in cases])
    got = {(m, p): status for (m, p, _), (status, _) in zip(cases, answers, strict=True)}
    wrong = {f"{m} {p}": (got[(m, p)], want) for m, p, want in cases if got[(m, p)] != want}
    assert not wrong, f"(got, want): {wrong}"
    body = answers[cases.index(("GET", f"/{v}/containers/json", 200))][1]
    names = {n.lstrip("/") for c in json.loads(body) for n in c["Names"]}
    proxy = stack.service("docker-api-proxy").container.name
    assert proxy in names, f"GET /containers/json does not list this stack ({sorted(names)})"
    refused = sum(1 for *_, want in cases if want == 403)
    sla.record(
        "S11",
        f"{len(cases) - refused} reads served (200), {refused} calls refused (403), "
        f"incl. POST /containers/create",
        how="HTTP from a probe in the proxy's network namespace: "
        + "; ".join(f"{m} {p} {got[(m, p)]}" for m, p, _ in cases),
    )


@pytest.mark.req("S11", "S3")
@pytest.mark.parametrize("source", ["prometheus", "praxis-mailer", "n8n"])
def test_proxy_is_out_of_reach_of_other_services(stack, source):
    """Only cAdvisor shares the internal docker-api network: from anywhere else the proxy's name
    does not even resolve."""
    if not stack.has(source):
        pytest.skip(f"needs service {source}, which this stack does not run")
    [(status, detail)] = requests(stack, [("GET", "/_ping")], via=source)
    assert status == 0, f"{source} reached the Docker API proxy: {status} {detail[:200]}"
    # refused by the network, not by a probe that never ran
    assert "gaierror" in detail or "Errno" in detail, detail
