"""HTTP fault decisions: the profile's rules first (deterministic), then seeded rates.

The decision is a pure function of the profile, the seed and the request's facts, and
the draws are keyed by (seed, platform, operation, serial, attempt) rather than taken
from a shared random stream, so the outcome of one request never depends on how other
requests interleaved with it: same profile, seed and requests -> same faults.

Example::

    d = decide(profile.http_faults, seed, RequestFacts("open_account", "POST",
               "/api/v1/accounts/open", "demo", "S-BUSY-1", {}, attempt=1))
    d.error  # "3028" with the default profile's magic-serial rule
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

from simulator.config import FaultMatch, HttpFaults


@dataclass(frozen=True)
class RequestFacts:
    operation: str
    method: str
    path: str
    app_id: str
    serial: str
    body: dict[str, Any]
    attempt: int


@dataclass(frozen=True)
class Decision:
    error: str | None = None
    latency_ms: float = 0.0
    hold_ms: int = 0
    lose_response: bool = False
    rule: str | None = None  # which rule or rate decided, for the timeline

    @property
    def is_fault(self) -> bool:
        return bool(self.error or self.hold_ms or self.lose_response)


NO_FAULT = Decision()


def draw(seed: int, *parts: object) -> float:
    """A uniform number in [0, 1) determined by the seed and the parts."""
    key = "|".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64


def _matches(match: FaultMatch, facts: RequestFacts) -> bool:
    if match.operation is not None and facts.operation not in match.operation:
        return False
    if match.method is not None and match.method.upper() != facts.method:
        return False
    if match.app_id is not None and match.app_id != facts.app_id:
        return False
    if match.path is not None and not re.fullmatch(match.path, facts.path):
        return False
    if match.serial is not None and not re.fullmatch(match.serial, facts.serial):
        return False
    if match.attempt is not None and facts.attempt > match.attempt:
        return False
    for field, pattern in (match.body or {}).items():
        value = facts.body.get(field)
        if value is None or not re.fullmatch(pattern, str(value)):
            return False
    return True


def _latency(faults: HttpFaults, seed: int, key: tuple[object, ...]) -> float:
    lat = faults.latency
    if lat.distribution == "fixed":
        return float(lat.ms)
    if lat.distribution == "uniform":
        return lat.min_ms + (lat.max_ms - lat.min_ms) * draw(seed, "latency", *key)
    if lat.distribution == "lognormal" and lat.median_ms > 0:
        # Box-Muller from two keyed uniforms: a normal deviate without a shared RNG.
        u1 = max(draw(seed, "latency-1", *key), 1e-12)
        u2 = draw(seed, "latency-2", *key)
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
        return float(lat.median_ms * math.exp(lat.sigma * z))
    return 0.0


def attempt_matters(faults: HttpFaults, facts: RequestFacts) -> bool:
    """Whether the attempt number could change this request's decision at all.

    Keyed draws (rates, random latency) include it; a rule only when it has an ``attempt``
    condition and the request meets the rest of it (checked as a first attempt). When it
    cannot matter the bank need not count the serial's attempts, so the count stays small
    under load instead of holding every serial ever sent.
    """
    rates = faults.rates
    if (rates.error.rate or rates.lose_response or rates.hold.rate
            or faults.latency.distribution in ("uniform", "lognormal")):
        return True
    first = RequestFacts(facts.operation, facts.method, facts.path, facts.app_id, facts.serial,
                         facts.body, attempt=1)
    for rule in faults.rules:
        counts = rule.match.attempt is not None or (rule.not_ is not None and rule.not_.attempt is not None)
        if counts and _matches(rule.match, first):
            return True
    return False


def decide(faults: HttpFaults, seed: int, facts: RequestFacts) -> Decision:
    key = (facts.app_id, facts.operation, facts.serial, facts.attempt)
    latency = _latency(faults, seed, key)
    for index, rule in enumerate(faults.rules):
        if _matches(rule.match, facts) and not (rule.not_ and _matches(rule.not_, facts)):
            action = rule.action
            return Decision(
                error=action.error,
                latency_ms=latency + (action.latency_ms or 0),
                hold_ms=action.hold_ms or 0,
                lose_response=action.lose_response,
                rule=rule.name or f"rule {index}",
            )
    rates = faults.rates
    if rates.error.rate and draw(seed, "error", *key) < rates.error.rate:
        return Decision(error=rates.error.code, latency_ms=latency, rule="rate: error")
    if rates.lose_response and draw(seed, "lose", *key) < rates.lose_response:
        return Decision(lose_response=True, latency_ms=latency, rule="rate: lose_response")
    if rates.hold.rate and draw(seed, "hold", *key) < rates.hold.rate:
        return Decision(hold_ms=rates.hold.ms, latency_ms=latency, rule="rate: hold")
    return Decision(latency_ms=latency) if latency else NO_FAULT
