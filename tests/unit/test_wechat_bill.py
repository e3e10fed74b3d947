"""contracts.wechat_bill: the golden trade bill, round trips and every refusal of parse_bill."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.wechat_bill import (
    DETAIL_HEADER,
    SUMMARY_HEADER,
    BillFormatError,
    BillRow,
    parse_bill,
    payment_row,
    refund_row,
    render_bill,
    summarize,
)

GOLDEN = (Path(__file__).resolve().parents[2] / "fixtures" / "golden" / "wechat"
          / "trade_bill_ALL_20260105.csv")
APPID, MCHID = "wxd678efh567hg6787", "1900000109"
OPENID_A, OPENID_B = "oUpF8" + "a" * 23, "oUpF8" + "b" * 23
TX1, TX2 = "4200000000000000000000000001", "4200000000000000000000000002"


def golden_rows() -> list[BillRow]:
    return [
        payment_row(trade_time=datetime(2026, 1, 5, 10, 0), appid=APPID, mchid=MCHID, transaction_id=TX1,
                    out_trade_no="TOPUP-0001", openid=OPENID_A, total_fen=10000, fee=Decimal("0.60"),
                    rate="0.60%", body="余额充值"),
        payment_row(trade_time=datetime(2026, 1, 5, 10, 5, 30), appid=APPID, mchid=MCHID,
                    transaction_id=TX2, out_trade_no="TOPUP-0002", openid=OPENID_B, total_fen=5000,
                    fee=Decimal("0.30"), rate="0.60%", body="充值,50元", attach="u=7"),
        refund_row(trade_time=datetime(2026, 1, 5, 11, 0), appid=APPID, mchid=MCHID, transaction_id=TX1,
                   out_trade_no="TOPUP-0001", openid=OPENID_A, refund_id="5" + "0" * 27 + "1",
                   out_refund_no="TOPUP-0001-R1", refund_fen=3000, rate="0.60%", body="余额充值"),
    ]


def test_the_golden_bill_is_rendered_byte_for_byte() -> None:
    assert render_bill(golden_rows()) == GOLDEN.read_bytes()


def test_the_golden_bill_reads_back_value_by_value() -> None:
    bill = parse_bill(GOLDEN.read_bytes())
    assert list(bill.rows) == golden_rows()
    s = bill.summary
    assert (s.count, s.settlement_total_fen, s.refund_fen, s.coupon_refund_fen, s.fee, s.order_total_fen,
            s.requested_refund_fen) == (3, 15000, 3000, 0, Decimal("0.90000"), 15000, 3000)
    assert bill.rows[1].body == "充值,50元"  # the comma survived: the field is quoted
    assert [r.trade_state for r in bill.rows] == ["SUCCESS", "SUCCESS", "REFUND"]


def _golden_lines() -> list[bytes]:
    return GOLDEN.read_bytes().split(b"\r\n")[:-1]


def _join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


@pytest.mark.parametrize(("index", "replacement", "message"), [
    (5, "`3,`150.01,`30.00,`0.00,`0.90000,`150.00,`30.00", "应结订单总金额 says 150.01"),
    (5, "`2,`150.00,`30.00,`0.00,`0.90000,`150.00,`30.00", "总交易单数 says 2"),
    (5, "`3,`150.00,`30.00,`0.00,`0.80000,`150.00,`30.00", "手续费总金额 says 0.80000"),
    (5, "`3,`150.00,`0.00,`0.00,`0.90000,`150.00,`30.00", "退款总金额 says 0.00"),
    (5, "`3,`150.00,`30.00,`0.00,`0.90000,`150.00", "summary row has 6 fields"),
    (5, "3,`150.00,`30.00,`0.00,`0.90000,`150.00,`30.00", "does not start with a backtick"),
    (1, "`2026-01-05 10:00:00,`x", "detail row has 2 fields"),
    (0, "交易时间,公众账号ID", "detail header"),
])
def test_a_wrong_summary_or_layout_is_refused_with_its_line(index: int, replacement: str,
                                                            message: str) -> None:
    lines = _golden_lines()
    lines[index] = replacement.encode("utf-8")
    with pytest.raises(BillFormatError, match=message) as caught:
        parse_bill(_join(lines))
    assert caught.value.line == index + 1


def test_a_detail_field_out_of_format_is_refused() -> None:
    lines = _golden_lines()
    for bad in (b"`100.0,", b"`-1.00,", b"`1e2,"):
        lines[1] = _golden_lines()[1].replace(b"`100.00,", bad, 1)
        with pytest.raises(BillFormatError, match="应结订单金额"):
            parse_bill(_join(lines))
    lines[1] = _golden_lines()[1].replace(b"`2026-01-05 10:00:00", b"`2026-01-05T10:00:00")
    with pytest.raises(BillFormatError, match="交易时间"):
        parse_bill(_join(lines))
    lines[1] = _golden_lines()[1].replace(b"`SUCCESS", b"`CLOSED", 1)
    with pytest.raises(BillFormatError, match="交易状态"):
        parse_bill(_join(lines))


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"\xef\xbb\xbf" + GOLDEN.read_bytes(), "byte order mark"),
    (GOLDEN.read_bytes()[:-2], "CRLF"),
    (GOLDEN.read_bytes().replace(b"\r\n", b"\n"), "CRLF"),
    (GOLDEN.read_bytes().replace("余额".encode(), b"\xff\xfe"), "not UTF-8"),
    (_join(_golden_lines()[:4]), "summary header line is missing"),
    (_join([*_golden_lines(), b"`extra"]), "exactly one summary row"),
    (_join(_golden_lines()[:5]), "exactly one summary row"),
])
def test_damaged_files_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(BillFormatError, match=message):
        parse_bill(data)


def test_a_summary_passed_explicitly_is_written_as_given_and_then_refused() -> None:
    rows = golden_rows()
    wrong = replace(summarize(rows), order_total_fen=99)
    with pytest.raises(BillFormatError, match=re.escape("订单总金额 says 0.99, the rows add up to 150.00")):
        parse_bill(render_bill(rows, wrong))


def test_an_empty_bill_has_both_headers_and_a_zero_summary() -> None:
    data = render_bill([])
    assert data.decode().split("\r\n")[:2] == [",".join(DETAIL_HEADER), ",".join(SUMMARY_HEADER)]
    assert parse_bill(data).summary.count == 0


_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)


@settings(max_examples=60, deadline=None)
@given(totals=st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=5),
       body=_text, attach=_text)
def test_render_then_parse_round_trips(totals: list[int], body: str, attach: str) -> None:
    rows = [payment_row(trade_time=datetime(2026, 1, 5, 0, 0, i), appid=APPID, mchid=MCHID,
                        transaction_id=f"{i:028d}", out_trade_no=f"T-{i:06d}", openid="o",
                        total_fen=total, fee=Decimal(total * 6 // 1000) / 100, rate="0.60%",
                        body=body, attach=attach)
            for i, total in enumerate(totals)]
    bill = parse_bill(render_bill(rows))
    assert list(bill.rows) == rows
    assert bill.summary == summarize(rows)
