"""A simulated T+1 day for 10,000 users (quick: 1,000) through the real HTTP and SFTP servers.

One ``banksim serve`` process and the platform client (its store, its notify endpoint) on
loopback. Set-up, not timed: the users register and open their accounts (profile
``open_active``). Then, timed phase by phase, as the platform lives it:

* day T: every user creates a WeChat top-up order (signed v3 call; 8 platform workers, each
  with its own HTTP clients, sharing the platform's store, as a platform's web workers
  would), the users pay (control API, through the bench's load generator on 8
  connections: users' actions, not platform work), the clock runs 3 hours and the channel
  delivers the notifications (seeded: 2% dropped, 3% duplicated, 3% late) to the
  platform's endpoint;
* T+1: reconciliation of T's bill (the dropped orders found, queried and credited),
  approval, the DF batch built and uploaded over SFTP, returns polled every 20 minutes of
  bank time, failures (1% seeded 3028) re-submitted, and the re-submissions' failures
  again, until every original record has succeeded (at most 8 rounds), half the users
  ride, the DK batch of the rides, its returns and re-submissions the same way.

The platform reads the time from the bank's virtual clock, through a clock source that
this driver keeps current: the driver is the only one that moves the (manual) clock, and
every move answers with the new time, so between moves a reading costs nothing; while a
move is under way (notifications are delivered at their times inside it) every reading
asks the bank. A platform in production reads its system clock; a round trip per reading
would be an artefact of the simulation, not a cost of the platform.

At the end the platform and the bank must agree (``check_balances`` with the bank, and
the bank's ledger invariants) and no original record of the DF or DK batch may be left
outstanding; the figure is reported only then. The log gives each phase's CPU seconds in
the server and in this process (the platform). Baseline, same run and
same server: the same number of HTTP round trips the day made, as bare ``GET /health``
calls over one keep-alive connection, i.e. the transport floor of the day.
"""

from __future__ import annotations

import json
import random
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.common import Context, Figure, check, free_port, start_server
from bench.loadgen import run_load

NAME = "day"
TARGET_S = 60.0
ORDER_WORKERS = 4
PAY_CONCURRENCY = 8
PAY_MAX_S = 600.0
RESUBMIT_ROUNDS = 8
T = TypeVar("T")

_PROFILE = {
    "seed": 20260105,
    "bank": {"open_active": True},
    "platforms": [{
        "app_id": "demo-platform", "secret": "banksim-dev-secret", "name": "示例出行平台",
        "supervision_account": "98010078801000001", "settlement_account": "31010078801000001",
        "supervision_opening_balance": "100000.00", "merchant": "DEMO01",
        "sftp": {"username": "demo", "password": "banksim-dev-sftp", "authorized_keys": []}}],
    "wechat": {"notify": {"rates": {"drop": 0.02, "duplicate": 0.03, "delay": 0.03,
                                    "delay_by": "30m", "ignore_answer": 0.0}}},
    "batches": {"rates": {"3028": 0.01}, "file_faults": []},
}


class Phases:
    """Wall time per phase, with the CPU time the server and this process (the platform)
    spent in it, to show which side a phase waits for."""

    def __init__(self, server_cpu: Callable[[], float | None] = lambda: None) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, tuple[float, float]] = {}
        self._server_cpu = server_cpu

    def time(self, name: str, work: Callable[[], T]) -> T:
        server_before, own_before = self._server_cpu(), time.process_time()
        started = time.perf_counter()
        result = work()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        server_after, own = self._server_cpu(), time.process_time() - own_before
        server = 0.0 if server_before is None or server_after is None else server_after - server_before
        before = self.cpu.get(name, (0.0, 0.0))
        self.cpu[name] = (before[0] + server, before[1] + own)
        return result


class DrivenClock:
    """The bank's clock as the platform reads it, kept current by the driver of the clock.

    ``moving()`` before asking the bank to move the clock, ``moved(view)`` with the clock
    view of its answer. While unknown (a move under way), every reading asks the bank.

    Example::

        clock = DrivenClock(httpx.Client(base_url=url + "/_admin"))
        clock.moving()
        clock.moved(admin.post("/clock/advance", json={"by": "20m"}).json()["clock"])
        clock.now()                  # the bank's time after the move, no round trip
    """

    def __init__(self, admin: httpx.Client) -> None:
        self._admin = admin
        self._lock = threading.Lock()
        self._known: tuple[datetime, date] | None = None

    def _fetch(self) -> tuple[datetime, date]:
        with self._lock:  # one httpx.Client shared by the platform's threads
            response = self._admin.get("/clock")
        response.raise_for_status()
        view = response.json()
        return datetime.fromisoformat(view["now"]), date.fromisoformat(view["business_date"])

    def _reading(self) -> tuple[datetime, date]:
        known = self._known
        return known if known is not None else self._fetch()

    def now(self) -> datetime:
        return self._reading()[0]

    def business_date(self) -> date:
        return self._reading()[1]

    def moving(self) -> None:
        self._known = None

    def moved(self, view: dict[str, Any]) -> None:
        self._known = datetime.fromisoformat(view["now"]), date.fromisoformat(view["business_date"])

    def close(self) -> None:
        self._admin.close()


def _users(count: int) -> list[tuple[str, dict[str, str]]]:
    from platform_client.demo import _id_number, _luhn_complete

    rng = random.Random(7)
    out: list[tuple[str, dict[str, str]]] = []
    seen: set[str] = set()
    while len(out) < count:
        id_number = _id_number(rng)
        if id_number in seen:
            continue
        seen.add(id_number)
        n = len(out) + 1
        out.append((f"u{n:06d}", {"name": "张三", "id_number": id_number,
                                  "mobile": f"13{rng.randrange(10**9):09d}",
                                  "bound_card_number": _luhn_complete(f"622202{n:012d}"),
                                  "bound_card_kind": "DEBIT_I"}))
    return out


def _pay_all(port: int, orders: list[str]) -> int:
    """The users pay through the control API (the bench's load generator: these are the
    users' actions, not platform work, so no client library cost is counted); the
    payments answered 200."""
    requests = [(f"POST /_admin/wechat/orders/{order}/pay HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}").encode()
                for order in orders]
    result = run_load(port, requests, concurrency=PAY_CONCURRENCY, max_time_s=PAY_MAX_S)
    return result.statuses.get("200", 0)


def _create_orders(contexts: list[Any], orders: list[tuple[str, str, int]]) -> int:
    """Create the orders, one thread per platform Context (each its own bank and WeChat HTTP
    clients, all on the shared store and clock); the orders created."""
    from platform_client import topups

    workers = len(contexts)

    def work(index: int) -> int:
        ctx = contexts[index]
        mine = orders[index::workers]
        for user_id, order, amount in mine:
            topups.create_order(ctx, user_id, order, amount)
        return len(mine)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(work, range(workers)))


def _progress(pc: Any, batch_no: int) -> dict[str, int]:
    """How the original records of a batch stand across all their attempts: the figures of
    ``payouts.original_progress``, counted with the success index (``coalesce(...)`` on
    both sides), so a 10,000-record batch is not 10,000 scans of it."""
    row = pc.store.one(
        "SELECT count(*) AS records, count(*) FILTER (WHERE EXISTS (SELECT 1 FROM batch_records s "
        "WHERE s.state = 'SUCCESS' AND coalesce(s.original_id, s.record_id) = "
        "coalesce(o.original_id, o.record_id))) AS succeeded FROM batch_records o "
        "WHERE o.batch_no = ? AND o.original_id IS NULL", (batch_no,))
    records, succeeded = int(row["records"]), int(row["succeeded"])
    return {"records": records, "succeeded": succeeded, "outstanding": records - succeeded}


def _health_calls(url: str, count: int) -> float:
    with httpx.Client(base_url=url, timeout=10.0) as client:
        started = time.perf_counter()
        for _ in range(count):
            client.get("/health").raise_for_status()
        return time.perf_counter() - started


def _day(ctx: Context, users: int, workdir: Path) -> tuple[Phases, dict[str, Any]]:
    from platform_client import checks, payouts, reconciliation, spending, wallet
    from platform_client.config import ClientConfig
    from platform_client.context import Context as PlatformContext
    from platform_client.notify import NotifyServer
    from platform_client.onboarding import open_account, register_user

    profile = workdir / "profile.json"
    profile.write_text(json.dumps(_PROFILE, ensure_ascii=False), encoding="utf-8")
    port, port_file = free_port(), workdir / "ports.json"
    argv = [ctx.python, "-m", "simulator.cli", "serve", "--host", "127.0.0.1", "--ephemeral",
            "--http-port", str(port), "--sftp-port", "0", "--port-file", str(port_file),
            "--profile", str(profile)]
    with start_server(argv, port) as server:
        phases = Phases(server.cpu_seconds)
        while not port_file.exists():
            time.sleep(0.01)  # the port file follows /health by a moment
        ports = json.loads(port_file.read_text())
        url = ports["url"]
        admin = httpx.Client(base_url=url + "/_admin", timeout=120.0)
        clock = DrivenClock(httpx.Client(base_url=url + "/_admin", timeout=30.0))

        def call(method: str, path: str, body: Any = None) -> Any:
            response = admin.request(method, path, json=body)
            response.raise_for_status()
            return response.json()

        def move_clock(path: str, body: dict[str, str]) -> None:
            clock.moving()
            clock.moved(call("POST", path, body)["clock"])

        config = ClientConfig(bank_url=url, sftp_port=int(ports["sftp"]), clock="bank",
                              store_path=str(workdir / "platform.db"), notify_port=free_port())
        pc = PlatformContext.create(config, clock=clock)
        clock.moved(call("GET", "/clock"))
        people = _users(users)
        setup_started = time.perf_counter()
        # One at a time: account numbers follow the order of openings (determinism).
        for user_id, identity in people:
            register_user(pc, user_id, identity)
            open_account(pc, user_id)
        ctx.log(f"set-up: {users:,} users registered and opened in "
                f"{time.perf_counter() - setup_started:.1f} s (not timed)")
        # The platform's workers are up before the day starts (each httpx client loads the
        # CA bundle when made: tens of milliseconds that are no part of the day).
        workers = [PlatformContext.create(config, clock=clock, store=pc.store)
                   for _ in range(ORDER_WORKERS)]
        http_calls = 0
        cpu_before = server.cpu_seconds()
        day_started = time.perf_counter()
        with NotifyServer(pc):
            rng = random.Random(11)
            orders = [(user_id, f"TOPUP-{user_id}", rng.randrange(20, 500) * 100)
                      for user_id, _ in people]
            phases.time("orders", lambda: _create_orders(workers, orders))
            http_calls += users
            paid = phases.time("payments", lambda: _pay_all(port, [o for _, o, _ in orders]))
            http_calls += users
            phases.time("notifications", lambda: move_clock("/clock/advance", {"by": "3h"}))
            notified = pc.store.scalar("SELECT count(*) FROM notifications WHERE outcome = 'credited'")
            move_clock("/clock/next-business-day", {"at": "09:30"})
            t = "2026-01-05"
            run = phases.time("reconciliation", lambda: reconciliation.reconcile(pc, t))
            dropped = sum(1 for i in run["items"] if i["kind"] == "DROPPED")
            http_calls += 2 + dropped
            reconciliation.approve(pc, t, by="ops.bench")
            move_clock("/clock/advance", {"to": "2026-01-06T10:05:00+08:00"})
            df = phases.time("disbursement", lambda: payouts.disburse(pc, t))

            def returns() -> None:
                for _ in range(24):
                    move_clock("/clock/advance", {"by": "20m"})
                    payouts.poll_returns(pc)
                    if not pc.store.scalar("SELECT count(*) FROM batches WHERE state IN ('BUILT', 'SENT')"):
                        return
                raise RuntimeError("batches still waiting after 8 h of polling")

            def outstanding(batch_no: int | None) -> int:
                return 0 if batch_no is None else _progress(pc, batch_no)["outstanding"]

            resent: list[int] = []

            def settle(batch_no: int | None) -> None:
                """Re-submit what failed, and what failed again, until the batch is done."""
                for _ in range(RESUBMIT_ROUNDS):
                    if not outstanding(batch_no):
                        return
                    result = payouts.resubmit(pc)
                    if not result.batches:
                        raise RuntimeError(f"batch {batch_no}: failures held: {result.held}")
                    resent.extend(result.batches)
                    returns()
                if outstanding(batch_no):
                    raise RuntimeError(f"batch {batch_no} still outstanding after "
                                       f"{RESUBMIT_ROUNDS} re-submissions")

            phases.time("returns", returns)
            phases.time("re-submission", lambda: settle(df))

            def rides() -> int | None:
                for user_id, _ in people[::2]:
                    if wallet.balances(pc.store, user_id).cash_available >= 1500:
                        spending.consume(pc, user_id, f"RIDE-{user_id}", 1500, "骑行费")
                return payouts.withhold(pc, "2026-01-06")

            dk = phases.time("withholding", rides)
            phases.time("returns", returns)
            phases.time("re-submission", lambda: settle(dk))
        day_s = time.perf_counter() - day_started
        cpu_after = server.cpu_seconds()
        agree = checks.check_balances(pc)
        invariants = call("GET", "/invariants")
        progress = _progress(pc, df) if df is not None else {}
        dk_progress = _progress(pc, dk) if dk is not None else {}
        http_calls += users // 20  # return polls and uploads are SFTP; a generous allowance
        baseline_s = _health_calls(url, http_calls)
        for worker in workers:
            worker.bank.close()
            worker.wechat.close()
        pc.close()
        clock.close()
        admin.close()
    facts = {"day_s": day_s, "baseline_s": baseline_s, "http_calls": http_calls, "paid": paid,
             "notified": notified, "dropped": dropped, "df": df, "dk": dk, "resent": resent,
             "progress": progress, "dk_progress": dk_progress, "agree": agree["ok"],
             "differences": agree["differences"][:5], "invariants": invariants["ok"],
             "server_cpu_s": None if cpu_before is None or cpu_after is None else cpu_after - cpu_before}
    return phases, facts


def _cpu(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds:.1f}"


def run(ctx: Context) -> list[Figure]:
    if not ctx.selects(NAME, "day"):
        return []
    users = 1_000 if ctx.quick else 10_000
    with tempfile.TemporaryDirectory(prefix="banksim-bench-day-") as tmp:
        phases, facts = _day(ctx, users, Path(tmp))
    ctx.log("phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.seconds.items()))
    ctx.log("CPU (server/platform): " + ", ".join(
        f"{k} {s:.2f}/{p:.2f} s" for k, (s, p) in phases.cpu.items()))
    ctx.log(f"paid {facts['paid']:,}, credited on notification {facts['notified']:,}, dropped and "
            f"found by reconciliation {facts['dropped']}, DF batch {facts['df']} "
            f"({facts['progress']}), DK batch {facts['dk']} ({facts['dk_progress']}), "
            f"re-submitted in {facts['resent']}; server CPU {_cpu(facts['server_cpu_s'])} s")
    ok = (facts["agree"] and facts["invariants"] and not facts["progress"].get("outstanding", 1)
          and not facts["dk_progress"].get("outstanding", 0))
    if not ok:
        ctx.log(f"books DISAGREE: {facts['differences']}, invariants ok={facts['invariants']}")
    value = facts["day_s"] if ok else None
    target, passed = check(value, "<", TARGET_S if not ctx.quick else TARGET_S / 10 * 1.5, "s")
    return [
        Figure(NAME, f"simulated day, {users:,} users (platform and bank agree)", value, "s",
               f"{facts['http_calls']:,} bare GET /health round trips", facts["baseline_s"],
               target=target, passed=passed,
               notes="; ".join(f"{k} {v:.1f} s" for k, v in phases.seconds.items())),
    ]
