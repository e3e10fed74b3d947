"""Account openings over loopback, and how fast ``banksim serve`` is ready.

``throughput``: one ``banksim serve`` process answers N pre-built signed openings over 32
keep-alive connections; the baseline app (same stack, trivial handler) answers the same
bodies and headers in the same run with the same load generator. Every opening must come
back HTTP 200 with ``code == "0000"``.

``ready``: launch to first ``GET /health`` == 200, median of several launches, alternating
``banksim serve --ephemeral`` with the baseline app under uvicorn.

Not a runner figure, a tool for finding where an opening's time goes:
``python -m bench.bench_openings --in-process [N]`` calls banksim's ASGI app and the
baseline app in this process (no sockets, no uvicorn), N openings in batches of 32
concurrent requests, and prints the CPU per request of each. Run it under a profiler
(e.g. ``py-spy record -- python -m bench.bench_openings --in-process 20000``).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Context, Figure, ServerError, check, free_port, median, start_server
from bench.loadgen import LoadResult, run_load
from bench.workload import (
    BASELINE_PATH,
    OPEN_PATH,
    banksim_argv,
    banksim_unavailable,
    baseline_argv,
    opening_failures,
    run_tag,
    signed_requests,
)

NAME = "openings"
CONCURRENCY = 32
BASELINE = "baseline app"

ArgvFor = Callable[[int], list[str]]


@dataclass
class Measured:
    load: LoadResult
    warmup_failures: dict[str, int]
    failures: dict[str, int]
    server_cpu_s: float | None

    @property
    def cpu_per_request_us(self) -> float | None:
        """Server CPU per answered request: steadier than req/s when the cores are shared."""
        if self.server_cpu_s is None or not self.load.completed:
            return None
        return 1e6 * self.server_cpu_s / self.load.completed

    @property
    def failed(self) -> int:
        return sum(self.failures.values()) + sum(self.warmup_failures.values())

    def cpu(self) -> str:
        load = self.load
        server = ("?" if self.server_cpu_s is None
                  else f"{100 * self.server_cpu_s / load.elapsed_s:.0f}%")
        return f"server CPU {server}, loadgen CPU {100 * load.client_cpu_s / load.elapsed_s:.0f}%"

    def notes(self) -> str:
        load = self.load
        return (f"p90 {load.latency_ms(90):.1f} ms, max {load.max_ms:.1f} ms; "
                f"{load.completed}/{len(load.responses)} answered in {load.elapsed_s:.2f} s; "
                + self.cpu())


def _measure(ctx: Context, argv_for: ArgvFor, path: str, label: str,
             n: int, warm: int) -> Measured:
    port = free_port()
    with start_server(argv_for(port), port) as server:
        tag = run_tag()
        warmup = signed_requests(path, port, 0, warm, tag)
        requests = signed_requests(path, port, warm, n, tag)
        cap = 30.0 if ctx.quick else 120.0
        warm_result = run_load(port, warmup, concurrency=CONCURRENCY, max_time_s=cap,
                               keep_bodies=True)
        cpu0 = server.cpu_seconds()
        result = run_load(port, requests, concurrency=CONCURRENCY, max_time_s=cap,
                          keep_bodies=True)
        cpu1 = server.cpu_seconds()
        alive = server.proc.poll() is None
        if not alive:
            ctx.log(f"{label} died during the run; stderr:\n{server.stderr_text()}")
    check_fn = opening_failures if path == OPEN_PATH else _baseline_failures
    measured = Measured(result, check_fn(warm_result.responses), check_fn(result.responses),
                        None if cpu0 is None or cpu1 is None else cpu1 - cpu0)
    ctx.log(f"{label}: {result.summary()}; {measured.cpu()}")
    if measured.failed:
        ctx.log(f"{label}: failures {measured.failures}, warm-up {measured.warmup_failures}")
    return measured


def _baseline_failures(responses: list[tuple[int, bytes] | None]) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for item in responses:
        if item is None or item[0] != 200 or b'"code":"0000"' not in item[1]:
            key = "no response" if item is None else f"HTTP {item[0]}"
            reasons[key] = reasons.get(key, 0) + 1
    return reasons


def _ok_rate(m: Measured) -> float:
    good = len(m.load.responses) - sum(m.failures.values())
    return good / m.load.elapsed_s if m.load.elapsed_s > 0 else 0.0


def _throughput(ctx: Context, unavailable: str | None) -> list[Figure]:
    n, warm = (3000, 300) if ctx.quick else (20000, 1000)
    base = _measure(ctx, baseline_argv, BASELINE_PATH, BASELINE, n, warm)
    bank: Measured | None = None
    notes = unavailable or ""
    if unavailable is None:
        try:
            bank = _measure(ctx, banksim_argv, OPEN_PATH, "banksim", n, warm)
        except ServerError as exc:
            notes = str(exc).splitlines()[0]
            ctx.log(str(exc))
    rate = _ok_rate(bank) if bank else None
    base_rate = _ok_rate(base)
    p50 = bank.load.latency_ms(50) if bank else None
    p99 = bank.load.latency_ms(99) if bank else None
    failed = float(bank.failed) if bank else None
    load_note = f"N={n}, C={CONCURRENCY}, warm-up {warm}; " + (bank.notes() if bank else notes)
    ratio_fig = Figure(NAME, "openings/s vs baseline", rate, "req/s", f"{BASELINE} req/s",
                       base_rate, None, "ratio >= 0.4", None, f"baseline: {base.notes()}")
    if ratio_fig.ratio is not None:
        ratio_fig.passed = ratio_fig.ratio >= 0.4
    return [
        Figure(NAME, "openings/s (signed, 1 process)", rate, "req/s", f"{BASELINE} req/s",
               base_rate, None, *check(rate, ">=", 3000, "req/s"), load_note),
        ratio_fig,
        Figure(NAME, "latency p50", p50, "ms", f"{BASELINE} p50", base.load.latency_ms(50)),
        Figure(NAME, "latency p99", p99, "ms", f"{BASELINE} p99", base.load.latency_ms(99),
               None, *check(p99, "<", 20, "ms")),
        Figure(NAME, "failed openings", failed, "req", f"{BASELINE} failures",
               float(base.failed), None, *check(failed, "==", 0),
               _failure_note(bank) if bank else notes),
        Figure(NAME, "server CPU per request", bank.cpu_per_request_us if bank else None, "µs",
               f"{BASELINE} CPU per request", base.cpu_per_request_us, None, "", None,
               "server process CPU (/proc) ÷ responses; the ratio of these is what the "
               "throughput ratio tends to when the server has a whole core"),
    ]


def _failure_note(m: Measured) -> str:
    if not m.failed:
        return "every response HTTP 200, code 0000, with an account_no"
    merged = dict(m.failures)
    for key, count in m.warmup_failures.items():
        merged[key] = merged.get(key, 0) + count
    return "; ".join(f"{key}: {count}" for key, count in sorted(merged.items()))


def _ready_once(argv_for: ArgvFor) -> float:
    port = free_port()
    with start_server(argv_for(port), port) as server:
        return server.ready_s


def _ready(ctx: Context, unavailable: str | None) -> list[Figure]:
    launches = 3 if ctx.quick else 5
    bank_times: list[float] = []
    base_times: list[float] = []
    notes = unavailable or ""
    for _ in range(launches):
        base_times.append(_ready_once(baseline_argv))
        if unavailable is None and not notes:
            try:
                bank_times.append(_ready_once(banksim_argv))
            except ServerError as exc:
                notes = str(exc).splitlines()[0]
                ctx.log(str(exc))
    ctx.log("ready s: banksim [" + ", ".join(f"{t:.3f}" for t in bank_times)
            + "], baseline [" + ", ".join(f"{t:.3f}" for t in base_times) + "]")
    value = median(bank_times) if bank_times and not notes else None
    if not notes:
        notes = (f"median of {launches} launches each, alternating; poll every 5 ms; "
                 f"banksim min {min(bank_times):.3f} / max {max(bank_times):.3f} s")
    return [Figure(NAME, "serve ready (launch → /health 200)", value, "s",
                   "baseline app under uvicorn", median(base_times), None,
                   *check(value, "<=", 1.0, "s"), notes)]


def run(ctx: Context) -> list[Figure]:
    parts = [(part, fn) for part, fn in (("throughput", _throughput), ("ready", _ready))
             if ctx.selects(NAME, part)]
    unavailable = banksim_unavailable() if parts else None
    if unavailable:
        ctx.log(f"banksim serve unavailable: {unavailable}")
    figures: list[Figure] = []
    for _, fn in parts:
        figures += fn(ctx, unavailable)
    return figures


# --- in process -----------------------------------------------------------------------------

Asgi = Callable[[dict[str, Any], Any, Any], Any]


async def _asgi_post(app: Asgi, path: str, request: bytes) -> int:
    """POST one pre-built request (``workload.http_request`` bytes) to ``app``; its status."""
    head, _, body = request.partition(b"\r\n\r\n")
    headers = [tuple(line.split(b": ", 1)) for line in head.split(b"\r\n")[1:]]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80),
             "headers": [(name.lower(), value) for name, value in headers]}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _in_process(app: Asgi, path: str, n: int) -> float:
    async def send_all(requests: list[bytes]) -> None:
        for i in range(0, len(requests), CONCURRENCY):
            statuses = await asyncio.gather(*(_asgi_post(app, path, r)
                                              for r in requests[i:i + CONCURRENCY]))
            if set(statuses) != {200}:
                raise RuntimeError(f"{path}: statuses {sorted(set(statuses))}")

    tag = run_tag()
    await send_all(signed_requests(path, 80, 0, 640, tag))
    timed = signed_requests(path, 80, 640, n, tag)
    gc.collect()
    gc.freeze()  # as `banksim serve` does after start-up
    start = time.process_time()
    await send_all(timed)
    return (time.process_time() - start) / n * 1e6


def in_process(n: int) -> None:
    """Print the CPU per request of banksim's app and of the baseline app, in process."""
    from bench.baseline_app import app as baseline
    from simulator.bank import Bank
    from simulator.config import load_profile
    from simulator.http.app import create_app

    state = Path(tempfile.mkdtemp(prefix="banksim-bench-"))
    bank = Bank(load_profile(None), state, group_commit=True)
    try:
        gc.set_threshold(50_000, 20, 20)
        ours = asyncio.run(_in_process(create_app(bank), OPEN_PATH, n))
        base = asyncio.run(_in_process(baseline, BASELINE_PATH, n))
    finally:
        bank.destroy()
    print(f"in process, {n} requests, {CONCURRENCY} at a time: banksim {ours:.0f} µs CPU per "
          f"opening, baseline app {base:.0f} µs per request ({ours / base:.2f}×)")


if __name__ == "__main__":
    if sys.argv[1:2] != ["--in-process"]:
        sys.exit("usage: python -m bench.bench_openings --in-process [N]")
    in_process(int(sys.argv[2]) if len(sys.argv) > 2 else 5000)
