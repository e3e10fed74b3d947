"""Fault survival of the platform client: high fault rates, SIGKILLed steps, books to the fen.

Run it::

    .venv/bin/python -m bench.survival_harness [--days N] [--users N] [--kills N] [--seed S]

It starts ``banksim serve`` (free loopback ports, an ephemeral state) with a profile that
turns every fault knob up (defaults, each a seeded rate):

* bank API (``http_faults.rates``): 20% busy errors (3028), 15% lost responses (the bank
  commits, the connection drops), 5% answers held past the client's timeout;
* SFTP (``sftp``): 20% of logins refused, 20% of uploads dropped after the first write;
* return files (``batches.file_fault_rates``): 15% each late by 2 h, sent twice, under an
  unexpected name; 5% of records fail with 3028 (system busy);
* WeChat notifications (``wechat.notify.rates``): 20% each dropped, duplicated, delayed
  30 min, and answered-but-ignored (retried on WeChat's schedule).

Then it plays the platform for ``--days`` days of ``--users`` users, like
``platform-client demo`` (whose :class:`~platform_client.demo.Simulator` and
:func:`~platform_client.demo.make_users` it reuses): accounts opened, WeChat top-ups (some
never paid), rides paid from balances, refunds to bound cards on day T; on T+1 the steps
``reconcile``, ``approve``, ``disburse``, ``upload``, ``poll-returns`` (every 20 minutes of
bank time), ``resubmit``, ``withhold`` and ``refund``. Each of those runs as a child process
(``platform_client.cli`` with the run's config file and store, forked from a preloaded
fork server so that it starts in milliseconds), and a seeded share of them is SIGKILLed
after a random delay within the step's usual duration, then started again.

The operator's part, as a real one would play it:

* a step that fails for want of the bank (``sftp_unavailable``: a refused login or a dropped
  upload; ``bank_unavailable``: no answer after the client's own retries) is run again, up
  to 10 attempts;
* a batch without a reply ``return_deadline`` (2 h) after upload raises the platform's
  ``return_overdue`` alert; the operator then asks the bank to send the return file now
  (``POST /_admin/batches/{app_id}/{batch_no}/return``) and the next poll applies it; a
  batch left ``INCOMPLETE`` (a return lacking records) gets the same request;
* failed records are re-submitted until every original record has succeeded.

Checks, after every kill and every restart: the platform's store is consistent (SQLite
integrity; each batch's records match its header and state; a record marked re-sent has
its next attempt; at most one success per original record; the journal matches the wallets,
the orders, the disbursements, the consumptions and the refunds). After each day and at
the end: the platform and the bank agree to the fen (``platform_client.checks.check_balances``,
and the 98 account = opening + WeChat settlements - disbursements); the bank's invariants
hold; and, on the bank's side (batch manifests, ``GET /_admin/batches/{app_id}/{batch_no}``),
every original record succeeded exactly once across its attempts, every paid top-up was
credited exactly once to its user's Class III account, and every user's bank balance is
what the harness paid in minus what was spent and refunded.

Return files that never come, come cut off or come without some records (``never``,
``truncated``, ``missing_records``, rate ``--stuck-rate``) are recovered the way an operator
does at a real bank: asking it to send the return file again (补发回盘,
``POST /_admin/batches/{app_id}/{batch_no}/return``: a complete ``<stem>_RET.txt``, or
``<stem>_RET_R<n>.txt`` when one was written already).

It prints one line per kill and per operator action, the fault counts seen on both sides,
and finally ``N platform kills, N recovered, V violations``; the exit status is 1 when there
is any violation. Kill timing follows the wall clock, so two runs with one seed kill at the
same steps but not always at the same instruction.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml

from contracts.money import format_fen, parse_yuan
from platform_client import wallet
from platform_client.checks import check_balances, journal_differences
from platform_client.config import ClientConfig
from platform_client.context import Context
from platform_client.demo import DemoUser, Simulator, make_users
from platform_client.errors import BankApiError, BankUnavailable, SftpUnavailable
from platform_client.notify import NotifyServer
from platform_client.onboarding import open_account, register_user
from platform_client.spending import consume
from platform_client.topups import create_order
from simulator.config import load_profile

T = TypeVar("T")

APP = "demo-platform"
OPENING_98 = "5000.00"  # the platform's reserve in the 98 account: it covers WeChat's fees
HOLD_MS = 2500  # a held answer comes after the client has given up (CLIENT_TIMEOUT_S)
CLIENT_TIMEOUT_S = 1.5
STEP_ATTEMPTS = 10
STEP_TIMEOUT_S = 120.0
POLL_STEP = "20m"
POLL_ROUNDS = 12  # 4 h of bank time per batch loop
RESUBMIT_ROUNDS = 4
BALANCE_CHECK_ATTEMPTS = 6
KILLABLE = ("reconcile", "disburse", "upload", "poll-returns", "resubmit", "withhold", "refund")
EXTRA_KINDS = ("poll-returns", "reconcile", "resubmit", "disburse", "withhold")
RETRYABLE = frozenset({"sftp_unavailable", "bank_unavailable"})
OPEN_BATCH_STATES = ("BUILT", "SENT", "INCOMPLETE")
CAP_HEADROOM = 180_000  # top-ups stop short of the 2,000.00 Class III cap
_ERROR_LINE = re.compile(r"^platform-client: (\w+): ", re.MULTILINE)


@dataclass(frozen=True)
class Rates:
    """Fault rates of one run (each a probability, drawn from the profile's seed)."""

    http: float = 0.20  # busy (3028) errors; lost responses at 3/4 of it
    hold: float = 0.05
    sftp: float = 0.20  # refused logins and dropped uploads, each
    files: float = 0.15  # late, twice, unexpected_name, each
    records: float = 0.05  # records failed with 3028
    notify: float = 0.20  # dropped, duplicated, delayed, ignored, each
    stuck: float = 0.10  # never, truncated, missing_records, each (the operator asks for a re-send)


def survival_profile(seed: int, rates: Rates) -> dict[str, Any]:
    """The bank profile of a run: the default with every fault knob at ``rates``."""
    platform = load_profile(None).as_dict()["platforms"][0]
    platform["supervision_opening_balance"] = OPENING_98
    return {
        "seed": seed,
        "bank": {"open_active": True},
        "platforms": [platform],
        "http_faults": {"rates": {"error": {"rate": rates.http, "code": "3028"},
                                  "lose_response": round(rates.http * 0.75, 4),
                                  "hold": {"rate": rates.hold, "ms": HOLD_MS}}},
        "sftp": {"refuse_login_rate": rates.sftp, "drop_upload_rate": rates.sftp},
        "batches": {"rates": {"3028": rates.records} if rates.records else {},
                    # Always one overdue batch: the platform alerts, the operator recovers it.
                    "file_faults": [{"name": "late (batch 2, a rule)",
                                     "match": {"batch_no": "2"}, "action": {"late": "2h"}}],
                    "file_fault_rates": {"late": rates.files, "late_by": "2h", "twice": rates.files,
                                         "unexpected_name": rates.files, "never": rates.stuck,
                                         "truncated": rates.stuck, "missing_records": rates.stuck}},
        "wechat": {"notify": {"rates": {"drop": rates.notify, "duplicate": rates.notify,
                                        "delay": rates.notify, "delay_by": "30m",
                                        "ignore_answer": rates.notify}}},
    }


# -- child processes ------------------------------------------------------------------------


def _step_main(argv: list[str], out_path: str, err_path: str) -> None:
    """A platform step in a child process: ``platform-client <argv>`` with output to files."""
    for fd, path in ((1, out_path), (2, err_path)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    from platform_client import cli

    sys.exit(cli.main(argv))


@dataclass
class StepRun:
    """One attempt of a step in a child process."""

    kind: str
    args: tuple[str, ...]
    exitcode: int | None
    killed: bool
    seconds: float
    out: str
    err: str

    @property
    def error_code(self) -> str | None:
        m = _ERROR_LINE.search(self.err)
        return m.group(1) if m else None

    def answer(self) -> Any:
        return json.loads(self.out) if self.out.strip() else None


# -- what the harness knows ----------------------------------------------------------------------


@dataclass
class Truth:
    """What happened outside the platform's books: the harness paid, spent and refunded this."""

    paid: dict[str, tuple[str, int]] = field(default_factory=dict)  # order -> (user, fen)
    paid_at: dict[str, datetime] = field(default_factory=dict)
    consumed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    consumptions: int = 0
    refunded: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refunds: int = 0


class Harness:
    def __init__(self, workdir: Path, *, users: int, days: int, kills: int, seed: int,
                 rates: Rates, log: Callable[[str], None] = print) -> None:
        self.workdir = workdir
        self.days = days
        self.kill_budget = kills
        self.seed = seed
        self.rates = rates
        self.log = log
        self.rng = random.Random(seed)
        self.users = make_users(users, seed)
        self.truth = Truth()
        self.violations: list[str] = []
        self.notes: list[str] = []
        self.kills = 0
        self.recovered = 0
        self.missed_kills = 0
        self.killed_kinds: Counter[str] = Counter()
        self.step_retries: Counter[str] = Counter()
        self.operator: Counter[str] = Counter()
        self.invocations = 0
        self.expected_invocations = days * (12 + users)  # corrected after day 1
        self.estimate: dict[str, float] = defaultdict(lambda: 0.4)
        self.steps_dir = workdir / "steps"
        self.steps_dir.mkdir(parents=True, exist_ok=True)
        self.asked_bank: set[int] = set()
        self.stuck: set[int] = set()
        self.mp = multiprocessing.get_context("forkserver")
        # The children fork from a server that has imported the client already: a step starts
        # in milliseconds, so the kill delays fall inside the step's own work.
        self.mp.set_forkserver_preload(["platform_client.cli", "platform_client.demo", "yaml"])
        self.sim: Simulator | None = None
        self.ctx: Context | None = None
        self.config_path = workdir / "platform.yaml"
        self.dk_df = (0, 0)
        self.faults: dict[str, Counter[str]] = {}

    # -- plumbing --------------------------------------------------------------------------

    def violation(self, text: str) -> None:
        self.violations.append(text)
        self.log(f"  VIOLATION: {text}")

    @property
    def s(self) -> Simulator:
        assert self.sim is not None
        return self.sim

    @property
    def c(self) -> Context:
        assert self.ctx is not None
        return self.ctx

    def start(self) -> None:
        profile = self.workdir / "bank-profile.yaml"
        profile.write_text(json.dumps(survival_profile(self.seed, self.rates), ensure_ascii=False,
                                      indent=1), "utf-8")  # JSON is YAML
        self.sim = Simulator(self.workdir, profile)
        config = ClientConfig(bank_url=self.s.url, sftp_port=self.s.sftp_port, clock="bank",
                              store_path=str(self.workdir / "platform.db"), notify_port=_free_port(),
                              http_timeout_s=CLIENT_TIMEOUT_S)
        self.config_path.write_text(yaml.safe_dump(config.model_dump(exclude_defaults=True),
                                                   allow_unicode=True), "utf-8")
        self.ctx = Context.create(config)

    def stop(self) -> None:
        if self.ctx is not None:
            self.ctx.close()
        if self.sim is not None:
            self.sim.stop()

    def with_operator(self, what: str, action: Callable[[], T]) -> T | None:
        """``action`` again while the bank is unreachable, as an operator would (bounded)."""
        for _ in range(STEP_ATTEMPTS):
            try:
                return action()
            except (BankUnavailable, SftpUnavailable) as exc:
                self.step_retries[exc.code] += 1
        self.violation(f"{what}: the bank stayed unreachable for {STEP_ATTEMPTS} attempts")
        return None

    # -- steps in child processes -------------------------------------------------------------

    def plan_kill(self, kind: str, restart: bool) -> float | None:
        """A delay after which this attempt is SIGKILLed, or None (seeded)."""
        if kind not in KILLABLE or self.kill_budget <= 0:
            return None
        left = max(1, self.expected_invocations - self.invocations)
        # Spread the budget over the run (what is left at the end goes to extra_kills); a
        # restart is killed again now and then, not every time.
        chance = min(0.5, self.kill_budget / left) / (3 if restart else 1)
        if kind == "poll-returns":
            chance /= 3  # the most frequent step: spread the kills over the others too
        if self.rng.random() >= chance:
            return None
        return self.rng.uniform(0.05, 0.9) * self.estimate[kind]

    def spawn(self, kind: str, args: tuple[str, ...], kill_after: float | None) -> StepRun:
        self.invocations += 1
        base = self.steps_dir / f"{self.invocations:04d}-{kind}"
        out, err = f"{base}.out", f"{base}.err"
        argv = ["--config", str(self.config_path), kind, *args]
        process = self.mp.Process(target=_step_main, args=(argv, out, err), name=f"step-{kind}")
        started = time.monotonic()
        process.start()
        killed = False
        if kill_after is not None:
            process.join(kill_after)
            if process.exitcode is None:
                process.kill()
                killed = True
            else:
                self.missed_kills += 1
        process.join(STEP_TIMEOUT_S)
        if process.exitcode is None:
            process.kill()
            process.join(30)
            self.violation(f"step {kind} {' '.join(args)} still running after {STEP_TIMEOUT_S:.0f} s")
        seconds = time.monotonic() - started
        if not killed and process.exitcode == 0:
            self.estimate[kind] = 0.5 * self.estimate[kind] + 0.5 * seconds
        return StepRun(kind, args, process.exitcode, killed, seconds,
                       Path(out).read_text("utf-8", errors="replace") if Path(out).exists() else "",
                       Path(err).read_text("utf-8", errors="replace") if Path(err).exists() else "")

    def step(self, kind: str, *args: str, force_kill: bool = False) -> StepRun:
        """Run a step until it is done, restarting it after kills and retrying it while the
        bank is unreachable; the last attempt (exit 0, a refusal, or the last failure)."""
        killed_here = 0
        run: StepRun | None = None
        for attempt in range(STEP_ATTEMPTS):
            delay = self.plan_kill(kind, killed_here > 0)
            if force_kill and attempt == 0 and self.kill_budget > 0:
                delay = self.rng.uniform(0.05, 0.9) * self.estimate[kind]
            run = self.spawn(kind, args, delay)
            if run.killed:
                self.kills += 1
                self.kill_budget -= 1
                killed_here += 1
                self.killed_kinds[kind] += 1
                self.log(f"  kill {self.kills}: {kind} {' '.join(args)} SIGKILLed after {run.seconds:.2f} s")
                for problem in store_problems(self.c):
                    self.violation(f"after killing {kind}: {problem}")
                continue
            code = run.error_code
            if run.exitcode != 0 and code in RETRYABLE:
                self.step_retries[code or ""] += 1
                continue
            if run.exitcode != 0 and code is None:
                self.violation(f"step {kind} {' '.join(args)} crashed (exit {run.exitcode}): "
                               f"{run.err.strip()[-600:]}")
                continue
            if killed_here:
                problems = store_problems(self.c)
                for problem in problems:
                    self.violation(f"after restarting {kind}: {problem}")
                if not problems:
                    self.recovered += killed_here
                    self.log(f"    {kind} restarted and finished ({_first_line(run)})")
            return run
        assert run is not None
        self.violation(f"step {kind} {' '.join(args)}: not done after {STEP_ATTEMPTS} attempts "
                       f"({run.error_code or run.exitcode}: {run.err.strip()[-300:]})")
        return run

    def step_ok(self, kind: str, *args: str) -> StepRun:
        run = self.step(kind, *args)
        if run.exitcode not in (0, None) and run.error_code not in RETRYABLE:
            self.violation(f"step {kind} {' '.join(args)} refused: {run.err.strip()[-300:]}")
        return run

    # -- day T ---------------------------------------------------------------------------------

    def onboard(self) -> None:
        opened = 0
        for user in self.users:
            register_user(self.c, user.user_id, user.identity)
            try:
                if self.with_operator(f"opening for {user.user_id}",
                                      partial(open_account, self.c, user.user_id)) is not None:
                    opened += 1
            except BankApiError as exc:
                self.notes.append(f"opening refused for {user.user_id}: {exc.bank_code} {exc}")
        self.log(f"  {opened}/{len(self.users)} accounts opened (through busy errors, lost and late answers)")

    def account(self, user: DemoUser) -> str | None:
        value = self.c.store.scalar("SELECT account_no FROM users WHERE user_id = ?", (user.user_id,))
        return None if value is None else str(value)

    def at_bank(self, user_id: str) -> int:
        """What the user's Class III account should hold once everything is settled."""
        t = self.truth
        paid = sum(fen for uid, fen in t.paid.values() if uid == user_id)
        return paid - t.consumed[user_id] - t.refunded[user_id]

    def topups(self, day: date, n: int) -> None:
        ordered = paid = 0
        now = self.s.now()
        for user in self.users:
            if self.account(user) is None or self.rng.random() > 0.75:
                continue
            amount = self.rng.randrange(20, 300) * 100 + self.rng.choice((0, 50))
            if self.at_bank(user.user_id) + amount > CAP_HEADROOM:
                continue
            order = f"TOPUP-{day:%Y%m%d}-{user.user_id}"
            create_order(self.c, user.user_id, order, amount)
            ordered += 1
            if self.rng.random() < 0.92:  # some users never pay
                self.s.call("POST", f"/wechat/orders/{order}/pay", {})
                self.truth.paid[order] = (user.user_id, amount)
                self.truth.paid_at[order] = now
                paid += 1
        self.s.advance("3h")  # notifications delivered, dropped, doubled, late or ignored
        self.log(f"  day {n} ({day}): {ordered} top-up orders, {paid} paid on WeChat")

    def spend(self, day: date) -> None:
        rides = refunds = 0
        for user in self.users:
            cash = wallet.balances(self.c.store, user.user_id).cash_available
            if cash <= 0:
                continue
            if self.rng.random() < 0.6:
                amount = min(cash, self.rng.randrange(5, 80) * 100)
                if consume(self.c, user.user_id, f"RIDE-{day:%Y%m%d}-{user.user_id}", amount, "骑行费"):
                    self.truth.consumed[user.user_id] += amount
                    self.truth.consumptions += 1
                    rides += 1
                    cash -= amount
            if cash > 0 and self.rng.random() < 0.15:
                amount = min(cash, 1000)
                serial = f"RF-{day:%Y%m%d}-{user.user_id}"
                run = self.step("refund", "--user", user.user_id, "--serial", serial,
                                "--amount", format_fen(amount))
                answer = run.answer() if run.exitcode == 0 else None
                if answer is not None and answer.get("state") == "PAID":
                    self.truth.refunded[user.user_id] += amount
                    self.truth.refunds += 1
                    refunds += 1
                elif answer is None:
                    self.violation(f"refund {serial} never finished: {run.err.strip()[-300:]}")
        self.log(f"  {rides} rides paid from balances, {refunds} refunds to bound cards")

    # -- T+1 -----------------------------------------------------------------------------------

    def open_batches(self) -> list[Any]:
        return self.c.store.all("SELECT batch_no, state FROM batches WHERE state IN (?, ?, ?) "
                                "ORDER BY batch_no", OPEN_BATCH_STATES)

    def ask_bank_for_returns(self) -> None:
        """The operator's answer to an overdue or incomplete batch: the bank sends the file now."""
        overdue = {int(r["ref"]) for r in self.c.store.all(
            "SELECT ref FROM alerts WHERE kind = 'return_overdue'")}
        waiting = {int(r["batch_no"]): r["state"] for r in self.open_batches()}
        for batch_no in sorted(b for b, state in waiting.items()
                               if (b in overdue and state == "SENT") or state == "INCOMPLETE"):
            if batch_no in self.asked_bank:
                continue
            self.asked_bank.add(batch_no)
            fault = self.s.call("GET", f"/batches/{APP}/{batch_no}").get("file_fault") or {}
            r = self.s.admin.post(f"/batches/{APP}/{batch_no}/return")
            why = "overdue alert" if waiting[batch_no] == "SENT" else "return incomplete"
            if r.status_code == 200:
                self.operator["return forced"] += 1
                self.log(f"    operator: batch {batch_no} ({why}, bank fault {fault.get('name')}): "
                         f"asked the bank to send the return file now")
            else:
                self.stuck.add(batch_no)
                self.violation(f"batch {batch_no} ({why}, bank fault {fault.get('name')}): the operator "
                               f"cannot get a return file: POST /_admin/batches/{APP}/{batch_no}/return "
                               f"answered {r.status_code} {r.text[:160]}")

    def poll_until_answered(self, what: str) -> None:
        for _ in range(POLL_ROUNDS):
            waiting = [int(r["batch_no"]) for r in self.open_batches()]
            if not [b for b in waiting if b not in self.stuck]:
                return
            self.s.advance(POLL_STEP)
            if any(r["state"] == "BUILT" for r in self.open_batches()):
                self.step_ok("upload")
            self.step_ok("poll-returns")
            self.ask_bank_for_returns()
        left = [f"{r['batch_no']} {r['state']}" for r in self.open_batches()
                if int(r["batch_no"]) not in self.stuck]
        if left:
            self.violation(f"{what}: batches {', '.join(left)} still waiting after {POLL_ROUNDS} polls")

    def unresolved_failures(self) -> int:
        return int(self.c.store.scalar(
            "SELECT count(*) FROM batch_records r WHERE r.state IN ('FAILED', 'REJECTED') AND r.resent = 0 "
            "AND NOT EXISTS (SELECT 1 FROM batch_records s WHERE s.state = 'SUCCESS' AND "
            "coalesce(s.original_id, s.record_id) = coalesce(r.original_id, r.record_id))"))

    def settle_batches(self, what: str) -> None:
        self.poll_until_answered(what)
        for _ in range(RESUBMIT_ROUNDS):
            if not self.unresolved_failures():
                return
            self.step_ok("resubmit")
            self.poll_until_answered(f"{what} re-submission")
        if self.unresolved_failures():
            self.violation(f"{what}: {self.unresolved_failures()} failed records still not re-sent")

    def settle_day(self, t: date) -> None:
        day = t.isoformat()
        self.step_ok("reconcile", "--date", day)
        self.step_ok("approve", "--date", day, "--by", "ops.survival")
        self.s.advance_to(self.s.now().replace(hour=10, minute=5))  # WeChat settled at 10:00
        self.step_ok("disburse", "--date", day)
        self.settle_batches(f"disbursement of {day}")
        self.step_ok("withhold", "--date", day)
        self.settle_batches(f"withholding of {day}")

    def extra_kills(self, t: date) -> None:
        """Spend what is left of the kill budget on idempotent re-runs of the last day's steps."""
        day = t.isoformat()
        if self.kill_budget > 0:
            self.log(f"  {self.kill_budget} kills left: idempotent re-runs of the steps of {day}, killed")
        args = {"reconcile": ("--date", day), "disburse": ("--date", day),
                "withhold": ("--date", day), "poll-returns": (), "resubmit": ()}
        for _ in range(4 * self.kill_budget):
            if self.kill_budget <= 0:
                return
            kind = self.rng.choice(EXTRA_KINDS)
            self.step(kind, *args[kind], force_kill=True)

    # -- checks --------------------------------------------------------------------------------

    def books_agree(self, when: str) -> None:
        """check_balances (retried while the bank is unreachable), the 98 account, invariants."""
        result: dict[str, Any] = {}
        for _ in range(BALANCE_CHECK_ATTEMPTS):
            result = check_balances(self.c)
            if not any("unavailable" in d for d in result["differences"]):
                break
        for diff in result["differences"]:
            self.violation(f"{when}: platform vs bank: {diff}")
        sup = result["supervision"]
        bank_98 = parse_yuan(self.s.call("GET", f"/accounts/{self.c.config.supervision_account}")["balance"])
        want = parse_yuan(OPENING_98) + sup["net_expected"]
        if bank_98 != want:
            self.violation(f"{when}: 98 account {format_fen(bank_98)} at the bank, the platform expects "
                           f"{OPENING_98} + settled {format_fen(sup['settlements_expected'])} - disbursed "
                           f"{format_fen(sup['disbursed'])} = {format_fen(want)}")
        invariants = self.s.call("GET", "/invariants")
        if not invariants["ok"]:
            self.violation(f"{when}: bank invariants: {invariants['violations']}")

    def exactly_once(self) -> tuple[int, int]:
        """Per original record, successes in the bank's manifests; top-ups against the truth."""
        bank_results: dict[tuple[int, str], str] = {}
        for b in self.s.call("GET", f"/batches?app_id={APP}"):
            for r in self.s.call("GET", f"/batches/{APP}/{b['batch_no']}")["records"]:
                bank_results[(int(b["batch_no"]), r["serial"])] = r["result"]
        rows = self.c.store.all("SELECT record_id, batch_no, serial, original_id, kind, source_ref, "
                                "user_id, account_no, amount FROM batch_records ORDER BY record_id")
        known = {(int(r["batch_no"]), r["serial"]) for r in rows}
        for key in sorted(set(bank_results) - known):
            self.violation(f"the bank has record {key[1]} of batch {key[0]} the platform never sent")
        attempts: dict[int, list[Any]] = defaultdict(list)
        for r in rows:
            attempts[r["original_id"] or r["record_id"]].append(r)
        originals = {r["record_id"]: r for r in rows if r["original_id"] is None}
        for rid, original in originals.items():
            ok = sum(1 for a in attempts[rid] if bank_results.get((int(a["batch_no"]), a["serial"])) == "S")
            if ok != 1:
                self.violation(f"{original['kind']} record {original['serial']} ({original['source_ref']}): "
                               f"{ok} successful postings at the bank across {len(attempts[rid])} attempts")
        df = {r["source_ref"]: r for r in originals.values() if r["kind"] == "DF"}
        users = {u.user_id: self.account(u) for u in self.users}
        for order, (user_id, fen) in sorted(self.truth.paid.items()):
            rec = df.get(order)
            if rec is None:
                self.violation(f"paid top-up {order} ({user_id}, {format_fen(fen)}) was never disbursed")
            elif (rec["account_no"], rec["amount"]) != (users[user_id], fen):
                self.violation(f"top-up {order} disbursed as {rec['account_no']} "
                               f"{format_fen(rec['amount'])}, paid {users[user_id]} {format_fen(fen)}")
        for order in sorted(df.keys() - self.truth.paid.keys()):
            self.violation(f"top-up {order} was disbursed but never paid on WeChat")
        dk = sum(1 for r in originals.values() if r["kind"] == "DK")
        if dk != self.truth.consumptions:
            self.violation(f"{dk} withholding records for {self.truth.consumptions} consumptions")
        for user in self.users:
            account = users[user.user_id]
            if account is None:
                continue
            bank = parse_yuan(self.s.call("GET", f"/accounts/{account}")["balance"])
            if bank != self.at_bank(user.user_id):
                self.violation(f"{user.user_id} {account}: bank balance {format_fen(bank)}, paid in - spent "
                               f"- refunded = {format_fen(self.at_bank(user.user_id))}")
        return len(df), dk

    def events(self, kind: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        since = 0
        while True:
            page: list[dict[str, Any]] = self.s.call(
                "GET", f"/events?kind={kind}&since_id={since}&limit=10000")
            found += page
            if len(page) < 10_000:
                return found
            since = page[-1]["id"]

    def fault_counts(self) -> dict[str, Counter[str]]:
        """What was injected (the bank's timeline and notification log) and what the platform saw."""
        bank: Counter[str] = Counter()
        for e in self.events("request"):
            fault = (e.get("detail") or {}).get("fault") or ""
            if fault.startswith("rate: "):
                bank[fault[6:]] += 1
        sftp: Counter[str] = Counter(logins_refused=len(self.events("sftp.login_refused")))
        sftp["uploads_dropped"] = sum(1 for e in self.events("sftp.refused")
                                      if "drop_upload_rate" in json.dumps(e.get("detail") or {}))
        files: Counter[str] = Counter()
        for e in self.events("batch.processed"):
            detail = e.get("detail") or {}
            if detail.get("file_fault"):
                files[str(detail["file_fault"]).removeprefix("rate ")] += 1
            files["records_3028"] += int((detail.get("by_code") or {}).get("3028", 0))
        notes: Counter[str] = Counter()
        for d in self.s.call("GET", "/wechat/notifications"):
            if d["outcome"] == "DROPPED":
                notes["dropped"] += 1
            if d["copy"] == 2 and d["attempt"] == 1:
                notes["duplicated"] += 1
            if d["outcome"] == "IGNORED":
                notes["answers_ignored"] += 1
            paid_at = self.truth.paid_at.get(d["out_trade_no"])
            if d["attempt"] == 1 and d["copy"] == 1 and paid_at and d["due"] and \
                    datetime.fromisoformat(d["due"]) > paid_at:
                notes["delayed"] += 1
        platform: Counter[str] = Counter()
        for r in self.c.store.all("SELECT kind, count(*) AS n FROM alerts GROUP BY kind"):
            platform[f"alert {r['kind']}"] = int(r["n"])
        platform["dropped orders credited by reconciliation"] = int(self.c.store.scalar(
            "SELECT count(*) FROM orders WHERE credited_via = 'reconcile'"))
        platform["duplicate notifications answered"] = int(self.c.store.scalar(
            "SELECT count(*) FROM notifications WHERE outcome = 'duplicate'"))
        for code, n in self.step_retries.items():
            platform[f"steps retried ({code})"] = n
        for action, n in self.operator.items():
            platform[f"operator: {action}"] = n
        return {"bank API": bank, "SFTP": sftp, "return files": files, "notifications": notes,
                "platform": platform}

    # -- the whole run -------------------------------------------------------------------------

    def run(self) -> None:
        self.start()
        try:
            with NotifyServer(self.c):
                self.log(f"bank at {self.s.url}, SFTP port {self.s.sftp_port}, work in {self.workdir}")
                self.onboard()
                last = self.s.now().date()
                for n in range(1, self.days + 1):
                    t = self.s.now().date()
                    last = t
                    day_start = self.invocations
                    self.topups(t, n)
                    self.spend(t)
                    self.s.call("POST", "/clock/next-business-day", {"at": "09:30"})
                    self.log(f"  T+1 for {t}")
                    self.settle_day(t)
                    self.books_agree(f"end of T+1 for {t}")
                    if n == 1:
                        self.expected_invocations = max(1, self.invocations - day_start) * self.days
                self.extra_kills(last)
                self.books_agree("at the end")
                self.dk_df = self.exactly_once()
                for problem in store_problems(self.c):
                    self.violation(f"at the end: {problem}")
                self.faults = self.fault_counts()
        finally:
            self.stop()



def store_problems(ctx: Context) -> list[str]:
    """What in the platform's store breaks "one transaction per step"; empty when consistent."""
    s = ctx.store
    problems: list[str] = []
    integrity = s.scalar("PRAGMA integrity_check")
    if integrity != "ok":
        problems.append(f"store integrity: {integrity}")
    problems += [f"foreign key: {dict(r)}" for r in s.all("PRAGMA foreign_key_check")]
    problems += journal_differences(ctx)
    for b in s.all(
            "SELECT b.batch_no, b.state, b.record_count, b.total, count(r.record_id) AS n, "
            "coalesce(sum(r.amount), 0) AS fen, coalesce(sum(r.state = 'WAITING'), 0) AS waiting "
            "FROM batches b LEFT JOIN batch_records r ON r.batch_no = b.batch_no GROUP BY b.batch_no"):
        no, state = b["batch_no"], b["state"]
        if (b["n"], b["fen"]) != (b["record_count"], b["total"]):
            problems.append(f"batch {no}: {b['n']} records / {b['fen']} fen, header {b['record_count']} / "
                            f"{b['total']}")
        if state in ("BUILT", "SENT") and b["waiting"] != b["n"]:
            problems.append(f"batch {no} {state} but only {b['waiting']}/{b['n']} records waiting")
        elif state == "RETURNED" and b["waiting"]:
            problems.append(f"batch {no} RETURNED with {b['waiting']} records waiting")
        elif state == "INCOMPLETE" and not b["waiting"]:
            problems.append(f"batch {no} INCOMPLETE with no record waiting")
        elif state not in ("BUILT", "SENT", "RETURNED", "INCOMPLETE", "REJECTED"):
            problems.append(f"batch {no} in unknown state {state}")
    for r in s.all("SELECT serial FROM batch_records r WHERE r.resent = 1 AND NOT EXISTS (SELECT 1 FROM "
                   "batch_records n WHERE n.original_id = coalesce(r.original_id, r.record_id) "
                   "AND n.record_id > r.record_id)"):
        problems.append(f"record {r['serial']} marked re-sent without a next attempt")
    for r in s.all("SELECT serial, state FROM batch_records WHERE state NOT IN "
                   "('WAITING', 'SUCCESS', 'FAILED', 'REJECTED')"):
        problems.append(f"record {r['serial']} in state {r['state']}")
    pairs = [
        ("DF successes", "SELECT source_ref FROM batch_records WHERE kind = 'DF' AND state = 'SUCCESS'",
         "journal 'disbursed'",
         "SELECT ref FROM journal WHERE kind = 'disbursed' AND bucket = 'cash_available'"),
        ("credited orders", "SELECT out_trade_no FROM orders WHERE credited_via IS NOT NULL",
         "journal 'topup'", "SELECT ref FROM journal WHERE kind = 'topup'"),
        ("consumptions", "SELECT consumption_id FROM consumptions",
         "journal 'consume'", "SELECT ref FROM journal WHERE kind = 'consume'"),
        ("refunds", "SELECT serial FROM refunds", "journal 'refund_hold'",
         "SELECT ref FROM journal WHERE kind = 'refund_hold' AND bucket = 'cash_frozen'"),
        ("paid refunds", "SELECT serial FROM refunds WHERE state = 'PAID'", "journal 'refund_paid'",
         "SELECT ref FROM journal WHERE kind = 'refund_paid'"),
        ("failed refunds", "SELECT serial FROM refunds WHERE state = 'FAILED'", "journal 'refund_release'",
         "SELECT ref FROM journal WHERE kind = 'refund_release' AND bucket = 'cash_frozen'"),
    ]
    for left_name, left_sql, right_name, right_sql in pairs:
        left = Counter(str(r[0]) for r in s.all(left_sql))
        right = Counter(str(r[0]) for r in s.all(right_sql))
        if left != right:
            problems.append(f"{left_name} and {right_name} differ: only in the first "
                            f"{sorted((left - right).elements())[:5]}, only in the second "
                            f"{sorted((right - left).elements())[:5]}")
    return problems


def _first_line(run: StepRun) -> str:
    text = " ".join(run.out.split())
    return text[:100] + ("..." if len(text) > 100 else "") if run.exitcode == 0 else \
        f"exit {run.exitcode}: {run.err.strip()[-100:]}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_survival(*, users: int, days: int, kills: int, seed: int, rates: Rates = Rates(),
                 workdir: Path | None = None, log: Callable[[str], None] = print) -> Harness:
    """One run; the returned harness holds kills, recovered, violations and the fault counts.

    Example::

        h = run_survival(users=5, days=2, kills=5, seed=7)
        assert not h.violations and h.recovered == h.kills
    """
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="banksim-survival-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    harness = Harness(root, users=users, days=days, kills=kills, seed=seed, rates=rates, log=log)
    try:
        harness.run()
    except Exception as exc:  # the harness itself must report, not crash
        harness.violation(f"harness error: {type(exc).__name__}: {exc}")
    if own and not harness.violations:
        shutil.rmtree(root, ignore_errors=True)
    elif harness.violations:
        log(f"platform store, step outputs and bank log kept in {root}")
    return harness


def summary(h: Harness, seconds: float) -> list[str]:
    lines = ["=== faults seen ==="]
    for area, counts in h.faults.items():
        shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(counts.items()) if v)
        lines.append(f"  {area}: {shown or 'none'}")
    lines.append("=== end state ===")
    lines.append(f"  {h.dk_df[0]} top-ups and {h.dk_df[1]} consumptions, each settled exactly once at "
                 f"the bank; {h.truth.refunds} refunds paid")
    lines.append(f"  kills by step: {dict(sorted(h.killed_kinds.items()))} ({h.missed_kills} planned kills "
                 f"came after the step had finished)")
    lines.append(f"({seconds:.0f} s)")
    lines.append(f"{h.kills} platform kills, {h.recovered} recovered, {len(h.violations)} violations")
    lines += [f"  {v}" for v in h.violations]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.survival_harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rate", type=float, default=None,
                        help="set every fault rate (HTTP, SFTP, files, notifications) to this")
    parser.add_argument("--stuck-rate", type=float, default=Rates.stuck,
                        help="rate of never / truncated / missing_records return files, each "
                             "(recovered by asking the bank to send the return file again)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the store, step outputs and bank log go (default: a temp dir)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rates = Rates(stuck=args.stuck_rate)
    if args.rate is not None:
        rates = Rates(http=args.rate, sftp=args.rate, files=args.rate, notify=args.rate,
                      stuck=args.stuck_rate)
    print(f"survival harness: {args.users} users, {args.days} days, {args.kills} kills, seed {seed}; "
          f"rates {rates}", flush=True)
    started = time.monotonic()
    h = run_survival(users=args.users, days=args.days, kills=args.kills, seed=seed, rates=rates,
                     workdir=args.workdir, log=lambda s: print(s, flush=True))
    for line in summary(h, time.monotonic() - started):
        print(line)
    if h.notes:
        print(f"notes ({len(h.notes)}):")
        for note in h.notes:
            print(f"  {note}")
    return 1 if h.violations or h.recovered != h.kills else 0


if __name__ == "__main__":
    # Run through the package module, so that the fork server's children find the same
    # functions under the same names.
    from bench import survival_harness

    sys.exit(survival_harness.main())
