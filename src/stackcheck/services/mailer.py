"""A mailer (praxis-mailer, ecom-mailer): its own metrics, its memory high-water mark, whether it
crashed, and its profile's database."""

from __future__ import annotations

from stackcheck.services.base import Service
from stackcheck.services.postgres import Postgres, ProfileDB

METRICS_PORT = 8000


def sample(text: str, name: str, labels: dict[str, str]) -> float:
    """The sum of a metric's samples in Prometheus text whose labels include `labels`."""
    want = [f'{k}="{v}"' for k, v in sorted(labels.items())]
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line == name or line.startswith(name + " "):
            metric, _, value = line.rpartition(" ")
            got = metric[len(name) :].strip("{}").split(",")
            if all(part in got for part in want):
                total += float(value)
    return total


class Mailer(Service):
    @property
    def profile(self) -> str:
        """The mail profile it serves (praxis-mailer -> praxis)."""
        return self.name.removesuffix("-mailer")

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample of its own /metrics (the endpoint Prometheus scrapes), summed over the
        series whose labels include `labels`."""
        return sample(self.scrape(METRICS_PORT), name, labels or {})

    def peak_rss_mib(self) -> float:
        """Peak resident memory of the mailer process (PID 1) since it started (VmHWM)."""
        res = self.exec(["cat", "/proc/1/status"])
        assert res.exit_code == 0, res.output
        for line in res.output.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no VmHWM in /proc/1/status of {self.name}")

    def restarts(self) -> tuple[int, bool]:
        """(restart count, OOM-killed) of its container: a crash shows in either."""
        state = self.inspect()
        return int(state["RestartCount"]), bool(state["State"]["OOMKilled"])

    def db(self) -> ProfileDB:
        """Its profile's database, as the profile's own role."""
        postgres = self.engine.sibling("postgres")
        assert isinstance(postgres, Postgres), postgres
        return postgres.profile(self.profile)
