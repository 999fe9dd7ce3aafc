"""stackcheck.services.base.cpu_percent: CPU use computed as `docker stats` does."""

import pytest

from stackcheck.services.base import cpu_percent

pytestmark = pytest.mark.unit


def stats(total, pre_total, system, pre_system, online=2, percpu=None):
    cpu_usage = {"total_usage": total}
    if percpu is not None:
        cpu_usage["percpu_usage"] = percpu
    cpu = {"cpu_usage": cpu_usage, "system_cpu_usage": system}
    if online is not None:
        cpu["online_cpus"] = online
    return {
        "cpu_stats": cpu,
        "precpu_stats": {"cpu_usage": {"total_usage": pre_total}, "system_cpu_usage": pre_system},
    }


def test_by_hand():
    # cpu delta 2e8 over system delta 2e9 on 2 CPUs: 0.1 * 2 * 100
    s = stats(total=1_200_000_000, pre_total=1_000_000_000, system=7e9, pre_system=5e9, online=2)
    assert cpu_percent(s) == pytest.approx(20.0)


def test_scales_with_online_cpus():
    s = stats(total=3e8, pre_total=2e8, system=2e9, pre_system=1e9, online=4)
    assert cpu_percent(s) == pytest.approx(40.0)


def test_online_cpus_fall_back_to_percpu_list():
    s = stats(total=2e8, pre_total=0, system=2e9, pre_system=0, online=None, percpu=[1, 2, 3])
    assert cpu_percent(s) == pytest.approx(30.0)


def test_online_cpus_fall_back_to_one():
    s = stats(total=2e8, pre_total=0, system=2e9, pre_system=0, online=None)
    assert cpu_percent(s) == pytest.approx(10.0)


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"cpu_stats": {}, "precpu_stats": {}},
        # first sample: Docker leaves precpu_stats without system_cpu_usage
        {
            "cpu_stats": {
                "cpu_usage": {"total_usage": 5},
                "system_cpu_usage": 10,
                "online_cpus": 1,
            },
            "precpu_stats": {"cpu_usage": {"total_usage": 0}},
        },
        {"cpu_stats": {"system_cpu_usage": 10}, "precpu_stats": {"system_cpu_usage": 5}},
    ],
)
def test_missing_keys_give_zero(raw):
    assert cpu_percent(raw) == 0.0


def test_zero_system_delta_gives_zero():
    assert cpu_percent(stats(total=2e8, pre_total=1e8, system=5e9, pre_system=5e9)) == 0.0


def test_negative_deltas_give_zero():
    assert cpu_percent(stats(total=1e8, pre_total=2e8, system=6e9, pre_system=5e9)) == 0.0
    assert cpu_percent(stats(total=2e8, pre_total=1e8, system=4e9, pre_system=5e9)) == 0.0
