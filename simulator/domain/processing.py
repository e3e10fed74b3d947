"""Processing an accepted batch record by record against the ledger.

Each record is decided in the bank's order: the profile's rules, a serial used in an
earlier batch (3051), the profile's seeded rates, then the bank's own state:

- disbursement (DF, 98 account -> Class III): no such account (3009), account name differs
  (3031), closed (3018), frozen (3017), ID-card images not approved (3061), the Class III
  balance cap (3014), the 98 account's balance (3008);
- withholding (DK, Class III -> settlement account): 3009, 3031, 3018, 3017, not ACTIVE
  (3057), no withholding agreement (3043), balance (3008), daily/annual outflow limits (3013).

A successful record is one balanced transaction of two postings. For volume the engine
keeps the touched accounts' balances in memory while it decides and writes results,
transactions and postings in bulk; the whole batch commits in the job's transaction, so a
record is never half-applied and a batch is processed exactly once. The rules are the
ledger's own (non-negative balances, caps, limits); the invariants check proves it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from contracts.codes import CODES
from simulator.config import BankPolicy, BatchSettings
from simulator.domain.ledger import day_period, year_period
from simulator.domain.outcomes import RecordFacts, decide_record
from simulator.store import Store

_CHUNK = 5_000


@dataclass
class _Account:
    kind: str
    app_id: str | None
    name: str
    status: str
    frozen: bool
    balance: int
    cap: int | None
    images_approved: bool
    agreement: bool
    day_used: int = 0
    year_used: int = 0
    touched: bool = False
    outflow: int = 0


@dataclass
class Summary:
    success_count: int = 0
    success_fen: int = 0
    fail_count: int = 0
    fail_fen: int = 0
    by_code: dict[str, int] = field(default_factory=dict)


def bank_serial_prefix(kind: str, app_id: str, batch_no: str, day: date) -> str:
    """The batch's part of its records' bank serials (the record's seq follows, 7 digits)."""
    tag = hashlib.blake2b(f"{app_id}/{batch_no}".encode(), digest_size=3).hexdigest().upper()
    return f"{kind}{day:%Y%m%d}{tag}"


class _Accounts:
    """The accounts a batch touches, loaded once each."""

    def __init__(self, store: Store, day: date) -> None:
        self.store = store
        self.day = day
        self.cache: dict[str, _Account | None] = {}

    def get(self, account_no: str) -> _Account | None:
        if account_no not in self.cache:
            row = self.store.one(
                "SELECT kind, app_id, name, status, frozen, balance_fen, balance_cap_fen, "
                "image_status, withholding_agreement FROM accounts WHERE account_no = ?",
                (account_no,))
            acct = None
            if row is not None:
                acct = _Account(row["kind"], row["app_id"], row["name"], row["status"],
                                bool(row["frozen"]), row["balance_fen"], row["balance_cap_fen"],
                                row["image_status"] in ("APPROVED", "WAIVED"),
                                bool(row["withholding_agreement"]))
                used = {r["period"]: r["used_fen"] for r in self.store.all(
                    "SELECT period, used_fen FROM outflows WHERE account_no = ? AND period IN (?, ?)",
                    (account_no, day_period(self.day), year_period(self.day)))}
                acct.day_used = used.get(day_period(self.day), 0)
                acct.year_used = used.get(year_period(self.day), 0)
            self.cache[account_no] = acct
        return self.cache[account_no]


def _check_account(acct: _Account | None, app_id: str, name: str) -> str | None:
    """The checks both directions share: the platform's Class III account, open, unfrozen."""
    if acct is None or acct.kind != "CLASS_III" or acct.app_id != app_id:
        return "3009"
    if acct.name != name:
        return "3031"
    if acct.status == "CLOSED":
        return "3018"
    if acct.frozen:
        return "3017"
    return None


def _check_df(acct: _Account | None, own: _Account, app_id: str, name: str, amount: int) -> str | None:
    shared = _check_account(acct, app_id, name)
    if shared is not None or acct is None:
        return shared
    if acct.status != "ACTIVE" or not acct.images_approved:
        return "3061"
    if acct.cap is not None and acct.balance + amount > acct.cap:
        return "3014"
    if own.balance < amount:
        return "3008"
    return None


def _check_dk(acct: _Account | None, app_id: str, name: str, amount: int,
              policy: BankPolicy) -> str | None:
    shared = _check_account(acct, app_id, name)
    if shared is not None or acct is None:
        return shared
    if acct.status != "ACTIVE":
        return "3057"
    if not acct.agreement:
        return "3043"
    if acct.balance < amount:
        return "3008"
    limits = policy.class_iii
    if acct.day_used + amount > limits.daily_outflow or acct.year_used + amount > limits.annual_outflow:
        return "3013"
    return None


def process_batch(store: Store, *, app_id: str, batch_no: str, settings: BatchSettings,
                  policy: BankPolicy, seed: int, now_us: int, business_date: date) -> Summary | None:
    """Decide and post every record of an ACCEPTED batch; None if it is not ACCEPTED."""
    batch = store.one("SELECT * FROM batches WHERE app_id = ? AND batch_no = ?", (app_id, batch_no))
    if batch is None or batch["state"] != "ACCEPTED":
        return None
    kind = batch["kind"]
    accounts = _Accounts(store, business_date)
    own = accounts.get(batch["account_no"])
    assert own is not None, "intake checked the batch's own account"
    reused = {row[0] for row in store.all(
        "SELECT r.seq FROM batch_records r JOIN record_serials s "
        "ON s.app_id = r.app_id AND s.serial = r.serial WHERE r.app_id = ? AND r.batch_no = ?",
        (app_id, batch_no))}
    txn_id = int(store.scalar("SELECT COALESCE(MAX(id), 0) FROM txns")) + 1
    txn_kind = "disbursement" if kind == "DF" else "withholding"
    serial_prefix = bank_serial_prefix(kind, app_id, batch_no, business_date)
    # A batch posting's reference is its file (the record serial stays on the record).
    reference = batch["file_name"].rsplit(".", 1)[0]
    day_text = business_date.isoformat()
    summary = Summary()
    last_seq = 0
    while True:
        records = store.all(
            "SELECT seq, serial, account_no, account_name, amount_fen, memo FROM batch_records "
            "WHERE app_id = ? AND batch_no = ? AND seq > ? ORDER BY seq LIMIT ?",
            (app_id, batch_no, last_seq, _CHUNK))
        if not records:
            break
        results: list[tuple[Any, ...]] = []
        txns: list[tuple[Any, ...]] = []
        postings: list[tuple[Any, ...]] = []
        for r in records:
            seq, amount = r["seq"], r["amount_fen"]
            last_seq = seq
            facts = RecordFacts(kind, app_id, batch_no, r["serial"], seq, r["account_no"],
                                r["account_name"], amount)
            code: str | None
            reason: str | None = None
            if seq in reused:
                code, by = "3051", "ledger: serial used in an earlier batch"
            else:
                forced = decide_record(settings, seed, facts)
                if forced is not None:
                    code, by, reason = forced.code, forced.by, forced.reason
                else:
                    acct = accounts.get(r["account_no"])
                    code = (_check_df(acct, own, app_id, r["account_name"], amount) if kind == "DF"
                            else _check_dk(acct, app_id, r["account_name"], amount, policy))
                    by = "ledger"
            serial_out = f"{serial_prefix}{seq:07d}"
            if code is None:
                acct = accounts.get(r["account_no"])
                assert acct is not None
                src, dst = (own, acct) if kind == "DF" else (acct, own)
                src.balance -= amount
                dst.balance += amount
                src.touched = dst.touched = True
                if kind == "DK":
                    acct.day_used += amount
                    acct.year_used += amount
                    acct.outflow += amount
                src_no, dst_no = ((batch["account_no"], r["account_no"]) if kind == "DF"
                                  else (r["account_no"], batch["account_no"]))
                txns.append((txn_id, txn_kind, now_us, day_text, app_id, reference,
                             r["memo"] or txn_kind))
                postings.append((txn_id, src_no, -amount))
                postings.append((txn_id, dst_no, amount))
                results.append(("S", "0000", CODES["0000"].message_zh, by, serial_out, txn_id,
                                now_us, app_id, batch_no, seq))
                txn_id += 1
                summary.success_count += 1
                summary.success_fen += amount
            else:
                results.append(("F", code, reason or CODES[code].message_zh, by, serial_out, None,
                                now_us, app_id, batch_no, seq))
                summary.fail_count += 1
                summary.fail_fen += amount
                summary.by_code[code] = summary.by_code.get(code, 0) + 1
        store.conn.executemany(
            "INSERT INTO txns(id, kind, at_us, business_date, app_id, ref, memo) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", txns)
        store.conn.executemany(
            "INSERT INTO postings(txn_id, account_no, amount_fen) VALUES (?, ?, ?)", postings)
        store.conn.executemany(
            "UPDATE batch_records SET result = ?, code = ?, reason = ?, decided_by = ?, "
            "bank_serial = ?, txn_id = ?, finished_us = ? WHERE app_id = ? AND batch_no = ? AND seq = ?",
            results)
    _write_balances(store, accounts, business_date)
    store.execute(
        "INSERT INTO record_serials(app_id, serial, batch_no) SELECT app_id, serial, batch_no "
        "FROM batch_records WHERE app_id = ? AND batch_no = ? ON CONFLICT DO NOTHING",
        (app_id, batch_no))
    store.execute(
        "UPDATE batches SET state = 'PROCESSED', processed_us = ?, success_count = ?, success_fen = ? "
        "WHERE app_id = ? AND batch_no = ?",
        (now_us, summary.success_count, summary.success_fen, app_id, batch_no))
    return summary


def _write_balances(store: Store, accounts: _Accounts, day: date) -> None:
    touched = [(no, a) for no, a in accounts.cache.items() if a is not None and a.touched]
    store.conn.executemany("UPDATE accounts SET balance_fen = ? WHERE account_no = ?",
                           [(a.balance, no) for no, a in touched])
    outflows = [(no, period, a.outflow) for no, a in touched if a.outflow
                for period in (day_period(day), year_period(day))]
    store.conn.executemany(
        "INSERT INTO outflows(account_no, period, used_fen) VALUES (?, ?, ?) ON CONFLICT(account_no, "
        "period) DO UPDATE SET used_fen = used_fen + excluded.used_fen", outflows)
