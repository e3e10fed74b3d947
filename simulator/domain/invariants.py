"""Ledger invariants: named pure checks over a snapshot, a list of violations, empty if sound.

The snapshot is gathered with plain SQL (:func:`take_snapshot`); the checks in
:data:`CHECKS` never touch the database, so they can be tested on hand-made snapshots and
run after every test that moves money (``GET /_admin/invariants``).

Checks (each violation names its rule):
- ``balanced-postings``: every transaction has at least two legs and its legs sum to zero;
- ``money-conserved``: the sum of all balances is zero (the clearing account mirrors
  everything that entered or left the bank);
- ``balance-matches-postings``: each account's balance equals the sum of its postings;
- ``no-negative-balance`` / ``balance-cap``: no balance below zero unless the account
  allows it, none above its cap;
- ``outflow-counter``: outflow counters equal the outflows recomputed from the postings;
- ``no-posting-after-close``: a CLOSED account has no posting after its close;
- ``no-outflow-while-frozen``: no account paid anything out while it was frozen (freeze
  periods from the account timeline, platform accounts included);
- ``wechat-settlement-conserved``: per WeChat merchant, what the ledger received from
  WeChat settlements equals what its bills net to, to the fen, given the carry-forward
  rule (a day's negative net is deducted from the next settlements, never paid by the
  bank nor forgotten): cumulative settlements = the highest cumulative bill net so far
  (0 if none is positive) = cumulative bill nets + the balance still carried forward.

Example::

    violations = check(take_snapshot(store))
    assert not violations, violations
"""

from __future__ import annotations

import json
from collections.abc import Callable
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
class WatchedPosting:
    """A posting on an account that is closed or has been frozen (the status checks' input)."""

    account_no: str
    txn_id: int
    at_us: int
    amount_fen: int


@dataclass(frozen=True)
class WechatFigures:
    """One merchant: its settled days' bill nets in date order, and what the ledger received."""

    mchid: str
    day_nets_fen: list[int]
    settled_fen: int


@dataclass(frozen=True)
class Snapshot:
    accounts: list[AccountFigures]
    unbalanced_txns: list[tuple[int, int, int]]  # (txn id, legs, sum)
    outflow_counters: dict[tuple[str, str], int]
    outflow_recomputed: dict[tuple[str, str], int] = field(default_factory=dict)
    closed_at: dict[str, int] = field(default_factory=dict)  # account -> closed_us
    # account -> [(frozen from, frozen until or None)], in time order.
    frozen_spans: dict[str, list[tuple[int, int | None]]] = field(default_factory=dict)
    watched_postings: list[WatchedPosting] = field(default_factory=list)
    wechat: list[WechatFigures] = field(default_factory=list)


@dataclass(frozen=True)
class Violation:
    rule: str
    subject: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "subject": self.subject, "detail": self.detail}


def balanced_postings(s: Snapshot) -> list[Violation]:
    return [Violation("balanced-postings", f"txn {txn_id}", f"{legs} legs summing to {total} fen")
            for txn_id, legs, total in s.unbalanced_txns]


def money_conserved(s: Snapshot) -> list[Violation]:
    total = sum(a.balance_fen for a in s.accounts)
    return [] if total == 0 else [
        Violation("money-conserved", "all accounts", f"balances sum to {total} fen, expected 0")]


def balances(s: Snapshot) -> list[Violation]:
    found: list[Violation] = []
    for a in s.accounts:
        if a.balance_fen != a.postings_fen:
            found.append(Violation("balance-matches-postings", a.account_no,
                                   f"balance {a.balance_fen} fen, postings sum {a.postings_fen} fen"))
        if a.balance_fen < 0 and not a.allow_negative:
            found.append(Violation("no-negative-balance", a.account_no, f"balance {a.balance_fen} fen"))
        if a.balance_cap_fen is not None and a.balance_fen > a.balance_cap_fen:
            found.append(Violation("balance-cap", a.account_no,
                                   f"balance {a.balance_fen} fen above cap {a.balance_cap_fen} fen"))
    return found


def outflow_counters(s: Snapshot) -> list[Violation]:
    found: list[Violation] = []
    for key in sorted(set(s.outflow_counters) | set(s.outflow_recomputed)):
        counted = s.outflow_counters.get(key, 0)
        actual = s.outflow_recomputed.get(key, 0)
        if counted != actual:
            found.append(Violation("outflow-counter", f"{key[0]} {key[1]}",
                                   f"counter {counted} fen, postings say {actual} fen"))
    return found


def no_posting_after_close(s: Snapshot) -> list[Violation]:
    # Strictly after: with a clock standing still, a refund to zero and the close share
    # their instant, and the refund came first.
    return [Violation("no-posting-after-close", p.account_no,
                      f"txn {p.txn_id} posted {p.amount_fen} fen at {p.at_us}, "
                      f"after the close at {s.closed_at[p.account_no]}")
            for p in s.watched_postings
            if p.account_no in s.closed_at and p.at_us > s.closed_at[p.account_no]]


def no_outflow_while_frozen(s: Snapshot) -> list[Violation]:
    found: list[Violation] = []
    for p in s.watched_postings:
        if p.amount_fen >= 0:
            continue
        for start, end in s.frozen_spans.get(p.account_no, ()):
            # Strictly inside: a posting at the very instant of a freeze or unfreeze cannot
            # be ordered against it on a clock that stands still.
            if start < p.at_us and (end is None or p.at_us < end):
                found.append(Violation("no-outflow-while-frozen", p.account_no,
                                       f"txn {p.txn_id} paid out {-p.amount_fen} fen at {p.at_us}, "
                                       f"frozen since {start}"))
                break
    return found


def wechat_settlement_conserved(s: Snapshot) -> list[Violation]:
    found: list[Violation] = []
    for m in s.wechat:
        running = highest = 0
        for net in m.day_nets_fen:
            running += net
            highest = max(highest, running)
        if m.settled_fen != highest:
            found.append(Violation(
                "wechat-settlement-conserved", f"merchant {m.mchid}",
                f"settlements posted {m.settled_fen} fen; bills net to {running} fen with "
                f"{highest - running} fen carried forward, so {highest} fen were due"))
    return found


Check = Callable[[Snapshot], list[Violation]]
# Every check, in report order.
CHECKS: tuple[Check, ...] = (balanced_postings, money_conserved, balances, outflow_counters,
                             no_posting_after_close, no_outflow_while_frozen,
                             wechat_settlement_conserved)


def check(snapshot: Snapshot) -> list[Violation]:
    return [v for rule in CHECKS for v in rule(snapshot)]


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
    closed_at = {str(row[0]): int(row[1]) for row in store.all(
        "SELECT account_no, closed_us FROM accounts WHERE status = 'CLOSED' AND closed_us IS NOT NULL")}
    spans = _frozen_spans(store)
    watched = sorted(set(closed_at) | set(spans))
    postings = [
        WatchedPosting(str(row[0]), int(row[1]), int(row[2]), int(row[3]))
        for i in range(0, len(watched), 5_000)
        for row in store.all(
            "SELECT p.account_no, p.txn_id, t.at_us, p.amount_fen FROM postings p "
            "JOIN txns t ON t.id = p.txn_id "
            "WHERE p.account_no IN (SELECT value FROM json_each(?)) ORDER BY p.id",
            (json.dumps(watched[i:i + 5_000]),))]
    return Snapshot(accounts, unbalanced, counters, recomputed, closed_at, spans, postings,
                    _wechat_figures(store))


def _frozen_spans(store: Store) -> dict[str, list[tuple[int, int | None]]]:
    """Freeze periods per account from its timeline (``account.frozen`` / ``account.unfrozen``).

    An account is frozen from the first freeze while it was not, until the unfreeze that
    leaves no freeze in place (a freeze by the platform and one by the bank may overlap).
    """
    spans: dict[str, list[tuple[int, int | None]]] = {}
    for kind, at_us, ref, detail in store.all(
            "SELECT kind, at_us, ref, detail FROM events "
            "WHERE kind IN ('account.frozen', 'account.unfrozen') ORDER BY id"):
        mine = spans.setdefault(str(ref), [])
        is_frozen = bool(mine) and mine[-1][1] is None
        if kind == "account.frozen" and not is_frozen:
            mine.append((int(at_us), None))
        elif kind == "account.unfrozen" and is_frozen and not json.loads(detail).get("still_frozen"):
            mine[-1] = (mine[-1][0], int(at_us))
    return {no: found for no, found in spans.items() if found}


def _wechat_figures(store: Store) -> list[WechatFigures]:
    """Per merchant: each settled day's bill net, recomputed from the orders and refunds the
    bills are made of (not the settlement's own record), and the ledger's settlement postings."""
    nets: dict[str, dict[str, int]] = {}
    for mchid, day in store.all("SELECT mchid, bill_date FROM wechat_settlements"):
        nets.setdefault(str(mchid), {})[str(day)] = 0
    for mchid, day, amount in store.all(
            "SELECT o.mchid, o.bill_date, SUM(o.total_fen - o.fee_fen) FROM wechat_orders o "
            "JOIN wechat_settlements s ON s.mchid = o.mchid AND s.bill_date = o.bill_date "
            "GROUP BY o.mchid, o.bill_date"
            " UNION ALL "
            "SELECT r.mchid, r.bill_date, -SUM(r.amount_fen) FROM wechat_refunds r "
            "JOIN wechat_settlements s ON s.mchid = r.mchid AND s.bill_date = r.bill_date "
            "GROUP BY r.mchid, r.bill_date"):
        nets[str(mchid)][str(day)] += int(amount)
    settled = {str(mchid): int(total) for mchid, total in store.all(
        "SELECT s.mchid, SUM(p.amount_fen) FROM wechat_settlements s "
        "JOIN postings p ON p.txn_id = s.txn_id AND p.amount_fen > 0 GROUP BY s.mchid")}
    return [WechatFigures(mchid, [days[d] for d in sorted(days)], settled.get(mchid, 0))
            for mchid, days in sorted(nets.items())]
