"""Replay protection keeps each nonce exactly as long as the signature window needs it."""

from __future__ import annotations

import pytest

from contracts.signing import sign_headers
from simulator.errors import NonceReplayed, TimestampStale
from simulator.http.signing import SignatureVerifier
from tests.conftest import make_profile

APP, SECRET, PATH = "demo-platform", "banksim-dev-secret", "/api/v1/accounts/x"


class Wall:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _headers(nonce: str, ts: int) -> dict[str, str]:
    signed = sign_headers(APP, SECRET, "GET", PATH, b"", timestamp=ts, nonce=nonce)
    return {k.lower(): v for k, v in signed.items()}  # as the ASGI scope carries them


def test_a_nonce_is_refused_again_inside_the_window_and_forgotten_after_it() -> None:
    profile = make_profile()
    window = profile.security.signature_window_seconds
    wall = Wall(1_767_578_400.5)
    verifier = SignatureVerifier(wall=wall)
    start = int(wall.now)
    for i in range(50):
        verifier.verify(profile, "GET", PATH, _headers(f"nonce-{i:04d}", start), b"")
    with pytest.raises(NonceReplayed):
        verifier.verify(profile, "GET", PATH, _headers("nonce-0007", start), b"")

    wall.now += window - 1  # the first requests' timestamps are still fresh
    with pytest.raises(NonceReplayed):
        verifier.verify(profile, "GET", PATH, _headers("nonce-0007", start), b"")

    wall.now += 3  # every first-second nonce is now older than the window
    with pytest.raises(TimestampStale):  # a replay of the old request is stale anyway
        verifier.verify(profile, "GET", PATH, _headers("nonce-0007", start), b"")
    verifier.verify(profile, "GET", PATH, _headers("nonce-late-1", int(wall.now)), b"")
    assert len(verifier._seen) == 1  # the 50 expired entries were dropped
