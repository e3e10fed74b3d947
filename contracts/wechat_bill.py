"""The WeChat Pay trade bill (交易账单): one writer and one strict reader, used by both sides.

Layout (UTF-8 without BOM, every line ends with CRLF)::

    交易时间,公众账号ID,...,费率备注                      the detail header (27 columns)
    `2026-01-05 10:00:00,`wxd678efh567hg6787,...,`       one row per payment or refund
    总交易单数,应结订单总金额,...,申请退款总金额            the summary header (7 columns)
    `1,`100.00,`0.00,`0.00,`0.60000,`100.00,`0.00          one summary row

Every data field is prefixed with a backtick (so spreadsheets keep long numbers as text).
Amounts are yuan with two decimals, the fee yuan with five, the rate like ``0.60%``. A field
holding a comma or a quote is quoted the CSV way (the backtick inside the quotes), so a
description like ``充值,50元`` survives; the reader is Python's ``csv`` module.

A payment row has 交易状态 ``SUCCESS``, 应结订单金额 = 订单金额 = the order amount and its
fee; a refund row has 交易状态 ``REFUND``, the refund ids, 退款金额 = 申请退款金额 = the
refund, 退款类型 ``ORIGINAL``, 退款状态 ``SUCCESS``, and zero order amounts and fee, so the
summary's order totals count each payment once. The summary sums the columns of the rows.

Example::

    >>> from decimal import Decimal
    >>> from datetime import datetime
    >>> row = payment_row(trade_time=datetime(2026, 1, 5, 10, 0), appid="wxd678efh567hg6787",
    ...                   mchid="1900000109", transaction_id="4200000000000000000000000001",
    ...                   out_trade_no="TOPUP-1", openid="oUpF8-test", total_fen=10000,
    ...                   fee=Decimal("0.60"), rate="0.60%", body="余额充值")
    >>> bill = parse_bill(render_bill([row]))
    >>> (bill.summary.count, bill.summary.order_total_fen, bill.rows[0].fee)
    (1, 10000, Decimal('0.60000'))
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal

DETAIL_HEADER: tuple[str, ...] = (
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号", "用户标识",
    "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额", "微信退款单号",
    "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态", "商品名称", "商户数据包",
    "手续费", "费率", "订单金额", "申请退款金额", "费率备注",
)
SUMMARY_HEADER: tuple[str, ...] = (
    "总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额", "订单总金额",
    "申请退款总金额",
)
BILL_TYPES = ("ALL", "SUCCESS", "REFUND")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_FEE_PLACES = Decimal("0.00001")
_YUAN = re.compile(r"(0|[1-9][0-9]*)\.[0-9]{2}")
_FEE = re.compile(r"(0|[1-9][0-9]*)\.[0-9]{5}")
_COUNT = re.compile(r"0|[1-9][0-9]*")
_RATE = re.compile(r"[0-9]+\.[0-9]{2}%")


class BillFormatError(ValueError):
    """The bill is not in the layout, or its summary disagrees with its rows.

    ``line`` is the 1-based line the problem was found on (None for the whole file).
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


@dataclass(frozen=True)
class BillRow:
    """One detail row; money in integer fen except ``fee`` (yuan, Decimal, five places)."""

    trade_time: datetime  # naive, China Standard Time
    appid: str
    mchid: str
    sub_mchid: str
    device_info: str
    transaction_id: str
    out_trade_no: str
    openid: str
    trade_type: str
    trade_state: str
    bank_type: str
    currency: str
    settlement_total_fen: int
    coupon_fen: int
    refund_id: str
    out_refund_no: str
    refund_fen: int
    coupon_refund_fen: int
    refund_type: str
    refund_status: str
    body: str
    attach: str
    fee: Decimal
    rate: str
    order_total_fen: int
    requested_refund_fen: int
    rate_note: str


@dataclass(frozen=True)
class BillSummary:
    count: int
    settlement_total_fen: int
    refund_fen: int
    coupon_refund_fen: int
    fee: Decimal
    order_total_fen: int
    requested_refund_fen: int


@dataclass(frozen=True)
class TradeBill:
    rows: tuple[BillRow, ...]
    summary: BillSummary


_FEN_FIELDS = frozenset({"settlement_total_fen", "coupon_fen", "refund_fen", "coupon_refund_fen",
                         "order_total_fen", "requested_refund_fen"})


def payment_row(*, trade_time: datetime, appid: str, mchid: str, transaction_id: str,
                out_trade_no: str, openid: str, total_fen: int, fee: Decimal, rate: str,
                body: str, attach: str = "", bank_type: str = "OTHERS",
                trade_type: str = "NATIVE") -> BillRow:
    """The row of a successful payment."""
    return BillRow(trade_time, appid, mchid, "0", "", transaction_id, out_trade_no, openid,
                   trade_type, "SUCCESS", bank_type, "CNY", total_fen, 0, "0", "0", 0, 0, "", "",
                   body, attach, fee, rate, total_fen, 0, "")


def refund_row(*, trade_time: datetime, appid: str, mchid: str, transaction_id: str,
               out_trade_no: str, openid: str, refund_id: str, out_refund_no: str, refund_fen: int,
               rate: str, body: str, attach: str = "", bank_type: str = "OTHERS",
               trade_type: str = "NATIVE") -> BillRow:
    """The row of a successful refund (to the original payment method)."""
    return BillRow(trade_time, appid, mchid, "0", "", transaction_id, out_trade_no, openid,
                   trade_type, "REFUND", bank_type, "CNY", 0, 0, refund_id, out_refund_no,
                   refund_fen, 0, "ORIGINAL", "SUCCESS", body, attach, Decimal(0), rate, 0,
                   refund_fen, "")


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _fee(value: Decimal) -> str:
    return str(value.quantize(_FEE_PLACES))


def summarize(rows: Iterable[BillRow]) -> BillSummary:
    """The summary the rows call for."""
    rows = list(rows)
    return BillSummary(
        count=len(rows),
        settlement_total_fen=sum(r.settlement_total_fen for r in rows),
        refund_fen=sum(r.refund_fen for r in rows),
        coupon_refund_fen=sum(r.coupon_refund_fen for r in rows),
        fee=sum((r.fee for r in rows), Decimal(0)).quantize(_FEE_PLACES),
        order_total_fen=sum(r.order_total_fen for r in rows),
        requested_refund_fen=sum(r.requested_refund_fen for r in rows),
    )


def _row_texts(row: BillRow) -> list[str]:
    out: list[str] = []
    for f in fields(BillRow):
        value = getattr(row, f.name)
        if f.name == "trade_time":
            out.append(value.strftime(TIME_FORMAT))
        elif f.name in _FEN_FIELDS:
            if value < 0:
                raise ValueError(f"{f.name} must not be negative, got {value}")
            out.append(_yuan(value))
        elif f.name == "fee":
            out.append(_fee(value))
        else:
            out.append(str(value))
    return out


def _summary_texts(s: BillSummary) -> list[str]:
    return [str(s.count), _yuan(s.settlement_total_fen), _yuan(s.refund_fen),
            _yuan(s.coupon_refund_fen), _fee(s.fee), _yuan(s.order_total_fen),
            _yuan(s.requested_refund_fen)]


def render_bill(rows: Sequence[BillRow], summary: BillSummary | None = None) -> bytes:
    """The bill's bytes; rows as given (callers sort by trade time, then out_trade_no).

    ``summary`` defaults to the one the rows call for; passing another one is for tests
    that need a bill whose summary is wrong.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(DETAIL_HEADER)
    for row in rows:
        writer.writerow(["`" + text for text in _row_texts(row)])
    writer.writerow(SUMMARY_HEADER)
    writer.writerow(["`" + text for text in _summary_texts(summary or summarize(rows))])
    return out.getvalue().encode("utf-8")


# -- reading ------------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        raise BillFormatError("the bill starts with a byte order mark; it must be UTF-8 without BOM")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BillFormatError(f"not UTF-8 (byte {exc.start})") from None
    if not text:
        raise BillFormatError("the bill is empty")
    if not text.endswith("\r\n"):
        raise BillFormatError("the last line does not end with CRLF (truncated?)")
    return text


def _records(text: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) per CSV record, checking that every line ends with CRLF."""
    records: list[tuple[int, list[str]]] = []
    line = 1
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        for record in reader:
            records.append((line, record))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise BillFormatError(f"not CSV: {exc}", reader.line_num) from None
    # csv accepts bare LF and CR; the layout does not.
    stripped = text.replace("\r\n", "")
    if "\n" in stripped or "\r" in stripped:
        bad = text[: text.index("\n" if "\n" in stripped else "\r")].count("\n") + 1
        raise BillFormatError("lines must end with CRLF", bad)
    return records


def _unquote(texts: list[str], line: int) -> list[str]:
    out = []
    for i, text in enumerate(texts, start=1):
        if not text.startswith("`"):
            raise BillFormatError(f"field {i} does not start with a backtick", line)
        out.append(text[1:])
    return out


def _match(pattern: re.Pattern[str], text: str, what: str, line: int) -> str:
    if pattern.fullmatch(text) is None:
        raise BillFormatError(f"{what} {text!r} is not in the bill's format", line)
    return text


def _fen(text: str, what: str, line: int) -> int:
    whole, cents = _match(_YUAN, text, what, line).split(".")
    return int(whole) * 100 + int(cents)


def _parse_row(values: list[str], line: int) -> BillRow:
    if len(values) != len(DETAIL_HEADER):
        raise BillFormatError(f"a detail row has {len(values)} fields, expected {len(DETAIL_HEADER)}",
                              line)
    values = _unquote(values, line)
    parsed: dict[str, object] = {}
    for f, label, text in zip(fields(BillRow), DETAIL_HEADER, values, strict=True):
        if f.name == "trade_time":
            try:
                parsed[f.name] = datetime.strptime(text, TIME_FORMAT)
            except ValueError:
                raise BillFormatError(f"{label} {text!r} is not yyyy-MM-dd HH:mm:ss", line) from None
        elif f.name in _FEN_FIELDS:
            parsed[f.name] = _fen(text, label, line)
        elif f.name == "fee":
            parsed[f.name] = Decimal(_match(_FEE, text, label, line))
        elif f.name == "rate":
            parsed[f.name] = _match(_RATE, text, label, line)
        else:
            parsed[f.name] = text
    if parsed["trade_state"] not in ("SUCCESS", "REFUND"):
        raise BillFormatError(f"交易状态 {parsed['trade_state']!r} is neither SUCCESS nor REFUND", line)
    return BillRow(**parsed)  # type: ignore[arg-type]


def _parse_summary(values: list[str], line: int) -> BillSummary:
    if len(values) != len(SUMMARY_HEADER):
        raise BillFormatError(f"the summary row has {len(values)} fields, expected "
                              f"{len(SUMMARY_HEADER)}", line)
    v = _unquote(values, line)
    return BillSummary(
        count=int(_match(_COUNT, v[0], SUMMARY_HEADER[0], line)),
        settlement_total_fen=_fen(v[1], SUMMARY_HEADER[1], line),
        refund_fen=_fen(v[2], SUMMARY_HEADER[2], line),
        coupon_refund_fen=_fen(v[3], SUMMARY_HEADER[3], line),
        fee=Decimal(_match(_FEE, v[4], SUMMARY_HEADER[4], line)),
        order_total_fen=_fen(v[5], SUMMARY_HEADER[5], line),
        requested_refund_fen=_fen(v[6], SUMMARY_HEADER[6], line),
    )


_SUMMARY_LABELS = dict(zip(
    ("count", "settlement_total_fen", "refund_fen", "coupon_refund_fen", "fee", "order_total_fen",
     "requested_refund_fen"), SUMMARY_HEADER, strict=True))


def parse_bill(data: bytes) -> TradeBill:
    """Read a bill and check it whole: layout, every field, and the summary against the rows.

    Raises :class:`BillFormatError` naming the line and the problem, e.g. ``line 4:
    summary 应结订单总金额 says 200.00, the rows add up to 100.00``.
    """
    records = _records(_decode(data))
    if not records or tuple(records[0][1]) != DETAIL_HEADER:
        raise BillFormatError("the first line is not the trade bill's detail header", 1)
    positions = [i for i, (_, rec) in enumerate(records) if tuple(rec) == SUMMARY_HEADER]
    if not positions:
        raise BillFormatError("the summary header line is missing")
    at = positions[0]
    if at != len(records) - 2:
        where = records[at + 1][0] if at + 1 < len(records) else records[at][0]
        raise BillFormatError("exactly one summary row must follow the summary header, and "
                              "nothing after it", where)
    rows = tuple(_parse_row(rec, line) for line, rec in records[1:at])
    line, summary_values = records[at + 1]
    stated = _parse_summary(summary_values, line)
    actual = summarize(rows)
    for name, label in _SUMMARY_LABELS.items():
        said, found = getattr(stated, name), getattr(actual, name)
        if said != found:
            if name == "count":
                shown = (str(said), str(found))
            elif name == "fee":
                shown = (_fee(said), _fee(found))
            else:
                shown = (_yuan(said), _yuan(found))
            raise BillFormatError(f"summary {label} says {shown[0]}, the rows add up to {shown[1]}",
                                  line)
    return TradeBill(rows, stated)
