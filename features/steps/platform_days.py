"""Several business days of the whole flow, played by the platform client (seeded).

Each day T: some users top up by WeChat (a few never pay), users with cash take rides.
The next morning: reconciliation of T's bill (dropped notifications found and credited),
approval, at 10:05 (after WeChat's settlement) the disbursement batch, return polling every
20 minutes, operators fixing what failed and re-submitting until every original record has
succeeded, then the withholding of T's rides (after the top-ups) with the same loop.
Every choice comes from ``random.Random(seed)``, so a seed is one fixed run.

Profiles (laid over the session's profile for one scenario): ``default`` changes nothing;
``faults-heavy`` drops, duplicates, delays and ignores notifications, fails records with
3028 (system busy) and writes return files late or twice, all at seeded rates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from features.steps.platform_world import PlatformWorld
from platform_client import wallet
from platform_client.payouts import disburse, resubmit, withhold
from platform_client.spending import consume

PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "faults-heavy": {
        "wechat": {"notify": {"rates": {"drop": 0.15, "duplicate": 0.15, "delay": 0.1, "delay_by": "30m",
                                        "ignore_answer": 0.1}}},
        "batches": {"rates": {"3028": 0.1},
                    "file_fault_rates": {"late": 0.3, "late_by": "1h", "twice": 0.2}},
    },
}
TOPUP_RATE = 0.7
UNPAID_RATE = 0.1
RIDE_RATE = 0.6
FIX_ROUNDS = 5  # re-submission rounds per batch kind and day; 3028 at 10% settles in one or two


@dataclass
class DaysRun:
    """What the days did, for the report of a failing scenario."""

    topups: int = 0
    unpaid: int = 0
    rides: int = 0
    resubmissions: int = 0
    batches: list[int] = field(default_factory=list)


def _top_ups(world: PlatformWorld, rng: random.Random, run: DaysRun) -> None:
    for name in world.user_ids:
        if rng.random() > TOPUP_RATE:
            continue
        amount = rng.randrange(10, 300) * 100 + rng.choice((0, 50))
        out_trade_no = world.order(name, amount)
        if rng.random() < UNPAID_RATE:
            run.unpaid += 1  # the order stays NOTPAY: never credited, never in the bill
            continue
        world.control.call("POST", f"/wechat/orders/{out_trade_no}/pay", json={})
        run.topups += 1


def _rides(world: PlatformWorld, rng: random.Random, run: DaysRun) -> None:
    for name, user_id in world.user_ids.items():
        cash = wallet.balances(world.ctx.store, user_id).cash_available
        if cash <= 0 or rng.random() > RIDE_RATE:
            continue
        run.rides += 1
        amount = min(cash, rng.randrange(2, 60) * 100 + rng.choice((0, 50)))
        consume(world.ctx, user_id, f"RIDE-{run.rides:05d}", amount, f"{name}的骑行费")


def _fix_and_resubmit(world: PlatformWorld, run: DaysRun) -> None:
    """Operators re-submit failures until every original record has succeeded (bounded)."""
    for _ in range(FIX_ROUNDS):
        result = resubmit(world.ctx)
        if not result.batches:
            assert not result.held, f"failures held with no fix in this run: {result.held}"
            return
        run.resubmissions += len(result.batches)
        run.batches += result.batches
        world.poll_until_answered()
    raise AssertionError(f"records still failing after {FIX_ROUNDS} re-submissions")


def _settle(world: PlatformWorld, t: date, run: DaysRun) -> None:
    """The morning after ``t``: reconcile, approve, disburse, returns, withhold, returns."""
    world.reconcile(t)
    world.approve(t)
    world.advance_to(world.ctx.now().date(), "10:05")  # WeChat settles T into the 98 account at 10:00
    batch = disburse(world.ctx, t.isoformat())
    if batch is not None:
        run.batches.append(batch)
        world.poll_until_answered()
    _fix_and_resubmit(world, run)
    dk = withhold(world.ctx, t.isoformat())
    if dk is not None:
        run.batches.append(dk)
        world.poll_until_answered()
    _fix_and_resubmit(world, run)


def run_days(world: PlatformWorld, days: int, seed: int) -> DaysRun:
    """``days`` business days of top-ups and rides, each settled the next morning."""
    rng = random.Random(seed)
    run = DaysRun()
    for _ in range(days):
        t = world.ctx.clock.business_date()
        _top_ups(world, rng, run)
        _rides(world, rng, run)
        # Notifications (and their retries) go out as the clock passes them.
        world.control.next_business_day("09:30")
        _settle(world, t, run)
    return run
