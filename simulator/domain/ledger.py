"""Double-entry ledger: accounts, immutable balanced postings, outflow counters.

Sign convention: every account's balance is what the bank owes its holder, and a posting
is the change of that balance. Money coming from outside the bank (a WeChat settlement,
a deposit from a bound card) is a credit to a customer account and an equal debit to the
bank's clearing account, which therefore goes negative. The sum of all balances is zero
at every commit; that is the conservation invariant.

Rules a posting must respect are checked here, before anything is written: the kind is
one of :data:`KINDS`, legs balance, accounts exist, no posting to a CLOSED account (3018),
no outflow from a FROZEN one (3017), no balance goes below zero unless the account allows
it, no balance goes above its cap. A failed check raises a :mod:`simulator.errors` error
and writes nothing. The status rules are :func:`posting_refusal`, which the batch engine
(it posts in bulk, without :meth:`Ledger.post`) applies to the accounts it moves money on,
the platform's own 98 and settlement accounts included: every account follows them.

Example::

    ledger.post(kind="deposit", at_us=now, business_date=day,
                legs=[Leg(CLEARING, -1000), Leg(account_no, 1000)])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from simulator.errors import (
    BalanceCapExceeded,
    InsufficientBalance,
    NoSuchAccount,
    OverLimit,
    error_for_code,
)
from simulator.store import Store

CLEARING_ACCOUNT = "BANK-CLEARING"

# Every transaction kind the ledger writes. Each has a statement kind (simulator.bankfiles,
# contracts/layouts/statement.yaml); a test walks this set, so a new kind cannot reach a
# statement unlabelled.
KINDS = frozenset({"deposit", "opening_balance", "refund", "disbursement", "withholding",
                   "wechat_settlement"})

# Transaction kinds whose debit of a Class III account counts against its outflow limits.
OUTFLOW_KINDS = frozenset({"refund", "withholding"})


@dataclass(frozen=True)
class Leg:
    account_no: str
    amount_fen: int


@dataclass(frozen=True)
class OutflowLimits:
    daily_fen: int
    annual_fen: int


def posting_refusal(status: str, frozen: bool, *, outflow: bool) -> str | None:
    """The code that forbids a posting on an account in this state, or None.

    A CLOSED account takes no posting at all (3018); a FROZEN one takes credits but pays
    nothing out (3017), as a bank's "只收不付" freeze does.
    """
    if status == "CLOSED":
        return "3018"
    if frozen and outflow:
        return "3017"
    return None


def day_period(business_date: date) -> str:
    return f"D:{business_date.isoformat()}"


def year_period(business_date: date) -> str:
    return f"Y:{business_date.year}"


class Ledger:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create_account(self, *, account_no: str, kind: str, name: str, opened_us: int,
                       app_id: str | None = None, allow_negative: bool = False,
                       balance_cap_fen: int | None = None, status: str = "ACTIVE",
                       **identity: str | None) -> None:
        """Insert an account row; identity fields (id_number, mobile, ...) are optional."""
        columns = {
            "account_no": account_no, "kind": kind, "name": name, "opened_us": opened_us,
            "app_id": app_id, "allow_negative": int(allow_negative),
            "balance_cap_fen": balance_cap_fen, "status": status, **identity,
        }
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        self.store.execute(f"INSERT INTO accounts({names}) VALUES ({marks})", tuple(columns.values()))

    def balance(self, account_no: str) -> int:
        value = self.store.scalar("SELECT balance_fen FROM accounts WHERE account_no = ?",
                                  (account_no,))
        if value is None:
            raise NoSuchAccount(f"account {account_no} does not exist")
        return int(value)

    def post(self, *, kind: str, legs: Sequence[Leg], at_us: int, business_date: date,
             app_id: str | None = None, ref: str | None = None, memo: str = "") -> int:
        """Write one balanced transaction; returns its id. All legs or none."""
        _check_kind(kind)
        if len(legs) < 2 or sum(leg.amount_fen for leg in legs) != 0:
            raise ValueError(f"unbalanced transaction {kind}: {legs}")
        if any(leg.amount_fen == 0 for leg in legs):
            raise ValueError("a leg must move money")
        with self.store.transaction():
            for leg in legs:
                row = self.store.one(
                    "SELECT balance_fen, allow_negative, balance_cap_fen, status, frozen FROM accounts "
                    "WHERE account_no = ?", (leg.account_no,))
                if row is None:
                    raise NoSuchAccount(f"account {leg.account_no} does not exist")
                refused = posting_refusal(row["status"], bool(row["frozen"]), outflow=leg.amount_fen < 0)
                if refused is not None:
                    state = "closed" if refused == "3018" else "frozen"
                    raise error_for_code(refused, f"account {leg.account_no} is {state}")
                after = row["balance_fen"] + leg.amount_fen
                if after < 0 and not row["allow_negative"]:
                    raise InsufficientBalance(f"account {leg.account_no} would go below zero")
                cap = row["balance_cap_fen"]
                if leg.amount_fen > 0 and cap is not None and after > cap:
                    raise BalanceCapExceeded(
                        f"account {leg.account_no} would hold {after} fen, cap is {cap} fen")
            cur = self.store.execute(
                "INSERT INTO txns(kind, at_us, business_date, app_id, ref, memo) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (kind, at_us, business_date.isoformat(), app_id, ref, memo))
            txn_id = int(cur.lastrowid or 0)
            for leg in legs:
                self.store.execute(
                    "INSERT INTO postings(txn_id, account_no, amount_fen) VALUES (?, ?, ?)",
                    (txn_id, leg.account_no, leg.amount_fen))
                self.store.execute(
                    "UPDATE accounts SET balance_fen = balance_fen + ? WHERE account_no = ?",
                    (leg.amount_fen, leg.account_no))
            return txn_id

    def open_bulk(self, *, kind: str, at_us: int, business_date: date, app_id: str | None = None,
                  ref: str | None = None, memo: str = "") -> int:
        """Start a transaction whose legs come in bulk (:meth:`add_legs`); returns its id.

        For the batch engine, which checks its records' rules itself (balances, caps,
        limits) in memory: the caller adds legs that sum to zero before its database
        transaction ends; the invariants check proves it did.

            txn = ledger.open_bulk(kind="disbursement", at_us=now, business_date=day, ref="DF_X_1")
            ledger.add_legs([(txn, class_iii, 100, "充值到账"), (txn, account_98, -100, None)])
        """
        _check_kind(kind)
        cur = self.store.execute(
            "INSERT INTO txns(kind, at_us, business_date, app_id, ref, memo) VALUES (?, ?, ?, ?, ?, ?)",
            (kind, at_us, business_date.isoformat(), app_id, ref, memo))
        return int(cur.lastrowid or 0)

    def add_legs(self, legs: Iterable[tuple[int, str, int, str | None]]) -> None:
        """Append ``(txn id, account_no, amount_fen, memo or None)`` legs to bulk transactions.

        Balances are not touched here: the caller writes them (one UPDATE per account).
        """
        self.store.insert_rows("INSERT INTO postings(txn_id, account_no, amount_fen, memo)", list(legs))

    def add_bulk_legs(self, txn_id: int, legs: str, *, sign: int) -> None:
        """Append the legs of the JSON array ``legs`` to a bulk transaction, in its order.

        A leg is ``[account_no, amount_fen]`` (memo: the transaction's) or ``[account_no,
        amount_fen, memo]``; its amount is ``sign * amount_fen``. The array is walked by
        SQLite itself: no parameter is bound per leg, and the inserts run without Python's
        lock (so another thread's Python runs meanwhile). Balances are not touched here.

            ledger.add_bulk_legs(txn, '[["6231...", 100], ["6232...", 50, "第二笔"]]', sign=1)
        """
        self.store.execute(
            "INSERT INTO postings(txn_id, account_no, amount_fen, memo) "
            "SELECT ?, value ->> 0, ? * (value ->> 1), value ->> 2 FROM json_each(?)",
            (txn_id, sign, legs))

    def outflow_used(self, account_no: str, business_date: date) -> tuple[int, int]:
        """(used today, used this year) in fen."""
        rows = self.store.all(
            "SELECT period, used_fen FROM outflows WHERE account_no = ? AND period IN (?, ?)",
            (account_no, day_period(business_date), year_period(business_date)))
        used = {row["period"]: int(row["used_fen"]) for row in rows}
        return used.get(day_period(business_date), 0), used.get(year_period(business_date), 0)

    def consume_outflow(self, account_no: str, amount_fen: int, business_date: date,
                        limits: OutflowLimits) -> None:
        """Count an outflow against the limits, or raise OverLimit and count nothing."""
        day_used, year_used = self.outflow_used(account_no, business_date)
        if day_used + amount_fen > limits.daily_fen:
            raise OverLimit(f"daily outflow would reach {day_used + amount_fen} fen, "
                            f"limit {limits.daily_fen} fen")
        if year_used + amount_fen > limits.annual_fen:
            raise OverLimit(f"annual outflow would reach {year_used + amount_fen} fen, "
                            f"limit {limits.annual_fen} fen")
        for period in (day_period(business_date), year_period(business_date)):
            self.store.execute(
                "INSERT INTO outflows(account_no, period, used_fen) VALUES (?, ?, ?) "
                "ON CONFLICT(account_no, period) DO UPDATE SET used_fen = used_fen + excluded.used_fen",
                (account_no, period, amount_fen))

    def postings(self, account_no: str, limit: int = 200) -> list[dict[str, object]]:
        rows = self.store.all(
            "SELECT p.id, p.txn_id, p.amount_fen, t.kind, t.at_us, t.business_date, t.ref, "
            "COALESCE(p.memo, t.memo) AS memo "
            "FROM postings p JOIN txns t ON t.id = p.txn_id WHERE p.account_no = ? "
            "ORDER BY p.id DESC LIMIT ?", (account_no, limit))
        return [dict(row) for row in rows]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"{kind!r} is not a ledger transaction kind ({', '.join(sorted(KINDS))})")
