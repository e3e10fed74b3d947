"""Building disbursement (DF) and withholding (DK) request files with the shared codec.

Pure: records in, file name and GBK bytes out (header count and total computed from the
records, so they always agree). Serials are ``<kind><batch_no:08d><seq:06d>``: unique per
platform because batch numbers are. A re-submitted record's memo names the serial of the
original record it re-sends (the layouts have no reference field).

Example::

    >>> from datetime import date
    >>> name, data = build_request("DF", 7, date(2026, 1, 6), "DEMO01", "98010078801000001",
    ...     [OutRecord("6231880000000000017", "张三", 10000, "充值到账")])
    >>> name, data.decode("gbk").splitlines()[0]
    ('DF_DEMO01_20260106_7.txt', 'H|7|20260106|DEMO01|DF|1|100.00|98010078801000001|')
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from contracts.codec import FileWriter, load_layout

LAYOUTS = {"DF": "disbursement_request", "DK": "withholding_request"}
MEMO_MAX_BYTES = 60
RESEND_PREFIX = "重发"


@dataclass(frozen=True)
class OutRecord:
    """One detail to send; ``serial`` is assigned by :func:`build_request` when empty."""

    account_no: str
    account_name: str
    amount: int
    memo: str = ""
    agreement_no: str = ""
    serial: str = ""


def record_serial(kind: str, batch_no: int, seq: int) -> str:
    """The serial of record ``seq`` of a batch.

    >>> record_serial("DF", 12, 3)
    'DF00000012000003'
    """
    return f"{kind}{batch_no:08d}{seq:06d}"


def resend_memo(original_serial: str) -> str:
    """The memo of a re-submitted record: it references the original record's serial."""
    return f"{RESEND_PREFIX}{original_serial}"


def fit_memo(text: str) -> str:
    """``text`` cut to the layout's 60 GBK bytes (characters GBK lacks become '?')."""
    out = text.encode("gbk", errors="replace")[:MEMO_MAX_BYTES]
    return out.decode("gbk", errors="ignore").replace("|", "/")


def build_request(kind: str, batch_no: int, business_date: date, merchant: str, account_no: str,
                  records: Sequence[OutRecord]) -> tuple[str, bytes]:
    """The file name and bytes of a request batch; serials filled in where empty."""
    layout = load_layout(LAYOUTS[kind])
    buffer = io.BytesIO()
    writer = FileWriter(layout, buffer)
    writer.write_header({"batch_no": str(batch_no), "business_date": business_date,
                         "merchant": merchant, "kind": kind, "record_count": len(records),
                         "total_amount": sum(r.amount for r in records), "account_no": account_no})
    for seq, rec in enumerate(records, start=1):
        values: dict[str, object] = {
            "seq": seq, "serial": rec.serial or record_serial(kind, batch_no, seq),
            "account_no": rec.account_no, "account_name": rec.account_name, "amount": rec.amount,
            "memo": fit_memo(rec.memo)}
        if kind == "DK":
            values["agreement_no"] = rec.agreement_no
        writer.write_detail(values)
    name = layout.file_name(kind=kind, merchant=merchant, date=business_date, batch=str(batch_no))
    return name, buffer.getvalue()
