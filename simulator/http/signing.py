"""Verifying the platform's request signature (scheme: :mod:`contracts.signing`).

Freshness uses the wall clock, not the bank's virtual clock: a signature guards the
transport, and the platform signs with its own real time. A timestamp is fresh within
``window`` seconds either side of the bank's clock, so a request stamped ``ts`` can be
valid until ``ts + window``: its nonce is remembered exactly that long (not ``window``
after it arrived: a request stamped in the future would be valid again after that), so a
captured request replayed while it is fresh is refused with 1005 and one replayed after it
with 1004. The nonce memory is per process; after a restart, replays of mutating requests
are still harmless because the request serial makes them idempotent.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
import time
from collections.abc import Callable, Mapping

from contracts.signing import (
    HEADER_APP_ID,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    string_to_sign,
)
from simulator.config import Platform, Profile
from simulator.errors import (
    NonceReplayed,
    SignatureInvalid,
    SignatureMissing,
    TimestampStale,
    UnknownAppId,
)

_NONCE = re.compile(r"[A-Za-z0-9_-]{8,64}")
_KEYED_KEPT = 64
# Header names as the server hands them over (lowercase).
_APP_ID, _TIMESTAMP_H, _NONCE_H, _SIGNATURE_H = (
    name.lower() for name in (HEADER_APP_ID, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE))
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureVerifier:
    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        # Nonces that could still be replayed: a 64-bit hash of (app id, nonce), kept until
        # the second its timestamp stops being fresh (timestamp + window). Compact on
        # purpose: the table holds every request of the last few minutes (300 s at 3,000
        # requests/s is 900,000 entries), so an entry is one int in a set and one pointer
        # in its second's list, not a tuple of strings. Expiry seconds are a heap of
        # distinct seconds (at most 2 x window + 1 of them, however many requests). A hash
        # collision (odds ~1e-7 at a million entries) would refuse one fresh request as
        # replayed; nothing is ever accepted that should not be.
        self._seen: set[int] = set()
        self._expiring: dict[int, list[int]] = {}
        self._seconds: list[int] = []
        self._macs: dict[str, hmac.HMAC] = {}
        self._profile: Profile | None = None
        self._platforms: dict[str, Platform] = {}

    def _platform(self, profile: Profile, app_id: str) -> Platform | None:
        # By app id, per profile object (a profile change brings a new one).
        if self._profile is not profile:
            self._profile = profile
            self._platforms = {}
            for p in profile.platforms:  # the first one wins, as in Profile.platform
                self._platforms.setdefault(p.app_id, p)
        return self._platforms.get(app_id)

    def _keyed(self, secret: str) -> hmac.HMAC:
        """A fresh HMAC-SHA256 keyed with ``secret``."""
        mac = self._macs.get(secret)
        if mac is None:
            if len(self._macs) >= _KEYED_KEPT:  # secrets changed at runtime, many times
                self._macs.clear()
            mac = self._macs[secret] = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        return mac.copy()

    def verify(self, profile: Profile, method: str, path_and_query: str,
               headers: Mapping[str, str], body: bytes) -> Platform:
        """The signing platform, or the coded error (1001-1005)."""
        app_id = headers.get(_APP_ID)
        ts = headers.get(_TIMESTAMP_H)
        nonce = headers.get(_NONCE_H)
        sig = headers.get(_SIGNATURE_H)
        if not (app_id and ts and nonce and sig):
            raise SignatureMissing("send X-App-Id, X-Timestamp, X-Nonce and X-Signature")
        platform = self._platform(profile, app_id)
        if platform is None:
            raise UnknownAppId(f"app id {app_id!r} is not configured")
        if not _TIMESTAMP.fullmatch(ts) or not _NONCE.fullmatch(nonce):
            raise SignatureInvalid("X-Timestamp must be Unix seconds, X-Nonce 8-64 of [A-Za-z0-9_-]")
        # The scheme of contracts.signing.signature, from an HMAC state already keyed with
        # the platform's secret: copying it is cheaper than keying a new one per request.
        mac = self._keyed(platform.secret)
        mac.update(string_to_sign(method, path_and_query, ts, nonce, body))
        expected = mac.hexdigest()
        if not hmac.compare_digest(expected, sig.lower()):
            raise SignatureInvalid("signature does not match the request")
        now = self._wall()
        window = profile.security.signature_window_seconds
        if abs(now - int(ts)) > window:
            raise TimestampStale(f"timestamp is {int(now - int(ts))} s from the bank's clock, "
                                 f"allowed {window} s")
        self._forget_expired(int(now))
        key = hash((app_id, nonce))
        if key in self._seen:
            raise NonceReplayed("this nonce was already used")
        self._remember(key, int(ts) + window)
        return platform

    @property
    def remembered(self) -> int:
        """How many nonces are held (for tests and the memory figures)."""
        return len(self._seen)

    def _remember(self, key: int, expiry: int) -> None:
        self._seen.add(key)
        keys = self._expiring.get(expiry)
        if keys is None:
            keys = self._expiring[expiry] = []
            heapq.heappush(self._seconds, expiry)
        keys.append(key)

    def _forget_expired(self, now: int) -> None:
        # A nonce stamped ts is fresh while the clock is <= ts + window; it goes once the
        # whole second has passed. The heap yields the seconds in order, whatever order the
        # requests came in (a future timestamp expires after later-arriving ones).
        seconds, expiring, seen = self._seconds, self._expiring, self._seen
        while seconds and seconds[0] < now:
            for key in expiring.pop(heapq.heappop(seconds)):
                seen.discard(key)
