"""Verifying the platform's request signature (scheme: :mod:`contracts.signing`).

Freshness uses the wall clock, not the bank's virtual clock: a signature guards the
transport, and the platform signs with its own real time. Nonces are remembered for the
freshness window, so a captured request replayed inside it is refused with 1005 and one
replayed after it with 1004. The nonce memory is per process; after a restart, replays of
mutating requests are still harmless because the request serial makes them idempotent.
"""

from __future__ import annotations

import hmac
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from contracts.signing import (
    HEADER_APP_ID,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    signature,
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
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureVerifier:
    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def verify(self, profile: Profile, method: str, path_and_query: str,
               headers: Mapping[str, str], body: bytes) -> Platform:
        """The signing platform, or the coded error (1001-1005)."""
        app_id = headers.get(HEADER_APP_ID.lower())
        ts = headers.get(HEADER_TIMESTAMP.lower())
        nonce = headers.get(HEADER_NONCE.lower())
        sig = headers.get(HEADER_SIGNATURE.lower())
        if not (app_id and ts and nonce and sig):
            raise SignatureMissing("send X-App-Id, X-Timestamp, X-Nonce and X-Signature")
        platform = profile.platform(app_id)
        if platform is None:
            raise UnknownAppId(f"app id {app_id!r} is not configured")
        if not _TIMESTAMP.fullmatch(ts) or not _NONCE.fullmatch(nonce):
            raise SignatureInvalid("X-Timestamp must be Unix seconds, X-Nonce 8-64 of [A-Za-z0-9_-]")
        expected = signature(platform.secret, method, path_and_query, ts, nonce, body)
        if not hmac.compare_digest(expected, sig.lower()):
            raise SignatureInvalid("signature does not match the request")
        now = self._wall()
        window = profile.security.signature_window_seconds
        if abs(now - int(ts)) > window:
            raise TimestampStale(f"timestamp is {int(now - int(ts))} s from the bank's clock, "
                                 f"allowed {window} s")
        self._forget_before(now - window)
        key = (app_id, nonce)
        if key in self._seen:
            raise NonceReplayed("this nonce was already used")
        self._seen[key] = now
        return platform

    def _forget_before(self, cutoff: float) -> None:
        # Insertion order is arrival order, so expired nonces sit at the front.
        while self._seen:
            _, seen = next(iter(self._seen.items()))
            if seen >= cutoff:
                break
            self._seen.popitem(last=False)
