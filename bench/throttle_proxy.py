"""A fault proxy that throttles like S3: ``503 SlowDown`` above R requests/s per key prefix.

S3 serves a fixed request rate per partitioned prefix (3,500 PUT/s) and answers ``503
SlowDown`` to the excess while it re-partitions. This proxy reuses ``tests/faults/proxy.py``'s
``FaultProxy`` (forwarding, SigV4-transparent, keep-alive) and adds one decision before its
rules: each request to a key counts against a token bucket of its *partition*, and a request
that finds the bucket empty is answered ``503 SlowDown`` without being forwarded (like S3, a
refused request does not use up capacity).

The partition of a key is its first path segment (``20261202/`` for date-first keys,
``fleet-03/`` for host-first keys), cut to ``partition_chars`` characters when that is set
(S3 splits on leading characters: with ``{uuid4}/...`` keys and 2 characters there are 256
partitions, as with a 2-hex-digit hash token). Requests are attributed to an agent by the
``aNN-`` prefix of the file name the bench gives every file.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from tests.faults.proxy import FaultProxy, FaultRule

SLOWDOWN = FaultRule(
    action="status",
    methods=frozenset(),
    status=503,
    code="SlowDown",
    message="Please reduce your request rate.",
)
_AGENT = re.compile(r"(?:^|/)a(\d+)-[^/]*$")


def split_target(target: str) -> tuple[str, str] | None:
    """``/bucket/some/key?x=1`` (path-style) -> ``("bucket", "some/key")``; None without a key."""
    path = unquote(urlsplit(target).path).lstrip("/")
    bucket, _, key = path.partition("/")
    return (bucket, key) if bucket and key else None


def partition_of(key: str, chars: int = 0) -> str:
    segment = key.split("/", 1)[0]
    return segment[:chars] if chars > 0 else segment


def agent_of(key: str) -> int | None:
    match = _AGENT.search(key)
    return int(match.group(1)) if match else None


class PartitionBuckets:
    """A token bucket per partition: ``rate`` requests/s, ``burst`` at most (thread-safe)."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self._clock = clock
        self._tokens: dict[str, tuple[float, float]] = {}  # partition -> (tokens, stamp)
        self._lock = threading.Lock()

    def admit(self, partition: str) -> bool:
        with self._lock:
            now = self._clock()
            tokens, stamp = self._tokens.get(partition, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            admitted = tokens >= 1.0
            self._tokens[partition] = (tokens - 1.0 if admitted else tokens, now)
            return admitted


@dataclass
class AgentCounts:
    requests: Counter[str] = field(default_factory=Counter)  # by method, throttled included
    throttled: int = 0


class ThrottlingProxy(FaultProxy):
    """``FaultProxy`` plus a per-partition request-rate limit (see the module docstring)."""

    def __init__(
        self, upstream: str, *, rate: float, partition_chars: int = 0, burst: float | None = None
    ) -> None:
        self.buckets = PartitionBuckets(rate, burst)
        self.partition_chars = partition_chars
        self._count_lock = threading.Lock()
        self.agents: dict[int | None, AgentCounts] = {}
        self.partitions: Counter[str] = Counter()
        self.throttled = 0
        super().__init__(upstream)

    def _match(self, method: str, target: str) -> FaultRule | None:
        rule = super()._match(method, target)
        if rule is not None:
            return rule
        parts = split_target(target)
        if parts is None:
            return None
        key = parts[1]
        partition = partition_of(key, self.partition_chars)
        admitted = self.buckets.admit(partition)
        with self._count_lock:
            counts = self.agents.setdefault(agent_of(key), AgentCounts())
            counts.requests[method] += 1
            self.partitions[partition] += 1
            if not admitted:
                counts.throttled += 1
                self.throttled += 1
        return None if admitted else SLOWDOWN
