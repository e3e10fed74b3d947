"""The platform's side of a scenario: the platform client on a fresh bank, and what it made.

Phase 2 scenarios play the platform with the real client (``platform_client``), as a
platform would run it against a bank: WeChat top-up orders and notifications, T+1
reconciliation, disbursement and withholding batches, return polling, re-submission and
balance checks. :class:`PlatformWorld` wraps the plugin's ``platform_client`` fixture (a
``Context`` with its own store, the bank's clock and a notify endpoint) and the scenario
context (people, the control API), and remembers what the steps made: platform user ids
by person, orders by person, batch labels by number.

The types below add to :mod:`features.steps.types`: a business day (``T``, ``T+1``, a date),
a clock time of day, and reconciliation kinds and statuses in words.

Example::

    def test_flow(platform_world):
        platform_world.enrol("张三", approved=True)
        order = platform_world.top_up("张三", 10000)          # created, paid, notified
        platform_world.control.advance(to="2026-01-06T09:30")
        platform_world.reconcile(platform_world.day("T"))
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from pytest_bdd import parsers

from contracts.money import format_fen
from features.steps.context import Person, ScenarioContext
from features.steps.types import EXTRA_TYPES, _pattern
from platform_client.context import Context
from platform_client.onboarding import open_account, refresh_account, register_user
from platform_client.payouts import poll_returns
from platform_client.reconciliation import approve, reconcile
from platform_client.topups import create_order

POLL_STEP = "20m"  # the bank's documented return-poll interval
POLL_ROUNDS = 12  # 4 h of bank time: past every documented delay (late return files: 2 h)
APPROVER = "ops.li"

# WeChat's magic order suffixes (default profile) for each notification fault in words.
NOTIFY_FAULTS = {"dropped": "-DROP", "丢失": "-DROP", "sent twice": "-DUP", "重复送达": "-DUP",
                 "2 hours late": "-LATE", "迟到2小时": "-LATE"}


# -- types ------------------------------------------------------------------------------------


_DAY = re.compile(r"T(?:(?P<sign>[+-])(?P<days>[0-9]+))?|(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})")


@_pattern(r"T(?:[+-][0-9]+)?|[0-9]{4}-[0-9]{2}-[0-9]{2}")
def day(text: str) -> str:
    """A business day: ``T`` (the scenario's first), ``T+1``, or a date (kept as text)."""
    return text


@_pattern(r"[0-2][0-9]:[0-5][0-9]")
def time_of_day(text: str) -> str:
    """``23:00``: a time of day (Beijing), as profiles and the client's config write it."""
    return text


_KINDS = {"matched": "MATCHED", "一致": "MATCHED", "dropped": "DROPPED", "掉单": "DROPPED",
          "platform-only": "PLATFORM_ONLY", "平台单边": "PLATFORM_ONLY",
          "refunded on the channel": "CHANNEL_REFUND", "渠道退款": "CHANNEL_REFUND"}
_STATUSES = {"ok": "OK", "正常": "OK", "resolved": "RESOLVED", "已处理": "RESOLVED",
             "held for review": "HELD", "挂起待查": "HELD"}


@_pattern("|".join(re.escape(k) for k in sorted(_KINDS, key=len, reverse=True)))
def recon_kind(text: str) -> str:
    """A reconciliation item's kind in words -> the client's kind (``dropped`` -> DROPPED)."""
    return _KINDS[text]


@_pattern("|".join(re.escape(k) for k in sorted(_STATUSES, key=len, reverse=True)))
def recon_status(text: str) -> str:
    """A reconciliation item's status in words -> OK, RESOLVED or HELD."""
    return _STATUSES[text]


@_pattern("|".join(re.escape(k) for k in sorted(NOTIFY_FAULTS, key=len, reverse=True)))
def notify_fault(text: str) -> str:
    """What happens to a payment notification -> WeChat's magic order suffix."""
    return NOTIFY_FAULTS[text]


PLATFORM_TYPES = {**EXTRA_TYPES, "Day": day, "TimeOfDay": time_of_day, "ReconKind": recon_kind,
                  "ReconStatus": recon_status, "NotifyFault": notify_fault}


def platform_phrase(text: str) -> parsers.parse:
    """:func:`features.steps.types.phrase` with the platform's types as well (``{d:Day}``)."""
    return parsers.parse(text, extra_types=PLATFORM_TYPES, case_sensitive=True)


# -- the world --------------------------------------------------------------------------------


class PlatformWorld:
    """The platform client of one scenario, and the users, orders and batches it made."""

    def __init__(self, scenario: ScenarioContext, ctx: Context) -> None:
        self.scenario = scenario
        self.ctx = ctx
        self.control = scenario.control
        self.user_ids: dict[str, str] = {}
        self.orders: dict[str, list[str]] = {}
        self.batches: dict[str, int] = {}
        self.results: dict[str, Any] = {}  # what a When step produced, for its Then steps
        self._orders = 0

    # -- days and clock ------------------------------------------------------------------

    def day(self, text: str) -> date:
        """``T+1`` relative to the scenario's first business date, or an ISO date."""
        m = _DAY.fullmatch(text)
        if m is None:
            raise ValueError(f"not a business day: {text!r}")
        if m["date"]:
            return date.fromisoformat(m["date"])
        offset = int(m["days"] or 0) * (-1 if m["sign"] == "-" else 1)
        return self.scenario.business_date + timedelta(days=offset)

    def advance_to(self, day_: date, at: str) -> None:
        """Move the bank clock to ``day_ at`` unless it is already there or later."""
        now = self.ctx.now().replace(tzinfo=None)
        target = f"{day_.isoformat()}T{at}"
        if now.isoformat(timespec="minutes") < target:
            self.control.advance(to=target)

    # -- users ---------------------------------------------------------------------------

    def user_id(self, name: str) -> str:
        assert name in self.user_ids, f"{name} is not a platform user in this scenario"
        return self.user_ids[name]

    def enrol(self, name: str, *, approved: bool) -> Person:
        """Register ``name`` with the platform, which opens the Class III account at the bank.

        ``approved``: the bank approves the ID-card images at once (control API), as when
        they were sent and reviewed before the scenario starts.
        """
        person = self.scenario.new_person(name)
        user_id = f"U{len(self.user_ids) + 1:04d}"
        register_user(self.ctx, user_id, person.identity)
        person.account_no = open_account(self.ctx, user_id)
        person.opening_serial = f"OPEN-{user_id}"
        self.user_ids[name] = user_id
        if approved:
            self.control.activate(person.account)
            refresh_account(self.ctx, user_id)
        return person

    # -- top-ups -------------------------------------------------------------------------

    def next_order_no(self, suffix: str = "") -> str:
        """The next top-up order number of the scenario (``TOPUP-0001``), with a magic suffix."""
        self._orders += 1
        return f"TOPUP-{self._orders:04d}{suffix}"

    def order(self, name: str, amount: int, suffix: str = "") -> str:
        """A WeChat top-up order for ``name`` (recorded by the platform, then on the channel)."""
        out_trade_no = self.next_order_no(suffix)
        create_order(self.ctx, self.user_id(name), out_trade_no, amount)
        self.orders.setdefault(name, []).append(out_trade_no)
        return out_trade_no

    def pay(self, out_trade_no: str) -> None:
        """The user pays on WeChat; notifications due now are delivered before this returns."""
        self.control.call("POST", f"/wechat/orders/{out_trade_no}/pay", json={})
        self.control.call("POST", "/wechat/notifications/deliver")

    def top_up(self, name: str, amount: int, suffix: str = "") -> str:
        out_trade_no = self.order(name, amount, suffix)
        self.pay(out_trade_no)
        return out_trade_no

    def order_of(self, name: str, amount: int) -> str:
        """The one order of ``name`` for ``amount``."""
        rows = self.ctx.store.all("SELECT out_trade_no FROM orders WHERE user_id = ? AND amount = ?",
                                  (self.user_id(name), amount))
        assert len(rows) == 1, f"{name} has {len(rows)} orders of {format_fen(amount)}"
        return str(rows[0]["out_trade_no"])

    # -- T+1 -----------------------------------------------------------------------------

    def reconcile(self, day_: date) -> dict[str, Any]:
        return reconcile(self.ctx, day_.isoformat())

    def approve(self, day_: date) -> None:
        approve(self.ctx, day_.isoformat(), by=APPROVER)

    def label(self, label: str, batch_no: int | None) -> None:
        """Name the platform's batch ``batch_no`` ``label``; the label's digits are its number."""
        assert batch_no is not None, f"no batch was made for {label}"
        assert int(label[1:]) == batch_no, f"the platform numbered batch {label} {batch_no}"
        self.batches[label] = batch_no

    def batch_no(self, label: str) -> int:
        assert label in self.batches, f"the platform made no batch {label} in this scenario"
        return self.batches[label]

    def waiting_batches(self) -> int:
        return int(self.ctx.store.scalar(
            "SELECT count(*) FROM batches WHERE state IN ('BUILT', 'SENT', 'INCOMPLETE')"))

    def poll_until_answered(self) -> int:
        """Poll every 20 minutes of bank time until no batch waits; the number of polls."""
        for polls in range(1, POLL_ROUNDS + 1):
            self.control.advance(by=POLL_STEP)
            poll_returns(self.ctx)
            if not self.waiting_batches():
                return polls
        raise AssertionError(f"batches still waiting after {POLL_ROUNDS} polls: " + ", ".join(
            f"{r['batch_no']} {r['state']}" for r in self.ctx.store.all(
                "SELECT batch_no, state FROM batches WHERE state IN ('BUILT', 'SENT', 'INCOMPLETE')")))

    def record(self, name: str, label: str) -> Any:
        """The platform's record for ``name`` in batch ``label``."""
        rows = self.ctx.store.all("SELECT * FROM batch_records WHERE batch_no = ? AND user_id = ?",
                                  (self.batch_no(label), self.user_id(name)))
        assert len(rows) == 1, f"batch {label} has {len(rows)} records for {name}"
        return rows[0]


@pytest.fixture
def platform_world(scenario_context: ScenarioContext, platform_client: Context) -> PlatformWorld:
    """The platform client of this scenario on the scenario's freshly reset bank."""
    return PlatformWorld(scenario_context, platform_client)
