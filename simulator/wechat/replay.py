"""Nonce memory of signed v3 requests: a signed request is accepted once.

A request is valid while its timestamp is within ``window`` seconds of the wall clock, so
one signed at ``t`` can arrive until ``t + window``, however early or late it came: its
nonce is kept until then (not for a fixed time after it arrived, which would let a request
stamped in the future be accepted again once forgotten). The memory is bounded
(:data:`LIMIT` nonces per merchant, at most ``2 * window`` seconds' worth): a merchant that
would need more gets 429 FREQUENCY_LIMITED rather than a replay window or unbounded memory.

Example::

    memory = NonceMemory()
    memory.remember("1900000109", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", until=1700000300, now=1700000000)
    # True; the same again before 1700000300 -> False
"""

from __future__ import annotations

import heapq
import threading

LIMIT = 250_000


class NonceMemoryFull(Exception):
    """The merchant has :data:`LIMIT` live nonces: refuse rather than forget one early."""


class NonceMemory:
    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._until: dict[tuple[str, str], int] = {}
        self._expiry: list[tuple[int, tuple[str, str]]] = []
        self._per_merchant: dict[str, int] = {}
        self._lock = threading.Lock()

    def _forget_expired(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, key = heapq.heappop(self._expiry)
            del self._until[key]
            self._per_merchant[key[0]] -= 1

    def remember(self, mchid: str, nonce: str, *, until: int, now: float) -> bool:
        """True the first time (mchid, nonce) is seen while live; False for a replay."""
        key = (mchid, nonce)
        with self._lock:
            self._forget_expired(now)
            if key in self._until:
                return False
            if self._per_merchant.get(mchid, 0) >= self.limit:
                raise NonceMemoryFull(mchid)
            self._until[key] = until
            heapq.heappush(self._expiry, (until, key))
            self._per_merchant[mchid] = self._per_merchant.get(mchid, 0) + 1
            return True

    def clear(self) -> None:
        with self._lock:
            self._until.clear()
            self._expiry.clear()
            self._per_merchant.clear()
