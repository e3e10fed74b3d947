"""Mixed load on one `banksim serve`: signed API clients and SFTP uploaders at once.

One server (``--clock manual``, a profile with a funded 98 account), loopback, free ports:

* baseline: ``C`` keep-alive connections send ``GET /health`` for ``T`` seconds (the same
  server, same load generator, same run);
* load: ``C`` connections send signed account openings (each unique) for ``T`` seconds while
  ``U`` SFTP uploaders (asyncssh, one connection each) upload disbursement batch files of
  ``R`` records, each to a ``.part`` name then renamed, back to back; the server's RSS is
  sampled every 0.25 s, and ``GET /_admin/memory`` (RSS, SQLite's heap, gc objects) every 2 s.
* verification: every opening answered 200 is queried back by its serial (the same
  account); the clock is advanced 1 h; every uploaded batch must be RETURNED, none
  rejected; the ledger invariants must hold.

C=50, U=10, R=20, T=60 s (quick: T=10 s). Every loop is bounded in count and wall time.
Figures: signed requests/s vs ``/health`` requests/s; latency p50/p95/p99 vs ``/health``;
errors by kind (none expected: the default profile injects faults only for magic values
the workload never sends); lost writes; batches; RSS first vs last quarter and its slope
(information only); the leak figure: RSS minus SQLite's own heap, first vs last quarter.

Why RSS alone is no leak check: the store's page cache (``PRAGMA cache_size``, 96 MiB) fills
as the database grows during the run, so RSS rises with the data until the cap: bounded
memory, SQLite's. ``sqlite3_memory_used()`` counts exactly that memory (page caches,
statements, schema), so what is left once it is subtracted is everything else: Python's
objects, buffers, the allocator's own overhead. That remainder must stay flat; the number of
objects the garbage collector tracks is shown beside it, to tell a leak of Python objects
from one outside them.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import asyncssh
import httpx

from bench.common import Context, Figure, ServerError, check, free_port, start_server
from bench.loadgen import LoadResult, run_load
from bench.workload import (
    APP_ID,
    OPEN_PATH,
    SECRET,
    banksim_exe,
    banksim_unavailable,
    http_request,
    opening_failures,
    run_tag,
    signed_requests,
)
from contracts.codec import encode_file, load_layout
from contracts.signing import sign_headers
from simulator.config import load_profile

NAME = "load"
CLIENTS = 50
UPLOADERS = 10
RECORDS = 20
RATE_GUESS = 3000  # requests/s the prebuilt request list must cover (it is cut by time anyway)
SFTP_USER, SFTP_PASSWORD = "demo", "banksim-dev-sftp"
DAY = date(2026, 1, 5)
RSS_EVERY_S = 0.25
MEMORY_EVERY_S = 2.0  # GET /_admin/memory walks every gc object: a few times, not hammering


def _profile(path: Path) -> None:
    platform = load_profile(None).as_dict()["platforms"][0]
    platform["supervision_opening_balance"] = "100000000.00"
    path.write_text(json.dumps({"bank": {"open_active": True}, "platforms": [platform]}), "utf-8")


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Sampler:
    pid: int
    samples: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self, seconds: float) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(RSS_EVERY_S) and time.monotonic() - t0 < seconds + 30:
            rss = _rss_mb(self.pid)
            if rss is not None:
                self.samples.append((time.monotonic() - t0, rss))

    def stop(self) -> None:
        self._stop.set()

    def quarters(self) -> tuple[float, float]:
        return _quarters(self.samples)

    def slope_mb_per_min(self) -> float:
        return _slope_per_min(self.samples)


def _quarters(samples: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean of the first and of the last quarter of ``(t, value)`` samples (nan if none)."""
    if not samples:
        return float("nan"), float("nan")
    n = max(1, len(samples) // 4)
    first = [v for _, v in samples[:n]]
    last = [v for _, v in samples[-n:]]
    return sum(first) / len(first), sum(last) / len(last)


def _slope_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(t, value)`` samples, per minute."""
    if len(samples) < 2:
        return 0.0
    xs = [t for t, _ in samples]
    ys = [v for _, v in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


@dataclass
class MemorySampler:
    """``GET /_admin/memory`` every :data:`MEMORY_EVERY_S` s: RSS and SQLite's heap read
    together by the server, so their difference is one moment's."""

    port: int
    views: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self, seconds: float) -> None:
        t0 = time.monotonic()
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}/_admin", timeout=10) as admin:
            # First reading at once, then every MEMORY_EVERY_S; bounded by the run's time.
            while time.monotonic() - t0 < seconds + 30:
                try:
                    answer = admin.get("/memory")
                    answer.raise_for_status()
                    self.views.append((time.monotonic() - t0, answer.json()))
                except httpx.HTTPError as exc:
                    self.errors[type(exc).__name__] += 1
                if self._stop.wait(MEMORY_EVERY_S):
                    break

    def stop(self) -> None:
        self._stop.set()

    def series(self, key: str) -> list[tuple[float, float]]:
        return [(t, float(v[key])) for t, v in self.views if v.get(key) is not None]

    def non_sqlite(self) -> list[tuple[float, float]]:
        """RSS minus SQLite's heap, MB: the leak figure's samples."""
        return [(t, float(v["rss_mb"]) - float(v["sqlite_heap_mb"])) for t, v in self.views
                if v.get("rss_mb") is not None and v.get("sqlite_heap_mb") is not None]


@dataclass
class Uploads:
    sent: list[str] = field(default_factory=list)  # batch numbers renamed to their final name
    errors: Counter[str] = field(default_factory=Counter)


def _batch_numbers(uploader: int) -> Any:
    k = 0
    while True:
        k += 1
        no = f"{uploader + 1}{k:05d}"
        if not re.fullmatch(r".*9[0-9][0-9]8", no):  # the profile's "late return" magic value
            yield no


async def _uploader(index: int, port: int, accounts: list[tuple[str, str]], seconds: float,
                    out: Uploads) -> None:
    layout = load_layout("disbursement_request")
    deadline = time.monotonic() + seconds
    numbers = _batch_numbers(index)
    try:
        async with asyncssh.connect("127.0.0.1", port, username=SFTP_USER, password=SFTP_PASSWORD,
                                    known_hosts=None, client_keys=None, agent_path=None, config=None,
                                    gss_host=None) as conn, conn.start_sftp_client() as sftp:
            while time.monotonic() < deadline:
                no = next(numbers)
                details: list[dict[str, Any]] = [
                    {"seq": i, "serial": f"L{no}R{i}", "account_no": accounts[i % len(accounts)][0],
                     "account_name": accounts[i % len(accounts)][1], "amount": 100 + i, "memo": ""}
                    for i in range(1, RECORDS + 1)]
                header = {"batch_no": no, "business_date": DAY, "merchant": "DEMO01", "kind": "DF",
                          "record_count": RECORDS, "total_amount": sum(d["amount"] for d in details),
                          "account_no": "98010078801000001"}
                name = f"DF_DEMO01_{DAY:%Y%m%d}_{no}.txt"
                try:
                    async with asyncio.timeout(30):
                        async with sftp.open(f"/upload/batches/{name}.part", "wb") as f:
                            await f.write(encode_file(layout, header, details))
                        await sftp.rename(f"/upload/batches/{name}.part", f"/upload/batches/{name}")
                    out.sent.append(no)
                except (asyncssh.Error, OSError, TimeoutError) as exc:
                    out.errors[type(exc).__name__] += 1
    except (asyncssh.Error, OSError) as exc:
        out.errors[f"connect: {type(exc).__name__}"] += 1


def _uploads_thread(port: int, accounts: list[tuple[str, str]],
                    seconds: float) -> tuple[threading.Thread, Uploads]:
    out = Uploads()

    async def all_of_them() -> None:
        await asyncio.gather(*(_uploader(i, port, accounts, seconds, out) for i in range(UPLOADERS)))

    thread = threading.Thread(target=lambda: asyncio.run(all_of_them()), daemon=True)
    return thread, out


def _signed_get(path: str, port: int) -> bytes:
    return http_request("GET", path, port, b"", sign_headers(APP_ID, SECRET, "GET", path, b""))


@dataclass
class Verified:
    acked: int
    lost_openings: int
    batches_sent: int
    batches_returned: int
    rejected_files: int
    invariants_ok: bool
    notes: list[str]


def _verify(port: int, result: LoadResult, uploads: Uploads, ctx: Context) -> Verified:
    acked: dict[str, str] = {}  # serial -> account_no
    for item in result.responses:
        if item is not None and item[0] == 200:
            doc = json.loads(item[1])
            acked[doc["request_serial"]] = doc["data"]["account_no"]
    queries = [_signed_get(f"/api/v1/accounts/openings/{s}", port) for s in acked]
    back = run_load(port, queries, concurrency=CLIENTS, max_time_s=300, keep_bodies=True)
    lost = 0
    for serial, item in zip(acked, back.responses, strict=True):
        if item is None or item[0] != 200 or json.loads(item[1])["data"]["account_no"] != acked[serial]:
            lost += 1
    notes = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/_admin", timeout=600) as admin:
        admin.post("/clock/advance", json={"by": "1h"}).raise_for_status()
        batches = {b["batch_no"]: b["state"] for b in admin.get("/batches", params={"app_id": APP_ID}).json()}
        rejections = admin.get("/rejections").json()
        invariants = admin.get("/invariants").json()
    returned = sum(1 for no in uploads.sent if batches.get(no) == "RETURNED")
    if rejections:
        notes.append(f"rejections: {rejections[:3]}")
    ctx.log(f"verification: {len(acked)} acked openings queried back ({lost} lost), "
            f"{returned}/{len(uploads.sent)} batches returned, {len(rejections)} files rejected, "
            f"invariants {'ok' if invariants.get('ok') else invariants}")
    return Verified(len(acked), lost, len(uploads.sent), returned, len(rejections),
                    invariants.get("ok") is True, notes)


def _warm_accounts(port: int, tag: str) -> list[tuple[str, str]]:
    requests = signed_requests(OPEN_PATH, port, 10_000_000, 20, tag + "w")
    warm = run_load(port, requests, concurrency=4, max_time_s=30, keep_bodies=True)
    accounts = []
    for raw, item in zip(requests, warm.responses, strict=True):
        if item is not None and item[0] == 200:
            body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
            accounts.append((json.loads(item[1])["data"]["account_no"], body["name"]))
    return accounts


def run(ctx: Context) -> list[Figure]:
    if not ctx.selects(NAME, "mixed"):
        return []
    unavailable = banksim_unavailable()
    seconds = 10.0 if ctx.quick else 60.0
    if unavailable:
        return [Figure(NAME, "signed API req/s under mixed load", None, "req/s", "/health req/s", None,
                       notes=unavailable)]
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="banksim-load-") as tmp:
        profile, port_file = Path(tmp) / "profile.yaml", Path(tmp) / "ports.json"
        _profile(profile)
        argv = [str(banksim_exe()), "serve", "--host", "127.0.0.1", "--http-port", str(port),
                "--sftp-port", "0", "--port-file", str(port_file), "--state-dir", str(Path(tmp) / "state"),
                "--profile", str(profile), "--clock", "manual"]
        try:
            with start_server(argv, port) as server:
                sftp_port = int(json.loads(port_file.read_text())["sftp"])
                return _measure(ctx, server.pid, port, sftp_port, seconds)
        except ServerError as exc:
            ctx.log(str(exc))
            return [Figure(NAME, "signed API req/s under mixed load", None, "req/s", "/health req/s",
                           None, notes=str(exc).splitlines()[0])]


def _measure(ctx: Context, pid: int, port: int, sftp_port: int, seconds: float) -> list[Figure]:
    tag = run_tag()
    accounts = _warm_accounts(port, tag)
    n = int(seconds * RATE_GUESS)
    health = [http_request("GET", "/health", port, b"", {}) for _ in range(n * 2)]
    base_sampler = Sampler(pid)
    threading.Thread(target=base_sampler.run, args=(seconds,), daemon=True).start()
    baseline = run_load(port, health, concurrency=CLIENTS, max_time_s=seconds)
    base_sampler.stop()
    ctx.log(f"/health baseline: {baseline.summary()}")

    requests = signed_requests(OPEN_PATH, port, 0, n, tag)
    sampler = Sampler(pid)
    memory = MemorySampler(port)
    uploads_thread, uploads = _uploads_thread(sftp_port, accounts, seconds)
    threading.Thread(target=sampler.run, args=(seconds,), daemon=True).start()
    memory_thread = threading.Thread(target=memory.run, args=(seconds,), daemon=True)
    memory_thread.start()
    uploads_thread.start()
    result = run_load(port, requests, concurrency=CLIENTS, max_time_s=seconds, keep_bodies=True)
    memory.stop()  # before the uploaders' tail: the quarters cover the load, not its end
    uploads_thread.join(seconds + 60)
    sampler.stop()
    memory_thread.join(15)
    ctx.log(f"signed openings: {result.summary()}; SFTP: {len(uploads.sent)} batches, "
            f"errors {dict(uploads.errors)}")
    failures = opening_failures([r for r in result.responses if r is not None])
    verified = _verify(port, result, uploads, ctx)
    errors = sum(failures.values()) + sum(uploads.errors.values())
    lost = verified.lost_openings + (verified.batches_sent - verified.batches_returned)
    first, last = sampler.quarters()
    b_first, b_last = base_sampler.quarters()
    slope = sampler.slope_mb_per_min()
    kinds = {**failures, **{f"sftp {k}": v for k, v in uploads.errors.items()}}
    ctx.log("memory views (s: rss / sqlite heap / gc objects): " + ", ".join(
        f"{t:.0f}: {v.get('rss_mb')}/{v.get('sqlite_heap_mb')}/{v.get('gc_objects')}"
        for t, v in memory.views))
    return [
        Figure(NAME, "signed openings/s (+10 SFTP uploaders)", result.ok_throughput, "req/s",
               "/health req/s", baseline.ok_throughput, None, "", None,
               f"C={CLIENTS}, {seconds:g} s, {result.completed} answered; "
               f"{len(uploads.sent)} batches x {RECORDS} records uploaded meanwhile"),
        Figure(NAME, "latency p50", result.latency_ms(50), "ms", "/health p50", baseline.latency_ms(50)),
        Figure(NAME, "latency p95", result.latency_ms(95), "ms", "/health p95", baseline.latency_ms(95)),
        Figure(NAME, "latency p99", result.latency_ms(99), "ms", "/health p99", baseline.latency_ms(99)),
        Figure(NAME, "errors (API + SFTP)", float(errors), "", "/health errors", float(baseline.errors),
               None, *check(float(errors), "==", 0), "; ".join(f"{k}: {v}" for k, v in kinds.items())
               or "none"),
        Figure(NAME, "lost writes", float(lost), "", "acked openings + uploaded batches",
               float(verified.acked + verified.batches_sent), None, *check(float(lost), "==", 0),
               f"{verified.acked} acked openings queried back, {verified.lost_openings} missing; "
               f"{verified.batches_returned}/{verified.batches_sent} batches RETURNED after +1h; "
               f"{verified.rejected_files} files rejected; invariants "
               f"{'ok' if verified.invariants_ok else 'VIOLATED'}" + "".join(verified.notes)),
        Figure(NAME, "server RSS, last quarter", last, "MB", "first quarter of the load", first,
               None, "", None,
               f"slope {slope:+.1f} MB/min over {len(sampler.samples)} samples; during the "
               f"/health baseline {b_first:.0f} -> {b_last:.0f} MB; the SQLite page cache is in it, "
               f"so no target here: see the RSS minus SQLite heap figure"),
        *_memory_figures(memory, result.ok_throughput),
    ]


def _memory_figures(memory: MemorySampler, openings_per_s: float | None) -> list[Figure]:
    """The leak figure (RSS minus SQLite's heap) and the gc object count, first vs last quarter."""
    rest = memory.non_sqlite()
    if not rest:
        why = (memory.views[-1][1].get("sqlite_heap_note") if memory.views
               else f"no answer from GET /_admin/memory: {dict(memory.errors)}")
        return [Figure(NAME, "server RSS minus SQLite heap, last quarter", None, "MB",
                       "first quarter of the load", None, notes=str(why))]
    first, last = _quarters(rest)
    heap_first, heap_last = _quarters(memory.series("sqlite_heap_mb"))
    rss_first, rss_last = _quarters(memory.series("rss_mb"))
    gc_first, gc_last = _quarters(memory.series("gc_objects"))
    blocks_first, blocks_last = _quarters(memory.series("python_blocks"))
    cap = memory.views[-1][1].get("sqlite_cache_cap_mb")
    errors = f"; {sum(memory.errors.values())} failed readings" if memory.errors else ""
    slope = _slope_per_min(rest)
    # Growth per answered opening: what the bank keeps per request (e.g. nonces for the
    # signature window) shows up here as a steady figure in bytes.
    per_opening = (f" ({slope * 1024 * 1024 / (openings_per_s * 60):,.0f} B per answered opening)"
                   if openings_per_s else "")
    return [
        Figure(NAME, "server RSS minus SQLite heap, last quarter", last, "MB",
               "first quarter of the load", first, None,
               *check(last / first if first else None, "<=", 1.25, subject="ratio"),
               f"slope {slope:+.1f} MB/min{per_opening} over {len(rest)} readings of /_admin/memory "
               f"every {MEMORY_EVERY_S:g} s{errors}; in the same readings RSS {rss_first:.0f} -> "
               f"{rss_last:.0f} MB and SQLite heap {heap_first:.1f} -> {heap_last:.1f} MB (cache cap "
               f"{cap} MB per connection); Python allocator blocks {blocks_first:,.0f} -> "
               f"{blocks_last:,.0f}"),
        Figure(NAME, "gc-tracked objects, last quarter", gc_last, "", "first quarter of the load",
               gc_first, None, "", None, "objects the server's garbage collector tracks; saw-tooths "
               "by up to its gen-0 threshold (50,000) as garbage waits for a collection"),
    ]
