"""Where a batch's records and results live: chunks of lines, not a row per record.

Intake stores the accepted detail lines as received, a few thousand per row of
``batch_chunks``; processing stores, per chunk, the return file's detail lines for them
(``batch_results``: GBK bytes with CRLF, exactly what the return file carries) and which
rule or rate decided the records the ledger did not. A million-record batch is a few
hundred rows each way, written once; the return file is the result chunks between a
header and a trailer; the manifest reads the lines back.

Batches taken in by an older version have their records in ``batch_records``;
:func:`adopt_legacy` moves them into chunks once, at start.

Example::

    for chunk, first_seq, lines in request_chunks(store, "demo-platform", "1"):
        ...  # lines[i] is the detail line of seq first_seq + i
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from contracts.codec import encode_record, load_layout
from simulator.clock import from_us
from simulator.store import Store

SEP = "|"
# Detail fields by position, the same in both request layouts and the return layout:
# tag, seq, serial, account_no, account_name, amount; then the request's memo, or the
# return's bank_serial, result, code, reason, finished_at.
SEQ, SERIAL, ACCOUNT, NAME, AMOUNT, MEMO = 1, 2, 3, 4, 5, 6
BANK_SERIAL, RESULT, CODE, REASON = 6, 7, 8, 9


def request_chunks(store: Store, app_id: str, batch_no: str) -> Iterator[tuple[int, int, list[str]]]:
    """``(chunk, first seq, detail lines)`` in file order; a line keeps no line ending."""
    last = -1
    while True:
        row = store.one("SELECT chunk, first_seq, lines FROM batch_chunks WHERE app_id = ? AND "
                        "batch_no = ? AND chunk > ? ORDER BY chunk LIMIT 1", (app_id, batch_no, last))
        if row is None:
            return
        last = int(row["chunk"])
        yield last, int(row["first_seq"]), [line.rstrip("\r") for line in row["lines"].split("\n")]


def result_chunks(store: Store, app_id: str, batch_no: str) -> Iterator[tuple[bytes, dict[str, str]]]:
    """``(return detail bytes, {seq: decided by})`` per chunk in file order."""
    last = -1
    while True:
        row = store.one("SELECT chunk, lines, decided FROM batch_results WHERE app_id = ? AND "
                        "batch_no = ? AND chunk > ? ORDER BY chunk LIMIT 1", (app_id, batch_no, last))
        if row is None:
            return
        last = int(row["chunk"])
        yield bytes(row["lines"]), json.loads(row["decided"])


def manifest_records(store: Store, app_id: str, batch_no: str, limit: int) -> list[dict[str, Any]]:
    """Every record (up to ``limit``) with its result, as the control API shows it."""
    records: list[dict[str, Any]] = []
    results = result_chunks(store, app_id, batch_no)
    for _, first_seq, lines in request_chunks(store, app_id, batch_no):
        got = next(results, None)
        outcome = got[0].decode("gbk").split("\r\n") if got else None
        decided = got[1] if got else {}
        for offset, line in enumerate(lines):
            if len(records) >= limit:
                return records
            p = line.split(SEP)
            seq = first_seq + offset
            record: dict[str, Any] = {
                "seq": seq, "serial": p[SERIAL], "account_no": p[ACCOUNT], "account_name": p[NAME],
                "amount": p[AMOUNT], "result": None, "code": None, "reason": None,
                "decided_by": None, "bank_serial": None}
            if outcome is not None:
                r = outcome[offset].split(SEP)
                record.update(result=r[RESULT], code=r[CODE], reason=r[REASON],
                              decided_by=decided.get(str(seq), "ledger"), bank_serial=r[BANK_SERIAL])
            records.append(record)
    return records


def adopt_legacy(store: Store) -> int:
    """Move batches stored a row per record (older versions) into chunks; returns how many.

    Accepted batches get their serials registered as intake now does; processed ones get
    their results as return lines. Runs in the caller's transaction.
    """
    moved = 0
    ret = load_layout("return")
    for b in store.all("SELECT DISTINCT r.app_id, r.batch_no, b.kind, b.state FROM batch_records r "
                       "JOIN batches b ON b.app_id = r.app_id AND b.batch_no = r.batch_no"):
        app_id, batch_no = b["app_id"], b["batch_no"]
        request = load_layout("disbursement_request" if b["kind"] == "DF" else "withholding_request")
        rows = store.all("SELECT * FROM batch_records WHERE app_id = ? AND batch_no = ? ORDER BY seq",
                         (app_id, batch_no))
        lines = [encode_record(request, "detail", {
            "seq": r["seq"], "serial": r["serial"], "account_no": r["account_no"],
            "account_name": r["account_name"], "amount": r["amount_fen"], "memo": r["memo"],
            **({"agreement_no": r["agreement_no"] or ""} if b["kind"] == "DK" else {}),
        }).decode("gbk").rstrip("\r\n") for r in rows]
        store.execute("INSERT INTO batch_chunks(app_id, batch_no, chunk, first_seq, count, lines) "
                      "VALUES (?, ?, 0, 1, ?, ?)", (app_id, batch_no, len(lines), "\n".join(lines)))
        if b["state"] == "ACCEPTED":
            for r in rows:
                cur = store.execute("INSERT OR IGNORE INTO record_serials(app_id, serial, batch_no) "
                                    "VALUES (?, ?, ?)", (app_id, r["serial"], batch_no))
                if cur.rowcount == 0:
                    store.execute("INSERT INTO serial_conflicts(app_id, batch_no, seq, serial) "
                                  "VALUES (?, ?, ?, ?)", (app_id, batch_no, r["seq"], r["serial"]))
        else:
            data = b"".join(encode_record(ret, "detail", {
                "seq": r["seq"], "serial": r["serial"], "account_no": r["account_no"],
                "account_name": r["account_name"], "amount": r["amount_fen"],
                "bank_serial": r["bank_serial"], "result": r["result"], "code": r["code"],
                "reason": r["reason"], "finished_at": from_us(r["finished_us"]).replace(tzinfo=None),
            }) for r in rows)
            decided = {str(r["seq"]): r["decided_by"] for r in rows if r["decided_by"] != "ledger"}
            store.execute("INSERT INTO batch_results(app_id, batch_no, chunk, first_seq, count, lines, "
                          "decided) VALUES (?, ?, 0, 1, ?, ?, ?)",
                          (app_id, batch_no, len(rows), data, json.dumps(decided, ensure_ascii=False)))
        store.execute("DELETE FROM batch_records WHERE app_id = ? AND batch_no = ?", (app_id, batch_no))
        moved += 1
    return moved


def finished_text(now_us: int) -> str:
    """A record's finish time as the return layout writes it (yyyymmddHHMMSS, CST)."""
    t = from_us(now_us)
    return f"{t.year:04d}{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}"


def successful_records(store: Store, app_id: str, batch_no: str) -> Iterator[tuple[str, int, str]]:
    """``(account_no, amount fen, memo)`` of the records that moved money, in file order."""
    results = result_chunks(store, app_id, batch_no)
    for _, _, lines in request_chunks(store, app_id, batch_no):
        got = next(results, None)
        if got is None:
            return
        outcome = got[0].decode("gbk").split("\r\n")
        for line, result in zip(lines, outcome, strict=False):
            if result.split(SEP, RESULT + 1)[RESULT] == "S":
                p = line.split(SEP)
                text = p[AMOUNT]
                yield p[ACCOUNT], int(text[:-3] + text[-2:]), p[MEMO]
