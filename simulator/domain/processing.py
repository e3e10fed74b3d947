"""Processing an accepted batch record by record against the ledger.

Each record is decided in the bank's order: the profile's rules, a serial used in an
earlier batch (3051), the profile's seeded rates, then the bank's own state:

- disbursement (DF, 98 account -> Class III): no such account (3009), account name differs
  (3031), closed (3018), frozen (3017), ID-card images not approved (3061), the Class III
  balance cap (3014), the 98 account's balance (3008);
- withholding (DK, Class III -> settlement account): 3009, 3031, 3018, 3017, not ACTIVE
  (3057), no withholding agreement (3043), balance (3008), daily/annual outflow limits (3013).

Before those, the platform's own account (the batch header's): closed, every record fails
3018; a frozen 98 account fails every DF record 3017 (:func:`~simulator.domain.ledger.posting_refusal`).

The records come from the chunks intake stored (:mod:`simulator.domain.batchrecords`).
The touched accounts' balances and outflow counters are kept in memory while the records
are decided in file order, so each record sees the state its predecessors left (the 98
account running dry midway, a Class III cap reached by an account's second record).

The ledger representation: the batch's successful records are one balanced transaction,
with one posting per record on the Class III side (carrying the record's memo) and, per
chunk of the file (a few thousand records, as intake stored them), one posting on the
platform's own account (98 or settlement) for that chunk's successful records. Every
Class III account's history, its outflow counters and caps stay exact per record;
statements of the platform's account list the batch's postings record by record, in
file order, once (:mod:`simulator.bankfiles`).

Slices: the records are decided in file order whatever the slicing; a call of
:func:`process_batch` with a deadline stops at the first chunk boundary past it, having
written that call's postings, results, balances and outflow counters and the batch's
progress (which chunk is next, the ledger transaction, the counts so far); the caller's
transaction commits them together, so a crash resumes after the last committed slice and
every record is processed exactly once. The next call reads every account afresh (a
request between slices may have moved money or frozen an account) and goes on. Without
a deadline the whole batch is one call. The invariants hold at every commit: each slice
posts balanced legs and writes the balances they move.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from functools import partial
from itertools import compress, repeat
from operator import is_, itemgetter, methodcaller
from typing import Any, ClassVar
from weakref import WeakKeyDictionary

from contracts.codec import FileFormatError, load_layout
from contracts.codes import CODES
from simulator.config import BankPolicy, BatchSettings
from simulator.domain.batchrecords import (
    ACCOUNT,
    AMOUNT,
    MEMO,
    NAME,
    SEP,
    SEQ,
    SERIAL,
    finished_text,
)
from simulator.domain.ledger import Ledger, day_period, posting_refusal, year_period
from simulator.domain.outcomes import RecordDecider, earlier_failures
from simulator.domain.writebehind import WriteBehind
from simulator.store import Store

# Legs posted together, sorted by account (see _post_legs): ~64k legs stay a few MB.
_LEG_WINDOW = 65_536
# Chunks read (and results written) per task of the store thread: ~35,000 records.
_ROUND_CHUNKS = 8
# "12.30" -> "1230": an amount validated at intake has exactly two decimals.
_NO_DOT = methodcaller("replace", ".", "")
_ACCOUNT_KEY = itemgetter(0)


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
    done: bool = True
    """False when a call stopped at its deadline with records left to decide."""


@dataclass
class _Progress:
    """Where a batch's processing stands between slices (a kv row, committed with each one)."""

    at_us: int                # when processing began: every record's finish time
    day: str                  # the business date it began on (postings, outflow periods)
    last_chunk: int = -1      # the last chunk decided and posted
    txn_id: int = 0           # the batch's ledger transaction (0: no success yet)
    txn_memo: str = ""
    summary: Summary = field(default_factory=Summary)

    @staticmethod
    def key(app_id: str, batch_no: str) -> str:
        return f"batch.progress:{app_id}:{batch_no}"

    @classmethod
    def load(cls, store: Store, app_id: str, batch_no: str) -> _Progress | None:
        text = store.get_kv(cls.key(app_id, batch_no))
        if text is None:
            return None
        data = json.loads(text)
        return cls(data["at_us"], data["day"], data["last_chunk"], data["txn_id"], data["txn_memo"],
                   Summary(**data["summary"]))

    def save(self, store: Store, app_id: str, batch_no: str) -> None:
        store.set_kv(self.key(app_id, batch_no), json.dumps(asdict(self), ensure_ascii=False))


def batch_progress(store: Store, app_id: str, batch_no: str) -> int | None:
    """Records of an ACCEPTED batch already decided (committed slices), None if none began."""
    progress = _Progress.load(store, app_id, batch_no)
    return None if progress is None else progress.summary.success_count + progress.summary.fail_count


def bank_serial_prefix(kind: str, app_id: str, batch_no: str, day: date) -> str:
    """The batch's part of its records' bank serials (the record's seq follows, 7 digits)."""
    tag = hashlib.blake2b(f"{app_id}/{batch_no}".encode(), digest_size=3).hexdigest().upper()
    return f"{kind}{day:%Y%m%d}{tag}"


class _Accounts:
    """The accounts a batch touches, loaded once each (a round's unknown ones in one query).

    :meth:`fetch` only reads the store (it runs on the store thread, ahead of the
    decisions); :meth:`add` puts what it read into the cache the decisions use.
    """

    def __init__(self, store: Store, day: date) -> None:
        self.store = store
        self.day = day
        self.cache: dict[str, _Account | None] = {}
        self._asked: set[str] = set()

    def get(self, account_no: str) -> _Account | None:
        if account_no not in self.cache:
            self.add(self.fetch([account_no]))
        return self.cache[account_no]

    def fetch(self, numbers: list[str]) -> _Fetched:
        """The rows of every account of ``numbers`` not asked for before, with their counters."""
        wanted = [no for no in dict.fromkeys(numbers) if no not in self._asked]
        self._asked.update(wanted)
        rows: list[Any] = []
        outflows: list[Any] = []
        day, year = day_period(self.day), year_period(self.day)
        for i in range(0, len(wanted), 5_000):
            part = json.dumps(wanted[i:i + 5_000])
            rows += self.store.all(
                "SELECT account_no, kind, app_id, name, status, frozen, balance_fen, balance_cap_fen, "
                "image_status, withholding_agreement FROM accounts "
                "WHERE account_no IN (SELECT value FROM json_each(?))", (part,))
            outflows += self.store.all(
                "SELECT account_no, period, used_fen FROM outflows WHERE period IN (?, ?) AND "
                "account_no IN (SELECT value FROM json_each(?))", (day, year, part))
        return wanted, rows, outflows

    def add(self, fetched: _Fetched) -> None:
        """Cache what :meth:`fetch` read (an account it did not find as None)."""
        wanted, rows, outflows = fetched
        cache = self.cache
        for no in wanted:
            cache[no] = None
        for row in rows:
            cache[row[0]] = _Account(row[1], row[2], row[3], row[4], bool(row[5]), row[6], row[7],
                                     row[8] in ("APPROVED", "WAIVED"), bool(row[9]))
        day = day_period(self.day)
        for no, period, used in outflows:
            acct = cache[no]
            assert acct is not None
            if period == day:
                acct.day_used = used
            else:
                acct.year_used = used


_Fetched = tuple[list[str], list[Any], list[Any]]
_Chunk = tuple[int, int, str]  # chunk, first seq, its lines
_ACCOUNT_FIELD = re.compile(r"^[^|\n]*\|[^|]*\|[^|]*\|([^|]*)", re.MULTILINE)


class _Rounds:
    """Reads a batch's chunks a round at a time, with the accounts they name not read yet.

    Runs on the store thread, a round ahead of the decisions.
    """

    def __init__(self, store: Store, app_id: str, batch_no: str, accounts: _Accounts,
                 stride: int, *, after: int, per_round: int) -> None:
        self.store, self.app_id, self.batch_no = store, app_id, batch_no
        self.accounts, self.stride = accounts, stride
        self.last = after
        self.per_round = per_round

    def __call__(self) -> tuple[list[_Chunk], _Fetched] | None:
        rows = self.store.all(
            "SELECT chunk, first_seq, lines FROM batch_chunks WHERE app_id = ? AND batch_no = ? "
            "AND chunk > ? ORDER BY chunk LIMIT ?", (self.app_id, self.batch_no, self.last, self.per_round))
        if not rows:
            return None
        self.last = int(rows[-1][0])
        chunks = [(int(chunk), int(first_seq), str(text)) for chunk, first_seq, text in rows]
        # The accounts by a scan of the text (a line's account is its 4th field), not a
        # split: this runs beside the decisions of the previous round and must not hold
        # Python's lock for long.
        numbers = _ACCOUNT_FIELD.findall("\n".join(text for _, _, text in chunks))
        return chunks, self.accounts.fetch(numbers)


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
                  policy: BankPolicy, seed: int, now_us: int, business_date: date,
                  deadline: float | None = None) -> Summary | None:
    """Decide and post the records of an ACCEPTED batch; None if it is not ACCEPTED.

    Without ``deadline``: every record, and the batch is PROCESSED. With one (a
    ``time.perf_counter()`` value): at least one chunk, then stop at the first chunk
    boundary past it with the progress stored; the summary so far comes back with
    ``done`` False and the next call goes on where this one stopped (module docstring).
    """
    batch = store.one("SELECT * FROM batches WHERE app_id = ? AND batch_no = ?", (app_id, batch_no))
    if batch is None or batch["state"] != "ACCEPTED":
        return None
    progress = _Progress.load(store, app_id, batch_no) or _Progress(now_us, business_date.isoformat())
    # A batch's records all finish at the time, and on the business date, its processing began.
    now_us, business_date = progress.at_us, date.fromisoformat(progress.day)
    kind = batch["kind"]
    ledger = Ledger(store)
    own_no = batch["account_no"]
    # The accounts as the previous slice left them, unless anything else changed an account
    # or an outflow counter since (then read afresh).
    carried = _Carry.take(store, app_id, batch_no, progress.last_chunk)
    if carried is not None:
        accounts, judge = carried
        own = judge.own
    else:
        accounts = _Accounts(store, business_date)
        own_or_none = accounts.get(own_no)
        assert own_or_none is not None, "intake checked the batch's own account"
        own = own_or_none
        judge = _Judge(accounts, own, app_id, kind, policy)
    reused = _reused_serials(store, app_id, batch_no)
    txn_kind = "disbursement" if kind == "DF" else "withholding"
    request = load_layout("disbursement_request" if kind == "DF" else "withholding_request").detail
    stride = 1 + len(request.fields)  # pieces per line once a chunk is split at the separator
    # The return detail line: the request's own fields up to the amount (validated at intake,
    # written back unchanged), the bank serial (the batch's prefix and the seq on 7 digits),
    # then what the bank adds. One format call per record, run by map.
    prefix = bank_serial_prefix(kind, app_id, batch_no, business_date).replace("{", "{{").replace("}", "}}")
    line = (request.tag.replace("{", "{{").replace("}", "}}")
            + f"{SEP}{{0}}{SEP}{{1}}{SEP}{{2}}{SEP}{{3}}{SEP}{{4}}{SEP}{prefix}{{0:0>7}}{{5}}").format
    out = _ReturnLines(finished_text(now_us))
    success = out.success
    summary = progress.summary
    by_code = summary.by_code
    txn_id = progress.txn_id
    txn_memo = progress.txn_memo
    sign = 1 if kind == "DF" else -1  # the Class III leg's sign
    legs: list[tuple[str, int, str]] = []
    finished = True
    # The store work runs on a second thread, a round ahead (reads) and behind (writes).
    # With a deadline a round is one chunk, so a stop wastes at most one chunk's read.
    with WriteBehind() as writer:
        # A rule's attempt condition reads the earlier failures once (on the store thread).
        decide = RecordDecider(
            settings, seed, kind, app_id, batch_no,
            failures=lambda ceiling: writer.submit(
                partial(earlier_failures, store, app_id, kind, batch_no, ceiling)).result())
        plain = not reused and decide.trivial  # the ledger alone decides every record
        rounds = _Rounds(store, app_id, batch_no, accounts, stride, after=progress.last_chunk,
                         per_round=_ROUND_CHUNKS if deadline is None else 1)
        upcoming = writer.submit(rounds)
        first = progress.last_chunk
        while (got := upcoming.result()) is not None:
            if deadline is not None and progress.last_chunk != first and time.perf_counter() >= deadline:
                finished = False
                break
            upcoming = writer.submit(rounds)
            chunks, fetched = got
            accounts.add(fetched)
            results: list[tuple[str, str, int, int, int, bytes, str]] = []
            for chunk, first_seq, text in chunks:
                # Split at the separator, every line gives ``stride`` pieces (its last one
                # joined to the next line's tag), so a field's values are a slice.
                pieces = text.split(SEP)
                seqs, serials = pieces[SEQ::stride], pieces[SERIAL::stride]
                numbers, names, memos = pieces[ACCOUNT::stride], pieces[NAME::stride], pieces[MEMO::stride]
                amount_texts = pieces[AMOUNT::stride]
                amounts = list(map(int, map(_NO_DOT, amount_texts)))
                tails: list[str] = []
                decided: dict[str, str] = {}
                if plain:
                    tails = [success if (code := judge(no, name, amount)) is None else out.failure(code, None)
                             for no, name, amount in zip(numbers, names, amounts, strict=True)]
                else:
                    add = tails.append
                    for seq, serial, no, name, amount in zip(range(first_seq, first_seq + len(amounts)),
                                                             serials, numbers, names, amounts, strict=True):
                        reason: str | None = None
                        if serial in reused:
                            code, by = "3051", "ledger: serial used in an earlier batch"
                        elif forced := decide(serial, seq, no, name, amount):
                            code, by, reason = forced.code, forced.by, forced.reason
                        else:
                            code, by = judge(no, name, amount), "ledger"
                        add(success if code is None else out.failure(code, reason))
                        if by != "ledger":
                            decided[str(seq)] = by
                ok = list(map(is_, tails, repeat(success)))
                succeeded = ok.count(True)
                if succeeded:
                    if not txn_id:
                        # A batch's successful records are one transaction: a posting per record
                        # on the Class III side, one per chunk on the platform's account for the
                        # chunk's sum. Its memo is the first record's; a posting carries its own
                        # only if it differs.
                        txn_memo = memos[ok.index(True)] or txn_kind
                        txn_id = writer.submit(partial(
                            _open_txn, store, ledger, app_id, batch_no, kind=txn_kind, at_us=now_us,
                            business_date=business_date, ref=batch["file_name"].rsplit(".", 1)[0],
                            memo=txn_memo)).result()
                    chunk_fen = sum(compress(amounts, ok))
                    legs.extend(compress(zip(numbers, amounts, memos, strict=True), ok))
                    legs.append((own_no, -chunk_fen, txn_memo))  # the platform's side of the chunk
                    own.touched = True
                    summary.success_count += succeeded
                    summary.success_fen += chunk_fen
                if succeeded < len(ok):
                    for tail, good, amount in zip(tails, ok, amounts, strict=True):
                        if not good:
                            code = out.code[tail]
                            by_code[code] = by_code.get(code, 0) + 1
                            summary.fail_count += 1
                            summary.fail_fen += amount
                if len(legs) >= _LEG_WINDOW:
                    writer.submit(partial(ledger.add_bulk_legs, txn_id,
                                          _legs_json(legs, txn_kind, txn_memo), sign=sign))
                    legs = []
                returned = "\r\n".join(map(line, seqs, serials, numbers, names, amount_texts, tails))
                results.append((app_id, batch_no, chunk, first_seq, len(tails),
                                (returned + "\r\n").encode("gbk"), json.dumps(decided, ensure_ascii=False)))
                progress.last_chunk = chunk
            writer.submit(partial(store.insert_rows, "INSERT INTO batch_results(app_id, batch_no, chunk, "
                                  "first_seq, count, lines, decided)", results))
        if legs:
            writer.submit(partial(ledger.add_bulk_legs, txn_id, _legs_json(legs, txn_kind, txn_memo),
                                  sign=sign))
    _write_balances(store, accounts, business_date)
    summary.done = finished
    key = _Progress.key(app_id, batch_no)
    if not finished:
        progress.txn_id, progress.txn_memo = txn_id, txn_memo
        progress.save(store, app_id, batch_no)
        _Carry.keep(store, app_id, batch_no, progress.last_chunk, accounts, judge)
        return summary
    _Carry.drop(store)
    store.execute("DELETE FROM kv WHERE key = ?", (key,))
    store.execute(
        "UPDATE batches SET state = 'PROCESSED', processed_us = ?, success_count = ?, success_fen = ?, "
        "txn_id = ? WHERE app_id = ? AND batch_no = ?",
        (now_us, summary.success_count, summary.success_fen, txn_id or None, app_id, batch_no))
    return summary


def _open_txn(store: Store, ledger: Ledger, app_id: str, batch_no: str, *, kind: str, at_us: int,
              business_date: date, ref: str, memo: str) -> int:
    """The batch's ledger transaction, named on the batch at once (statements find it there)."""
    txn_id = ledger.open_bulk(kind=kind, at_us=at_us, business_date=business_date, app_id=app_id,
                              ref=ref, memo=memo)
    store.execute("UPDATE batches SET txn_id = ? WHERE app_id = ? AND batch_no = ?",
                  (txn_id, app_id, batch_no))
    return txn_id


class _Judge:
    """The bank's own verdict on a record: None (it moves the money, in memory) or a code.

    Called in file order, so each record sees the balances and counters its predecessors
    left. What does not depend on the amount (:func:`_standing`) is worked out once per
    account.
    """

    def __init__(self, accounts: _Accounts, own: _Account, app_id: str, kind: str,
                 policy: BankPolicy) -> None:
        self.cache = accounts.cache
        self.own = own
        self.app_id = app_id
        self.kind = kind
        self.df = kind == "DF"
        self.daily, self.annual = policy.class_iii.daily_outflow, policy.class_iii.annual_outflow
        self.standing: dict[str, tuple[str | None, str | None]] = {}
        # The platform's own account follows the ledger's status rules like any other: a
        # CLOSED one fails every record 3018, a FROZEN 98 account pays nothing out (3017);
        # a frozen settlement account still receives withheld money.
        self.own_refusal = posting_refusal(own.status, own.frozen, outflow=self.df)

    def __call__(self, account_no: str, name: str, amount: int) -> str | None:
        if self.own_refusal is not None:
            return self.own_refusal
        acct = self.cache[account_no]
        verdict = self.standing.get(account_no)
        if verdict is None:
            verdict = self.standing[account_no] = _standing(acct, self.app_id, self.kind)
        before, after = verdict
        if before is not None:
            return before
        assert acct is not None  # _standing says 3009 for a missing account
        if acct.name != name:
            return "3031"
        if after is not None:
            return after
        if self.df:
            if acct.cap is not None and acct.balance + amount > acct.cap:
                return "3014"
            own = self.own
            if own.balance < amount:
                return "3008"
            own.balance -= amount
            acct.balance += amount
        else:
            if acct.balance < amount:
                return "3008"
            if acct.day_used + amount > self.daily or acct.year_used + amount > self.annual:
                return "3013"
            acct.balance -= amount
            self.own.balance += amount
            acct.day_used += amount
            acct.year_used += amount
            acct.outflow += amount
        acct.touched = True
        return None


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
        self.code: dict[str, str] = {}  # text -> its code
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
            self.code[text] = code
        return text


def _legs_json(legs: list[tuple[str, int, str]], txn_kind: str, txn_memo: str) -> str:
    """A window of Class III legs ``(account, amount, memo as in the file)`` for the ledger.

    In account order, stable (an account's legs keep file order): posted in file order,
    every leg would insert into the postings-by-account index at a random place, which
    costs three times as much as sweeping it in key order. Posting ids within a window
    then follow the accounts; each account's own history keeps file order, and the batch's
    record order stays in its chunks (statements list the batch from there). A leg names
    its memo (an empty one is the kind's) only when it is not the transaction's.
    """
    legs.sort(key=_ACCOUNT_KEY)
    return json.dumps([(no, amount) if (memo or txn_kind) == txn_memo else (no, amount, memo or txn_kind)
                       for no, amount, memo in legs], ensure_ascii=False)


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


class _Carry:
    """The accounts a batch's slice read and moved, kept for its next slice.

    Reading every account again at each slice would cost as much as deciding the records,
    so the next slice reuses them when nothing else touched an account or an outflow
    counter meanwhile. What tells: a connection-local (TEMP) trigger counts every change
    to ``accounts`` and ``outflows`` (a rolled-back change takes its count with it) and
    another counts openings (an account the batch did not find may exist now); the count
    after the slice's own writes must still be the count when the next slice begins, with
    no rollback in between and the batch's progress where the slice left it.
    """

    _kept: ClassVar[WeakKeyDictionary[Store, tuple[str, str, int, int, int, int, _Accounts, _Judge]]] = \
        WeakKeyDictionary()

    @staticmethod
    def _watch(store: Store) -> tuple[int, int]:
        conn = store.conn
        row = conn.execute("SELECT changed, opened FROM temp.batch_watch").fetchone() \
            if _Carry._watching(store) else None
        if row is None:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS batch_watch(changed INTEGER, opened INTEGER)")
            conn.execute("INSERT INTO temp.batch_watch SELECT 0, 0 WHERE NOT EXISTS "
                         "(SELECT 1 FROM temp.batch_watch)")
            for table, event, column in (("accounts", "UPDATE", "changed"), ("outflows", "INSERT", "changed"),
                                         ("outflows", "UPDATE", "changed"), ("accounts", "INSERT", "opened")):
                conn.execute(f"CREATE TEMP TRIGGER IF NOT EXISTS batch_watch_{table}_{event.lower()} "
                             f"AFTER {event} ON main.{table} BEGIN "
                             f"UPDATE batch_watch SET {column} = {column} + 1; END")
            row = conn.execute("SELECT changed, opened FROM temp.batch_watch").fetchone()
        return int(row[0]), int(row[1])

    @staticmethod
    def _watching(store: Store) -> bool:
        return store.conn.execute(
            "SELECT 1 FROM temp.sqlite_master WHERE name = 'batch_watch'").fetchone() is not None

    @classmethod
    def keep(cls, store: Store, app_id: str, batch_no: str, last_chunk: int, accounts: _Accounts,
             judge: _Judge) -> None:
        for acct in accounts.cache.values():
            if acct is not None:  # written: the next slice starts from what is stored
                acct.touched, acct.outflow = False, 0
        # A round read ahead and not decided asked for accounts it never added.
        accounts._asked = set(accounts.cache)
        changed, opened = cls._watch(store)
        cls._kept[store] = (app_id, batch_no, last_chunk, changed, opened, store.rollbacks,
                                accounts, judge)

    @classmethod
    def take(cls, store: Store, app_id: str, batch_no: str,
             last_chunk: int) -> tuple[_Accounts, _Judge] | None:
        kept = cls._kept.pop(store, None)
        if kept is None:
            return None
        k_app, k_batch, k_chunk, changed, opened, rollbacks, accounts, judge = kept
        now_changed, now_opened = cls._watch(store)
        if (k_app, k_batch, k_chunk, changed, rollbacks) != (app_id, batch_no, last_chunk, now_changed,
                                                             store.rollbacks):
            return None
        if now_opened != opened:  # accounts not found before may exist now: ask again
            for no in [no for no, acct in accounts.cache.items() if acct is None]:
                del accounts.cache[no]
                accounts._asked.discard(no)
                judge.standing.pop(no, None)
        return accounts, judge

    @classmethod
    def drop(cls, store: Store) -> None:
        cls._kept.pop(store, None)


def _write_balances(store: Store, accounts: _Accounts, day: date) -> None:
    touched = [(no, a) for no, a in accounts.cache.items() if a is not None and a.touched]
    store.conn.executemany("UPDATE accounts SET balance_fen = ? WHERE account_no = ?",
                           [(a.balance, no) for no, a in touched])
    outflows = [(no, period, a.outflow) for no, a in touched if a.outflow
                for period in (day_period(day), year_period(day))]
    store.conn.executemany(
        "INSERT INTO outflows(account_no, period, used_fen) VALUES (?, ?, ?) ON CONFLICT(account_no, "
        "period) DO UPDATE SET used_fen = used_fen + excluded.used_fen", outflows)
