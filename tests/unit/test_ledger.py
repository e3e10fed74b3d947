"""Ledger postings, limits and the invariants check (pure rules and gathered snapshot)."""

from __future__ import annotations

from datetime import date

import pytest

from simulator.domain.invariants import AccountFigures, Snapshot, check, take_snapshot
from simulator.domain.ledger import CLEARING_ACCOUNT, Ledger, Leg, OutflowLimits
from simulator.errors import BalanceCapExceeded, InsufficientBalance, NoSuchAccount, OverLimit
from simulator.store import Store

DAY = date(2026, 1, 5)


@pytest.fixture
def ledger() -> Ledger:
    led = Ledger(Store.open(None))
    with led.store.transaction():
        led.create_account(account_no=CLEARING_ACCOUNT, kind="INTERNAL", name="clearing",
                           opened_us=0, allow_negative=True)
        led.create_account(account_no="A", kind="CLASS_III", name="甲", opened_us=0,
                           balance_cap_fen=200_000)
        led.create_account(account_no="B", kind="SETTLEMENT", name="乙", opened_us=0)
    return led


def deposit(ledger: Ledger, account: str, fen: int) -> int:
    return ledger.post(kind="deposit", at_us=1, business_date=DAY,
                       legs=[Leg(CLEARING_ACCOUNT, -fen), Leg(account, fen)])


def test_posting_moves_both_legs_and_conserves_money(ledger: Ledger) -> None:
    deposit(ledger, "A", 12_345)
    assert ledger.balance("A") == 12_345
    assert ledger.balance(CLEARING_ACCOUNT) == -12_345
    assert check(take_snapshot(ledger.store)) == []


def test_unbalanced_or_empty_legs_are_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        ledger.post(kind="deposit", at_us=1, business_date=DAY, legs=[Leg("A", 5), Leg("B", -4)])
    with pytest.raises(ValueError, match="move money"):
        ledger.post(kind="deposit", at_us=1, business_date=DAY,
                    legs=[Leg("A", 0), Leg("B", 0)])
    assert ledger.store.scalar("SELECT COUNT(*) FROM txns") == 0


def test_insufficient_balance_writes_nothing(ledger: Ledger) -> None:
    deposit(ledger, "A", 100)
    with pytest.raises(InsufficientBalance):
        ledger.post(kind="withholding", at_us=1, business_date=DAY, legs=[Leg("A", -101), Leg("B", 101)])
    assert (ledger.balance("A"), ledger.balance("B")) == (100, 0)
    assert ledger.store.scalar("SELECT COUNT(*) FROM txns") == 1


def test_cap_and_unknown_account(ledger: Ledger) -> None:
    deposit(ledger, "A", 200_000)
    with pytest.raises(BalanceCapExceeded):
        deposit(ledger, "A", 1)
    with pytest.raises(NoSuchAccount):
        deposit(ledger, "NOPE", 1)
    assert ledger.balance("A") == 200_000


def test_postings_are_immutable(ledger: Ledger) -> None:
    deposit(ledger, "A", 100)
    import sqlite3

    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        ledger.store.execute("UPDATE postings SET amount_fen = 1")
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        ledger.store.execute("DELETE FROM postings")


def test_outflow_limits_per_day_and_year(ledger: Ledger) -> None:
    limits = OutflowLimits(daily_fen=1_000, annual_fen=1_500)
    ledger.consume_outflow("A", 600, DAY, limits)
    with pytest.raises(OverLimit, match="daily"):
        ledger.consume_outflow("A", 401, DAY, limits)
    ledger.consume_outflow("A", 400, DAY, limits)
    next_day = date(2026, 1, 6)
    with pytest.raises(OverLimit, match="annual"):
        ledger.consume_outflow("A", 501, next_day, limits)
    assert ledger.outflow_used("A", DAY) == (1_000, 1_000)
    assert ledger.outflow_used("A", next_day) == (0, 1_000)
    assert ledger.outflow_used("A", date(2027, 1, 1)) == (0, 0)


def _figures(no: str, balance: int, postings: int, *, negative: bool = False,
             cap: int | None = None) -> AccountFigures:
    return AccountFigures(no, "CLASS_III", balance, postings, negative, cap)


def test_check_reports_each_rule() -> None:
    snapshot = Snapshot(
        accounts=[_figures("A", 300, 250, cap=200), _figures("B", -50, -50),
                  _figures("C", 0, 0, negative=True)],
        unbalanced_txns=[(7, 1, 10)],
        outflow_counters={("A", "D:2026-01-05"): 100},
        outflow_recomputed={("A", "D:2026-01-05"): 90},
    )
    rules = sorted(v.rule for v in check(snapshot))
    assert rules == ["balance-cap", "balance-matches-postings", "balanced-postings",
                     "money-conserved", "no-negative-balance", "outflow-counter"]


def test_snapshot_catches_a_tampered_balance(ledger: Ledger) -> None:
    deposit(ledger, "A", 500)
    ledger.store.execute("UPDATE accounts SET balance_fen = 400 WHERE account_no = 'A'")
    rules = {v.rule for v in check(take_snapshot(ledger.store))}
    assert rules == {"balance-matches-postings", "money-conserved"}


def test_snapshot_catches_an_uncounted_outflow(ledger: Ledger) -> None:
    deposit(ledger, "A", 500)
    ledger.post(kind="refund", at_us=2, business_date=DAY,
                legs=[Leg("A", -200), Leg(CLEARING_ACCOUNT, 200)])
    violations = check(take_snapshot(ledger.store))
    assert [v.rule for v in violations] == ["outflow-counter", "outflow-counter"]
    ledger.consume_outflow("A", 200, DAY, OutflowLimits(10_000, 10_000))
    assert check(take_snapshot(ledger.store)) == []
