"""Typed step parameters: how a phrase's ``{amount:Money}`` becomes a value.

Every type is a ``parse`` converter with a pattern (``parse.with_pattern``) and is
described in :data:`TYPES` (the catalogue prints that table). English and Chinese
phrasings share the types; where the languages differ (durations, file faults, record
lists) the pattern accepts both.

Example::

    >>> money("100.00")
    10000
    >>> duration("25 minutes"), duration("2小时")
    ('25m', '2h')
    >>> moment("T+1 10:00").resolve(date(2026, 1, 5))
    datetime.datetime(2026, 1, 6, 10, 0)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

from pytest_bdd import parsers

from contracts.money import parse_yuan

F = TypeVar("F", bound=Callable[..., Any])


def _pattern(regex: str) -> Callable[[F], F]:
    """What ``parse.with_pattern`` does (the regex a ``{x:Type}`` field matches), typed."""
    def mark(func: F) -> F:
        func.pattern = regex  # type: ignore[attr-defined]
        func.regex_group_count = 0  # type: ignore[attr-defined]  # (?:...) groups only
        return func
    return mark


# -- the types ------------------------------------------------------------------------------

NAME_PATTERN = r"[\u3400-\u9fff][\u3400-\u9fff·]{0,28}[\u3400-\u9fff]"
MONEY_PATTERN = r"[0-9]+\.[0-9]{2}"


@_pattern(NAME_PATTERN)
def person(text: str) -> str:
    """A user, by the Chinese name the scenario gives them (also their account name)."""
    return text


@_pattern(MONEY_PATTERN)
def money(text: str) -> int:
    """Yuan with two decimals -> integer fen (contracts.money; never a float)."""
    return parse_yuan(text)


@_pattern(r"[0-9]{4}")
def code(text: str) -> str:
    """A code of contracts/error_codes.yaml."""
    return text


@_pattern(r"B[1-9][0-9]{0,9}")
def batch(text: str) -> str:
    """A batch label; its digits are the batch number on the wire (``B1908`` -> ``1908``)."""
    return text


@_pattern(r"[A-Za-z0-9_-]{1,64}")
def serial(text: str) -> str:
    """A request serial (the magic parts ``-LOST-``, ``-SLOW-``, ``-BUSY-`` trigger faults)."""
    return text


@_pattern(r"[0-9]+(?:\.[0-9]+)?")
def seconds(text: str) -> float:
    """A client-side timeout in seconds (network time, not business time)."""
    return float(text)


_UNITS = {"second": "s", "seconds": "s", "秒": "s", "minute": "m", "minutes": "m", "分钟": "m",
          "hour": "h", "hours": "h", "小时": "h", "day": "d", "days": "d", "天": "d"}
_DURATION = re.compile(r"([0-9]+) ?(seconds?|minutes?|hours?|days?|秒|分钟|小时|天)")


@_pattern(r"[0-9]+ ?(?:seconds?|minutes?|hours?|days?|秒|分钟|小时|天)")
def duration(text: str) -> str:
    """``25 minutes`` / ``25分钟`` -> ``25m``, the control API's duration syntax."""
    m = _DURATION.fullmatch(text)
    if m is None:  # unreachable through the pattern; kept for direct calls
        raise ValueError(f"not a duration: {text!r}")
    return f"{m[1]}{_UNITS[m[2]]}"


@dataclass(frozen=True)
class Moment:
    """A bank-clock instant: a day relative to the scenario's business date T, or a date."""

    offset_days: int | None
    day: date | None
    at: time

    def resolve(self, business_date: date) -> datetime:
        """The naive CST date-time for a scenario whose business date is ``business_date``."""
        base = self.day if self.day is not None else business_date + timedelta(days=self.offset_days or 0)
        return datetime.combine(base, self.at)


_MOMENT = re.compile(r"(?:T(?:(?P<sign>[+-])(?P<days>[0-9]+))?|(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})) "
                     r"(?P<hh>[0-9]{2}):(?P<mm>[0-9]{2})")


@_pattern(r"(?:T(?:[+-][0-9]+)?|[0-9]{4}-[0-9]{2}-[0-9]{2}) [0-9]{2}:[0-9]{2}")
def moment(text: str) -> Moment:
    """``T+1 10:00`` (relative to the scenario's business date T) or ``2026-01-06 10:00``."""
    m = _MOMENT.fullmatch(text)
    if m is None:
        raise ValueError(f"not a bank-clock moment: {text!r}")
    at = time(int(m["hh"]), int(m["mm"]))
    if m["date"]:
        return Moment(None, date.fromisoformat(m["date"]), at)
    days = int(m["days"] or 0) * (-1 if m["sign"] == "-" else 1)
    return Moment(days, None, at)


_ENTRY_EN = rf"(?:{NAME_PATTERN}) (?:{MONEY_PATTERN})"
_ENTRY_ZH = rf"(?:{NAME_PATTERN})(?:{MONEY_PATTERN})元"
_SPLIT_EN = re.compile(r", | and ")
_SPLIT_ZH = re.compile(r"、|和")


@_pattern(rf"{_ENTRY_EN}(?:(?:, | and ){_ENTRY_EN})*|{_ENTRY_ZH}(?:(?:、|和){_ENTRY_ZH})*")
def entries(text: str) -> list[tuple[str, int]]:
    """Records of a batch file: ``张三 100.00 and 李四 50.00`` / ``张三100.00元、李四50.00元``."""
    english = not text.endswith("元")
    parts = _SPLIT_EN.split(text) if english else _SPLIT_ZH.split(text)
    found = []
    for part in parts:
        m = re.fullmatch(rf"({NAME_PATTERN}) ?({MONEY_PATTERN})元?", part)
        if m is None:
            raise ValueError(f"not a record: {part!r}")
        found.append((m[1], parse_yuan(m[2])))
    return found


# A return-file fault of the profile's batches.file_faults, by its words in a phrase.
_FILE_FAULTS: dict[str, dict[str, Any]] = {
    "never written": {"never": True}, "不生成": {"never": True},
    "written twice": {"twice": True}, "重复生成": {"twice": True},
    "truncated": {"truncated": True}, "被截断": {"truncated": True},
    "short of one record": {"missing_records": 1}, "缺少一条明细": {"missing_records": 1},
}
_LATE = re.compile(r"late by (?P<en>.+)|迟到(?P<zh>.+)")


@_pattern(r"never written|written twice|truncated|short of one record|late by [0-9]+ ?[a-z]+"
                    r"|不生成|重复生成|被截断|缺少一条明细|迟到[0-9]+(?:分钟|小时|天)")
def file_fault(text: str) -> dict[str, Any]:
    """What goes wrong with a return file -> the action of a ``file_faults`` rule."""
    if text in _FILE_FAULTS:
        return dict(_FILE_FAULTS[text])
    m = _LATE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a file fault: {text!r}")
    return {"late": duration(m["en"] or m["zh"])}


# Opening request fields, by their names in either language.
_ELEMENTS = {"name": "name", "姓名": "name", "ID number": "id_number", "身份证号": "id_number",
             "mobile": "mobile", "手机号": "mobile", "bound card": "bound_card_number",
             "绑定卡号": "bound_card_number", "card kind": "bound_card_kind",
             "绑定卡类型": "bound_card_kind"}


@_pattern("|".join(re.escape(k) for k in sorted(_ELEMENTS, key=len, reverse=True)))
def element(text: str) -> str:
    """One of the five elements of an opening -> its request field."""
    return _ELEMENTS[text]


_STATUSES = {"active": "ACTIVE", "正常": "ACTIVE", "waiting for ID-card images": "PENDING_IMAGES",
             "待审核影像": "PENDING_IMAGES", "closed": "CLOSED", "已销户": "CLOSED"}


@_pattern("|".join(re.escape(k) for k in _STATUSES))
def status(text: str) -> str:
    """An account status in words -> the API's status."""
    return _STATUSES[text]


@dataclass(frozen=True)
class TypeDoc:
    name: str
    converter: Callable[[str], Any]
    produces: str
    example: str


TYPES: tuple[TypeDoc, ...] = (
    TypeDoc("Person", person, "str", "张三"),
    TypeDoc("Money", money, "int (fen)", "100.00"),
    TypeDoc("Code", code, "str", "3017"),
    TypeDoc("Batch", batch, "str (label)", "B1"),
    TypeDoc("Serial", serial, "str", "OPEN-LOST-1"),
    TypeDoc("Seconds", seconds, "float", "0.5"),
    TypeDoc("Duration", duration, "str (control API)", "25 minutes / 25分钟"),
    TypeDoc("Moment", moment, "Moment", "T+1 10:00 / 2026-01-06 10:00"),
    TypeDoc("Entries", entries, "list[(name, fen)]",
            "张三 100.00 and 李四 50.00 / 张三100.00元、李四50.00元"),
    TypeDoc("FileFault", file_fault, "dict (file_faults action)", "late by 2 hours / 迟到2小时"),
    TypeDoc("Element", element, "str (request field)", "ID number / 身份证号"),
    TypeDoc("Status", status, "str (API status)", "active / 正常"),
)
EXTRA_TYPES: dict[str, Callable[[str], Any]] = {t.name: t.converter for t in TYPES}


def phrase(text: str) -> parsers.parse:
    """A step phrase with this library's types (``{amount:Money}``, ``{name:Person}``, ...).

    Case-sensitive: ``parse`` otherwise compiles with IGNORECASE, and case-folding the CJK
    ranges of the Person pattern costs seconds of regex compilation per run.
    """
    return parsers.parse(text, extra_types=EXTRA_TYPES, case_sensitive=True)
