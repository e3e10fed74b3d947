"""Batch file intake: the whole file is validated before anything is accepted.

Checks, in order: the name (kind, merchant, date, batch number), size (empty, too large),
the encoding and structure of every line (the layout-driven codec), the header against
the name and the platform (merchant, kind, business date, the account the batch moves
money from or to), the batch number not used before by this platform (on any day),
sequence numbers 1..n, no serial twice, and finally the header's count and total against
the details. The records are streamed into the store as they are read (a 1,000,000-line
file is never held in memory) inside one savepoint, so a file refused at its last line
leaves nothing behind. A refused file raises a :class:`~simulator.errors.FileRejected`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from contracts.codec import FileFormatError, FileReader, identify, load_layout
from contracts.money import format_fen
from simulator.config import Platform
from simulator.domain.writebehind import WriteBehind
from simulator.errors import (
    FileBadAccount,
    FileBadField,
    FileBusinessDate,
    FileCountMismatch,
    FileDuplicateBatch,
    FileDuplicateSerial,
    FileEmpty,
    FileRejected,
    FileStructure,
    FileTooLarge,
    FileTotalMismatch,
    FileUnknownKind,
    error_for_code,
)
from simulator.store import Store

KIND_BY_LAYOUT = {"disbursement_request": "DF", "withholding_request": "DK"}
# Records handed to the store thread at a time: few enough tasks that waiting for Python's
# lock between statements costs little, small enough that memory stays a few MB.
_HAND_OVER = 32_768


@dataclass(frozen=True)
class Accepted:
    kind: str
    batch_no: str
    business_date: date
    record_count: int
    total_fen: int


def _as_date(value: Any) -> date:
    if isinstance(value, date):
        return value
    text = str(value)
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def _codec_error(exc: FileFormatError) -> FileRejected:
    err = error_for_code(exc.code, exc.detail)
    assert isinstance(err, FileRejected)
    err.line = exc.line
    return err


def name_parts(file_name: str) -> tuple[str, dict[str, Any]]:
    found = identify(file_name)
    if found is None:
        raise FileUnknownKind(f"{file_name!r} is not DF_<merchant>_<yyyymmdd>_<batch>.txt "
                              "or DK_<merchant>_<yyyymmdd>_<batch>.txt")
    layout_name, parts = found
    if layout_name not in KIND_BY_LAYOUT:
        raise FileUnknownKind(f"{file_name!r} is a {layout_name} file, not a request")
    return layout_name, parts


def accept_file(store: Store, *, app_id: str, platform: Platform, file_name: str, path: Path,
                max_bytes: int, business_date: date, now_us: int,
                previous_day_ok: bool = False) -> Accepted:
    """Validate ``path`` and store its batch and records, or raise FileRejected.

    The file's business date must be the bank's current one (4009 otherwise); with
    ``previous_day_ok`` (profile ``batches.accept_previous_business_day``) the day before is
    taken too, for a file prepared just before the cutover.
    """
    layout_name, parts = name_parts(file_name)
    kind = KIND_BY_LAYOUT[layout_name]
    size = path.stat().st_size
    if size == 0:
        raise FileEmpty(f"{file_name} has no bytes")
    if size > max_bytes:
        raise FileTooLarge(f"{file_name} has {size} bytes, the limit is {max_bytes}")
    with open(path, "rb") as fh, store.transaction():
        try:
            reader = FileReader(load_layout(layout_name), fh)
            header = reader.header
            _check_header(store, app_id, platform, kind, parts, header, business_date, previous_day_ok)
            count, total = _store_records(store, app_id, str(header["batch_no"]), reader)
        except FileFormatError as exc:
            raise _codec_error(exc) from None
        if count != header["record_count"]:
            raise FileCountMismatch(f"header says {header['record_count']} records, "
                                    f"the file has {count}", line=1)
        if total != header["total_amount"]:
            # Amounts quoted as the file writes them: yuan with two decimals.
            raise FileTotalMismatch(f"header total {format_fen(header['total_amount'])}, "
                                    f"details sum to {format_fen(total)}", line=1)
        batch_date = _as_date(header["business_date"])
        store.execute(
            "INSERT INTO batches(app_id, batch_no, kind, file_name, business_date, account_no, "
            "record_count, total_fen, state, received_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ACCEPTED', ?)",
            (app_id, str(header["batch_no"]), kind, file_name, batch_date.isoformat(),
             str(header["account_no"]), count, total, now_us))
        return Accepted(kind, str(header["batch_no"]), batch_date, count, total)


def _check_header(store: Store, app_id: str, platform: Platform, kind: str,
                  parts: dict[str, Any], header: dict[str, Any], business_date: date,
                  previous_day_ok: bool) -> None:
    batch_no = str(header["batch_no"])
    if batch_no != str(parts["batch"]) or str(header["merchant"]) != str(parts["merchant"]):
        raise FileStructure("header batch number or merchant differs from the file name", line=1)
    if str(header["kind"]) != kind:
        raise FileStructure(f"header kind {header['kind']} in a {kind} file", line=1)
    if platform.merchant and str(header["merchant"]) != platform.merchant:
        raise FileBadField(f"merchant {header['merchant']} is not this platform's "
                           f"({platform.merchant})", line=1)
    file_date = _as_date(header["business_date"])
    if file_date != _as_date(parts["date"]):
        raise FileBusinessDate("header business date differs from the file name", line=1)
    # The bank's current business date only (the code table's 4009), unless the profile
    # tolerates the day before (a file prepared just before the cutover).
    allowed = (business_date, business_date - timedelta(days=1)) if previous_day_ok else (business_date,)
    if file_date not in allowed:
        also = " or the day before" if previous_day_ok else ""
        raise FileBusinessDate(f"business date {file_date} is not the bank's current one "
                               f"({business_date}{also})", line=1)
    expected = platform.supervision_account if kind == "DF" else platform.settlement_account
    if str(header["account_no"]) != expected:
        role = "supervision (98)" if kind == "DF" else "settlement"
        raise FileBadAccount(f"header account {header['account_no']} is not the platform's "
                             f"{role} account", line=1)
    if store.one("SELECT 1 FROM batches WHERE app_id = ? AND batch_no = ?", (app_id, batch_no)):
        raise FileDuplicateBatch(f"batch {batch_no} was already accepted", line=1)


def _store_records(store: Store, app_id: str, batch_no: str, reader: FileReader) -> tuple[int, int]:
    """Check seq order and serials, store the lines in chunks; returns (count, total fen).

    The store work (serials and chunks, a few blocks at a time) runs on a second thread
    (:class:`WriteBehind`) while the next blocks are parsed. Faults are reported in line
    order all the same: before raising a fault found here, the blocks before it are
    finished, so a serial repeated earlier in the file is reported first.
    """
    count = total = 0
    registry = _Registry(store, app_id, batch_no)
    group: list[tuple[int, int, str]] = []  # (chunk, first seq, text) not handed over yet
    serials: list[str] = []

    def hand_over(writer: WriteBehind) -> None:
        rows, before, found = list(group), group[0][1] - 1, list(serials)
        group.clear()
        serials.clear()

        def task() -> None:
            registry.add(before, found)
            store.insert_rows("INSERT INTO batch_chunks(app_id, batch_no, chunk, first_seq, count, lines)",
                              [(app_id, batch_no, chunk, first, text.count("\n") + 1, text)
                               for chunk, first, text in rows])

        writer.submit(task)

    with WriteBehind() as writer:
        try:
            for chunk, block in enumerate(reader.columns(("seq", "serial", "amount"))):
                seqs, found, amounts = block.columns
                n = block.records
                if seqs != list(range(count + 1, count + 1 + n)):
                    bad = next(i for i, got in enumerate(seqs) if got != count + 1 + i)
                    # Serials of the lines before the bad one are checked first: faults in line order.
                    if group:
                        hand_over(writer)
                    writer.submit(partial(registry.add, count, found[:bad]))
                    writer.drain()
                    raise FileStructure(f"seq {seqs[bad]} where {count + bad + 1} was expected",
                                        line=block.first_line + bad)
                group.append((chunk, count + 1, block.text))
                serials.extend(found)
                count += n
                total += sum(amounts)
                if len(serials) >= _HAND_OVER:
                    hand_over(writer)
        except FileFormatError:
            if group:
                hand_over(writer)
            writer.drain()  # a fault on an earlier line (a repeated serial) comes first
            raise
        if group:
            hand_over(writer)
    return count, total


class _Registry:
    """A platform's record serials: the first batch to bring a serial owns it.

    A serial twice in one file refuses the file (4006). A serial another batch already
    holds is noted in ``serial_conflicts``; processing decides from those few rows whether
    an earlier processed batch used it (3051). The common case, no serial seen before,
    costs one bulk insert per chunk (the serials passed as one JSON array, so SQLite walks
    them itself instead of binding a parameter per record).
    """

    def __init__(self, store: Store, app_id: str, batch_no: str) -> None:
        self.store = store
        self.app_id = app_id
        self.batch_no = batch_no
        self.contested: dict[str, int] = {}  # serial -> seq, serials other batches hold

    def add(self, before: int, serials: list[str]) -> None:
        """Register the serials of the records ``before + 1, before + 2, ...``."""
        if not serials:
            return
        conn = self.store.conn
        app_id, batch_no = self.app_id, self.batch_no
        conn.execute("SAVEPOINT serials")
        added = conn.execute(
            "INSERT OR IGNORE INTO record_serials(app_id, serial, batch_no) "
            "SELECT ?, value, ? FROM json_each(?)", (app_id, batch_no, json.dumps(serials))).rowcount
        if added == len(serials):
            conn.execute("RELEASE serials")
            return
        # Some serial was there already: redo this chunk one by one to find which.
        conn.execute("ROLLBACK TO serials")
        conn.execute("RELEASE serials")
        for offset, serial in enumerate(serials):
            seq = before + offset + 1
            cur = conn.execute("INSERT OR IGNORE INTO record_serials(app_id, serial, batch_no) "
                               "VALUES (?, ?, ?)", (app_id, serial, batch_no))
            if cur.rowcount == 1:
                continue
            owner = self.store.scalar("SELECT batch_no FROM record_serials WHERE app_id = ? AND serial = ?",
                                      (app_id, serial))
            first = (self.contested.get(serial) if owner != batch_no
                     else self._first_seq(serial, before, serials))
            if first is not None:
                raise FileDuplicateSerial(f"serial {serial} already on line {first + 1}", line=seq + 1)
            self.contested[serial] = seq
            conn.execute("INSERT INTO serial_conflicts(app_id, batch_no, seq, serial) VALUES (?, ?, ?, ?)",
                         (app_id, batch_no, seq, serial))

    def _first_seq(self, serial: str, before: int, current: list[str]) -> int:
        """Where this file first brought ``serial`` (an earlier chunk, or this one)."""
        for lines, first_seq in self.store.all(
                "SELECT lines, first_seq FROM batch_chunks WHERE app_id = ? AND batch_no = ? ORDER BY chunk",
                (self.app_id, self.batch_no)):
            for offset, line in enumerate(lines.split("\n")):
                if line.split("|", 3)[2] == serial:
                    return int(first_seq) + offset
        if serial in current:
            return before + current.index(serial) + 1
        raise AssertionError(f"serial {serial} is this batch's but not in its file")  # pragma: no cover
