"""Shared pieces of the benchmark suite: figures, the run context, servers, percentiles.

Every benchmark module ``bench/bench_*.py`` exposes ``run(ctx: Context) -> list[Figure]``.
A :class:`Figure` always carries the baseline measured in the same run and the ratio
``value / baseline_value``; ``passed`` is ``None`` for figures without a target.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
HEALTH_POLL_S = 0.005
READY_TIMEOUT_S = 15.0


@dataclass
class Figure:
    bench: str
    name: str
    value: float | None
    unit: str
    baseline_name: str
    baseline_value: float | None
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None:
            self.ratio = ratio(self.value, self.baseline_value)

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "SKIPPED"
        if self.passed is None:
            return "info"
        return "ok" if self.passed else "MISSED"


_OPS = {
    ">=": lambda v, b: v >= b,
    ">": lambda v, b: v > b,
    "<=": lambda v, b: v <= b,
    "<": lambda v, b: v < b,
    "==": lambda v, b: v == b,
}


def check(value: float | None, op: str, bound: float, unit: str = "",
          subject: str = "") -> tuple[str, bool | None]:
    """Target text and verdict, e.g. ``check(3120.0, ">=", 3000, "req/s")``."""
    text = " ".join(part for part in (subject, op, f"{bound:g}", unit) if part)
    if value is None:
        return text, None
    return text, bool(_OPS[op](value, bound))


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


@dataclass
class Context:
    quick: bool = False
    only: str | None = None
    python: str = sys.executable
    log_lines: list[str] = field(default_factory=list)

    def selects(self, module: str, part: str) -> bool:
        """Whether ``--only`` selects this part of a benchmark module."""
        return self.only is None or self.only in f"{module}.{part}"

    def log(self, message: str) -> None:
        self.log_lines.append(message)
        print(f"  · {message}", flush=True)


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (``p`` in 0..100) of unsorted ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def free_port() -> int:
    """A port the kernel considers free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health_status(port: int, timeout: float = 1.0) -> int | None:
    """Status code of ``GET /health`` on 127.0.0.1:port, ``None`` when nothing answers."""
    request = (f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               "Connection: close\r\n\r\n").encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(request)
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    parts = data.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])


class ServerError(RuntimeError):
    pass


@dataclass
class Server:
    argv: list[str]
    port: int
    proc: subprocess.Popen[bytes]
    ready_s: float
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_text(self, limit: int = 4000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-limit:]

    def cpu_seconds(self) -> float | None:
        """User+system CPU time of the server process so far (Linux /proc), else ``None``."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextlib.contextmanager
def start_server(argv: list[str], port: int, *, cwd: Path = ROOT,
                 timeout: float = READY_TIMEOUT_S) -> Iterator[Server]:
    """Launch ``argv`` and wait for ``GET /health`` == 200 on ``port``.

    ``ready_s`` is the time from just before launch to the first 200, polling every 5 ms.
    The process is stopped (SIGINT, then SIGKILL) when the block exits. Raises
    :class:`ServerError` with the server's stderr when it dies or is not ready in time.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    stderr_file: IO[bytes] = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below
        prefix="bench-server-", suffix=".stderr", delete=False)
    stderr_path = Path(stderr_file.name)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=stderr_file, stderr=stderr_file)
    try:
        ready_s = _wait_ready(proc, port, started, timeout)
        server = Server(argv, port, proc, ready_s, stderr_path)
        if ready_s < 0:
            reason = (f"exited with {proc.returncode}" if proc.poll() is not None
                      else f"not ready after {timeout:g} s")
            _stop(proc)
            raise ServerError(f"server {' '.join(argv)} {reason}; stderr:\n"
                              f"{server.stderr_text()}")
        yield server
    finally:
        _stop(proc)
        stderr_file.close()
        stderr_path.unlink(missing_ok=True)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, started: float,
                timeout: float) -> float:
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            return -1.0
        if health_status(port, timeout=max(0.05, deadline - time.perf_counter())) == 200:
            return time.perf_counter() - started
        time.sleep(HEALTH_POLL_S)
    return -1.0


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if value == 0 or abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip()
