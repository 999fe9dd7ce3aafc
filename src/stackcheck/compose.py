"""A thin, typed wrapper over the `docker compose` CLI (Compose v2).

The CLI rather than a Python reimplementation: it is what operators run, it owns `up --wait`,
and its behaviour is the contract we test.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


class ComposeError(RuntimeError):
    """A compose command failed; the message carries the command and its stderr."""


@dataclass(frozen=True)
class PublishedPort:
    host: str
    port: int


_PORT_LINE = re.compile(r"^(?:\[(?P<v6>[^\]]*)\]|(?P<v4>[^:\s]*)):(?P<port>\d+)$")


def parse_port_output(output: str) -> list[PublishedPort]:
    """Parse `docker compose port` output: one `host:port` per line, IPv6 in brackets.

    `0.0.0.0` and `::` (any address) are reported as they are, so a test can tell a loopback
    binding from an open one.
    """
    ports = []
    for line in output.splitlines():
        line = line.strip()
        if not line:
            continue
        m = _PORT_LINE.match(line)
        if not m:
            raise ValueError(f"unexpected `compose port` output: {line!r}")
        host = m["v6"] if m["v6"] is not None else m["v4"]
        ports.append(PublishedPort(host or "0.0.0.0", int(m["port"])))
    return ports


@dataclass
class Compose:
    project: str
    directory: Path
    files: Sequence[str] = ("compose.yml",)
    env: dict[str, str] | None = None
    binary: Sequence[str] = field(default=("docker", "compose"))

    def argv(self, *args: str) -> list[str]:
        cmd = [
            *self.binary,
            "--project-name",
            self.project,
            "--project-directory",
            str(self.directory),
        ]
        for f in self.files:
            cmd += ["--file", str(self.directory / f)]
        return [*cmd, *args]

    def run(
        self,
        *args: str,
        check: bool = True,
        capture: bool = True,
        timeout: float | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = self.argv(*args)
        try:
            proc = subprocess.run(
                cmd,
                cwd=self.directory,
                env=self.env,
                text=True,
                input=input,
                capture_output=capture,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise ComposeError(f"`{' '.join(cmd)}` did not finish within {timeout:g} s") from exc
        except FileNotFoundError as exc:
            raise ComposeError(
                f"{self.binary[0]!r} is not installed: run `./run setup` to install Docker"
            ) from exc
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout or "").strip() if capture else ""
            raise ComposeError(f"`{' '.join(cmd)}` exited {proc.returncode}: {detail}")
        return proc

    def stream(self, *args: str, on_line, timeout: float) -> tuple[int, str]:
        """Run a long command, handing each output line to `on_line` as it comes (progress on
        long waits); return the exit code and the whole output."""
        cmd = self.argv(*args)
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        with subprocess.Popen(
            cmd,
            cwd=self.directory,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                on_line(line.rstrip())
                if time.monotonic() > deadline:
                    proc.kill()
                    lines.append(f"stackcheck: killed after {timeout:g} s")
                    break
            code = proc.wait()
        return code, "".join(lines)

    def config(self, *, profiles: Sequence[str] = ()) -> dict:
        """The model Compose really runs (`config --format json`): anchors, overrides,
        interpolation and the given profiles ("*" for all) applied. Policy checks read this, not
        the YAML, so an override file cannot undo a rule unseen."""
        selected = [a for p in profiles for a in ("--profile", p)]
        return json.loads(self.run(*selected, "config", "--format", "json", timeout=60).stdout)

    def services(self) -> list[str]:
        """Services the compose files define (including those of inactive profiles: no)."""
        return self.run("config", "--services").stdout.split()

    def port(self, service: str, container_port: int, protocol: str = "tcp") -> list[PublishedPort]:
        out = self.run("port", "--protocol", protocol, service, str(container_port), check=False)
        if out.returncode != 0 or not out.stdout.strip():
            return []
        return parse_port_output(out.stdout)
