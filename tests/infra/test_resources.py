"""T9: limits on every container and no container busy at idle; T10: logs within rotation."""

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = [pytest.mark.infra, pytest.mark.reads]


@pytest.mark.req("T9")
@pytest.mark.alone  # idle CPU: under -n N no other test may load the stack meanwhile
@pytest.mark.whole_stack  # every container's limits and CPU
def test_limits_set_and_idle_cpu_below_threshold(stack, sla):
    threshold = sla.threshold("T9")
    rows, no_limits, busy = [], [], []
    peak = 0.0
    services = stack.services()
    # one stats sample takes the engine about a second: sample every container at once
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        samples = dict(
            zip([s.name for s in services], pool.map(lambda s: s.stats(), services), strict=True)
        )
    for svc in services:
        host = svc.host_config
        if not host.get("Memory") or not host.get("NanoCpus"):
            no_limits.append(svc.name)
        s = samples[svc.name]
        # docker stats' figure is relative to one CPU; the limit is what the container may use
        limit_cpus = host.get("NanoCpus", 0) / 1e9
        rows.append(
            f"{svc.name} {s['cpu_percent']:.1f}% of a CPU (limit {limit_cpus:g}), "
            f"{s['memory_bytes'] / 2**20:.0f}/{s['memory_limit_bytes'] / 2**20:.0f} MiB"
        )
        peak = max(peak, s["cpu_percent"])
        if not threshold.met_by(s["cpu_percent"]):
            busy.append(rows[-1])
    sla.record(
        "T9", peak, how="docker stats (one sample per container) at idle: " + "; ".join(rows)
    )
    assert not no_limits, f"containers without CPU/memory limits: {no_limits}"
    assert not busy, f"above {threshold.describe()} at idle: {busy}"


@pytest.mark.req("T10", "M6")
def test_no_container_log_past_rotation_size(stack, sla):
    limit_mb = sla.threshold("T10").value
    sizes, unreadable, too_big, unrotated = {}, [], [], []
    for svc in stack.services():
        cfg = svc.log_config
        if cfg.get("Type") != "json-file" or not cfg.get("Config", {}).get("max-size"):
            unrotated.append(f"{svc.name}: {cfg}")
        path = svc.log_path
        try:
            sizes[svc.name] = os.stat(path).st_size / 2**20
        except OSError:
            unreadable.append(svc.name)
            continue
        if sizes[svc.name] > limit_mb:
            too_big.append(f"{svc.name} {sizes[svc.name]:.1f} MB")
    if unreadable and not sizes:
        pytest.skip(
            "the engine's log files are not readable from here (Docker Desktop keeps them "
            "in its VM); rotation settings were checked by the compose policy"
        )
    sla.record(
        "T10",
        max(sizes.values()),
        unit="MB",
        how="size of each container's json-file log (LogPath): "
        + ", ".join(f"{n} {v:.2f}" for n, v in sorted(sizes.items())),
    )
    assert not unrotated, f"logs without rotation: {unrotated}"
    assert not too_big, f"logs past {limit_mb:g} MB: {too_big}"
