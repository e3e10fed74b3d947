"""The runnable demo: a simulated bank, a few hundred users and several T+1 days, end to end.

``platform-client demo`` starts ``banksim serve`` (a subprocess on free loopback ports, with
the demo profile: dropped, duplicated and late notifications, seeded record failures and a
late return file), then plays the platform for ``--days`` days of ``--users`` faker users:
account opening with ID-card images (some late, some refused), WeChat top-ups, consumption
and refunds on day T; on T+1 reconciliation of T's bill, operator approval, the disbursement
batch, return polling every 20 minutes of bank time, fixing failures and re-submitting them,
the withholding batch after the top-ups, and the report of the day. It ends with the final
checks: the platform's books, the bank's books (ledger invariants) and the two against each
other. Seeded: the same options print the same report.

Example::

    platform-client demo --users 300 --days 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import httpx

from platform_client.checks import check_balances
from platform_client.config import ClientConfig
from platform_client.context import Context
from platform_client.errors import BankApiError, StepRefused
from platform_client.notify import NotifyServer
from platform_client.onboarding import open_account, refresh_account, register_user, upload_images
from platform_client.payouts import disburse, original_progress, poll_returns, resubmit, withhold
from platform_client.reconciliation import approve, reconcile
from platform_client.report import render_report
from platform_client.spending import consume, refund
from platform_client.topups import create_order
from platform_client.wallet import balances

READY_TIMEOUT_S = 30.0
POLL_STEP = "20m"          # the bank's documented return-poll interval
POLL_ROUNDS = 12           # 4 h of bank time per batch loop, then the deadline alert decides


@dataclass
class DemoUser:
    user_id: str
    identity: dict[str, str]
    images: str  # "now", "late" (day 2) or "bad" (unreadable first, re-sent on day 2)


@dataclass
class Outcome:
    """What the final checks found; ``ok`` when the books agree everywhere."""

    platform: dict[str, Any] = field(default_factory=dict)
    invariants: dict[str, Any] = field(default_factory=dict)
    outstanding: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.platform.get("ok")) and bool(self.invariants.get("ok")) and not self.outstanding


class Simulator:
    """``banksim serve`` as a subprocess, and its control API."""

    def __init__(self, workdir: Path, profile: Path) -> None:
        port_file = workdir / "ports.json"
        self.log_path = workdir / "banksim.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BANKSIM_")}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "simulator.cli", "serve", "--host", "127.0.0.1", "--ephemeral",
             "--http-port", "0", "--sftp-port", "0", "--port-file", str(port_file),
             "--profile", str(profile)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not port_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"banksim serve did not start:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)  # start-up of a process, not a business delay
        ports = json.loads(port_file.read_text())
        self.url: str = ports["url"]
        self.sftp_port: int = int(ports["sftp"])
        self.admin = httpx.Client(base_url=self.url + "/_admin", timeout=60.0)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.admin.request(method, path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"control API {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def advance(self, by: str) -> None:
        self.call("POST", "/clock/advance", {"by": by})

    def advance_to(self, at: datetime) -> None:
        self.call("POST", "/clock/advance", {"to": at.isoformat()})

    def now(self) -> datetime:
        return datetime.fromisoformat(self.call("GET", "/clock")["now"])

    def stop(self) -> None:
        if hasattr(self, "admin"):
            self.admin.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._log.close()


def make_users(count: int, seed: int) -> list[DemoUser]:
    """``count`` users with valid five elements; 3% upload images late, 2% unreadable ones.

    Names come from faker (seeded); ID numbers are built here from the seed alone, since
    faker's own birth dates follow today's date and would change the demo from day to day.
    """
    from faker import Faker

    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    users: list[DemoUser] = []
    seen: set[str] = set()
    while len(users) < count:
        id_number = _id_number(rng)
        if id_number in seen:
            continue
        seen.add(id_number)
        n = len(users) + 1
        card = _luhn_complete("622202" + f"{rng.randrange(10**11):011d}" + f"{n % 10}")
        roll = rng.random()
        users.append(DemoUser(
            user_id=f"u{n:05d}",
            identity={"name": fake.name(), "id_number": id_number,
                      "mobile": f"13{rng.randrange(10**9):09d}", "bound_card_number": card,
                      "bound_card_kind": "DEBIT_I"},
            images="late" if roll < 0.03 else "bad" if roll < 0.05 else "now"))
    return users


_AREAS = ("310101", "310104", "310105", "310115", "110101", "320102", "330106", "440305")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _id_number(rng: random.Random) -> str:
    """A GB 11643 ID number of an adult born 1966-2000 (area, birth date, sequence, check)."""
    born = date(1966, 1, 1) + timedelta(days=rng.randrange(35 * 365))
    body = f"{rng.choice(_AREAS)}{born:%Y%m%d}{rng.randrange(1, 1000):03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11]


def _luhn_complete(stem: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(stem)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return stem + str((10 - total % 10) % 10)


class Demo:
    def __init__(self, sim: Simulator, ctx: Context, users: list[DemoUser], seed: int,
                 out: TextIO) -> None:
        self.sim, self.ctx, self.users, self.out = sim, ctx, users, out
        self.rng = random.Random(seed + 1)
        self.frozen: list[str] = []
        self.alerted: set[int] = set()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- day T ------------------------------------------------------------------------

    def onboard(self) -> None:
        opened = refused = 0
        for user in self.users:
            register_user(self.ctx, user.user_id, user.identity)
            try:
                open_account(self.ctx, user.user_id)
            except BankApiError as exc:
                refused += 1
                self.say(f"  opening refused for {user.user_id}: {exc.bank_code} {exc}")
                continue
            opened += 1
            if user.images == "now":
                upload_images(self.ctx, user.user_id)
            elif user.images == "bad":
                upload_images(self.ctx, user.user_id, front=b"not an image" * 200)
        self.sim.advance("30m")  # the bank reviews images 30 minutes after they arrive
        pending = sum(1 for u in self.users if refresh_account(self.ctx, u.user_id)["status"] != "ACTIVE")
        self.say(f"  {opened} accounts opened ({refused} refused); {pending} still without approved "
                 "images (late or unreadable uploads)")

    def fix_images(self) -> None:
        late = [u for u in self.users if u.images != "now"]
        for user in late:
            upload_images(self.ctx, user.user_id)
            user.images = "now"
        if late:
            self.sim.advance("30m")
            self.say(f"  {len(late)} users uploaded (readable) ID-card images again; reviewed")

    def topups(self, day: date, n: int) -> None:
        ordered = paid = 0
        for user in self.users:
            if self.rng.random() > 0.6:
                continue
            amount = self.rng.randrange(20, 300) * 100 + self.rng.choice((0, 50))
            order = f"TOPUP-{day:%Y%m%d}-{user.user_id}"
            create_order(self.ctx, user.user_id, order, amount)
            ordered += 1
            if self.rng.random() < 0.95:  # some users never pay: the order stays NOTPAY
                self.sim.call("POST", f"/wechat/orders/{order}/pay", {})
                paid += 1
        self.sim.advance("3h")  # notifications are delivered (or dropped, or late)
        self.say(f"  day {n}: {ordered} top-up orders, {paid} paid on WeChat")

    def spend(self, day: date) -> None:
        spent = refunds = 0
        total = 0
        for user in self.users:
            cash = balances(self.ctx.store, user.user_id).cash_available
            if cash <= 0:
                continue
            if self.rng.random() < 0.5:
                amount = min(cash, self.rng.randrange(5, 80) * 100)
                if consume(self.ctx, user.user_id, f"RIDE-{day:%Y%m%d}-{user.user_id}", amount, "骑行费"):
                    spent += 1
                    total += amount
            elif self.rng.random() < 0.04:
                serial = f"RF-{day:%Y%m%d}-{user.user_id}"
                try:
                    refund(self.ctx, user.user_id, serial, min(cash, 1000), "余额退款")
                    refunds += 1
                except (BankApiError, StepRefused) as exc:
                    self.say(f"  refund {serial} refused: {exc}")
        self.say(f"  {spent} rides paid from balances ({total / 100:.2f} CNY), {refunds} refunds "
                 "to bound cards")

    # -- T+1 --------------------------------------------------------------------------

    def poll_until_answered(self, what: str) -> None:
        for _ in range(POLL_ROUNDS):
            self.sim.advance(POLL_STEP)
            result = poll_returns(self.ctx)
            for finding in result.findings:
                self.say(f"    poll: {finding}")
            for batch_no in sorted(set(result.overdue) - self.alerted):
                self.alerted.add(batch_no)
                self.say(f"    alert: batch {batch_no} has no return file "
                         f"{self.ctx.config.return_deadline} after upload")
            if not self.ctx.store.scalar("SELECT count(*) FROM batches WHERE state IN ('BUILT', 'SENT')"):
                return
        self.say(f"    {what}: batches still waiting after {POLL_ROUNDS} polls")

    def settle_day(self, t: date) -> None:
        day = t.isoformat()
        run = reconcile(self.ctx, day)
        diffs = [i for i in run["items"] if i["kind"] != "MATCHED"]
        self.say(f"  reconciliation {day}: {len(run['items'])} bill rows and orders, "
                 f"{len(diffs)} differences")
        approve(self.ctx, day, by="ops.demo")
        self.sim.advance_to(self.sim.now().replace(hour=10, minute=5))  # WeChat settled at 10:00
        batch = disburse(self.ctx, day)
        if batch is not None:
            self.poll_until_answered(f"disbursement batch {batch}")
        self.fix_failures()
        if batch is not None:
            progress = original_progress(self.ctx, batch)
            self.say(f"  disbursement batch {batch}: {progress['succeeded']}/{progress['records']} "
                     "records succeeded across attempts")
        dk = withhold(self.ctx, day)
        if dk is not None:
            self.poll_until_answered(f"withholding batch {dk}")
            self.fix_failures()

    def fix_failures(self) -> None:
        """Operators fix what failed (images, freezes), then re-submit until all succeed."""
        for _ in range(3):
            failed = self.ctx.store.all("SELECT DISTINCT user_id, code FROM batch_records "
                                        "WHERE state IN ('FAILED', 'REJECTED') AND resent = 0")
            if not failed:
                return
            self.fix_images()
            for account_no in self.frozen:
                self.sim.call("POST", f"/accounts/{account_no}/unfreeze")
                self.say(f"  the bank lifted its freeze on {account_no}")
            self.frozen.clear()
            result = resubmit(self.ctx)
            for serial, why in sorted(result.held.items()):
                self.say(f"    held {serial}: {why}")
            if not result.batches:
                return
            self.say(f"  re-submitted failures in batch(es) {result.batches}")
            self.poll_until_answered("re-submission")

    def freeze_one(self) -> None:
        """The bank freezes one funded account for a day (a risk-control hold)."""
        for user in self.users:
            account = self.ctx.store.scalar("SELECT account_no FROM users WHERE user_id = ?", (user.user_id,))
            # In transit: a top-up of today, so tomorrow's disbursement record meets the freeze.
            if account and balances(self.ctx.store, user.user_id).in_transit > 0:
                self.sim.call("POST", f"/accounts/{account}/freeze", {"reason": "风控临时冻结"})
                self.frozen.append(str(account))
                self.say(f"  the bank froze {account} ({user.user_id}) for risk review")
                return

    def final_checks(self) -> Outcome:
        outcome = Outcome(platform=check_balances(self.ctx), invariants=self.sim.call("GET", "/invariants"))
        for row in self.ctx.store.all("SELECT batch_no FROM batches WHERE original_batch IS NULL"
                                      if _has_column(self.ctx, "batches", "original_batch") else
                                      "SELECT batch_no FROM batches"):
            progress = original_progress(self.ctx, int(row["batch_no"]))
            if progress["outstanding"]:
                outcome.outstanding.append(f"batch {row['batch_no']}: {progress['outstanding']} records "
                                           "not yet succeeded")
        return outcome


def _has_column(ctx: Context, table: str, column: str) -> bool:
    return any(r["name"] == column for r in ctx.store.all(f"PRAGMA table_info({table})"))


def run_demo(users: int, days: int, seed: int, workdir: Path, out: TextIO) -> Outcome:
    profile = workdir / "demo-profile.yaml"
    profile.write_text(resources.files("platform_client").joinpath("demo_profile.yaml")
                       .read_text(encoding="utf-8").replace("SEED", str(seed)), encoding="utf-8")
    sim = Simulator(workdir, profile)
    try:
        config = ClientConfig(bank_url=sim.url, sftp_port=sim.sftp_port, clock="bank",
                              store_path=str(workdir / "platform.db"), notify_port=_free_port())
        ctx = Context.create(config)
        demo = Demo(sim, ctx, make_users(users, seed), seed, out)
        print(f"banksim demo: {users} users, {days} days, seed {seed}; bank at {sim.url}, "
              f"state in {workdir}", file=out)
        with NotifyServer(ctx):
            for n in range(1, days + 1):
                t = sim.now().date()
                demo.say(f"\n=== day {n}: {t} (T) ===")
                if n == 1:
                    demo.onboard()
                if n == 2:
                    demo.fix_images()
                demo.topups(t, n)
                if n == 2:
                    demo.freeze_one()
                demo.spend(t)
                sim.call("POST", "/clock/next-business-day", {"at": "09:30"})
                demo.say(f"--- {t + timedelta(days=1)} (T+1 for {t}) ---")
                demo.settle_day(t)
                demo.say("")
                demo.say(render_report(ctx, t.isoformat(), with_bank=True, per_user=False))
            outcome = demo.final_checks()
        ctx.close()
    finally:
        sim.stop()
    print("\n=== final checks ===", file=out)
    print(f"  platform journal and platform vs bank: {'agree' if outcome.platform.get('ok') else 'DIFFER'}",
          file=out)
    for diff in outcome.platform.get("differences", []):
        print(f"    {diff}", file=out)
    print(f"  bank ledger invariants: {'hold' if outcome.invariants.get('ok') else 'VIOLATED'}", file=out)
    for violation in outcome.invariants.get("violations", []):
        print(f"    {violation}", file=out)
    for line in outcome.outstanding:
        print(f"  outstanding: {line}", file=out)
    print(f"  result: {'all money accounted for' if outcome.ok else 'PROBLEMS FOUND'}", file=out)
    return outcome


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="platform-client demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20260105)
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the platform store and bank log in this directory")
    args = parser.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        outcome = run_demo(args.users, args.days, args.seed, args.keep, sys.stdout)
    else:
        with tempfile.TemporaryDirectory(prefix="banksim-demo-") as tmp:
            outcome = run_demo(args.users, args.days, args.seed, Path(tmp), sys.stdout)
    return 0 if outcome.ok else 1
