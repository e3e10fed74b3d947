"""A small HTTP/1.1 keep-alive load generator on asyncio streams (uvloop when importable).

Requests are pre-built byte strings. ``concurrency`` connections each send one request,
read the whole response (status line, headers, ``Content-Length`` or chunked body), record
the latency and take the next request, until the requests run out or the wall-time cap is
reached. A server answering ``Connection: close`` gets a fresh connection (connect time is
counted in the wall time, not in the latency). Connections are opened before the clock
starts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.common import percentile

BROKEN = "broken"


@dataclass
class LoadResult:
    sent: int
    completed: int
    errors: int
    statuses: dict[str, int]
    elapsed_s: float
    latencies_s: list[float] = field(repr=False)
    responses: list[tuple[int, bytes] | None] = field(repr=False)
    client_cpu_s: float = 0.0

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith("2"))

    @property
    def throughput(self) -> float:
        """Completed responses (any status) per second."""
        return self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok_throughput(self) -> float:
        """2xx responses per second."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency_ms(self, p: float) -> float:
        return percentile(self.latencies_s, p) * 1000.0

    @property
    def max_ms(self) -> float:
        return max(self.latencies_s, default=float("nan")) * 1000.0

    def summary(self) -> str:
        hist = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return (f"{self.completed} responses in {self.elapsed_s:.2f} s = "
                f"{self.throughput:,.0f} req/s; p50 {self.latency_ms(50):.2f} ms, "
                f"p90 {self.latency_ms(90):.2f} ms, p99 {self.latency_ms(99):.2f} ms, "
                f"max {self.max_ms:.2f} ms; errors {self.errors} ({hist})")


class _Shared:
    def __init__(self, total: int, stop: threading.Event | None = None) -> None:
        self.next = 0
        self.total = total
        self.deadline = float("inf")
        self.stop = stop
        self.statuses: Counter[str] = Counter()

    def take(self) -> int | None:
        if self.next >= self.total or time.perf_counter() >= self.deadline or (
                self.stop is not None and self.stop.is_set()):
            return None
        index = self.next
        self.next += 1
        return index


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = -1
    chunked = False
    close = lines[0].startswith(b"HTTP/1.0")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if chunked:
        body = await _read_chunked(reader)
    elif length >= 0:
        body = await reader.readexactly(length)
    elif close:
        body = await reader.read()
    else:
        body = b""
    return status, body, close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _connect(host: str, port: int) -> Conn | None:
    try:
        return await asyncio.open_connection(host, port)
    except OSError:
        return None


def _close(conn: Conn | None) -> None:
    if conn is not None:
        conn[1].close()


async def _worker(conn: Conn | None, host: str, port: int, requests: Sequence[bytes],
                  shared: _Shared, start: asyncio.Event, timeout_s: float,
                  latencies: list[float], responses: list[tuple[int, bytes] | None],
                  keep_bodies: bool) -> None:
    await start.wait()
    perf = time.perf_counter
    while (index := shared.take()) is not None:
        if conn is None and (conn := await _connect(host, port)) is None:
            shared.statuses[BROKEN] += 1
            return
        reader, writer = conn
        t0 = perf()
        try:
            writer.write(requests[index])
            async with asyncio.timeout(timeout_s):
                status, body, close = await _read_response(reader)
        except (OSError, EOFError, ValueError, IndexError, TimeoutError,
                asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            shared.statuses[BROKEN] += 1
            _close(conn)
            conn = None
            continue
        latencies[index] = perf() - t0
        shared.statuses[str(status)] += 1
        responses[index] = (status, body if keep_bodies else b"")
        if close:
            _close(conn)
            conn = None
    _close(conn)


async def _run(host: str, port: int, requests: Sequence[bytes], concurrency: int,
               max_time_s: float, timeout_s: float, keep_bodies: bool,
               stop: threading.Event | None = None) -> LoadResult:
    shared = _Shared(len(requests), stop)
    latencies = [-1.0] * len(requests)
    responses: list[tuple[int, bytes] | None] = [None] * len(requests)
    start = asyncio.Event()
    conns = await asyncio.gather(*(_connect(host, port) for _ in range(concurrency)))
    tasks = [asyncio.create_task(_worker(conn, host, port, requests, shared, start, timeout_s,
                                         latencies, responses, keep_bodies))
             for conn in conns]
    await asyncio.sleep(0)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    shared.deadline = t0 + max_time_s
    start.set()
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), max_time_s + timeout_s + 5)
    except TimeoutError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    statuses = dict(shared.statuses)
    completed = sum(v for k, v in statuses.items() if k != BROKEN)
    errors = sum(v for k, v in statuses.items() if not k.startswith("2"))
    return LoadResult(sent=shared.next, completed=completed, errors=errors, statuses=statuses,
                      elapsed_s=elapsed, latencies_s=[x for x in latencies if x >= 0],
                      responses=responses, client_cpu_s=cpu)


def run_load(port: int, requests: Sequence[bytes], *, concurrency: int = 32,
             max_time_s: float = 60.0, timeout_s: float = 10.0, host: str = "127.0.0.1",
             keep_bodies: bool = False, stop: threading.Event | None = None) -> LoadResult:
    """Send ``requests`` (each at most once) over ``concurrency`` keep-alive connections.

    Stops when every request is answered, ``max_time_s`` has passed or ``stop`` (set by
    another thread) is set; ``timeout_s`` bounds each response. ``responses[i]`` holds
    request *i*'s status and (``keep_bodies``) body.
    """
    coro = _run(host, port, requests, concurrency, max_time_s, timeout_s, keep_bodies, stop)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def uses_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
