"""Event-driven waits with deadlines (tenacity), never a bare sleep.

A wait that runs out raises WaitTimeout carrying what it waited for and the last state seen,
so the failure explains itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition did not hold before its deadline."""


def wait_for(
    probe: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.5,
    what: str,
    ok: Callable[[T], bool] = bool,
    progress: Callable[[str], None] | None = None,
) -> tuple[T, float]:
    """Call `probe` until `ok(result)`; return the result and the seconds it took.

    Exceptions from the probe count as "not yet" (a port not open yet, a container restarting)
    and the last one is reported if the deadline passes.
    """
    start = time.monotonic()
    last: dict[str, object] = {}
    next_note = [start + 15.0]

    def attempt() -> tuple[bool, T | None]:
        try:
            result = probe()
        except Exception as exc:
            last["state"] = f"{type(exc).__name__}: {exc}"
            result_ok, result = False, None
        else:
            last["state"] = repr(result)
            result_ok = ok(result)
        now = time.monotonic()
        if progress and not result_ok and now >= next_note[0]:
            progress(f"still waiting for {what} ({now - start:.0f}/{timeout:.0f} s)")
            next_note[0] = now + 15.0
        return result_ok, result

    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        retry=retry_if_result(lambda r: not r[0]),
    )
    try:
        _, result = retrying(attempt)
    except RetryError:
        raise WaitTimeout(
            f"timed out after {timeout:g} s waiting for {what}; last seen: {last.get('state')}"
        ) from None
    return result, time.monotonic() - start  # type: ignore[return-value]
