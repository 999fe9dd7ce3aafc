"""SIGTERM and SIGINT end a backup process cleanly: they set an event the run or the server
loop checks, so a dump in progress is finished or cleaned up, never cut off mid-file."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def stop_event(say: Callable[..., None], message: str) -> threading.Event:
    """An event set by SIGTERM or SIGINT, each logged with `say(message, signal=NAME)`."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        say(message, signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop
