"""Batch files built with the codec, and what return and rejection files change (no network)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from contracts.codec import decode_file, encode_file, load_layout
from platform_client.batches import OutRecord, build_request, resend_memo
from platform_client.returns import (
    ReplyUnreadable,
    SentRecord,
    decide_return,
    parse_reply_name,
    read_rejection,
    read_return,
)

D = date(2026, 1, 6)
ACC = ["6231880000000100016", "6231880000000100024", "6231880000000100032"]


def test_a_request_file_reads_back_with_the_right_header() -> None:
    recs = [OutRecord(ACC[0], "张三", 10000, "充值到账"),
            OutRecord(ACC[1], "王弢", 17, resend_memo("DF0000000100002")),
            OutRecord(ACC[2], "李四", 250, "x" * 80)]
    name, data = build_request("DF", 12, D, "DEMO01", "98010078801000001", recs)
    assert name == "DF_DEMO01_20260106_12.txt"
    decoded = decode_file(load_layout("disbursement_request"), data)
    assert decoded.header["record_count"] == 3 and decoded.header["total_amount"] == 10267
    assert [d["serial"] for d in decoded.details] == [f"DF0000001200000{i}" for i in (1, 2, 3)]
    assert decoded.details[1]["account_name"] == "王弢"  # holds the separator byte in GBK
    assert decoded.details[1]["memo"] == "重发DF0000000100002"
    assert len(decoded.details[2]["memo"]) == 60
    _, dk = build_request("DK", 13, D, "DEMO01", "31010078801000001", recs[:1])
    assert decode_file(load_layout("withholding_request"), dk).details[0]["agreement_no"] == ""


def test_same_records_give_the_same_bytes() -> None:
    recs = [OutRecord(ACC[0], "张三", 10000)]
    assert build_request("DF", 1, D, "DEMO01", "98010078801000001", recs) == \
        build_request("DF", 1, D, "DEMO01", "98010078801000001", recs)


def test_reply_names_including_odd_ones() -> None:
    assert parse_reply_name("DF_DEMO01_20260106_3_RET.txt") == ("RET", "DF_DEMO01_20260106_3", 3, 0, True)
    assert parse_reply_name("DF_DEMO01_20260106_3_ret.TXT") == ("RET", "DF_DEMO01_20260106_3", 3, 0, False)
    assert parse_reply_name("DK_DEMO01_20260106_4_REJ.txt") == ("REJ", "DK_DEMO01_20260106_4", 4, 0, True)
    assert parse_reply_name("REJ_payout.csv_20260105091502.txt") is None
    assert parse_reply_name("ST_98010078801000001_20260105.txt") is None


def detail(seq: int, result: str = "S", code: str = "0000", amount: int = 100) -> dict[str, Any]:
    return {"seq": seq, "serial": f"S{seq}", "account_no": ACC[seq - 1], "account_name": "张三",
            "amount": amount, "bank_serial": f"B{seq}", "result": result, "code": code,
            "reason": "成功" if result == "S" else "账户已冻结", "finished_at": datetime(2026, 1, 6, 9, 30)}


def return_file(details: list[dict[str, Any]], *, count: int | None = None) -> bytes:
    ok = [d for d in details if d["result"] == "S"]
    bad = [d for d in details if d["result"] == "F"]
    header = {"batch_no": "1", "business_date": D, "merchant": "DEMO01", "kind": "DF",
              "record_count": len(details) if count is None else count,
              "total_amount": sum(d["amount"] for d in details), "success_count": len(ok),
              "success_amount": sum(d["amount"] for d in ok), "fail_count": len(bad),
              "fail_amount": sum(d["amount"] for d in bad), "processed_at": datetime(2026, 1, 6, 9, 35)}
    return encode_file(load_layout("return"), header, details)


def sent(states: dict[int, str] | None = None) -> dict[str, SentRecord]:
    states = states or {}
    return {f"S{i}": SentRecord(f"S{i}", ACC[i - 1], 100, states.get(i, "WAITING")) for i in (1, 2, 3)}


def test_a_full_return_decides_every_record() -> None:
    ret = read_return(return_file([detail(1), detail(2, "F", "3017"), detail(3)]))
    decision = decide_return(ret, sent(), expected_count=3, expected_total=300)
    assert [(o.serial, o.state, o.code) for o in decision.outcomes] == [
        ("S1", "SUCCESS", "0000"), ("S2", "FAILED", "3017"), ("S3", "SUCCESS", "0000")]
    assert decision.missing == [] and decision.findings == []


def test_a_duplicate_return_changes_nothing_and_never_overturns_a_success() -> None:
    data = return_file([detail(1), detail(2, "F", "3017"), detail(3)])
    applied = sent({1: "SUCCESS", 2: "FAILED", 3: "SUCCESS"})
    applied["S2"] = SentRecord("S2", ACC[1], 100, "FAILED", "3017")
    assert decide_return(read_return(data), applied, expected_count=3, expected_total=300).outcomes == []
    conflicting = read_return(return_file([detail(1, "F", "3008"), detail(2, "F", "3017"), detail(3)]))
    decision = decide_return(conflicting, applied, expected_count=3, expected_total=300)
    assert decision.outcomes == [] and "S1 is already SUCCESS" in decision.findings[0]


def test_missing_records_stay_waiting_and_the_header_disagreement_is_reported() -> None:
    ret = read_return(return_file([detail(1), detail(3)], count=3))
    decision = decide_return(ret, sent(), expected_count=3, expected_total=300)
    assert [o.serial for o in decision.outcomes] == ["S1", "S3"]
    assert decision.missing == ["S2"]
    assert any("header record_count 3 disagrees with the details (2)" in f for f in decision.findings)
    assert any("missing from the file: S2" in f for f in decision.findings)


def test_a_truncated_return_is_not_acted_on() -> None:
    data = return_file([detail(1), detail(2), detail(3)])
    cut = data[: data.rindex(b"T|END")]  # no trailer
    with pytest.raises(ReplyUnreadable, match=r"truncated|4002"):
        read_return(cut)
    with pytest.raises(ReplyUnreadable):
        read_return(data[:-20])  # cut mid-line


def test_records_that_are_not_ours_or_differ_are_findings() -> None:
    other = {**detail(2), "serial": "ZZ9"}
    changed = {**detail(3), "amount": 999}
    ret = read_return(return_file([detail(1), other, changed]))
    decision = decide_return(ret, sent(), expected_count=3, expected_total=300)
    assert [o.serial for o in decision.outcomes] == ["S1"]
    assert any("ZZ9 is not in this batch" in f for f in decision.findings)
    assert any("S3 differs" in f for f in decision.findings)


def test_a_rejection_file_is_read() -> None:
    header = {"original_file_name": "DF_DEMO01_20260106_3.txt", "batch_no": "3", "business_date": D,
              "code": "4005", "reason": "批次号重复", "rejected_at": datetime(2026, 1, 6, 9, 15)}
    rej = read_rejection(encode_file(load_layout("rejection"), header, []))
    assert rej.header["code"] == "4005" and rej.details == []
