"""Field types of the batch-file layouts: one precompiled converter per field and direction.

A layout (``contracts/layouts/*.yaml``) is data; this module turns each of its fields into
two closures, built once per layout: ``decode(text) -> value`` for the reader's hot loop and
``encode(value) -> text`` for the writer. The writer runs the decoder over what it is about
to write, so a file the codec writes is always a file the codec reads back.

Types on the wire and in Python:

    str       text (GBK byte length <= max_length)      -> str ("" when optional and empty)
    int       ASCII digits, no leading zero              -> int
    amount    yuan with exactly two decimals ("12.30")   -> int fen (never a float, never < 0)
    date      yyyymmdd                                   -> datetime.date
    datetime  yyyymmddHHMMSS (China Standard Time)       -> naive datetime.datetime
    enum      one of ``values``                          -> str

Optional fields that are empty decode to ``""`` (str, enum) or ``None`` (the others).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from contracts.money import format_fen

FIELD_TYPES = frozenset({"str", "int", "amount", "date", "datetime", "enum"})
# Wire width of the fixed-width types; an amount has at most 12 integer digits (money.py).
_WIDTH = {"date": 8, "datetime": 14, "amount": 15}
CST = timezone(timedelta(hours=8), "CST")
# Decoded dates/datetimes are memoised (files repeat the same few dates and seconds); the
# cache is cleared when full so a reader's memory stays constant.
_CACHE_MAX = 4096
# Characters no field may hold: they would break the line structure or the terminal.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Decoder = Callable[[str], Any]
Encoder = Callable[[Any], str]


class FileFormatError(ValueError):
    """A file (or a value about to be written) does not follow its layout.

    ``code`` is a 4xxx row of ``error_codes.yaml``; ``line`` the 1-based line at fault
    (None for whole-file problems and for single records being encoded); ``detail`` says
    what is wrong, in English. The simulator maps ``code`` to its ``FileRejected`` class.
    """

    def __init__(self, code: str, detail: str, line: int | None = None) -> None:
        super().__init__(code, detail, line)
        self.code = code
        self.detail = detail
        self.line = line

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        return f"{self.code}{where}: {self.detail}"


@dataclass(frozen=True)
class Field:
    """One field of a record, as declared in a layout file."""

    name: str
    type: str
    required: bool
    max_length: int  # GBK bytes on the wire
    label: str = ""  # the Chinese name, for people reading the layout
    pattern: str | None = None  # whole-value regex, checked after the type
    values: tuple[str, ...] = ()  # enum members
    positive: bool = False  # amount: zero is refused too (4007)
    min: int | None = None  # int: smallest value allowed
    account: bool = False  # an account number: violations are 4012, not 4013
    default: str | None = None  # wire text written when the value is missing

    @property
    def error_code(self) -> str:
        if self.type == "amount":
            return "4007"
        return "4012" if self.account else "4013"


def wire_width(field: Field) -> int:
    return _WIDTH.get(field.type, field.max_length)


def _digits_check(pattern: str) -> Callable[[str], bool] | None:
    """``[0-9]{n}`` / ``[0-9]{m,n}`` as a length test plus ``str.isdigit`` (no regex per value)."""
    m = re.fullmatch(r"\[0-9\]\{(\d+)(?:,(\d+))?\}", pattern)
    if m is None:
        return None
    lo = int(m.group(1))
    hi = int(m.group(2) or lo)
    return lambda t: lo <= len(t) <= hi and t.isascii() and t.isdigit()


def _value_check(pattern: str | None) -> Callable[[str], object] | None:
    if pattern is None:
        return None
    return _digits_check(pattern) or re.compile(pattern).fullmatch


def make_decoder(field: Field, codec: str, cache: dict[str, date] | None = None) -> Decoder:
    """The text -> value converter of ``field``; raises FileFormatError (line left to the caller).

    ``cache`` (date and datetime fields) is the memo the decoder fills; the fast path reads it.
    """
    name, code, required = field.name, field.error_code, field.required

    def bad(text: str, why: str) -> FileFormatError:
        return FileFormatError(code, f"field {name}: {why}: {text!r}")

    if field.type == "str":
        check, max_len = _value_check(field.pattern), field.max_length
        short = max_len // 2  # a GBK character is at most 2 bytes: shorter text always fits

        def dec_str(t: str) -> str:
            if not t:
                if required:
                    raise bad(t, "required")
                return t
            if len(t) > short and (len(t) if t.isascii() else len(t.encode(codec))) > max_len:
                raise bad(t, f"longer than {max_len} GBK bytes")
            if check is not None and not check(t):
                raise bad(t, f"does not match {field.pattern}")
            return t

        return dec_str

    if field.type == "enum":
        members = frozenset(field.values)

        def dec_enum(t: str) -> str:
            if t in members or (not t and not required):
                return t
            raise bad(t, f"not one of {'/'.join(field.values)}")

        return dec_enum

    if field.type == "int":
        max_len, lo = field.max_length, field.min

        def dec_int(t: str) -> int | None:
            if not t:
                if required:
                    raise bad(t, "required")
                return None
            if len(t) > max_len or not (t.isascii() and t.isdigit()) or (t[0] == "0" and len(t) > 1):
                raise bad(t, f"not an integer of at most {max_len} digits without leading zeros")
            n = int(t)
            if lo is not None and n < lo:
                raise bad(t, f"less than {lo}")
            return n

        return dec_int

    if field.type == "amount":
        positive = field.positive

        def dec_amount(t: str) -> int | None:
            n = len(t)
            # The YUAN_PATTERN of money.py, without a regex: 1-12 integer digits (no leading
            # zero unless exactly "0"), a dot, two decimals.
            if 4 <= n <= 15 and t[-3] == "." and t.isascii():
                digits = t[:-3] + t[-2:]
                if digits.isdigit() and (t[0] != "0" or n == 4):
                    fen = int(digits)
                    if fen or not positive:
                        return fen
                    raise bad(t, "must be positive")
            if not t and not required:
                return None
            raise bad(t, _amount_problem(t))

        return dec_amount

    if field.type in ("date", "datetime"):
        return _make_date_decoder(field, bad, {} if cache is None else cache)

    raise ValueError(f"field {name}: unknown type {field.type!r}")


def _amount_problem(t: str) -> str:
    if t.startswith("-"):
        return "negative amount"
    if "." in t and len(t.rpartition(".")[2]) != 2:
        return "an amount needs exactly two decimals"
    return "not a yuan amount like 12.30"


def _make_date_decoder(field: Field, bad: Callable[[str, str], FileFormatError],
                       cache: dict[str, date]) -> Decoder:
    width, required, is_date = _WIDTH[field.type], field.required, field.type == "date"
    what = "yyyymmdd" if is_date else "yyyymmddHHMMSS"

    def dec_date(t: str) -> date | None:
        value = cache.get(t)
        if value is not None:
            return value
        if not t:
            if required:
                raise bad(t, "required")
            return None
        if len(t) != width or not (t.isascii() and t.isdigit()):
            raise bad(t, f"not {what}")
        try:
            if is_date:
                value = date(int(t[:4]), int(t[4:6]), int(t[6:]))
            else:
                value = datetime(int(t[:4]), int(t[4:6]), int(t[6:8]),
                                 int(t[8:10]), int(t[10:12]), int(t[12:]))
        except ValueError:
            raise bad(t, f"no such {'date' if is_date else 'time'}") from None
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[t] = value
        return value

    return dec_date


def make_encoder(field: Field, codec: str, separator: str) -> Encoder:
    """The value -> text converter of ``field``: formats, then validates with the decoder."""
    name, code = field.name, field.error_code
    decode = make_decoder(field, codec)
    fmt = _formatter(field)

    def enc(value: Any) -> str:
        if value is None or (value == "" and field.type in ("str", "enum")):
            if field.default is not None:
                return field.default
            if field.required:
                raise FileFormatError(code, f"field {name}: required")
            return ""
        text = fmt(value)
        if separator in text or CONTROL.search(text):
            raise FileFormatError("4013", f"field {name}: holds the separator or a control character")
        try:
            text.encode(codec)
        except UnicodeEncodeError as exc:
            raise FileFormatError("4001", f"field {name}: {text[exc.start:exc.end]!r} "
                                          f"has no {codec.upper()} encoding") from None
        decode(text)
        return text

    return enc


def _formatter(field: Field) -> Callable[[Any], str]:
    name, kind = field.name, field.type

    def wrong(value: Any, wanted: str) -> FileFormatError:
        return FileFormatError(field.error_code, f"field {name}: {wanted} expected, "
                                                 f"got {type(value).__name__} {value!r}")

    def fmt(value: Any) -> str:
        if kind in ("str", "enum"):
            if not isinstance(value, str):
                raise wrong(value, "str")
            return value
        if kind in ("int", "amount"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise wrong(value, "int (fen)" if kind == "amount" else "int")
            if kind == "amount" and value < 0:
                raise FileFormatError("4007", f"field {name}: negative amount {value} fen")
            return format_fen(value) if kind == "amount" else str(value)
        if kind == "date":
            if not isinstance(value, date) or isinstance(value, datetime):
                raise wrong(value, "datetime.date")
            return f"{value.year:04d}{value.month:02d}{value.day:02d}"
        if not isinstance(value, datetime):
            raise wrong(value, "datetime.datetime")
        if value.tzinfo is not None:  # files carry China Standard Time without an offset
            value = value.astimezone(CST)
        # Sub-second precision has no place on the wire: it is dropped, not rounded.
        return (f"{value.year:04d}{value.month:02d}{value.day:02d}"
                f"{value.hour:02d}{value.minute:02d}{value.second:02d}")

    return fmt
