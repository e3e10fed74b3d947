"""Money rules below the adapters: account status in the ledger and the batch engine, the
invariants that catch their breach, statement kinds, scoped rates and retryable magic."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts.codec import load_layout
from simulator.bank import Bank
from simulator.bankfiles import STATEMENT_KINDS
from simulator.config import ProfileError
from simulator.domain.invariants import (
    AccountFigures,
    Snapshot,
    WatchedPosting,
    WechatFigures,
    check,
    take_snapshot,
)
from simulator.domain.ledger import CLEARING_ACCOUNT, KINDS, Ledger, Leg
from simulator.domain.outcomes import RecordDecider, RecordFacts, decide_record
from simulator.errors import AccountClosed, AccountFrozen
from simulator.store import Store
from tests.conftest import make_profile
from tests.unit.test_batches import APP, NAMES, open_accounts, read_return, request_file, upload

DAY = date(2026, 1, 5)
SETTLEMENT = "31010078801000001"
SUPERVISION = "98010078801000001"


@pytest.fixture
def ledger() -> Ledger:
    led = Ledger(Store.open(None))
    with led.store.transaction():
        led.create_account(account_no=CLEARING_ACCOUNT, kind="INTERNAL", name="clearing",
                           opened_us=0, allow_negative=True)
        led.create_account(account_no="A", kind="SUPERVISION", name="甲", opened_us=0)
    led.post(kind="deposit", at_us=1, business_date=DAY, legs=[Leg(CLEARING_ACCOUNT, -500), Leg("A", 500)])
    return led


# -- the ledger's status rules ------------------------------------------------------------------


def test_a_closed_account_takes_no_posting_and_a_frozen_one_pays_nothing_out(ledger: Ledger) -> None:
    out = [Leg("A", -100), Leg(CLEARING_ACCOUNT, 100)]
    ledger.store.execute("UPDATE accounts SET frozen = 2 WHERE account_no = 'A'")
    with pytest.raises(AccountFrozen):
        ledger.post(kind="refund", at_us=2, business_date=DAY, legs=out)
    # Credits still reach a frozen account (只收不付).
    ledger.post(kind="deposit", at_us=2, business_date=DAY, legs=[Leg(CLEARING_ACCOUNT, -1), Leg("A", 1)])
    ledger.store.execute("UPDATE accounts SET frozen = 0, status = 'CLOSED' WHERE account_no = 'A'")
    with pytest.raises(AccountClosed):
        ledger.post(kind="deposit", at_us=3, business_date=DAY, legs=[Leg(CLEARING_ACCOUNT, -1), Leg("A", 1)])
    assert ledger.balance("A") == 501


def test_the_ledger_writes_only_known_kinds(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="not a ledger transaction kind"):
        ledger.post(kind="channel_settlement", at_us=2, business_date=DAY,
                    legs=[Leg(CLEARING_ACCOUNT, -1), Leg("A", 1)])
    with pytest.raises(ValueError, match="not a ledger transaction kind"):
        ledger.open_bulk(kind="adjustment", at_us=2, business_date=DAY)


def test_every_ledger_kind_has_a_documented_statement_kind() -> None:
    documented = set(load_layout("statement").detail.fields[
        load_layout("statement").detail.names.index("txn_kind")].values or ())
    assert set(STATEMENT_KINDS) == KINDS
    assert {kind: STATEMENT_KINDS[kind] for kind in KINDS if STATEMENT_KINDS[kind] not in documented} == {}


@pytest.fixture
def bank(tmp_path: Path) -> Any:
    b = Bank(make_profile({"bank": {"open_active": True},
                           "platforms": [{**make_profile().as_dict()["platforms"][0],
                                          "supervision_opening_balance": "1000.00"}]}),
             tmp_path / "state")
    yield b
    violations = b.invariants()
    b.close()
    assert not violations, violations


def _run(bank: Bank, kind: str, batch: int, records: list[tuple[str, str, int]]) -> list[str]:
    name, data = request_file(kind, batch, records)
    assert upload(bank, name, data)["accepted"]
    bank.advance_to(bank.clock.now() + timedelta(minutes=25))
    return [d["code"] for d in read_return(bank, name.replace(".txt", "_RET.txt"))[1]]


def test_a_closed_settlement_account_receives_no_withholding(bank: Bank) -> None:
    [user] = open_accounts(bank, 1)
    assert _run(bank, "DF", 1, [(user, NAMES[0], 5000)]) == ["0000"]
    with bank.store.transaction():  # closed by the bank (no API closes it): the rule still holds
        bank.store.execute("UPDATE accounts SET status = 'CLOSED', closed_us = ? WHERE account_no = ?",
                           (bank.clock.now_us(), SETTLEMENT))
    assert _run(bank, "DK", 2, [(user, NAMES[0], 1000)]) == ["3018"]
    assert bank.ledger.balance(SETTLEMENT) == 0 and bank.ledger.balance(user) == 5000


def test_a_frozen_settlement_account_still_receives_withholding(bank: Bank) -> None:
    [user] = open_accounts(bank, 1)
    assert _run(bank, "DF", 1, [(user, NAMES[0], 5000)]) == ["0000"]
    bank.admin_set_frozen(SETTLEMENT, True, "司法冻结")
    assert _run(bank, "DK", 2, [(user, NAMES[0], 1000)]) == ["0000"]
    assert bank.ledger.balance(SETTLEMENT) == 1000


# -- invariants ----------------------------------------------------------------------------------


def _sound(**extra: Any) -> Snapshot:
    return Snapshot(accounts=[AccountFigures("A", "SUPERVISION", 0, 0, False, None)],
                    unbalanced_txns=[], outflow_counters={}, **extra)


def test_posting_after_close_and_outflow_while_frozen_are_violations() -> None:
    postings = [WatchedPosting("A", 1, 100, -5), WatchedPosting("A", 2, 200, 5),
                WatchedPosting("B", 3, 150, -5), WatchedPosting("B", 4, 300, -5)]
    snapshot = _sound(closed_at={"A": 150}, frozen_spans={"B": [(100, 200)], "A": [(50, None)]},
                      watched_postings=postings)
    found = [(v.rule, v.subject, v.detail.split()[1]) for v in check(snapshot)]
    assert found == [("no-posting-after-close", "A", "2"),
                     ("no-outflow-while-frozen", "A", "1"), ("no-outflow-while-frozen", "B", "3")]
    # At the very instant of the close or freeze: not after it.
    assert check(_sound(closed_at={"A": 200}, frozen_spans={"A": [(100, None)]},
                        watched_postings=[WatchedPosting("A", 1, 100, -5),
                                          WatchedPosting("A", 2, 200, 5)])) == []


def test_wechat_settlements_must_match_the_bills_with_carry_forward() -> None:
    # Nets 99.40, -100.00, 198.80: 99.40 then 98.80 paid (the 100.00 carried).
    assert check(_sound(wechat=[WechatFigures("M", [9940, -10000, 19880], 19820)])) == []
    # Still carried: nothing due after the negative day.
    assert check(_sound(wechat=[WechatFigures("M", [9940, -10000, 5000], 9940)])) == []
    # The old behaviour: the negative day ignored, 298.20 paid for bills netting 198.20.
    [v] = check(_sound(wechat=[WechatFigures("M", [9940, -10000, 19880], 29820)]))
    assert v.rule == "wechat-settlement-conserved" and "19820 fen were due" in v.detail


def test_the_snapshot_sees_a_bulk_outflow_from_a_frozen_account(tmp_path: Path) -> None:
    """What the batch engine's bulk path did before its status rule: the invariants catch it."""
    bank = Bank(make_profile({"bank": {"open_active": True},
                              "platforms": [{**make_profile().as_dict()["platforms"][0],
                                             "supervision_opening_balance": "1000.00"}]}),
                tmp_path / "state")
    try:
        [user] = open_accounts(bank, 1)
        bank.admin_set_frozen(SUPERVISION, True, "冻结")
        bank.advance_to(bank.clock.now() + timedelta(minutes=1))
        with bank.store.transaction():
            txn = bank.ledger.open_bulk(kind="disbursement", at_us=bank.clock.now_us(), business_date=DAY)
            bank.ledger.add_legs([(txn, user, 100, None), (txn, SUPERVISION, -100, None)])
            for no, fen in ((user, 100), (SUPERVISION, -100)):
                bank.store.execute("UPDATE accounts SET balance_fen = balance_fen + ? WHERE account_no = ?",
                                   (fen, no))
        assert [v.rule for v in check(take_snapshot(bank.store))] == ["no-outflow-while-frozen"]
    finally:
        bank.close()


# -- scoped rates and retryable magic ---------------------------------------------------------------


def _facts(serial: str, kind: str = "DF", attempt: int = 1, amount: int = 2000) -> RecordFacts:
    return RecordFacts(kind, APP, "B1", serial, 1, "6231880000000000001", "张三", amount, attempt)


def test_a_rule_with_a_probability_is_a_rate_scoped_by_its_match() -> None:
    settings = make_profile({"batches": {"rules": [
        {"name": "DF busy", "match": {"kind": "DF"}, "action": {"fail": "3028", "probability": 0.3}},
    ]}}).batches
    df = [decide_record(settings, 7, _facts(f"S{i}")) for i in range(2000)]
    assert 500 < sum(f is not None for f in df) < 700
    assert df == [decide_record(settings, 7, _facts(f"S{i}")) for i in range(2000)]  # seeded
    assert all(decide_record(settings, 7, _facts(f"S{i}", kind="DK")) is None for i in range(2000))
    decider = RecordDecider(settings, 7, "DF", APP, "B1")
    assert [decider(f"S{i}", 1, "6231880000000000001", "张三", 2000) for i in range(2000)] == df
    with pytest.raises(ProfileError, match="probability"):
        make_profile({"batches": {"rules": [{"action": {"fail": "3028", "probability": 1.5}}]}})


def test_magic_busy_applies_to_the_first_attempt_only() -> None:
    settings = make_profile().batches
    first = decide_record(settings, 1, _facts("S1", amount=28))
    assert first is not None and first.code == "3028"
    assert decide_record(settings, 1, _facts("S2", amount=28, attempt=2)) is None
    asked: list[int | None] = []

    def failures(ceiling: int | None) -> dict[tuple[str, int], int]:
        asked.append(ceiling)
        return {("6231880000000000001", 28): 1}

    decider = RecordDecider(settings, 1, "DF", APP, "B2", failures=failures)
    assert decider("S3", 1, "6231880000000000001", "张三", 28) is None  # its second attempt
    again = decider("S4", 2, "6231880000000000002", "李四", 28)  # another account's first
    assert again is not None and again.code == "3028"
    assert decider("S5", 3, "6231880000000000001", "张三", 1000) is None
    # Read once per batch, and only amounts an attempt rule can match (up to 0.99).
    assert asked == [99]
