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

from contracts.codec import FileWriter, load_layout, rejection_file_name
from contracts.codes import CODES
from simulator.clock import from_us
from simulator.config import FileFaultAction
from simulator.outbox import Outbox
from simulator.store import Store

RETURNS = "download/returns"
# Ledger transaction kinds as the statement layout names them.
_STATEMENT_KINDS = {
    "disbursement": "DISBURSEMENT", "withholding": "WITHHOLDING", "deposit": "DEPOSIT",
    "opening_balance": "DEPOSIT", "channel_settlement": "CHANNEL_SETTLEMENT",
    "withdrawal": "WITHDRAWAL",
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


def _return_details(store: Store, app_id: str, batch_no: str, skip_last: int,
                    total: int) -> Iterator[dict[str, Any]]:
    keep = total - skip_last
    last = 0
    while last < keep:
        rows = store.all(
            "SELECT seq, serial, account_no, account_name, amount_fen, bank_serial, result, code, "
            "reason, finished_us FROM batch_records WHERE app_id = ? AND batch_no = ? AND seq > ? "
            "ORDER BY seq LIMIT 5000", (app_id, batch_no, last))
        if not rows:
            return
        for r in rows:
            last = r["seq"]
            if last > keep:
                return
            yield {"seq": r["seq"], "serial": r["serial"], "account_no": r["account_no"],
                   "account_name": r["account_name"], "amount": r["amount_fen"],
                   "bank_serial": r["bank_serial"], "result": r["result"], "code": r["code"],
                   "reason": r["reason"], "finished_at": _naive(r["finished_us"])}


def write_return(store: Store, outbox: Outbox, *, app_id: str, merchant: str, batch_no: str,
                 fault: FileFaultAction | None) -> list[str]:
    """Write the batch's return file(s); returns the names written."""
    b = store.one("SELECT * FROM batches WHERE app_id = ? AND batch_no = ?", (app_id, batch_no))
    assert b is not None and b["processed_us"] is not None
    name = return_file_name(b["file_name"], fault)
    layout = load_layout("return")
    fail_fen = b["total_fen"] - b["success_fen"]
    header = {
        "batch_no": batch_no, "business_date": date.fromisoformat(b["business_date"]),
        "merchant": merchant, "kind": b["kind"], "record_count": b["record_count"],
        "total_amount": b["total_fen"], "success_count": b["success_count"],
        "success_amount": b["success_fen"], "fail_count": b["record_count"] - b["success_count"],
        "fail_amount": fail_fen, "processed_at": _naive(b["processed_us"]),
    }
    skip = fault.missing_records if fault else 0
    with outbox.write(app_id, RETURNS, name) as fh:
        writer = FileWriter(layout, fh)
        writer.write_header(header)
        for detail in _return_details(store, app_id, batch_no, skip, b["record_count"]):
            writer.write_detail(detail)
        if not (fault and fault.truncated):
            writer.write_trailer()
        fh.flush()
        if fault and fault.truncated:
            # Cut inside a line, as a transfer that stopped half-way would.
            size = fh.tell()
            fh.truncate(max(1, size // 2 + 3))
    names = return_file_names(b["file_name"], fault)
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
            "original_file_name": file_name, "batch_no": batch_no or "",
            "business_date": business_date, "code": code,
            "reason": f"{CODES[code].message_zh}: {reason}" if reason else CODES[code].message_zh,
            "rejected_at": _naive(at_us)})
        if line is not None:
            writer.write_detail({"line_no": line, "code": code, "reason": CODES[code].message_zh})
    return name


def write_statement(store: Store, outbox: Outbox, *, app_id: str, account_no: str,
                    business_date: date) -> str:
    """The account's postings of one business date, with opening and closing balances."""
    acct = store.one("SELECT name, balance_fen FROM accounts WHERE account_no = ?", (account_no,))
    assert acct is not None
    day = business_date.isoformat()
    after = int(store.scalar(
        "SELECT COALESCE(SUM(p.amount_fen), 0) FROM postings p JOIN txns t ON t.id = p.txn_id "
        "WHERE p.account_no = ? AND t.business_date > ?", (account_no, day)))
    rows = store.all(
        "SELECT p.amount_fen, t.id, t.kind, t.at_us, t.ref, t.memo, "
        "(SELECT q.account_no FROM postings q WHERE q.txn_id = t.id AND q.account_no <> p.account_no "
        " ORDER BY q.id LIMIT 1) AS counterparty "
        "FROM postings p JOIN txns t ON t.id = p.txn_id "
        "WHERE p.account_no = ? AND t.business_date = ? ORDER BY p.id", (account_no, day))
    closing = acct["balance_fen"] - after
    opening = closing - sum(r["amount_fen"] for r in rows)
    credits = [r["amount_fen"] for r in rows if r["amount_fen"] > 0]
    debits = [-r["amount_fen"] for r in rows if r["amount_fen"] < 0]
    name = f"ST_{account_no}_{business_date:%Y%m%d}.txt"
    layout = load_layout("statement")
    with outbox.write(app_id, STATEMENTS, name) as fh:
        writer = FileWriter(layout, fh)
        writer.write_header({
            "account_no": account_no, "account_name": acct["name"], "business_date": business_date,
            "opening_balance": opening, "closing_balance": closing,
            "credit_count": len(credits), "credit_amount": sum(credits),
            "debit_count": len(debits), "debit_amount": sum(debits)})
        balance = opening
        for seq, r in enumerate(rows, start=1):
            balance += r["amount_fen"]
            writer.write_detail({
                "seq": seq, "posted_at": _naive(r["at_us"]),
                "direction": "C" if r["amount_fen"] > 0 else "D", "amount": abs(r["amount_fen"]),
                "balance_after": balance, "txn_kind": _STATEMENT_KINDS.get(r["kind"], "ADJUSTMENT"),
                "reference": r["ref"] or f"T{r['id']}", "counterparty_account": r["counterparty"] or "",
                # 30 characters stay inside the layout's 60 GBK bytes even when all are Chinese.
                "memo": (r["memo"] or "")[:30]})
        writer.write_trailer()
    return name

