"""The profile's Redis stream with a consumer group: at-least-once delivery between the fetcher
and the workers. An entry is acknowledged only after its mail is committed; entries a dead
worker left pending are claimed again after `claim_idle_ms`."""

from __future__ import annotations

from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class Entry:
    """A queued mail: its bytes, or the name of its spool file (mailer.spool) when it is large."""

    entry_id: str
    source: str
    source_id: str
    external_id: str
    raw: bytes
    deliveries: int = 1
    spooled: str | None = None
    # set for a mail the fetcher could not fetch: stored raw and flagged, with this reason
    flag: str | None = None


class MailQueue:
    def __init__(
        self,
        client: redis.Redis,
        profile: str,
        *,
        claim_idle_ms: int = 60_000,
        guard_ttl_s: int = 7 * 24 * 3600,
    ):
        self.r = client  # decode_responses=False: mail bytes stay bytes
        self.stream = f"mailer:{profile}:incoming"
        self.group = f"{profile}-workers"
        self.guard_prefix = f"mailer:{profile}:enqueued:"
        self.claim_idle_ms = claim_idle_ms
        self.guard_ttl_s = guard_ttl_s

    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def enqueue(
        self,
        source: str,
        source_id: str,
        external_id: str,
        raw: bytes,
        spooled: str | None = None,
        flag: str | None = None,
    ) -> bool:
        """Add a fetched mail (its bytes, or the name of its spool file) unless it was enqueued
        before (a guard key per source id, so a mail fetched again before its commit is not
        queued twice). Returns whether it was added."""
        guard = f"{self.guard_prefix}{source}|{source_id}"
        if not self.r.set(guard, b"1", nx=True, ex=self.guard_ttl_s):
            return False
        fields = {b"source": source, b"source_id": source_id, b"external_id": external_id}
        if spooled is None:
            fields[b"raw"] = raw
        else:
            fields[b"spooled"] = spooled
        if flag is not None:
            fields[b"flag"] = flag
        try:
            self.r.xadd(self.stream, fields)
        except Exception:
            self.r.delete(guard)
            raise
        return True

    def enqueued(self, source: str, source_ids: list[str]) -> set[str]:
        """Which of these source ids already sit in the queue (guard key present)."""
        if not source_ids:
            return set()
        pipe = self.r.pipeline()
        for sid in source_ids:
            pipe.exists(f"{self.guard_prefix}{source}|{sid}")
        return {sid for sid, hit in zip(source_ids, pipe.execute(), strict=True) if hit}

    def own_pending(self, consumer: str, count: int = 10) -> list[Entry]:
        """Entries this consumer name took before a restart and never acknowledged."""
        res = self.r.xreadgroup(self.group, consumer, {self.stream: "0"}, count=count)
        out = []
        for _stream, entries in res or []:
            for entry_id, fields in entries:
                if fields:
                    out.append(self._entry(entry_id, fields, self._deliveries(entry_id)))
        return out

    def _deliveries(self, entry_id) -> int:
        """How often the entry was handed out (a crash while processing counts too)."""
        info = self.r.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
        return int(info[0]["times_delivered"]) if info else 1

    def spooled_names(self) -> set[str]:
        """Spool files the queue still refers to (entries are deleted once acknowledged, so the
        stream holds only mails not yet committed)."""
        names, start = set(), "-"
        while True:
            batch = self.r.xrange(self.stream, min=start, max="+", count=500)
            for _entry_id, fields in batch:
                if fields and b"spooled" in fields:
                    names.add(fields[b"spooled"].decode())
            if len(batch) < 500:
                return names
            last = batch[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else last)

    def release(self, source: str, source_id: str) -> None:
        """Forget the guard of a mail that will not be processed from the queue."""
        self.r.delete(f"{self.guard_prefix}{source}|{source_id}")

    @staticmethod
    def _entry(entry_id, fields, deliveries: int = 1) -> Entry:
        def s(key: bytes) -> str:
            return fields[key].decode("utf-8", "replace")

        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        spooled = s(b"spooled") if b"spooled" in fields else None
        return Entry(
            eid,
            s(b"source"),
            s(b"source_id"),
            s(b"external_id"),
            fields.get(b"raw", b""),
            deliveries,
            spooled,
            s(b"flag") if b"flag" in fields else None,
        )

    def read(self, consumer: str, *, block_ms: int = 1000, count: int = 1) -> list[Entry]:
        """Entries for this consumer: first stale ones of dead consumers, then new ones."""
        claimed = self.claim_stale(consumer, count)
        if claimed:
            return claimed
        res = self.r.xreadgroup(
            self.group, consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        out = []
        for _stream, entries in res or []:
            for entry_id, fields in entries:
                out.append(self._entry(entry_id, fields))
        return out

    def claim_stale(self, consumer: str, count: int = 1) -> list[Entry]:
        res = self.r.xautoclaim(
            self.stream,
            self.group,
            consumer,
            min_idle_time=self.claim_idle_ms,
            start_id="0-0",
            count=count,
        )
        entries = res[1] if res else []
        out = []
        for entry_id, fields in entries:
            if not fields:  # deleted entry
                continue
            out.append(self._entry(entry_id, fields, self._deliveries(entry_id)))
        return out

    def ack(self, entry: Entry) -> None:
        pipe = self.r.pipeline()
        pipe.xack(self.stream, self.group, entry.entry_id)
        pipe.xdel(self.stream, entry.entry_id)
        pipe.execute()

    def ping(self) -> bool:
        """Whether Redis answers (and takes our credentials) now."""
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False

    def depth(self) -> int:
        """Mails waiting: not yet delivered to a worker plus delivered but not acknowledged.

        That is the stream's length, since an acknowledged entry is deleted with it (ack). Not
        the consumer group's lag + pending: after Redis restarted from its AOF with deleted
        entries behind it, the group reported a lag of 501 for an empty stream (seen on the
        Swarm stack after its Redis task was SIGKILLed), which read as 501 mails stuck."""
        return int(self.r.xlen(self.stream))
