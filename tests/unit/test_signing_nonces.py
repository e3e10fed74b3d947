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


def test_a_future_stamped_nonce_is_kept_until_its_timestamp_is_stale() -> None:
    """Stamped +window, a request stays fresh until arrival + 2 x window: so does its nonce."""
    profile = make_profile()
    window = profile.security.signature_window_seconds
    wall = Wall(1_767_578_400.5)
    verifier = SignatureVerifier(wall=wall)
    future = int(wall.now) + window
    verifier.verify(profile, "GET", PATH, _headers("nonce-future", future), b"")

    for later in (window + 2, 2 * window - 1):  # past "arrival + window", still fresh
        wall.now = 1_767_578_400.5 + later
        with pytest.raises(NonceReplayed):
            verifier.verify(profile, "GET", PATH, _headers("nonce-future", future), b"")

    wall.now = future + window + 1.5  # stale now: the replay is 1004, the nonce forgotten
    with pytest.raises(TimestampStale):
        verifier.verify(profile, "GET", PATH, _headers("nonce-future", future), b"")
    verifier.verify(profile, "GET", PATH, _headers("nonce-now-0001", int(wall.now)), b"")
    assert verifier.remembered == 1


def test_the_nonce_memory_holds_only_what_could_still_be_fresh() -> None:
    """Bounded: after any mix of timestamps, only nonces whose timestamp + window is not
    past are held, however the requests were ordered."""
    profile = make_profile()
    window = profile.security.signature_window_seconds
    base = 1_767_578_400
    wall = Wall(base + 0.5)
    verifier = SignatureVerifier(wall=wall)
    stamps = [base + offset for offset in (window, 1 - window, 0, window // 2, -window // 2)]
    for second in range(60):
        wall.now = base + second + 0.5
        for i, ts in enumerate(stamps):
            verifier.verify(profile, "GET", PATH, _headers(f"nonce-{second:03d}-{i}", ts + second), b"")
    wall.now = base + 60 + window + 0.5  # every stamp up to base + 59 + window/2 is stale
    verifier.verify(profile, "GET", PATH, _headers("nonce-probe-01", int(wall.now)), b"")
    expected_live = 1 + sum(1 for second in range(60) for ts in stamps
                            if ts + second + window >= int(wall.now))
    assert verifier.remembered == expected_live
