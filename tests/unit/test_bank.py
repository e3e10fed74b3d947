"""The Bank object in process: opening, refunds, limits, reset, restart and profile changes."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from simulator.bank import Bank
from simulator.domain.identity import make_card_number, make_id_number
from tests.conftest import make_profile

APP = "demo-platform"


def opening(serial: str, seq: int = 1, **changes: str) -> dict[str, Any]:
    payload = {"request_serial": serial, "name": "张三",
               "id_number": make_id_number("310101", date(1990, 1, 1), seq),
               "mobile": "13800138000", "bound_card_number": make_card_number("622202", 19, seq),
               "bound_card_kind": "DEBIT_I"}
    payload.update(changes)
    return payload


def open_funded(bank: Bank, serial: str, seq: int, amount: str) -> str:
    answer = bank.open_account(APP, opening(serial, seq))
    assert answer.status == 200, answer.body
    account: str = answer.body["data"]["account_no"]
    bank.deposit(account, amount)
    return account


def refund(bank: Bank, serial: str, account: str, amount: str) -> Any:
    return bank.refund(APP, {"request_serial": serial, "account_no": account, "amount": amount,
                             "memo": ""})


def test_refund_counts_against_daily_limit_until_the_next_business_day(bank: Bank) -> None:
    account = open_funded(bank, "O1", 1, "2000.00")
    assert refund(bank, "R1", account, "1500.00").status == 200
    bank.deposit(account, "1500.00")
    over = refund(bank, "R2", account, "600.00")
    assert (over.status, over.body["code"]) == (422, "3013")
    bank.advance_to(bank.clock.next_cutover())
    assert refund(bank, "R3", account, "600.00").status == 200
    assert bank.ledger.balance(account) == 200_000 - 150_000 + 150_000 - 60_000


def test_refund_replay_never_pays_twice(bank: Bank) -> None:
    account = open_funded(bank, "O1", 1, "100.00")
    first = refund(bank, "R1", account, "40.00")
    second = refund(bank, "R1", account, "40.00")
    assert second.replayed and second.body == first.body
    assert bank.ledger.balance(account) == 6_000


def test_pending_images_accounts_cannot_pay_out() -> None:
    bank = Bank(make_profile(), None)
    answer = bank.open_account(APP, opening("O1"))
    assert answer.body["data"]["status"] == "PENDING_IMAGES"
    account = answer.body["data"]["account_no"]
    bank.deposit(account, "10.00")
    assert refund(bank, "R1", account, "1.00").body["code"] == "3057"
    assert bank.invariants() == []


def test_account_numbers_are_deterministic_per_seed() -> None:
    def numbers(seed: int) -> list[str]:
        b = Bank(make_profile({"seed": seed}), None)
        return [b.open_account(APP, opening(f"O{i}", i)).body["data"]["account_no"] for i in range(5)]

    assert numbers(1) == numbers(1)
    assert numbers(1) != numbers(2)


def test_reset_forgets_everything_but_keeps_the_profile(tmp_path: Path) -> None:
    bank = Bank(make_profile({"seed": 77}), tmp_path)
    open_funded(bank, "O1", 1, "10.00")
    bank.advance_to(bank.clock.now() + timedelta(days=3))
    bank.reset()
    assert bank.accounts.list(kind="CLASS_III") == []
    assert bank.clock.now() == bank.profile.clock.start
    assert bank.profile.seed == 77
    assert bank.invariants() == []
    bank.close()


def test_restart_keeps_state_and_runtime_profile_changes(tmp_path: Path) -> None:
    bank = Bank(make_profile(), tmp_path)
    account = open_funded(bank, "O1", 1, "10.00")
    bank.patch_profile({"seed": 5})
    bank.advance_to(bank.clock.now() + timedelta(hours=5))
    moment = bank.clock.now()
    bank.close()
    again = Bank(make_profile(), tmp_path, prefer_stored_profile=True)
    assert again.profile.seed == 5
    assert again.clock.now() == moment
    assert again.ledger.balance(account) == 1_000
    assert again.open_account(APP, opening("O1")).replayed
    again.close()
    explicit = Bank(make_profile({"seed": 9}), tmp_path)
    assert explicit.profile.seed == 9
    explicit.close()


def test_new_platform_in_profile_gets_its_accounts(bank: Bank) -> None:
    data = bank.profile.as_dict()
    data["platforms"].append({"app_id": "other", "secret": "other-secret", "name": "另一平台",
                              "supervision_account": "98010000000000002",
                              "settlement_account": "31010000000000002",
                              "supervision_opening_balance": "500.00"})
    bank.replace_profile(data)
    assert bank.ledger.balance("98010000000000002") == 50_000
    account = open_funded(bank, "O1", 1, "10.00")
    answer = bank.query_account("other", account)
    assert (answer.status, answer.body["code"]) == (404, "3009")


def test_too_many_accounts_per_id_and_closed_ones_do_not_count(bank: Bank) -> None:
    numbers = [bank.open_account(APP, opening(f"O{i}", 1)).body["data"]["account_no"]
               for i in range(5)]
    sixth = bank.open_account(APP, opening("O6", 1))
    assert sixth.body["code"] == "2010"
    assert bank.close_account(APP, numbers[0], {"request_serial": "C1"}).status == 200
    assert bank.open_account(APP, opening("O7", 1)).status == 200


def test_admin_activation_moves_pending_accounts_only() -> None:
    bank = Bank(make_profile(), None)
    account = bank.open_account(APP, opening("O1")).body["data"]["account_no"]
    assert bank.admin_activate(account)["status"] == "ACTIVE"
    from simulator.errors import BadAccountStatus

    with pytest.raises(BadAccountStatus):
        bank.admin_activate(account)
    bank.deposit(account, "5.00")
    assert refund(bank, "R1", account, "5.00").status == 200
    assert bank.invariants() == []
