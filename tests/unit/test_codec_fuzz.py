"""Property tests of the batch-file codec against random and mutated files.

Whatever the bytes, ``decode_file`` returns or raises ``FileFormatError`` with one of the
codec's documented codes; a valid file reads back exactly as written. The strategies
(valid files, mutations) live in :mod:`bench.fuzz_codec`, whose big-budget run
(``python -m bench.fuzz_codec``) checks the same properties with thousands of examples.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz_codec import (
    CODEC_CODES,
    LAYOUT_BY_KIND,
    classify_decode,
    mutations,
    request_files,
)
from contracts.codec import FileFormatError, FileReader, decode_file, load_layout
from contracts.codes import CODES

ACCOUNTS = (("6231880000000100016", "张三"), ("6231880000000100024", "王弢"),
            ("6231880000000100032", "欧阳娜娜"))
DAY = date(2026, 1, 5)
CI = settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])


def test_the_codec_codes_are_whole_file_codes_of_the_contract() -> None:
    assert {c for c in CODES if c.startswith("4")} >= CODEC_CODES


@CI
@given(st.data())
def test_a_valid_file_reads_back_as_written(data: st.DataObject) -> None:
    f = data.draw(request_files(day=DAY, batch_no=data.draw(st.integers(1, 10**9)), accounts=ACCOUNTS))
    decoded = decode_file(load_layout(LAYOUT_BY_KIND[f.kind]), f.data)
    assert decoded.header["record_count"] == len(f.details)
    expected: list[dict[str, Any]] = []
    for d in f.details:
        row = {**d, "memo": d.get("memo") or ""}
        if "agreement_no" in row:
            row["agreement_no"] = row["agreement_no"] or ""
        expected.append(row)
    assert decoded.details == expected


@CI
@given(st.data())
def test_mutated_files_are_read_or_refused_with_a_documented_code(data: st.DataObject) -> None:
    f = data.draw(request_files(day=DAY, batch_no=data.draw(st.integers(1, 10**9)), accounts=ACCOUNTS))
    label, mutated = data.draw(mutations(f.data))
    outcome = classify_decode(LAYOUT_BY_KIND[f.kind], mutated)
    assert outcome == "accepted" or outcome.removeprefix("rejected:") in CODEC_CODES, (label, outcome)


@CI
@given(st.binary(max_size=2000), st.sampled_from(sorted(LAYOUT_BY_KIND.values())))
def test_random_bytes_are_refused_with_a_documented_code(blob: bytes, layout: str) -> None:
    outcome = classify_decode(layout, blob)
    assert outcome.removeprefix("rejected:") in CODEC_CODES, outcome


@pytest.mark.parametrize(("data", "code", "line"), [
    (b"", "4010", None),
    (b"\xef\xbb\xbfH|1|20260105|DEMO01|DF|0|0.00|98010078801000001|\r\n", "4002", 1),
    (b"H|1|20260105|DEMO01|DF|0|0.00|98010078801000001|\n", "4002", 1),
    (b"H|1|20260105|DEMO01|DF|0|0.00|98010078801000001|", "4002", 1),
    (b"H|1|20260105|DEMO01|DF|1|1.00|98010078801000001|\r\nD|1|S1|6231880000000100016|\x00|1.00||\r\n",
     "4013", 2),
    (b"H|1|20260105|DEMO01|DF|1|1.00|98010078801000001|\r\nD|1|S1|6231880000000100016|\xff\xfe|1.00||\r\n",
     "4001", 2),
    (b"H|1|20260105|DEMO01|DF|1|1.00|98010078801000001|\r\nD|1|S1|62318800001|A|1.00||\r\n", "4012", 2),
    (b"H|1|20260105|DEMO01|DF|1|1.00|98010078801000001|\r\nD|1|S1|6231880000000100016|A|1.0||\r\n",
     "4007", 2),
    (b"H|1|20260105|DEMO01|DF|1|1.00|98010078801000001|\r\n" + b"D|" + b"9" * 10_000 + b"\r\n", "4002", 2),
])
def test_pinned_malformations_get_their_code_and_line(data: bytes, code: str, line: int | None) -> None:
    with pytest.raises(FileFormatError) as raised:
        decode_file(load_layout("disbursement_request"), data)
    assert (raised.value.code, raised.value.line) == (code, line), str(raised.value)


def test_a_file_without_line_breaks_is_refused_without_reading_it_whole() -> None:
    class Endless:
        """A file of ``x`` that never ends: the reader must give up at the line limit."""

        def __init__(self) -> None:
            self.served = 0

        def read(self, size: int = -1) -> bytes:
            self.served += size
            return b"x" * size

    source = Endless()
    with pytest.raises(FileFormatError) as raised:
        FileReader(load_layout("disbursement_request"), source)
    assert raised.value.code == "4002"
    assert source.served <= 2 * FileReader.BLOCK_BYTES
