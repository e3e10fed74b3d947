"""Each user's virtual wallet and its append-only journal.

Money sits in one of three buckets: ``in_transit`` (a top-up the platform credited but the
bank has not yet confirmed in the user's Class III account), ``cash_available`` and
``cash_frozen`` (money the bank confirmed; frozen while a refund is under way). A movement
is a set of journal entries under one (kind, ref), written together with the wallet's new
figures in the caller's transaction; the same (kind, ref) is applied at most once, so a
duplicated notification or a re-run step never credits twice.

=============  ==========================================  ===========================
kind           effect                                      ref
=============  ==========================================  ===========================
topup          +in_transit                                 out_trade_no
disbursed      -in_transit, +cash_available                out_trade_no
consume        -cash_available                             consumption id
refund_hold    -cash_available, +cash_frozen               refund serial
refund_paid    -cash_frozen                                refund serial
refund_release -cash_frozen, +cash_available               refund serial
=============  ==========================================  ===========================

Example::

    >>> Balances(in_transit=100, cash_available=50, cash_frozen=0).total
    150
    >>> opening_identity({"topup": 150, "consume": -20}, balance=130)
    []
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from platform_client.errors import InsufficientFunds
from platform_client.store import Store

BUCKETS = ("in_transit", "cash_available", "cash_frozen")
MOVES: dict[str, dict[str, int]] = {
    "topup": {"in_transit": 1},
    "disbursed": {"in_transit": -1, "cash_available": 1},
    "consume": {"cash_available": -1},
    "refund_hold": {"cash_available": -1, "cash_frozen": 1},
    "refund_paid": {"cash_frozen": -1},
    "refund_release": {"cash_frozen": -1, "cash_available": 1},
}
CREDIT_KINDS = ("topup",)
DEBIT_KINDS = ("consume", "refund_paid")


@dataclass(frozen=True)
class Balances:
    in_transit: int = 0
    cash_available: int = 0
    cash_frozen: int = 0

    @property
    def total(self) -> int:
        return self.in_transit + self.cash_available + self.cash_frozen

    @property
    def cash(self) -> int:
        return self.cash_available + self.cash_frozen


def movement(kind: str, amount: int) -> dict[str, int]:
    """The bucket changes of one movement (pure)."""
    if amount <= 0:
        raise ValueError(f"a {kind} movement needs a positive amount, got {amount}")
    return {bucket: sign * amount for bucket, sign in MOVES[kind].items()}


def apply_moves(current: Balances, moves: Mapping[str, int]) -> Balances:
    """The balances after ``moves``; refuses any bucket going below zero (pure)."""
    after = Balances(**{b: getattr(current, b) + moves.get(b, 0) for b in BUCKETS})
    for bucket in BUCKETS:
        if getattr(after, bucket) < 0:
            raise InsufficientFunds(
                f"{bucket} would go negative: has {getattr(current, bucket)}, "
                f"movement {moves.get(bucket, 0)} (fen)")
    return after


def opening_identity(kind_sums: Mapping[str, int], balance: int, opening: int = 0) -> list[str]:
    """``opening + credits - debits = balance`` for one user; the violations (pure).

    ``kind_sums`` are the journal's signed sums per kind over all buckets; transfers between
    buckets sum to zero and drop out.
    """
    credits = sum(v for k, v in kind_sums.items() if k in CREDIT_KINDS)
    debits = -sum(v for k, v in kind_sums.items() if k in DEBIT_KINDS)
    transfers = sum(v for k, v in kind_sums.items() if k not in CREDIT_KINDS + DEBIT_KINDS)
    problems = []
    if transfers != 0:
        problems.append(f"transfers between buckets do not net to zero: {transfers}")
    if opening + credits - debits != balance:
        problems.append(f"opening {opening} + credits {credits} - debits {debits} "
                        f"!= balance {balance}")
    return problems


def balances(store: Store, user_id: str) -> Balances:
    row = store.one("SELECT in_transit, cash_available, cash_frozen FROM wallets WHERE user_id = ?",
                    (user_id,))
    return Balances() if row is None else Balances(*row)


def post(store: Store, *, user_id: str, kind: str, ref: str, amount: int, at: str,
         memo: str = "") -> bool:
    """Apply one movement (inside the caller's transaction); False when already applied."""
    moves = movement(kind, amount)
    if store.one("SELECT 1 FROM journal WHERE kind = ? AND ref = ?", (kind, ref)) is not None:
        return False
    after = apply_moves(balances(store, user_id), moves)
    for bucket, delta in moves.items():
        store.execute("INSERT INTO journal(user_id, at, kind, bucket, amount, ref, memo) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?)", (user_id, at, kind, bucket, delta, ref, memo))
    store.execute("INSERT INTO wallets(user_id, in_transit, cash_available, cash_frozen) "
                  "VALUES (?, ?, ?, ?) ON CONFLICT(user_id) DO UPDATE SET "
                  "in_transit = excluded.in_transit, cash_available = excluded.cash_available, "
                  "cash_frozen = excluded.cash_frozen",
                  (user_id, after.in_transit, after.cash_available, after.cash_frozen))
    return True
