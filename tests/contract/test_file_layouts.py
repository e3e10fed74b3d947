"""The batch-file contract: ``contracts/layouts/*.yaml`` and the codec that implements them.

The golden files in ``fixtures/golden/`` are literal GBK/CRLF bytes written without the
codec; they pin it byte for byte in both directions. Property tests cover what golden
files cannot: random records round-trip, the reader's regex fast path agrees with its
per-field slow path, and every error path reports its 4xxx code and line.
"""

from __future__ import annotations

import io
import tracemalloc
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.codec import (
    LAYOUT_NAMES,
    FileFormatError,
    FileReader,
    FileWriter,
    Layout,
    decode_file,
    encode_file,
    encode_record,
    identify,
    kind_for_file_name,
    load_layout,
    rejection_file_name,
    return_file_name,
    sanitize_file_name,
    summarize,
)
from contracts.codes import CODES
from contracts.fastpath import simple_pattern
from contracts.fields import Field
from contracts.layout import RecordLayout

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
D = date(2026, 1, 5)


def at(hh: int, mm: int, ss: int) -> datetime:
    return datetime(2026, 1, 5, hh, mm, ss)


ACCOUNTS = ["6231880000000100016", "6231880000000100024", "6231880000000100032",
            "6231880000000100040", "6231880000000100057"]


def df(seq: int, name: str, fen: int, memo: str) -> dict[str, Any]:
    return {"seq": seq, "serial": f"TOP2026010400000{seq}", "account_no": ACCOUNTS[seq - 1],
            "account_name": name, "amount": fen, "memo": memo}

DF_DETAILS = [df(1, "张三", 10000, "充值到账"), df(2, "王弢", 5000, "TOPUP 20260104"),
              df(3, "欧阳娜娜", 120050, ""), df(4, "李四", 30, "微信充值 订单4200001234"),
              df(5, "赵六", 28600, "充值")]


def ret(d: dict[str, Any], ok: bool, finished: datetime) -> dict[str, Any]:
    return {**{k: v for k, v in d.items() if k != "memo"}, "bank_serial": f"B202601050000000{d['seq']}",
            "result": "S" if ok else "F", "code": "0000" if ok else "3017",
            "reason": "成功" if ok else "账户已冻结", "finished_at": finished}


def dk(seq: int, account: str, name: str, fen: int, memo: str, agreement: str) -> dict[str, Any]:
    return {"seq": seq, "serial": f"CON2026010400000{seq}", "account_no": account, "account_name": name,
            "amount": fen, "memo": memo, "agreement_no": agreement}


def st_line(seq: int, when: datetime, direction: str, fen: int, after: int, kind: str, ref: str,
            counterparty: str, memo: str) -> dict[str, Any]:
    return {"seq": seq, "posted_at": when, "direction": direction, "amount": fen, "balance_after": after,
            "txn_kind": kind, "reference": ref, "counterparty_account": counterparty, "memo": memo}


# file name -> (layout, header, details, trailer): every value of every golden file.
EXPECTED: dict[str, tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]] = {
    "DF_DEMO01_20260105_1.txt": (
        "disbursement_request",
        {"batch_no": "1", "business_date": D, "merchant": "DEMO01", "kind": "DF", "record_count": 5,
         "total_amount": 163680, "account_no": "98010078801000001"},
        DF_DETAILS, None),
    "DK_DEMO01_20260105_2.txt": (
        "withholding_request",
        {"batch_no": "2", "business_date": D, "merchant": "DEMO01", "kind": "DK", "record_count": 4,
         "total_amount": 6000, "account_no": "31010078801000001"},
        [dk(1, ACCOUNTS[0], "张三", 1250, "行程消费 20260104", "AGR0000000001"),
         dk(2, ACCOUNTS[1], "王弢", 800, "行程消费", "AGR0000000002"),
         dk(3, "6231880000000200030", "司马懿", 3520, "超时停车费", ""),
         dk(4, "6231880000000200048", "Li Lei", 430, "trip 4", "AGR0000000004")],
        None),
    "DF_DEMO01_20260105_1_RET.txt": (
        "return",
        {"batch_no": "1", "business_date": D, "merchant": "DEMO01", "kind": "DF", "record_count": 5,
         "total_amount": 163680, "success_count": 4, "success_amount": 43630, "fail_count": 1,
         "fail_amount": 120050, "processed_at": at(9, 35, 12)},
        [ret(DF_DETAILS[0], True, at(9, 30, 10)), ret(DF_DETAILS[1], True, at(9, 30, 10)),
         ret(DF_DETAILS[2], False, at(9, 30, 11)), ret(DF_DETAILS[3], True, at(9, 30, 11)),
         ret(DF_DETAILS[4], True, at(9, 30, 12))],
        {"marker": "END", "line_count": 7}),
    "DF_DEMO01_20260105_3_REJ.txt": (
        "rejection",
        {"original_file_name": "DF_DEMO01_20260105_3.txt", "batch_no": "3", "business_date": D,
         "code": "4003", "reason": "汇总笔数与明细不符：汇总3笔，明细2笔", "rejected_at": at(9, 15, 2)},
        [{"line_no": 1, "code": "4003", "reason": "汇总记录笔数为3，明细行数为2"}],
        None),
    "ST_98010078801000001_20260105.txt": (
        "statement",
        {"account_no": "98010078801000001", "account_name": "示例出行平台监管账户", "business_date": D,
         "opening_balance": 200000, "closing_balance": 370370, "credit_count": 2, "credit_amount": 214000,
         "debit_count": 1, "debit_amount": 43630},
        [st_line(1, at(8, 30, 0), "C", 164000, 364000, "CHANNEL_SETTLEMENT", "WX20260104SETTLE",
                 "BANK-CLEARING", "微信支付T+1结算 20260104"),
         st_line(2, at(9, 35, 12), "D", 43630, 320370, "DISBURSEMENT", "DF_DEMO01_20260105_1", "",
                 "批量代发 成功4笔"),
         st_line(3, at(15, 0, 0), "C", 50000, 370370, "DEPOSIT", "B2026010500000099",
                 "31010078801000001", "备付金补足")],
        {"marker": "END", "line_count": 5}),
}


class TinyBlocks(FileReader):
    """Blocks of a few bytes: every line and most characters straddle a block boundary."""

    BLOCK_BYTES = 7


# -- golden files --------------------------------------------------------------------------


def test_every_golden_file_is_pinned() -> None:
    assert sorted(p.name for p in GOLDEN.glob("*.txt")) == sorted(EXPECTED)
    assert {layout for layout, *_ in EXPECTED.values()} == set(LAYOUT_NAMES)


@pytest.mark.parametrize("reader", [FileReader, TinyBlocks])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_file_decodes_to_the_expected_values(name: str, reader: type[FileReader]) -> None:
    layout_name, header, details, trailer = EXPECTED[name]
    layout = load_layout(layout_name)
    with open(GOLDEN / name, "rb") as fh:
        r = reader(layout, fh)
        assert r.header == header
        got = list(r)
    assert [values for _, values in got] == details
    assert [line_no for line_no, _ in got] == list(range(2, len(details) + 2))
    assert r.trailer == trailer
    assert r.lines == len(details) + 1 + (trailer is not None)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_file_reencodes_byte_for_byte(name: str) -> None:
    layout_name, header, details, trailer = EXPECTED[name]
    layout = load_layout(layout_name)
    data = (GOLDEN / name).read_bytes()
    assert encode_file(layout, header, details, trailer) == data
    assert encode_file(layout, header, details) == data  # the trailer is filled in
    lines = [encode_record(layout, "header", header)]
    lines += [encode_record(layout, "detail", d) for d in details]
    if trailer is not None:
        lines.append(encode_record(layout, "trailer", trailer))
    assert b"".join(lines) == data


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_file_is_gbk_with_crlf_and_trailing_separators(name: str) -> None:
    data = (GOLDEN / name).read_bytes()
    assert data.endswith(b"\r\n")
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")
    for line in data.decode("gbk").split("\r\n")[:-1]:
        assert line.endswith("|")
        assert line[0] in "HDT"
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # every golden file has Chinese text, so it is really GBK


def test_a_gbk_character_can_hold_the_separator_byte() -> None:
    # Why lines are decoded before they are split: 弢 is 8F 7C, and 7C is "|".
    assert "王弢".encode("gbk") == b"\xcd\xf5\x8f|"
    data = (GOLDEN / "DF_DEMO01_20260105_1.txt").read_bytes()
    assert b"\x8f|" in data
    assert decode_file(load_layout("disbursement_request"), data).details[1]["account_name"] == "王弢"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_file_name_identifies_its_layout(name: str) -> None:
    layout_name = EXPECTED[name][0]
    found = identify(name, LAYOUT_NAMES)
    assert found is not None and found[0] == layout_name
    assert load_layout(layout_name).file_name(**found[1]) == name
    assert kind_for_file_name(name) == layout_name


def test_summarize_matches_the_golden_headers() -> None:
    _, header, details, _ = EXPECTED["DF_DEMO01_20260105_1.txt"]
    assert summarize(details) == (header["record_count"], header["total_amount"])
    _, header, details, _ = EXPECTED["ST_98010078801000001_20260105.txt"]
    credits = [d for d in details if d["direction"] == "C"]
    assert summarize(credits) == (header["credit_count"], header["credit_amount"])


# -- random records round-trip ---------------------------------------------------------------


def _gbk_characters() -> tuple[str, ...]:
    """Every character of GBK's two-byte area that survives decode -> encode unchanged."""
    chars = []
    for lead in range(0x81, 0xFF):
        for trail in [*range(0x40, 0x7F), *range(0x80, 0xFF)]:
            raw = bytes((lead, trail))
            try:
                c = raw.decode("gbk")
            except UnicodeDecodeError:
                continue
            if c.encode("gbk") == raw and c.isprintable():
                chars.append(c)
    return tuple(chars)


GBK_CHARS = _gbk_characters()
ASCII_TEXT = [chr(c) for c in range(0x20, 0x7F) if chr(c) != "|"]
# 弢億墊 hold the separator byte 0x7C; U+3000 is the ideographic space.
TEXT_CHAR = st.one_of(st.sampled_from(GBK_CHARS), st.sampled_from(ASCII_TEXT),
                      st.sampled_from("弢億墊\u3000"))


def _fit(chars: list[str], budget: int) -> str:
    out, used = [], 0
    for c in chars:
        size = len(c.encode("gbk"))
        if used + size > budget:
            break
        out.append(c)
        used += size
    return "".join(out)


def value_strategy(f: Field) -> st.SearchStrategy[Any]:
    """Valid values of one field (what a writer may be given)."""
    s: st.SearchStrategy[Any]
    if f.type == "str":
        if f.pattern:
            s = st.from_regex(f.pattern, fullmatch=True).filter(lambda t: len(t) <= f.max_length)
        else:
            lo = 1 if f.required else 0
            s = st.lists(TEXT_CHAR, min_size=lo, max_size=f.max_length).map(
                lambda cs: _fit(cs, f.max_length)).filter(lambda t: bool(t) or not f.required)
        return s if f.required else st.one_of(st.just(""), s)
    if f.type == "enum":
        return st.sampled_from(f.values)
    if f.type == "int":
        s = st.integers(max(f.min or 0, 0), 10 ** f.max_length - 1)
    elif f.type == "amount":
        s = st.integers(1 if f.positive else 0, 10**14 - 1)
    elif f.type == "date":
        s = st.dates()
    else:
        s = st.datetimes().map(lambda t: t.replace(microsecond=0))
    return s if f.required else st.one_of(st.none(), s)


def record_strategy(rec: RecordLayout) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({f.name: value_strategy(f) for f in rec.fields})


@st.composite
def files(draw: st.DrawFn, layout: Layout) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header = draw(record_strategy(layout.header))
    details = draw(st.lists(record_strategy(layout.detail), max_size=6))
    return header, details


@pytest.mark.parametrize("layout_name", LAYOUT_NAMES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_records_round_trip(layout_name: str, data: st.DataObject) -> None:
    layout = load_layout(layout_name)
    header, details = data.draw(files(layout))
    encoded = encode_file(layout, header, details)
    for reader in (FileReader, TinyBlocks):
        r = reader(layout, io.BytesIO(encoded))
        assert r.header == header
        assert [values for _, values in r] == details
        if layout.trailer is not None:
            assert r.trailer == {"marker": "END", "line_count": len(details) + 2}


# Characters that sit on the edges of the field grammars.
# Only characters GBK has: a decoded line never holds any other.
EDGE_TEXT = st.text(st.sampled_from("0123456789.-+ Aa_|\r\n\x01\x7f０①弢张\u3000"), max_size=24)


@st.composite
def near_miss_lines(draw: st.DrawFn, rec: RecordLayout) -> str:
    texts: list[str] = []
    for f, enc in zip(rec.fields, rec.encoders, strict=True):
        if draw(st.booleans()):
            texts.append(enc(draw(value_strategy(f))))
        else:
            texts.append(draw(EDGE_TEXT))
    shape = draw(st.integers(0, 19))  # now and then a field too few or too many
    if shape == 0 and texts:
        texts.pop()
    elif shape == 1:
        texts.append("x")
    return "|".join([rec.tag, *texts, ""]) + "\r"


@pytest.mark.parametrize("kind", ["header", "detail"])
@pytest.mark.parametrize("layout_name", LAYOUT_NAMES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_agrees_with_the_per_field_path(layout_name: str, kind: str, data: st.DataObject) -> None:
    rec = load_layout(layout_name).record(kind)
    line = data.draw(near_miss_lines(rec))
    try:
        slow: dict[str, Any] | FileFormatError = rec.decode_slow(line)
    except FileFormatError as exc:
        slow = exc
    m = rec.match(line)
    if m is None:
        assert isinstance(slow, FileFormatError), f"fast path refused a valid line {line!r}"
        return
    try:
        fast = rec.convert(m.groups())
    except FileFormatError as exc:
        assert isinstance(slow, FileFormatError) and slow.code == exc.code
        return
    assert fast == slow


# -- errors: code and line -------------------------------------------------------------------

HEADER = "H|1|20260105|DEMO01|DF|1|1.00|98010078801000001|"
DETAIL = "D|1|S1|6231880000000100016|张三|1.00||"
RET_HEADER = "H|1|20260105|DEMO01|DF|1|1.00|1|1.00|0|0.00|20260105093512|"
RET_DETAIL = "D|1|S1|6231880000000100016|张三|1.00|B1|S|0000|成功|20260105093010|"


def crlf(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode("gbk")


def detail_with(**fields: str) -> str:
    values = {"seq": "1", "serial": "S1", "account_no": "6231880000000100016", "account_name": "张三",
              "amount": "1.00", "memo": ""} | fields
    return "|".join(["D", *values.values(), ""])


BAD_FILES: list[tuple[str, str, bytes, str, int | None]] = [
    # (id, layout, bytes, code, line)
    ("empty", "disbursement_request", b"", "4010", None),
    ("not gbk in a name", "disbursement_request", crlf(HEADER) + b"D|1|S1|6231880000000100016|"
     + b"\xff\xfe|1.00||\r\n", "4001", 2),
    # UTF-8 often decodes as (wrong) GBK: 张三 does, 欧阳娜娜 does not.
    ("utf-8 text", "disbursement_request",
     (HEADER + "\r\n" + detail_with(account_name="欧阳娜娜") + "\r\n").encode("utf-8"), "4001", 2),
    ("lone lead byte before CRLF", "disbursement_request", crlf(HEADER, DETAIL) + b"D|2|S2|x|\x81\r\n",
     "4001", 3),
    ("not gbk in the header", "disbursement_request", b"H|1|\xff|\r\n", "4001", 1),
    # Errors come in line order, whatever the block size.
    ("bad header before a non-GBK line", "disbursement_request",
     crlf(HEADER.replace("|1.00|", "|1.0|"), DETAIL) + b"D|\xff|\r\n", "4007", 1),
    ("bad detail before a non-GBK line", "disbursement_request",
     crlf(HEADER, detail_with(amount="-1.00")) + b"\xff\r\n", "4007", 2),
    ("bad detail before an overlong line", "disbursement_request",
     crlf(HEADER, detail_with(seq="0")) + b"D" * 10_000, "4013", 2),
    ("first line is a detail", "disbursement_request", crlf(DETAIL), "4002", 1),
    ("blank first line", "disbursement_request", crlf("", HEADER), "4002", 1),
    ("header field missing", "disbursement_request", crlf(HEADER.removesuffix("98010078801000001|")),
     "4002", 1),
    ("header without trailing separator", "disbursement_request", crlf(HEADER[:-1]), "4002", 1),
    ("header without CRLF", "disbursement_request", HEADER.encode(), "4002", 1),
    ("header ends with a bare LF", "disbursement_request", (HEADER + "\n" + DETAIL + "\r\n").encode("gbk"),
     "4002", 1),
    ("detail ends with a bare LF", "disbursement_request",
     (HEADER + "\r\n" + DETAIL + "\n" + DETAIL + "\r\n").encode("gbk"), "4002", 2),
    ("last line without CRLF (truncated)", "disbursement_request", crlf(HEADER) + DETAIL.encode("gbk"),
     "4002", 2),
    ("truncated in the middle of a line", "disbursement_request", crlf(HEADER, DETAIL) + b"D|2|S2|62318",
     "4002", 3),
    ("unknown tag", "disbursement_request", crlf(HEADER, "X" + DETAIL[1:]), "4002", 2),
    ("second header", "disbursement_request", crlf(HEADER, DETAIL, HEADER), "4002", 3),
    ("blank line", "disbursement_request", crlf(HEADER, "", DETAIL), "4002", 2),
    ("field too many", "disbursement_request", crlf(HEADER, DETAIL + "extra|"), "4002", 2),
    ("field too few", "disbursement_request", crlf(HEADER, "D|1|S1|6231880000000100016|张三|1.00|"),
     "4002", 2),
    ("detail without trailing separator", "disbursement_request", crlf(HEADER, DETAIL[:-1]), "4002", 2),
    ("stray CR inside a field", "disbursement_request", crlf(HEADER, detail_with(memo="a\rb")), "4002", 2),
    ("CR before CRLF", "disbursement_request", crlf(HEADER, DETAIL + "\r"), "4002", 2),
    ("trailer in a layout without one", "disbursement_request", crlf(HEADER, DETAIL, "T|END|3|"), "4002", 3),
    ("no line break for 10 KB", "disbursement_request", crlf(HEADER) + b"D|" + b"1" * 10_000, "4002", 2),
    ("return without trailer", "return", crlf(RET_HEADER, RET_DETAIL), "4002", 3),
    ("return trailer miscounts", "return", crlf(RET_HEADER, RET_DETAIL, "T|END|4|"), "4002", 3),
    ("return line after the trailer", "return", crlf(RET_HEADER, RET_DETAIL, "T|END|3|", RET_DETAIL),
     "4002", 4),
    ("return trailer without END", "return", crlf(RET_HEADER, RET_DETAIL, "T|FIN|3|"), "4013", 3),
    ("return trailer field missing", "return", crlf(RET_HEADER, RET_DETAIL, "T|END|"), "4002", 3),
    ("negative amount", "disbursement_request", crlf(HEADER, detail_with(amount="-1.00")), "4007", 2),
    ("zero amount", "disbursement_request", crlf(HEADER, detail_with(amount="0.00")), "4007", 2),
    ("three decimals", "disbursement_request", crlf(HEADER, detail_with(amount="1.001")), "4007", 2),
    ("one decimal", "disbursement_request", crlf(HEADER, detail_with(amount="1.5")), "4007", 2),
    ("no decimals", "disbursement_request", crlf(HEADER, detail_with(amount="100")), "4007", 2),
    ("leading zero", "disbursement_request", crlf(HEADER, detail_with(amount="01.00")), "4007", 2),
    ("not a number", "disbursement_request", crlf(HEADER, detail_with(amount="abc")), "4007", 2),
    ("decimal comma", "disbursement_request", crlf(HEADER, detail_with(amount="1,00")), "4007", 2),
    ("full-width digits", "disbursement_request", crlf(HEADER, detail_with(amount="１.00")), "4007", 2),
    ("13 integer digits", "disbursement_request", crlf(HEADER, detail_with(amount="1000000000000.00")),
     "4007", 2),
    ("empty amount", "disbursement_request", crlf(HEADER, detail_with(amount="")), "4007", 2),
    ("bad header total", "disbursement_request", crlf(HEADER.replace("|1.00|", "|1.0|"), DETAIL), "4007", 1),
    ("account too short", "disbursement_request", crlf(HEADER, detail_with(account_no="623188000000010001")),
     "4012", 2),
    ("account with letters", "disbursement_request",
     crlf(HEADER, detail_with(account_no="623188000000010001X")), "4012", 2),
    ("account empty", "disbursement_request", crlf(HEADER, detail_with(account_no="")), "4012", 2),
    ("bad header account", "disbursement_request", crlf(HEADER.replace("98010078801000001", "98A"), DETAIL),
     "4012", 1),
    ("seq zero", "disbursement_request", crlf(HEADER, detail_with(seq="0")), "4013", 2),
    ("seq with leading zero", "disbursement_request", crlf(HEADER, detail_with(seq="01")), "4013", 2),
    ("seq not a number", "disbursement_request", crlf(HEADER, detail_with(seq="x")), "4013", 2),
    ("serial with a bad character", "disbursement_request", crlf(HEADER, detail_with(serial="S*1")),
     "4013", 2),
    ("serial too long", "disbursement_request", crlf(HEADER, detail_with(serial="S" * 33)), "4013", 2),
    ("name empty", "disbursement_request", crlf(HEADER, detail_with(account_name="")), "4013", 2),
    ("name of 61 GBK bytes", "disbursement_request", crlf(HEADER, detail_with(account_name="张" * 30 + "a")),
     "4013", 2),
    ("memo with a control character", "disbursement_request", crlf(HEADER, detail_with(memo="a\x01b")),
     "4013", 2),
    ("no such date", "disbursement_request", crlf(HEADER.replace("20260105", "20260230"), DETAIL), "4013", 1),
    ("date with dashes", "disbursement_request", crlf(HEADER.replace("20260105", "2026-01-05"), DETAIL),
     "4013", 1),
    ("DK kind in a DF file", "disbursement_request", crlf(HEADER.replace("|DF|", "|DK|"), DETAIL), "4013", 1),
    ("merchant in lower case", "disbursement_request", crlf(HEADER.replace("DEMO01", "demo01"), DETAIL),
     "4013", 1),
    ("no such time", "return", crlf(RET_HEADER.replace("093512", "253512"), RET_DETAIL, "T|END|3|"),
     "4013", 1),
    ("result neither S nor F", "return", crlf(RET_HEADER, RET_DETAIL.replace("|S|", "|X|"), "T|END|3|"),
     "4013", 2),
    ("code of 3 digits", "return", crlf(RET_HEADER, RET_DETAIL.replace("|0000|", "|000|"), "T|END|3|"),
     "4013", 2),
    ("bad agreement number", "withholding_request",
     crlf(HEADER.replace("|DF|", "|DK|"), DETAIL + "AGR 1|"), "4013", 2),
    ("rejection code outside 4xxx", "rejection",
     crlf("H|x.txt|||3017|x|20260105091502|"), "4013", 1),
]


@pytest.mark.parametrize("reader", [FileReader, TinyBlocks])
@pytest.mark.parametrize(("layout_name", "data", "code", "line"),
                         [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_bad_file_is_refused_with_its_code_and_line(layout_name: str, data: bytes, code: str,
                                                    line: int | None, reader: type[FileReader]) -> None:
    layout = load_layout(layout_name)
    with pytest.raises(FileFormatError) as caught:
        list(reader(layout, io.BytesIO(data)))
    assert (caught.value.code, caught.value.line) == (code, line), caught.value.detail
    assert code in CODES
    assert caught.value.detail and code in str(caught.value)


def test_a_valid_minimal_file_and_the_optional_fields() -> None:
    layout = load_layout("rejection")
    data = crlf("H|REJ.txt|||4008|无法识别的文件类型|20260105091502|")
    decoded = decode_file(layout, data)
    assert decoded.header["batch_no"] == "" and decoded.header["business_date"] is None
    assert decoded.details == [] and decoded.trailer is None
    assert encode_file(layout, decoded.header, []) == data
    assert encode_file(layout, {k: v for k, v in decoded.header.items() if k != "batch_no"}, []) == data


def test_a_reader_is_iterated_once() -> None:
    reader = FileReader(load_layout("disbursement_request"), io.BytesIO(crlf(HEADER, DETAIL)))
    assert len(list(reader)) == 1
    with pytest.raises(RuntimeError):
        list(reader)


def test_encoding_error_names_the_byte_and_its_place() -> None:
    data = crlf(HEADER, DETAIL) + b"D|2|S2|\xff|\r\n"
    with pytest.raises(FileFormatError) as caught:
        list(TinyBlocks(load_layout("disbursement_request"), io.BytesIO(data)))
    assert caught.value.line == 3
    assert "ff" in caught.value.detail and "byte 8 " in caught.value.detail


# -- writing ---------------------------------------------------------------------------------


def good_detail(**changes: Any) -> dict[str, Any]:
    return {**DF_DETAILS[0], **changes}


@pytest.mark.parametrize(("changes", "code", "field"), [
    ({"memo": "a|b"}, "4013", "memo"),
    ({"memo": "line\r\nbreak"}, "4013", "memo"),
    ({"account_name": "张三😀"}, "4001", "account_name"),
    ({"account_name": "张" * 31}, "4013", "account_name"),
    ({"account_name": ""}, "4013", "account_name"),
    ({"amount": -1}, "4007", "amount"),
    ({"amount": 0}, "4007", "amount"),
    ({"amount": 1.5}, "4007", "amount"),
    ({"amount": "1.00"}, "4007", "amount"),
    ({"amount": True}, "4007", "amount"),
    ({"amount": 10**14}, "4007", "amount"),
    ({"seq": 0}, "4013", "seq"),
    ({"seq": "1"}, "4013", "seq"),
    ({"account_no": None}, "4012", "account_no"),
    ({"account_no": "123"}, "4012", "account_no"),
    ({"serial": 12}, "4013", "serial"),
])
def test_encoding_a_bad_value_names_the_field(changes: dict[str, Any], code: str, field: str) -> None:
    with pytest.raises(FileFormatError) as caught:
        encode_record(load_layout("disbursement_request"), "detail", good_detail(**changes))
    assert caught.value.code == code
    assert f"field {field}" in caught.value.detail


def test_encoding_refuses_unknown_fields_and_a_wrong_tag() -> None:
    layout = load_layout("disbursement_request")
    with pytest.raises(FileFormatError, match="no field agreement_no"):
        encode_record(layout, "detail", good_detail(agreement_no="A1"))
    with pytest.raises(FileFormatError) as caught:
        encode_record(layout, "detail", good_detail(tag="H"))
    assert caught.value.code == "4002"
    with_tag = encode_record(layout, "detail", good_detail(tag="D"))
    assert with_tag == encode_record(layout, "detail", good_detail())
    with pytest.raises(ValueError, match="no trailer"):
        encode_record(layout, "trailer", {})


def test_dates_and_times_are_written_as_china_standard_time() -> None:
    layout = load_layout("statement")
    utc = datetime(2026, 1, 5, 1, 2, 3, 999_999, tzinfo=UTC)
    values = st_line(1, utc, "C", 100, 100, "DEPOSIT", "R1", "", "")
    assert b"|20260105090203|" in encode_record(layout, "detail", values)
    naive = {**values, "posted_at": utc.replace(tzinfo=None)}
    assert b"|20260105010203|" in encode_record(layout, "detail", naive)
    cst = utc.astimezone(timezone(timedelta(hours=8)))
    assert b"|20260105090203|" in encode_record(layout, "detail", {**values, "posted_at": cst})
    with pytest.raises(FileFormatError, match=r"datetime\.datetime expected"):
        encode_record(layout, "detail", {**values, "posted_at": D})
    header = EXPECTED["ST_98010078801000001_20260105.txt"][1]
    with pytest.raises(FileFormatError, match=r"datetime\.date expected"):
        encode_record(layout, "header", {**header, "business_date": at(0, 0, 0)})


def test_writer_keeps_the_layout_order_and_counts_lines() -> None:
    layout = load_layout("return")
    _, header, details, _ = EXPECTED["DF_DEMO01_20260105_1_RET.txt"]
    buf = io.BytesIO()
    writer = FileWriter(layout, buf)
    with pytest.raises(FileFormatError):
        writer.write_detail(details[0])
    with pytest.raises(FileFormatError):
        writer.write_trailer()
    writer.write_header(header)
    with pytest.raises(FileFormatError):
        writer.write_header(header)
    for d in details:
        writer.write_detail(d)
    with pytest.raises(FileFormatError) as caught:
        writer.write_detail({**details[0], "result": "X"})
    assert (caught.value.code, caught.value.line) == ("4013", 7)
    writer.write_trailer()
    with pytest.raises(FileFormatError):
        writer.write_detail(details[0])
    assert (writer.lines, writer.details) == (7, 5)
    assert buf.getvalue() == (GOLDEN / "DF_DEMO01_20260105_1_RET.txt").read_bytes()


def test_a_layout_without_trailer_refuses_one() -> None:
    layout = load_layout("disbursement_request")
    with pytest.raises(FileFormatError):
        encode_file(layout, EXPECTED["DF_DEMO01_20260105_1.txt"][1], [], {"line_count": 2})
    with pytest.raises(FileFormatError):
        FileWriter(layout, io.BytesIO()).write_trailer()


# -- streaming -------------------------------------------------------------------------------


def test_a_200000_line_file_is_read_in_constant_memory(tmp_path: Path) -> None:
    n = 200_000
    path = tmp_path / "DF_DEMO01_20260105_7_RET.txt"
    with open(path, "wb") as fh:
        fh.write(crlf(f"H|7|20260105|DEMO01|DF|{n}|{n}.00|{n}|{n}.00|0|0.00|20260105093512|"))
        chunk = []
        for i in range(1, n + 1):
            chunk.append(f"D|{i}|TOP{i:014d}|6231880000000100016|欧阳娜娜|1.00|B{i:016d}|S|0000|成功|"
                         f"202601050930{i % 60:02d}|\r\n")
            if len(chunk) == 10_000:
                fh.write("".join(chunk).encode("gbk"))
                chunk = []
        fh.write(crlf(f"T|END|{n + 2}|"))
    size = path.stat().st_size
    assert size > 20_000_000
    tracemalloc.start()
    try:
        count = total = 0
        with open(path, "rb") as fh:
            reader = FileReader(load_layout("return"), fh)
            for line_no, values in reader:
                count += 1
                total += values["amount"]
                assert line_no == values["seq"] + 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (count, total) == (n, n * 100)
    assert reader.trailer == {"marker": "END", "line_count": n + 2}
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB reading a {size / 1e6:.0f} MB file"


# -- file names ------------------------------------------------------------------------------

NAMES = [
    ("disbursement_request", "DF_DEMO01_20260105_1.txt", {"kind": "DF", "merchant": "DEMO01", "date": D,
                                                          "batch": "1"}),
    ("withholding_request", "DK_A_20261231_9999999999.txt",
     {"kind": "DK", "merchant": "A", "date": date(2026, 12, 31), "batch": "9999999999"}),
    ("return", "DK_ABCDEFGHIJKLMNOP_20260105_20_RET.txt",
     {"kind": "DK", "merchant": "ABCDEFGHIJKLMNOP", "date": D, "batch": "20"}),
    ("rejection", "DF_DEMO01_20260105_3_REJ.txt",
     {"kind": "DF", "merchant": "DEMO01", "date": D, "batch": "3"}),
    ("rejection", "REJ_pay_out.csv_20260105091502.txt", {"original": "pay_out.csv",
                                                          "rejected_at": at(9, 15, 2)}),
    ("statement", "ST_98010078801000001_20260105.txt", {"account_no": "98010078801000001", "date": D}),
]


@pytest.mark.parametrize(("layout_name", "name", "parts"), NAMES)
def test_file_names_build_and_parse(layout_name: str, name: str, parts: dict[str, Any]) -> None:
    layout = load_layout(layout_name)
    assert layout.file_name(**parts) == name
    assert layout.parse_file_name(name) == parts
    assert kind_for_file_name(name) == layout_name
    expected = (layout_name, parts) if layout_name.endswith("_request") else None
    assert identify(name) == expected  # only requests by default: what a bank accepts


@pytest.mark.parametrize("name", [
    "DF_demo01_20260105_1.txt",  # merchant in lower case
    "DF_ABCDEFGHIJKLMNOPQ_20260105_1.txt",  # merchant of 17
    "DF__20260105_1.txt",  # no merchant
    "DF_DEMO01_20261332_1.txt",  # no such date
    "DF_DEMO01_2026015_1.txt",  # 7-digit date
    "DF_DEMO01_20260105_01.txt",  # batch with a leading zero
    "DF_DEMO01_20260105_0.txt",
    "DF_DEMO01_20260105_12345678901.txt",  # batch of 11 digits
    "DF_DEMO01_20260105_1.TXT",
    "DF_DEMO01_20260105_1.txt.tmp",  # an upload in progress
    ".DF_DEMO01_20260105_1.txt",
    "DX_DEMO01_20260105_1.txt",
    "DF_DEMO01_20260105_1_RET.txt",  # not a request
    "df_DEMO01_20260105_1.txt",
    "",
])
def test_names_that_are_not_requests(name: str) -> None:
    assert identify(name) is None
    assert load_layout("disbursement_request").parse_file_name(name) is None


def test_derived_names() -> None:
    assert return_file_name("DF_DEMO01_20260105_1.txt") == "DF_DEMO01_20260105_1_RET.txt"
    assert return_file_name("DK_DEMO01_20260105_2.txt") == "DK_DEMO01_20260105_2_RET.txt"
    assert rejection_file_name("DK_DEMO01_20260105_2.txt", at(9, 0, 0)) == "DK_DEMO01_20260105_2_REJ.txt"
    rej = rejection_file_name("代发 文件|x.csv", at(9, 15, 2))
    assert rej == "REJ_" + "_" * 6 + "x.csv_20260105091502.txt"
    assert load_layout("rejection").parse_file_name(rej) == {"original": "______x.csv",
                                                             "rejected_at": at(9, 15, 2)}
    long = rejection_file_name("a" * 300, at(9, 15, 2))
    assert long == f"REJ_{'a' * 100}_20260105091502.txt"
    assert kind_for_file_name(long) == "rejection"
    assert sanitize_file_name("") == "_"
    with pytest.raises(ValueError):
        return_file_name("notes.txt")


def test_building_a_name_from_bad_parts_fails() -> None:
    layout = load_layout("disbursement_request")
    with pytest.raises(ValueError, match="take"):
        layout.file_name(merchant="DEMO01", date=D, batch="1")
    with pytest.raises(ValueError, match="does not match"):
        layout.file_name(kind="DK", merchant="DEMO01", date=D, batch="1")
    with pytest.raises(ValueError, match="does not match"):
        layout.file_name(kind="DF", merchant="demo", date=D, batch="1")
    built = layout.file_name(kind="DF", merchant="DEMO01", date="20260105", batch=1)
    assert built == "DF_DEMO01_20260105_1.txt"


# -- the layouts themselves ------------------------------------------------------------------


@pytest.mark.parametrize("layout_name", LAYOUT_NAMES)
def test_layout_declares_the_conventions(layout_name: str) -> None:
    layout = load_layout(layout_name)
    assert load_layout(layout_name) is layout  # cached
    assert (layout.encoding, layout.line_ending, layout.separator, layout.trailing_separator) == (
        "GBK", "CRLF", "|", True)
    assert (layout.header.tag, layout.detail.tag) == ("H", "D")
    assert layout.trailer is None or layout.trailer.tag == "T"
    for rec in layout.records():
        for f in rec.fields:
            assert f.label, f"{layout_name}.{rec.kind}.{f.name} has no Chinese label"
            if f.type == "str" and f.pattern:
                assert simple_pattern(f.pattern, "|") is not None, f"{f.name}: pattern not inlined"
            if f.name.endswith(("account_no", "_account")):
                assert f.account, f"{layout_name}.{rec.kind}.{f.name} should report 4012"
        amounts = [f for f in rec.fields if f.type == "amount"]
        if rec.kind == "detail" and amounts:
            assert amounts[0].positive


def test_unknown_layout() -> None:
    with pytest.raises(ValueError, match="unknown layout"):
        load_layout("payroll")


def test_simple_patterns() -> None:
    assert simple_pattern("[0-9]{19}", "|") == ("(?:[0-9]{19})", 19)
    assert simple_pattern("4[0-9]{3}", "|") == ("(?:4[0-9]{3})", 4)
    assert simple_pattern("[A-Za-z0-9_-]{1,32}", "|") == ("(?:[A-Za-z0-9_-]{1,32})", 32)
    assert simple_pattern("[A-Z]+x?", "|") == ("(?:[A-Z]+x?)", None)
    assert simple_pattern("[ -~]{1,5}", "|") is None  # the range holds "|"
    assert simple_pattern(".{1,5}", "|") is None
    assert simple_pattern("[^0-9]", "|") is None
    assert simple_pattern("\\d{3}", "|") is None


def _raw_layout() -> dict[str, Any]:
    import yaml

    from contracts import contract_path

    path = contract_path("layouts") / "disbursement_request.yaml"
    raw: dict[str, Any] = yaml.safe_load(path.read_text("utf-8"))
    return raw


def test_a_pattern_the_fast_path_cannot_inline_is_still_enforced() -> None:
    raw = _raw_layout()
    memo = raw["records"]["detail"]["fields"][-1]
    memo["pattern"] = "(?!x).{1,4}"  # no regex of the line may hold this: the decoder checks it
    layout = Layout(raw)
    ok = decode_file(layout, crlf(HEADER, detail_with(memo="abcd"), detail_with(memo="")))
    assert [d["memo"] for d in ok.details] == ["abcd", ""]
    for memo_text in ("xab", "abcde"):
        with pytest.raises(FileFormatError) as caught:
            decode_file(layout, crlf(HEADER, detail_with(memo=memo_text)))
        assert (caught.value.code, caught.value.line) == ("4013", 2)


@pytest.mark.parametrize(("change", "message"), [
    (lambda raw: raw.update(colour="red"), "unknown keys"),
    (lambda raw: raw.update(encoding="UTF-8"), "encoding"),
    (lambda raw: raw.update(separator="||"), "separator"),
    (lambda raw: raw["records"]["detail"]["fields"][1].update(type="float"), "type"),
    (lambda raw: raw["records"]["detail"]["fields"][1].update(max_lenght=3), "unknown keys"),
    (lambda raw: raw["records"]["detail"]["fields"].pop(0), "first field must be `tag`"),
    (lambda raw: raw["records"]["detail"]["fields"][0].update(values=["H"]), "tags must differ"),
    (lambda raw: raw["records"]["detail"]["fields"].append(dict(raw["records"]["detail"]["fields"][1])),
     "unique"),
    (lambda raw: raw["records"]["detail"]["fields"][1].pop("max_length"), "max_length"),
    (lambda raw: raw["records"]["header"]["fields"][4].update(values=["D|F"]), "separator"),
    (lambda raw: raw["file_names"][0].update(format="DF_{merchant}.txt"), "different parts"),
    (lambda raw: raw["records"].update(trailer={"fields": [{"name": "tag", "label": "x", "type": "enum",
                                                            "required": True, "values": ["T"]}]}),
     "line_count"),
])
def test_a_malformed_layout_is_refused_on_load(change: Any, message: str) -> None:
    raw = _raw_layout()
    change(raw)
    with pytest.raises(ValueError, match=message):
        Layout(raw)
