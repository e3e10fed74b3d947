"""The column reader of the codec (``FileReader.columns``) against the line reader.

Whatever the file, reading it column by column must give what reading it line by line
gives: the same values of the same lines, the same text, and the same error (code and
line) at the same point, after the same lines. The strategies are those of
:mod:`bench.fuzz_codec`; the golden files cover every layout (dates, times, trailers).
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz_codec import LAYOUT_BY_KIND, mutations, request_files
from contracts.codec import LAYOUT_NAMES, FileFormatError, FileReader, identify, load_layout

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
ACCOUNTS = (("6231880000000100016", "张三"), ("6231880000000100024", "王弢"),
            ("6231880000000100032", "欧阳娜娜"))
DAY = date(2026, 1, 5)
CI = settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
HEADER = "H|1|20260105|DEMO01|DF|{n}|{total}|98010078801000001|"


class TinyBlocks(FileReader):
    """Blocks of a few bytes: many blocks of one line or less."""

    BLOCK_BYTES = 7


Outcome = tuple[list[tuple[int, str, list[Any]]], tuple[str, int | None] | None]


def by_lines(reader: FileReader, names: tuple[str, ...]) -> Outcome:
    """(line number, line text, values of ``names``) per detail, then the error if any."""
    got: list[tuple[int, str, list[Any]]] = []
    try:
        for block in reader.blocks():
            for line_no, text, values in zip(block.line_numbers(), block.lines, block.values, strict=True):
                got.append((line_no, text, [values[n] for n in names]))
    except FileFormatError as exc:
        return got, (exc.code, exc.line)
    return got, None


def by_columns(reader: FileReader, names: tuple[str, ...]) -> Outcome:
    got: list[tuple[int, str, list[Any]]] = []
    try:
        for block in reader.columns(names):
            lines = block.text.split("\n")
            assert len(lines) == block.records
            assert all(len(column) == block.records for column in block.columns)
            for i, text in enumerate(lines):
                got.append((block.first_line + i, text, [column[i] for column in block.columns]))
    except FileFormatError as exc:
        return got, (exc.code, exc.line)
    return got, None


def both(layout_name: str, data: bytes, names: tuple[str, ...]) -> tuple[Outcome, Outcome] | None:
    """Both readings of ``data`` with each block size, or None if the header is refused."""
    layout = load_layout(layout_name)
    readings: list[Outcome] = []
    for reader in (FileReader, TinyBlocks):
        for read in (by_lines, by_columns):
            try:
                r = reader(layout, io.BytesIO(data))
            except FileFormatError:
                return None
            readings.append(read(r, names))
    assert readings[0] == readings[2] and readings[1] == readings[3]
    return readings[0], readings[1]


@CI
@given(st.data())
def test_valid_and_mutated_files_read_the_same_by_columns(data: st.DataObject) -> None:
    f = data.draw(request_files(day=DAY, batch_no=data.draw(st.integers(1, 10**9)), accounts=ACCOUNTS))
    _, mutated = data.draw(mutations(f.data))
    layout_name = LAYOUT_BY_KIND[f.kind]
    names = tuple(load_layout(layout_name).detail.names)
    for blob in (f.data, mutated):
        found = both(layout_name, blob, names)
        if found is not None:
            lines, columns = found
            assert columns == lines


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.txt")), ids=lambda p: p.name)
def test_golden_files_of_every_layout_read_the_same_by_columns(path: Path) -> None:
    found = identify(path.name, LAYOUT_NAMES)
    assert found is not None
    layout = load_layout(found[0])
    names = tuple(layout.detail.names)
    readings = both(found[0], path.read_bytes(), names)
    assert readings is not None
    lines, columns = readings
    assert columns == lines
    assert lines[1] is None and len(lines[0]) > 0


def _file(*details: str, total: str = "2.00") -> bytes:
    body = [HEADER.format(n=len(details), total=total), *details]
    return "".join(line + "\r\n" for line in body).encode("gbk")


@pytest.mark.parametrize(("detail", "code"), [
    # What the line regex lets through and only a whole-column check catches.
    ("D|2|S2|6231880000000100024|" + "王" * 31 + "|1.00||", "4013"),   # 62 GBK bytes > 60
    ("D|2|S2|6231880000000100024|王弢|0.00||", "4007"),                 # not positive
    ("D|2|S2|6231880000000100024|王弢|1.00|" + "账" * 31 + "|", "4013"),  # memo too long
])
def test_a_fault_only_a_column_check_sees_is_reported_on_its_line(detail: str, code: str) -> None:
    first = "D|1|S1|6231880000000100016|张三|1.00|充值到账|"
    data = _file(first, detail, "D|3|S3|6231880000000100032|欧阳娜娜|1.00||")
    readings = both("disbursement_request", data, ("seq", "serial", "amount"))
    assert readings is not None
    lines, columns = readings
    assert columns == lines
    assert columns[1] == (code, 3)
    assert [row[2] for row in columns[0]] == [[1, "S1", 100]]  # the line before it, handed out first


def test_columns_are_the_converted_values_and_the_text_as_stored() -> None:
    data = _file("D|1|S1|6231880000000100016|张三|1.00|充值到账|", "D|2|S-2|6231880000000100024|王弢|0.30||",
                 total="1.30")
    reader = FileReader(load_layout("disbursement_request"), io.BytesIO(data))
    [block] = list(reader.columns(("seq", "serial", "amount", "memo")))
    assert block.first_line == 2 and block.records == 2
    assert block.columns == [[1, 2], ["S1", "S-2"], [100, 30], ["充值到账", ""]]
    assert block.text == ("D|1|S1|6231880000000100016|张三|1.00|充值到账|\r\n"
                          "D|2|S-2|6231880000000100024|王弢|0.30||\r")
    assert reader.lines == 3


def test_columns_refuses_an_unknown_field_and_a_second_reading() -> None:
    reader = FileReader(load_layout("disbursement_request"), io.BytesIO(_file(total="0.00")))
    with pytest.raises(ValueError, match="no field"):
        load_layout("disbursement_request").detail.columns(("seq", "nonsense"))
    assert list(reader.columns(("seq",))) == []
    with pytest.raises(RuntimeError):
        list(reader.columns(("seq",)))
