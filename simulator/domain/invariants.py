"""Ledger invariants as a pure function over a snapshot: a list of violations, empty if sound.

The snapshot is gathered with plain SQL aggregates (:func:`take_snapshot`); the rules in
:func:`check` never touch the database, so they can be tested on hand-made snapshots and
run after every test that moves money.

Rules:
- every transaction has at least two legs and its legs sum to zero;
- the sum of all balances is zero (money is conserved: the clearing account mirrors
  everything that entered or left the bank);
- each account's balance equals the sum of its postings;
- no balance below zero unless the account allows it; no balance above its cap;
- outflow counters equal the outflows recomputed from the postings.

Example::

    violations = check(take_snapshot(store))
    assert not violations, violations
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.domain.ledger import OUTFLOW_KINDS
from simulator.store import Store


@dataclass(frozen=True)
class AccountFigures:
    account_no: str
    kind: str
    balance_fen: int
    postings_fen: int
    allow_negative: bool
    balance_cap_fen: int | None


@dataclass(frozen=True)
class Snapshot:
    accounts: list[AccountFigures]
    unbalanced_txns: list[tuple[int, int, int]]  # (txn id, legs, sum)
    outflow_counters: dict[tuple[str, str], int]
    outflow_recomputed: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True)
class Violation:
    rule: str
    subject: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "subject": self.subject, "detail": self.detail}


def check(snapshot: Snapshot) -> list[Violation]:
    found: list[Violation] = []
    for txn_id, legs, total in snapshot.unbalanced_txns:
        found.append(Violation("balanced-postings", f"txn {txn_id}",
                               f"{legs} legs summing to {total} fen"))
    total = sum(a.balance_fen for a in snapshot.accounts)
    if total != 0:
        found.append(Violation("money-conserved", "all accounts",
                               f"balances sum to {total} fen, expected 0"))
    for a in snapshot.accounts:
        if a.balance_fen != a.postings_fen:
            found.append(Violation("balance-matches-postings", a.account_no,
                                   f"balance {a.balance_fen} fen, postings sum {a.postings_fen} fen"))
        if a.balance_fen < 0 and not a.allow_negative:
            found.append(Violation("no-negative-balance", a.account_no,
                                   f"balance {a.balance_fen} fen"))
        if a.balance_cap_fen is not None and a.balance_fen > a.balance_cap_fen:
            found.append(Violation("balance-cap", a.account_no,
                                   f"balance {a.balance_fen} fen above cap {a.balance_cap_fen} fen"))
    keys = set(snapshot.outflow_counters) | set(snapshot.outflow_recomputed)
    for key in sorted(keys):
        counted = snapshot.outflow_counters.get(key, 0)
        actual = snapshot.outflow_recomputed.get(key, 0)
        if counted != actual:
            found.append(Violation("outflow-counter", f"{key[0]} {key[1]}",
                                   f"counter {counted} fen, postings say {actual} fen"))
    return found


def take_snapshot(store: Store) -> Snapshot:
    accounts = [
        AccountFigures(
            account_no=row["account_no"], kind=row["kind"], balance_fen=row["balance_fen"],
            postings_fen=row["postings_fen"], allow_negative=bool(row["allow_negative"]),
            balance_cap_fen=row["balance_cap_fen"])
        for row in store.all(
            "SELECT a.account_no, a.kind, a.balance_fen, a.allow_negative, a.balance_cap_fen, "
            "COALESCE((SELECT SUM(amount_fen) FROM postings p WHERE p.account_no = a.account_no), 0)"
            " AS postings_fen FROM accounts a ORDER BY a.account_no")
    ]
    unbalanced = [
        (row[0], row[1], row[2]) for row in store.all(
            "SELECT t.id, COUNT(p.id), COALESCE(SUM(p.amount_fen), 0) FROM txns t "
            "LEFT JOIN postings p ON p.txn_id = t.id GROUP BY t.id "
            "HAVING COUNT(p.id) < 2 OR SUM(p.amount_fen) <> 0")
    ]
    counters = {(row["account_no"], row["period"]): int(row["used_fen"])
                for row in store.all("SELECT account_no, period, used_fen FROM outflows")}
    recomputed: dict[tuple[str, str], int] = {}
    marks = ", ".join("?" for _ in OUTFLOW_KINDS)
    for row in store.all(
            "SELECT p.account_no, t.business_date, -SUM(p.amount_fen) AS used FROM postings p "
            "JOIN txns t ON t.id = p.txn_id JOIN accounts a ON a.account_no = p.account_no "
            f"WHERE t.kind IN ({marks}) AND a.kind = 'CLASS_III' AND p.amount_fen < 0 "
            "GROUP BY p.account_no, t.business_date", sorted(OUTFLOW_KINDS)):
        day_key = (row["account_no"], f"D:{row['business_date']}")
        year_key = (row["account_no"], f"Y:{row['business_date'][:4]}")
        recomputed[day_key] = recomputed.get(day_key, 0) + int(row["used"])
        recomputed[year_key] = recomputed.get(year_key, 0) + int(row["used"])
    return Snapshot(accounts, unbalanced, counters, recomputed)
