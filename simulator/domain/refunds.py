"""Refunds: money leaves a Class III account for the user's bound card.

A user cannot take money out of a Class III account directly; the platform asks the bank,
which pays the bound card through clearing. Only Class III accounts are refunded (the
platform's own 98 and settlement accounts have no bound card: 3063). A refund is an
outflow: it needs an ACTIVE, unfrozen account with the balance, and counts against the
daily and annual limits. The checks, the counter and the posting commit together or not at all.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from contracts.money import format_fen
from simulator.clock import from_us
from simulator.domain.accounts import Accounts, mask_card
from simulator.domain.ledger import CLEARING_ACCOUNT, Ledger, Leg, OutflowLimits
from simulator.errors import (
    AccountClosed,
    AccountFrozen,
    AmountInvalid,
    BadAccountStatus,
    InsufficientBalance,
    SerialNotFound,
)
from simulator.events import record_event
from simulator.store import Store


def check_can_pay_out(row: dict[str, Any], amount_fen: int) -> None:
    """The account-state checks every outflow shares, in the bank's order."""
    if row["status"] == "CLOSED":
        raise AccountClosed(f"account {row['account_no']} is closed")
    if row["frozen"]:
        raise AccountFrozen(f"account {row['account_no']} is frozen")
    if row["status"] != "ACTIVE":
        raise BadAccountStatus(f"account {row['account_no']} is {row['status']}")
    if row["balance_fen"] < amount_fen:
        raise InsufficientBalance(
            f"balance {format_fen(row['balance_fen'])}, refund {format_fen(amount_fen)}")


class Refunds:
    def __init__(self, store: Store, ledger: Ledger, accounts: Accounts) -> None:
        self.store = store
        self.ledger = ledger
        self.accounts = accounts

    def refund(self, *, app_id: str, serial: str, account_no: str, amount_fen: int,
               memo: str, limits: OutflowLimits, now_us: int,
               business_date: date) -> dict[str, Any]:
        if amount_fen <= 0:
            raise AmountInvalid("a refund must be positive")
        row = self.accounts.class_iii_row(account_no, app_id)
        check_can_pay_out(row, amount_fen)
        self.ledger.consume_outflow(account_no, amount_fen, business_date, limits)
        txn_id = self.ledger.post(
            kind="refund", at_us=now_us, business_date=business_date, app_id=app_id,
            ref=serial, memo=memo or "refund to bound card",
            legs=[Leg(account_no, -amount_fen), Leg(CLEARING_ACCOUNT, amount_fen)])
        self.store.execute(
            "INSERT INTO refunds(app_id, serial, account_no, amount_fen, txn_id, bound_card, at_us)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (app_id, serial, account_no, amount_fen, txn_id, row["bound_card_number"], now_us))
        record_event(self.store, now_us, "refund.paid", app_id=app_id, ref=account_no,
                     detail={"serial": serial, "amount": format_fen(amount_fen)})
        return self.get(app_id, serial)

    def get(self, app_id: str, serial: str) -> dict[str, Any]:
        row = self.store.one(
            "SELECT r.*, t.business_date FROM refunds r JOIN txns t ON t.id = r.txn_id "
            "WHERE r.app_id = ? AND r.serial = ?", (app_id, serial))
        if row is None:
            raise SerialNotFound(f"no refund with serial {serial}")
        return {
            "request_serial": row["serial"],
            "account_no": row["account_no"],
            "amount": format_fen(row["amount_fen"]),
            "bound_card_number": mask_card(row["bound_card"]),
            "status": "PAID",
            "paid_at": from_us(row["at_us"]).isoformat(),
            "business_date": row["business_date"],
        }
