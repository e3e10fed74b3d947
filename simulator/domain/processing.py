"""Processing an accepted batch record by record against the ledger.

Each record is decided in the bank's order: the profile's rules, a serial used in an
earlier batch (3051), the profile's seeded rates, then the bank's own state:

- disbursement (DF, 98 account -> Class III): no such account (3009), account name differs
  (3031), closed (3018), frozen (3017), ID-card images not approved (3061), the Class III
  balance cap (3014), the 98 account's balance (3008);
- withholding (DK, Class III -> settlement account): 3009, 3031, 3018, 3017, not ACTIVE
  (3057), no withholding agreement (3043), balance (3008), daily/annual outflow limits (3013).

The records come from the chunks intake stored (:mod:`simulator.domain.batchrecords`).
The touched accounts' balances and outflow counters are kept in memory while the records
are decided in file order, so each record sees the state its predecessors left (the 98
account running dry midway, a Class III cap reached by an account's second record).

The ledger representation: the batch's successful records are one balanced transaction,
with one posting per record on the Class III side (carrying the record's memo) and one
posting on the platform's own account (98 or settlement) for their sum. Every Class III
account's history, its outflow counters and caps stay exact per record; statements of
the platform's account list that posting record by record (:mod:`simulator.bankfiles`).
Postings, results (the return file's detail lines) and balances are written in bulk and
commit in the job's transaction, so a record is never half-applied and a batch is
processed exactly once; the invariants check proves the sums.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from operator import itemgetter

from contracts.codec import FileFormatError, load_layout
from contracts.codes import CODES
from simulator.config import BankPolicy, BatchSettings
from simulator.domain.batchrecords import (
    ACCOUNT,
    AMOUNT,
    MEMO,
    NAME,
    SEP,
    SERIAL,
    finished_text,
    request_chunks,
)
from simulator.domain.ledger import Ledger, day_period, year_period
from simulator.domain.outcomes import RecordDecider
from simulator.store import Store

# Legs posted together, sorted by account (see _post_legs): ~64k legs stay a few MB.
_LEG_WINDOW = 65_536


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
    """The accounts a batch touches, loaded once each (a chunk's unknown ones in one query)."""

    def __init__(self, store: Store, day: date) -> None:
        self.store = store
        self.day = day
        self.cache: dict[str, _Account | None] = {}

    def get(self, account_no: str) -> _Account | None:
        if account_no not in self.cache:
            self.load([account_no])
        return self.cache[account_no]

    def load(self, numbers: list[str]) -> None:
        """Load every account of ``numbers`` not loaded yet (a missing one as None)."""
        cache = self.cache
        wanted = list({no for no in numbers if no not in cache})
        if not wanted:
            return
        for no in wanted:
            cache[no] = None
        day, year = day_period(self.day), year_period(self.day)
        for i in range(0, len(wanted), 5_000):
            part = json.dumps(wanted[i:i + 5_000])
            for row in self.store.all(
                    "SELECT account_no, kind, app_id, name, status, frozen, balance_fen, balance_cap_fen, "
                    "image_status, withholding_agreement FROM accounts "
                    "WHERE account_no IN (SELECT value FROM json_each(?))", (part,)):
                cache[row[0]] = _Account(row[1], row[2], row[3], row[4], bool(row[5]), row[6], row[7],
                                         row[8] in ("APPROVED", "WAIVED"), bool(row[9]))
            for no, period, used in self.store.all(
                    "SELECT account_no, period, used_fen FROM outflows WHERE period IN (?, ?) AND "
                    "account_no IN (SELECT value FROM json_each(?))", (day, year, part)):
                acct = cache[no]
                assert acct is not None
                if period == day:
                    acct.day_used = used
                else:
                    acct.year_used = used


def _standing(acct: _Account | None, app_id: str, kind: str) -> tuple[str | None, str | None]:
    """What fails every record to this account whatever its amount: (before, after the name check).

    Status, freezing, images and agreements do not change while a batch is processed, so
    this is worked out once per account. Both directions: not the platform's Class III
    account 3009, then (after the name, 3031) closed 3018, frozen 3017; disbursement: not
    ACTIVE or images not approved 3061; withholding: not ACTIVE 3057, no agreement 3043.
    """
    if acct is None or acct.kind != "CLASS_III" or acct.app_id != app_id:
        return "3009", None
    if acct.status == "CLOSED":
        return None, "3018"
    if acct.frozen:
        return None, "3017"
    if kind == "DF":
        return None, (None if acct.status == "ACTIVE" and acct.images_approved else "3061")
    if acct.status != "ACTIVE":
        return None, "3057"
    return None, (None if acct.agreement else "3043")


def process_batch(store: Store, *, app_id: str, batch_no: str, settings: BatchSettings,
                  policy: BankPolicy, seed: int, now_us: int, business_date: date) -> Summary | None:
    """Decide and post every record of an ACCEPTED batch; None if it is not ACCEPTED."""
    batch = store.one("SELECT * FROM batches WHERE app_id = ? AND batch_no = ?", (app_id, batch_no))
    if batch is None or batch["state"] != "ACCEPTED":
        return None
    kind = batch["kind"]
    df = kind == "DF"
    ledger = Ledger(store)
    accounts = _Accounts(store, business_date)
    own_no = batch["account_no"]
    own = accounts.get(own_no)
    assert own is not None, "intake checked the batch's own account"
    reused = _reused_serials(store, app_id, batch_no)
    decide = RecordDecider(settings, seed, kind, app_id, batch_no)
    daily, annual = policy.class_iii.daily_outflow, policy.class_iii.annual_outflow
    txn_kind = "disbursement" if df else "withholding"
    serial_prefix = bank_serial_prefix(kind, app_id, batch_no, business_date)
    out = _ReturnLines(finished_text(now_us))
    success = out.success
    summary = Summary()
    by_code = summary.by_code
    txn_id = 0
    txn_memo = ""
    sign = 1 if df else -1  # the Class III leg's sign
    legs: list[tuple[int, str, int, str | None]] = []
    standing: dict[str, tuple[str | None, str | None]] = {}
    for chunk, first_seq, lines in request_chunks(store, app_id, batch_no):
        records = [line.split(SEP) for line in lines]
        accounts.load([r[ACCOUNT] for r in records])
        cache = accounts.cache
        results: list[str] = []
        decided: dict[str, str] = {}
        seq = first_seq - 1
        for r in records:
            seq += 1
            serial, account_no, name, text = r[SERIAL], r[ACCOUNT], r[NAME], r[AMOUNT]
            amount = int(text[:-3] + text[-2:])
            code: str | None = None
            reason: str | None = None
            forced = None
            if reused and serial in reused:
                code, by = "3051", "ledger: serial used in an earlier batch"
            elif not decide.trivial and (forced := decide(serial, seq, account_no, name, amount)):
                code, by, reason = forced.code, forced.by, forced.reason
            else:
                by = "ledger"
                acct = cache[account_no]
                verdict = standing.get(account_no)
                if verdict is None:
                    verdict = standing[account_no] = _standing(acct, app_id, kind)
                before, after = verdict
                if before is not None:
                    code = before
                elif acct is None:  # pragma: no cover - _standing said 3009
                    code = "3009"
                elif acct.name != name:
                    code = "3031"
                elif after is not None:
                    code = after
                elif df:
                    if acct.cap is not None and acct.balance + amount > acct.cap:
                        code = "3014"
                    elif own.balance < amount:
                        code = "3008"
                    else:
                        own.balance -= amount
                        acct.balance += amount
                elif acct.balance < amount:
                    code = "3008"
                elif acct.day_used + amount > daily or acct.year_used + amount > annual:
                    code = "3013"
                else:
                    acct.balance -= amount
                    own.balance += amount
                    acct.day_used += amount
                    acct.year_used += amount
                    acct.outflow += amount
            if code is None:
                acct = cache[account_no]
                assert acct is not None
                acct.touched = True
                memo = r[MEMO] or txn_kind
                if not txn_id:
                    # A batch's successful records are one transaction: a posting per record
                    # on the Class III side, one on the platform's account for their sum.
                    # Its memo is the first record's; a posting carries its own only if it differs.
                    txn_id = ledger.open_bulk(kind=txn_kind, at_us=now_us, business_date=business_date,
                                              app_id=app_id, ref=batch["file_name"].rsplit(".", 1)[0],
                                              memo=memo)
                    txn_memo = memo
                legs.append((txn_id, account_no, sign * amount, None if memo == txn_memo else memo))
                results.append(f"{SEP.join(r[:MEMO])}{SEP}{serial_prefix}{seq:07d}{success}")
                summary.success_count += 1
                summary.success_fen += amount
            else:
                tail = out.failure(code, reason)
                results.append(f"{SEP.join(r[:MEMO])}{SEP}{serial_prefix}{seq:07d}{tail}")
                summary.fail_count += 1
                summary.fail_fen += amount
                by_code[code] = by_code.get(code, 0) + 1
                if by != "ledger":
                    decided[str(seq)] = by
        if len(legs) >= _LEG_WINDOW:
            _post_legs(ledger, legs)
            legs = []
        store.execute(
            "INSERT INTO batch_results(app_id, batch_no, chunk, first_seq, count, lines, decided) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (app_id, batch_no, chunk, first_seq, len(records),
             ("\r\n".join(results) + "\r\n").encode("gbk"), json.dumps(decided, ensure_ascii=False)))
    _post_legs(ledger, legs)
    if txn_id:
        own.touched = True
        ledger.add_legs([(txn_id, own_no, -sign * summary.success_fen, None)])
    _write_balances(store, accounts, business_date)
    store.execute(
        "UPDATE batches SET state = 'PROCESSED', processed_us = ?, success_count = ?, success_fen = ?, "
        "txn_id = ? WHERE app_id = ? AND batch_no = ?",
        (now_us, summary.success_count, summary.success_fen, txn_id or None, app_id, batch_no))
    return summary


class _ReturnLines:
    """The bank's part of a return detail line after the bank serial, checked once each.

    The record's own part (seq, serial, account, name, amount) is the request line's text,
    validated at intake and written back unchanged (the layouts share those fields and a
    valid value has one spelling); what the bank adds is validated here, once per distinct
    value, against the return layout.
    """

    def __init__(self, finished: str) -> None:
        layout = load_layout("return").detail
        self._reason = layout.encoders[layout.names.index("reason")]
        self._finished = finished
        self._failures: dict[tuple[str, str | None], str] = {}
        self.success = self.failure("0000", None, result="S")

    def failure(self, code: str, reason: str | None, result: str = "F") -> str:
        key = (code, reason)
        text = self._failures.get(key)
        if text is None:
            message = reason or CODES[code].message_zh
            try:
                self._reason(message)
            except FileFormatError:
                # A profile's reason the file cannot carry (too long, a separator): the
                # code's own message instead, so the return file stays readable.
                message = CODES[code].message_zh
            text = self._failures[key] = f"{SEP}{result}{SEP}{code}{SEP}{message}{SEP}{self._finished}{SEP}"
        return text


def _post_legs(ledger: Ledger, legs: list[tuple[int, str, int, str | None]]) -> None:
    """Write a window of Class III legs in account order (stable: an account's stay in file order).

    Posting them in file order inserts into the postings-by-account index at random places,
    which costs three times as much as sweeping it in key order. Posting ids within a
    window then follow the accounts; each account's own history keeps file order, and the
    batch's record order stays in its chunks (statements list the batch from there).
    """
    if legs:
        legs.sort(key=itemgetter(1))
        ledger.add_legs(legs)


def _reused_serials(store: Store, app_id: str, batch_no: str) -> set[str]:
    """Serials of this batch that another batch, processed before it, also brought (3051).

    Only serials noted at intake as held by more than one batch can be; they are few.
    """
    rows = store.all(
        "WITH mine(serial) AS ("
        " SELECT serial FROM serial_conflicts WHERE app_id = :a AND batch_no = :b"
        " UNION SELECT c.serial FROM serial_conflicts c JOIN record_serials s"
        "  ON s.app_id = c.app_id AND s.serial = c.serial WHERE c.app_id = :a AND s.batch_no = :b),"
        " holders(serial, batch_no) AS ("
        " SELECT s.serial, s.batch_no FROM mine m JOIN record_serials s"
        "  ON s.app_id = :a AND s.serial = m.serial"
        " UNION ALL SELECT c.serial, c.batch_no FROM mine m JOIN serial_conflicts c"
        "  ON c.app_id = :a AND c.serial = m.serial)"
        " SELECT DISTINCT h.serial FROM holders h JOIN batches b ON b.app_id = :a AND b.batch_no = h.batch_no"
        " WHERE h.batch_no <> :b AND b.state <> 'ACCEPTED'", {"a": app_id, "b": batch_no})
    return {str(row[0]) for row in rows}


def _write_balances(store: Store, accounts: _Accounts, day: date) -> None:
    touched = [(no, a) for no, a in accounts.cache.items() if a is not None and a.touched]
    store.conn.executemany("UPDATE accounts SET balance_fen = ? WHERE account_no = ?",
                           [(a.balance, no) for no, a in touched])
    outflows = [(no, period, a.outflow) for no, a in touched if a.outflow
                for period in (day_period(day), year_period(day))]
    store.conn.executemany(
        "INSERT INTO outflows(account_no, period, used_fen) VALUES (?, ?, ?) ON CONFLICT(account_no, "
        "period) DO UPDATE SET used_fen = used_fen + excluded.used_fen", outflows)
