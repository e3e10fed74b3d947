"""What the HTTP front door's protections cost, in process (no sockets).

``nonce_memory``: bytes per remembered nonce in ``SignatureVerifier`` (kept until the
request's timestamp is stale), measured with tracemalloc over N signed requests; the
baseline is the previous layout measured in the same run (an insertion-ordered dict of
64-bit hash -> arrival second, forgotten ``window`` after arrival, which let a request
stamped in the future be replayed).

``guard``: the CPU per request of :class:`simulator.http.guard.RequestGuard` (Host, Origin
and the control API's checks) in front of a handler that does nothing, for a typical
signed bank API request; baseline: the bare handler, same run.

Example::

    python -m bench.run --only http_guard
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from typing import Any

from bench.common import Context, Figure
from contracts.signing import sign_headers
from simulator.config import load_profile
from simulator.http.guard import RequestGuard
from simulator.http.signing import SignatureVerifier

NAME = "http_guard"
APP, SECRET, PATH = "demo-platform", "banksim-dev-secret", "/api/v1/accounts/x"
START = 1_767_578_400.5


def _headers(count: int) -> list[dict[str, str]]:
    out = []
    for i in range(count):
        signed = sign_headers(APP, SECRET, "GET", PATH, b"", timestamp=int(START),
                              nonce=f"bench-nonce-{i:09d}")
        out.append({k.lower(): v for k, v in signed.items()})
    return out


def _traced_bytes(fill: Any) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        keep = fill()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    del keep
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def nonce_memory(count: int) -> tuple[float, float]:
    """(bytes per nonce now, bytes per nonce of the previous layout)."""
    profile = load_profile(None)
    headers = _headers(count)

    def current() -> SignatureVerifier:
        verifier = SignatureVerifier(wall=lambda: START)
        for h in headers:
            verifier.verify(profile, "GET", PATH, h, b"")
        return verifier

    def previous() -> dict[int, int]:
        seen: dict[int, int] = {}
        for h in headers:  # the previous table: hash of (app id, nonce) -> arrival second
            seen[hash((h["x-app-id"], h["x-nonce"]))] = int(START)
        return seen

    return _traced_bytes(current) / count, _traced_bytes(previous) / count


def guard_cost(count: int) -> tuple[float, float]:
    """(us per request through the guard, us per request to the bare handler)."""
    async def handler(scope: Any, receive: Any, send: Any) -> None:
        return None

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    scope = {"type": "http", "method": "POST", "path": "/api/v1/accounts/open", "headers": [
        (b"host", b"127.0.0.1:8600"), (b"user-agent", b"python-httpx/0.28"), (b"accept", b"*/*"),
        (b"content-type", b"application/json"), (b"content-length", b"250"),
        (b"x-app-id", APP.encode()), (b"x-timestamp", b"1767578400"),
        (b"x-nonce", b"abcdefgh12345678"), (b"x-signature", b"0" * 64)]}
    guard = RequestGuard(handler, bank=None, bind_host="127.0.0.1")  # type: ignore[arg-type]

    async def timed(app: Any) -> float:
        started = time.perf_counter()
        for _ in range(count):
            await app(scope, receive, send)
        return (time.perf_counter() - started) / count * 1e6

    async def both() -> tuple[float, float]:
        await timed(guard)  # warm-up
        return await timed(guard), await timed(handler)

    return asyncio.run(both())


def run(ctx: Context) -> list[Figure]:
    figures: list[Figure] = []
    count = 20_000 if ctx.quick else 100_000
    if ctx.selects(NAME, "nonce_memory"):
        now, before = nonce_memory(count)
        ctx.log(f"{count} nonces: {now:.1f} B each, previous layout {before:.1f} B")
        figures.append(Figure(NAME, "nonce memory per nonce", now, "B", "previous layout", before,
                              target="<= baseline", passed=now <= before,
                              notes="kept until timestamp + window"))
    if ctx.selects(NAME, "guard"):
        guarded, bare = guard_cost(count)
        ctx.log(f"guard {guarded:.2f} us/request, bare handler {bare:.2f} us")
        figures.append(Figure(NAME, "request through the guard", guarded, "us", "bare handler",
                              bare, notes=f"guard cost {guarded - bare:.2f} us a request"))
    return figures
