"""The files the bank writes for a platform: return, rejection and statement files.

All three go through the contract's layout-driven codec (the same one the platform client
reads them with) into the platform's download directories via :class:`Outbox`, streamed:
a return file for a million records is written record by record, never held in memory.

Return-file faults (profile ``batches.file_faults``) are applied here, at writing time:
``missing_records`` leaves out the last N detail lines (the header still counts them all:
"still processing"), ``truncated`` cuts the finished file in the middle of a line and
drops the trailer, ``unexpected_name`` writes ``<stem>_ret.TXT``, and ``twice`` writes a
second, identical copy named ``<stem>_RET_R1.txt`` (a re-send).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from contracts.codec import FileWriter, encode_record, load_layout, rejection_file_name
from contracts.codes import CODES
from simulator.clock import from_us
from simulator.config import FileFaultAction
from simulator.domain.batchrecords import result_chunks, successful_records
from simulator.outbox import Outbox
from simulator.store import Store

RETURNS = "download/returns"
# Every ledger transaction kind (simulator.domain.ledger.KINDS) as the statement layout
# names it (contracts/layouts/statement.yaml, txn_kind). No fallback: the ledger writes no
# other kind, and a test checks that this map covers them all with documented values.
STATEMENT_KINDS = {
    "disbursement": "DISBURSEMENT", "withholding": "WITHHOLDING", "deposit": "DEPOSIT",
    "opening_balance": "DEPOSIT", "wechat_settlement": "CHANNEL_SETTLEMENT",
    "refund": "WITHDRAWAL",
}
STATEMENTS = "download/statements"


def _naive(us: int) -> datetime:
    return from_us(us).replace(tzinfo=None)


def _stem(file_name: str) -> str:
    return file_name[:-4] if file_name.lower().endswith(".txt") else file_name


def return_file_name(request_file_name: str, fault: FileFaultAction | None = None) -> str:
    stem = _stem(request_file_name)
    return f"{stem}_ret.TXT" if fault and fault.unexpected_name else f"{stem}_RET.txt"


def return_file_names(request_file_name: str, fault: FileFaultAction | None) -> list[str]:
    """Every file a batch's return produces (two with the ``twice`` fault)."""
    name = return_file_name(request_file_name, fault)
    return [name, name.replace("_RET.txt", "_RET_R1.txt")] if fault and fault.twice else [name]


def write_return(store: Store, outbox: Outbox, *, app_id: str, merchant: str, batch_no: str,
                 fault: FileFaultAction | None, name: str | None = None) -> list[str]:
    """Write the batch's return file(s); returns the names written.

    ``name`` writes one complete copy under that name instead (a return file sent again).

    The detail lines are the ones processing stored (already the file's bytes), streamed
    chunk by chunk between a header and a trailer made with the codec.
    """
    b = store.one("SELECT * FROM batches WHERE app_id = ? AND batch_no = ?", (app_id, batch_no))
    assert b is not None and b["processed_us"] is not None
    override = name
    name = name or return_file_name(b["file_name"], fault)
    layout = load_layout("return")
    fail_fen = b["total_fen"] - b["success_fen"]
    header = {
        "batch_no": batch_no, "business_date": date.fromisoformat(b["business_date"]),
        "merchant": merchant, "kind": b["kind"], "record_count": b["record_count"],
        "total_amount": b["total_fen"], "success_count": b["success_count"],
        "success_amount": b["success_fen"], "fail_count": b["record_count"] - b["success_count"],
        "fail_amount": fail_fen, "processed_at": _naive(b["processed_us"]),
    }
    # missing_records: the last N detail lines stay out ("still processing").
    keep = b["record_count"] - (fault.missing_records if fault else 0)
    with outbox.write(app_id, RETURNS, name) as fh:
        fh.write(encode_record(layout, "header", header))
        lines = 1
        for data, _ in result_chunks(store, app_id, batch_no):
            if lines - 1 >= keep:
                break
            count = data.count(b"\n")
            if lines - 1 + count > keep:
                cut = keep - (lines - 1)
                data = b"".join(line + b"\r\n" for line in data.split(b"\r\n")[:cut])
                count = cut
            fh.write(data)
            lines += count
        if not (fault and fault.truncated):
            fh.write(encode_record(layout, "trailer", {"line_count": lines + 1}))
        fh.flush()
        if fault and fault.truncated:
            # Cut inside a line, as a transfer that stopped half-way would.
            size = fh.tell()
            fh.truncate(max(1, size // 2 + 3))
    names = [name] if override else return_file_names(b["file_name"], fault)
    if len(names) > 1:
        data = (outbox.jail(app_id) / RETURNS / name).read_bytes()
        outbox.write_bytes(app_id, RETURNS, names[1], data)
    return names


def write_rejection(outbox: Outbox, *, app_id: str, file_name: str, batch_no: str | None,
                    business_date: date | None, code: str, reason: str, line: int | None,
                    at_us: int) -> str:
    name = rejection_file_name(file_name, _naive(at_us))
    layout = load_layout("rejection")
    with outbox.write(app_id, RETURNS, name) as fh:
        writer = FileWriter(layout, fh)
        writer.write_header({
            "original_file_name": _fit(file_name, 255) or "_", "batch_no": batch_no or "",
            "business_date": business_date, "code": code,
            "reason": _fit(f"{CODES[code].message_zh}: {reason}" if reason else CODES[code].message_zh, 256),
            "rejected_at": _naive(at_us)})
        if line is not None:
            writer.write_detail({"line_no": line, "code": code, "reason": CODES[code].message_zh})
    return name


def _fit(text: str, max_bytes: int) -> str:
    """``text`` as a rejection field can carry it: the platform must hear about every file.

    A reason may quote the bad line and a name may hold anything an SFTP client sent: the
    separator, control characters and characters GBK lacks are each written as ``_`` (the
    layout's rule), and the text is cut to the field's GBK bytes (with ``...`` when cut).
    """
    clean = "".join(c if _line_safe(c) else "_" for c in text)
    if len(clean.encode("gbk")) <= max_bytes:
        return clean
    while len(clean.encode("gbk")) > max_bytes - 3:
        clean = clean[:-1]
    return clean + "..."


def _line_safe(c: str) -> bool:
    if c == "|" or c < " " or c == "\x7f":
        return False
    try:
        c.encode("gbk")
    except UnicodeEncodeError:
        return False
    return True


def write_statement(store: Store, outbox: Outbox, *, app_id: str, account_no: str,
                    business_date: date) -> str:
    """The account's postings of one business date, with opening and closing balances.

    A posting that is the only one on its side of a transaction with several legs on the
    other (a batch's one posting for all its records) is listed leg by leg: one line per
    record, with its own amount, counterparty and memo, as the platform reconciles them.
    """
    acct = store.one("SELECT name, balance_fen FROM accounts WHERE account_no = ?", (account_no,))
    assert acct is not None
    day = business_date.isoformat()
    after = int(store.scalar(
        "SELECT COALESCE(SUM(p.amount_fen), 0) FROM postings p JOIN txns t ON t.id = p.txn_id "
        "WHERE p.account_no = ? AND t.business_date > ?", (account_no, day)))
    # Each transaction's shape once (its legs, and which are this account's on each side),
    # not per posting: a large batch's transaction has a million legs and one posting on
    # this account per chunk of its file.
    rows = store.all(
        "WITH mine AS (SELECT p.id AS posting, p.amount_fen, t.id, t.kind, t.at_us, t.ref, "
        " t.memo AS txn_memo, COALESCE(p.memo, t.memo) AS memo FROM postings p "
        " JOIN txns t ON t.id = p.txn_id WHERE p.account_no = :a AND t.business_date = :d), "
        "shape AS (SELECT q.txn_id, COUNT(*) AS legs, SUM(q.amount_fen > 0) AS credits, "
        " SUM(q.amount_fen > 0 AND q.account_no = :a) AS credits_here, "
        " SUM(q.amount_fen < 0 AND q.account_no = :a) AS debits_here, "
        " MIN(CASE WHEN q.amount_fen > 0 AND q.account_no = :a THEN q.id END) AS first_credit_here, "
        " MIN(CASE WHEN q.amount_fen < 0 AND q.account_no = :a THEN q.id END) AS first_debit_here "
        " FROM postings q WHERE q.txn_id IN (SELECT id FROM mine) GROUP BY q.txn_id) "
        "SELECT m.*, s.legs, "
        " CASE WHEN m.amount_fen > 0 THEN s.credits ELSE s.legs - s.credits END AS same_side, "
        " CASE WHEN m.amount_fen > 0 THEN s.credits_here ELSE s.debits_here END AS same_side_here, "
        " CASE WHEN m.amount_fen > 0 THEN s.first_credit_here ELSE s.first_debit_here END AS first_here, "
        " (SELECT q.account_no FROM postings q WHERE q.txn_id = m.id AND q.account_no <> :a "
        "  ORDER BY q.id LIMIT 1) AS counterparty "
        "FROM mine m JOIN shape s ON s.txn_id = m.id ORDER BY m.posting", {"a": account_no, "d": day})
    closing = acct["balance_fen"] - after
    opening = closing - sum(r["amount_fen"] for r in rows)
    counts = {"C": [0, 0], "D": [0, 0]}
    for r in rows:
        lines = (r["legs"] - r["same_side"] if r["posting"] == r["first_here"] else 0) if _itemized(r) else 1
        side = counts["C" if r["amount_fen"] > 0 else "D"]
        side[0] += lines
        side[1] += abs(r["amount_fen"])
    name = f"ST_{account_no}_{business_date:%Y%m%d}.txt"
    layout = load_layout("statement")
    with outbox.write(app_id, STATEMENTS, name) as fh:
        writer = FileWriter(layout, fh)
        writer.write_header({
            "account_no": account_no, "account_name": acct["name"], "business_date": business_date,
            "opening_balance": opening, "closing_balance": closing,
            "credit_count": counts["C"][0], "credit_amount": counts["C"][1],
            "debit_count": counts["D"][0], "debit_amount": counts["D"][1]})
        balance = opening
        seq = 0
        for r in rows:
            base = {"posted_at": _naive(r["at_us"]),
                    "txn_kind": STATEMENT_KINDS[r["kind"]],
                    "reference": r["ref"] or f"T{r['id']}"}
            for amount, counterparty, memo in _statement_lines(store, r):
                seq += 1
                balance += amount
                writer.write_detail({
                    **base, "seq": seq, "direction": "C" if amount > 0 else "D", "amount": abs(amount),
                    "balance_after": balance, "counterparty_account": counterparty or "",
                    # 30 characters stay inside the layout's 60 GBK bytes even when all are Chinese.
                    "memo": (memo or "")[:30]})
        writer.write_trailer()
    return name


def _itemized(r: Any) -> bool:
    """This account holds every leg on its side of a transaction with several on the other
    (a batch's postings on the platform's account): listed once, leg by leg."""
    return bool(r["legs"] - r["same_side"] > 1 and r["same_side"] == r["same_side_here"])


def _statement_lines(store: Store, r: Any) -> Iterator[tuple[int, str | None, str | None]]:
    """``(amount, counterparty, memo)`` of the statement lines of one posting.

    An itemized transaction is listed under its first posting on this account (a batch
    processed in slices has one per chunk), whole; its other postings here add no line.
    """
    if not _itemized(r):
        yield r["amount_fen"], r["counterparty"], r["memo"]
        return
    if r["posting"] != r["first_here"]:
        return
    batch = store.one("SELECT app_id, batch_no FROM batches WHERE txn_id = ?", (r["id"],))
    if batch is not None:
        # A batch's transaction: its records, in file order, from the batch itself.
        sign = 1 if r["amount_fen"] > 0 else -1
        for account_no, amount, memo in successful_records(store, batch["app_id"], batch["batch_no"]):
            yield sign * amount, account_no, memo or r["kind"]
        return
    for q in store.conn.execute("SELECT account_no, amount_fen, memo FROM postings WHERE txn_id = ? "
                                "AND (amount_fen > 0) <> (? > 0) ORDER BY id", (r["id"], r["amount_fen"])):
        yield -q["amount_fen"], q["account_no"], q["memo"] or r["txn_memo"]
