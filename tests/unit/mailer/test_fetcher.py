"""The fetcher after Redis or PostgreSQL failed: it polls again as soon as they answer (an
outage must not leave new mail unread for the backoff's minute after it ended), and never
polls the mailbox in a tight loop where they answer but refuse (Gmail counts logins)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import redis

from mailer.fetcher import Fetcher
from mailer.sources import Fetched


class Mailbox:
    """A source with one mail of ours; counts the polls (each a login on POP3)."""

    name = "fake://mailbox"

    def __init__(self) -> None:
        self.polls = 0

    def check(self) -> None:
        pass

    def poll(self, known, delete=None, foreign=None) -> Iterator[Fetched]:
        self.polls += 1
        if "1" not in known(["1"]):
            yield Fetched("1", "1", b"Subject: x\r\n\r\nbody\r\n", 19)

    def wait(self, poll_seconds: float, stop: threading.Event) -> None:
        stop.wait(poll_seconds)

    def close(self) -> None:
        pass


class Queue:
    """Redis: down (every call fails, as a stopped server) or refusing (it answers a ping, but
    refuses the fetcher's commands) until told otherwise."""

    def __init__(self, *, down: bool = False, refusing: bool = False) -> None:
        self.down, self.refusing = down, refusing
        self.failures = 0
        self.entries: list[str] = []

    def _call(self) -> None:
        if self.down:
            self.failures += 1
            raise redis.ConnectionError("Error -2 connecting to redis:6379")
        if self.refusing:
            self.failures += 1
            raise redis.ResponseError("NOPERM this user has no permissions")

    def ping(self) -> bool:
        return not self.down

    def enqueued(self, source, ids) -> set[str]:
        self._call()
        return {i for i in ids if i in self.entries}

    def enqueue(self, source, source_id, external_id, raw, spooled=None, flag=None) -> bool:
        self._call()
        self.entries.append(source_id)
        return True

    def depth(self) -> int:
        return len(self.entries)


class Store:
    def known_source_ids(self, source, ids) -> set[str]:
        return set()

    def ping(self) -> bool:
        return True


def _run(fetcher: Fetcher) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=fetcher.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def _until(check, timeout: float) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - start


def test_mail_is_fetched_within_a_second_or_two_after_a_redis_outage_ends():
    # poll 0.5 s: after the 3rd failed poll the backoff is 4 s; Redis comes back 0.3 s into it
    queue = Queue(down=True)
    fetcher = Fetcher(
        "unit-outage",
        SimpleNamespace(poll_seconds=0.5, delete_after_store=False),
        Mailbox(),
        queue,
        Store(),
    )
    stop, thread = _run(fetcher)
    try:
        _until(lambda: queue.failures >= 3, timeout=10)
        time.sleep(0.3)
        queue.down = False
        took = _until(lambda: queue.entries, timeout=10)
    finally:
        stop.set()
        thread.join(5)
    assert queue.entries == ["1"]
    # the backoff's rest was ~3.7 s: the fetcher slept it out before
    assert took < 2.0, f"the mail waited {took:.1f} s after Redis answered again"


def test_a_redis_that_answers_but_refuses_does_not_make_the_mailbox_polled_in_a_loop():
    # poll 2 s: backoff 4 s after the first failure, 8 s after the second
    queue, mailbox = Queue(refusing=True), Mailbox()
    fetcher = Fetcher(
        "unit-refusing",
        SimpleNamespace(poll_seconds=2.0, delete_after_store=False),
        mailbox,
        queue,
        Store(),
    )
    stop, thread = _run(fetcher)
    try:
        time.sleep(3.5)
    finally:
        stop.set()
        thread.join(5)
    # one poll, then the backoff: polled again only after 4 s (each second would be 4 polls)
    assert mailbox.polls == 1, f"{mailbox.polls} mailbox polls in 3.5 s"
    assert not queue.entries
