"""How the suite treats the stack: reuse it, start it fresh, or test an external one untouched."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_MODE = "STACKCHECK_STACK"
ENV_PROJECT = "STACKCHECK_PROJECT"
ENV_OFFLINE = "STACKCHECK_OFFLINE"
ENV_TEARDOWN = "STACKCHECK_TEARDOWN"
ENV_SWARM_STACK = "STACKCHECK_SWARM_STACK"


class Mode(enum.StrEnum):
    REUSE = "reuse"  # bring up what is missing, keep what runs (default, fastest for `-m infra`)
    FRESH = "fresh"  # `down -v` first: no data from an earlier run
    EXTERNAL = "external"  # someone else's stack: observe only, never start, stop or remove
    # the stack deployed on Docker Swarm by `./run deploy swarm` (namespace $STACKCHECK_SWARM_STACK,
    # default stackcheck-swarm): found by com.docker.stack.namespace, never deployed by the suite
    SWARM = "swarm"


class ModeError(ValueError):
    """An invalid --stack value or combination."""


def select_mode(option: str | None, env: Mapping[str, str]) -> Mode:
    """The --stack option wins over $STACKCHECK_STACK; reuse is the default."""
    raw = option or env.get(ENV_MODE) or Mode.REUSE.value
    try:
        return Mode(raw.strip().lower())
    except ValueError:
        source = "--stack" if option else ENV_MODE
        valid = ", ".join(m.value for m in Mode)
        raise ModeError(f"{source}={raw!r} is not a stack mode; use one of: {valid}") from None


def _truthy(value: str | None) -> bool | None:
    if value is None or value.strip() == "":
        return None
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off"}:
        return False
    raise ModeError(f"expected a yes/no value, got {value!r}")


def read_env_file(path: Path) -> dict[str, str]:
    """Parse the KEY=VALUE lines of a compose .env file (comments and blanks skipped)."""
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip().strip("'\"")
    return out


@dataclass(frozen=True)
class StackConfig:
    mode: Mode
    project: str
    stack_dir: Path
    files: tuple[str, ...]
    offline: bool
    teardown: bool


def resolve(
    *,
    option_mode: str | None,
    option_teardown: bool,
    env: Mapping[str, str],
    stack_dir: Path,
) -> StackConfig:
    """Combine options, the environment and stack/.env (written by setup) into one config.

    stack/.env records whether setup chose offline mode; $STACKCHECK_OFFLINE overrides it.
    """
    mode = select_mode(option_mode, env)
    dotenv = read_env_file(stack_dir / ".env")
    offline = _truthy(env.get(ENV_OFFLINE))
    if offline is None:
        offline = _truthy(dotenv.get(ENV_OFFLINE)) or False
    files = ["compose.yml"] + (["compose.offline.yml"] if offline else [])
    # further overrides setup chose (compose.legacy-engine.yml on engines before 25)
    files += [
        f
        for f in dotenv.get("COMPOSE_FILE", "").split(":")
        if f and f not in ("compose.yml", "compose.offline.yml")
    ]
    project = env.get(ENV_PROJECT) or dotenv.get("COMPOSE_PROJECT_NAME") or "stackcheck"
    if mode is Mode.SWARM:  # the stack namespace, and the model with the Swarm overlay
        project = env.get(ENV_SWARM_STACK) or "stackcheck-swarm"
        files.append("compose.swarm.yml")
    teardown = option_teardown or bool(_truthy(env.get(ENV_TEARDOWN)))
    if mode in (Mode.EXTERNAL, Mode.SWARM) and teardown:
        raise ModeError(
            f"--stack={mode.value} never removes the stack, so it cannot tear it down"
            + (" (`./run undeploy swarm` does)" if mode is Mode.SWARM else "")
        )
    return StackConfig(mode, project, stack_dir, tuple(files), offline, teardown)
