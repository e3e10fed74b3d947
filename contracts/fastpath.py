"""The reader's fast path: one regex and one generated function per record kind.

Calling a converter per field costs more than the whole budget of a line (the codec reads
300,000+ lines/s), so each record kind is compiled, once per layout, into:

* a line regex that checks the tag, every separator, the trailing separator, the line
  ending and each field's shape (digits, the amount grammar, enum members, simple
  patterns, no control characters), capturing one group per field;
* a function, generated from the field list, that turns the groups into the record dict
  with inline conversions (``int``, fen, cached dates) and the few checks a regex cannot
  make (GBK byte length, ``positive``, ``min`` above 1).

The fast path only ever accepts what the field decoders accept. A line it refuses goes to
the slow path (split, then the decoders of ``fields.py``), which finds the precise error
and its code; the equivalence of the two is a property test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from operator import methodcaller
from typing import Any

from contracts.fields import Decoder, Encoder, Field, FileFormatError, make_decoder

Convert = Callable[[tuple[str, ...]], dict[str, Any]]
Format = Callable[[Mapping[str, Any]], str]
Match = Callable[[str], "re.Match[str] | None"]


@dataclass(frozen=True)
class CompiledRecord:
    match: Match  # fullmatch of the line regex (line ending included)
    convert: Convert  # the match's groups -> the record dict; raises on what a regex cannot see
    format: Format  # record dict -> line text without the line ending; validated afterwards
    block: Match  # fullmatch of any number of such lines, each followed by "\n"

# A "simple" pattern: a sequence of ASCII character classes or letters/digits, each with
# an optional quantifier. Such a pattern cannot match a separator or a control character
# (checked below) and can be inlined in the line regex without moving field boundaries.
_ATOM = re.compile(r"(?:\[(?P<cls>[^\]\\^][^\]\\]*)\]|(?P<lit>[A-Za-z0-9_-]))"
                   r"(?P<q>\{(\d+)(?:,(\d+))?\}|[*+?])?")


def simple_pattern(pattern: str, separator: str) -> tuple[str, int | None] | None:
    """``(regex, longest match or None if unbounded)`` for a simple pattern, else None."""
    pos, longest = 0, 0
    unbounded = False
    while pos < len(pattern):
        m = _ATOM.match(pattern, pos)
        if m is None or (m["cls"] is not None and not _class_is_safe(m["cls"], separator)):
            return None
        q = m["q"]
        if q in ("*", "+"):
            unbounded = True
        else:
            longest += 1 if q in (None, "?") else int(m.group(5) or m.group(4))
        pos = m.end()
    return f"(?:{pattern})", (None if unbounded else longest)


def _class_is_safe(body: str, separator: str) -> bool:
    chars: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            chars.append((body[i], body[i + 2]))
            i += 3
        else:
            chars.append((body[i], body[i]))
            i += 1
    return all(" " <= lo <= hi <= "~" and not lo <= separator <= hi for lo, hi in chars)


def compile_record(tag: str, fields: Sequence[Field], decoders: Sequence[Decoder],
                   encoders: Sequence[Encoder], *, codec: str, separator: str, trailing: bool,
                   line_end: str) -> CompiledRecord:
    """The line regex, the groups -> dict function and the dict -> text function of a record.

    ``line_end`` is what is left of the line ending once lines are split at ``\\n`` ("\\r").
    The formatter only formats (values of the expected class, else the field's slow encoder
    decides); the caller validates its output with ``match`` and ``convert``.
    """
    sep = re.escape(separator)
    text = f"[^{sep}\\x00-\\x1f\\x7f]"
    groups: list[str] = []
    checks: list[str] = []
    values: list[str] = []
    formats: list[str] = []
    env: dict[str, Any] = {"codec": codec, "date": date, "datetime": datetime, "str": str, "int": int}
    bare: list[str] = []
    for i, (f, dec, enc) in enumerate(zip(fields, decoders, encoders, strict=True)):
        g, d = f"g{i}", f"d{i}"
        env[d], env[f"e{i}"] = dec, enc
        regex, value = _field_code(f, g, d, text, separator, checks, env)
        groups.append(f"({regex}|)" if not f.required else f"({regex})")
        bare.append(f"(?:{regex}|)" if not f.required else f"(?:{regex})")
        values.append(f"{f.name!r}: {value}")
        formats.extend(_format_code(f, i))
    tail = (sep if trailing else "") + re.escape(line_end)
    body = sep.join([re.escape(tag), *groups]) + tail
    # The same line without captures, repeated: a whole block of lines checked in one call.
    block = "(?:" + sep.join([re.escape(tag), *bare]) + tail + "\n)*"
    unpack = "".join(f"g{i}, " for i in range(len(fields)))
    parts = [repr(tag), *(f"t{i}" for i in range(len(fields)))] + (["''"] if trailing else [])
    source = "\n    ".join([
        "def convert(groups):",
        f"{unpack}= groups" if fields else "pass",
        *checks,
        "return {" + ", ".join(values) + "}",
    ]) + "\n" + "\n    ".join([
        "def format(values):",
        "get = values.get",
        *formats,
        f"return {separator!r}.join(({', '.join(parts)},))",
    ])
    exec(compile(source, f"<layout record {tag}>", "exec"), env)
    return CompiledRecord(re.compile(body).fullmatch, env["convert"], env["format"],
                          re.compile(block).fullmatch)


def _format_code(f: Field, i: int) -> list[str]:
    """Statements setting ``t{i}``: the common classes inline, anything else via the encoder."""
    v, t, e = f"v{i}", f"t{i}", f"e{i}"
    get = f"{v} = get({f.name!r})"
    if f.type in ("str", "enum"):
        return [get, f"{t} = {v} if {v} and {v}.__class__ is str else {e}({v})"]
    if f.type == "int":
        return [get, f"{t} = str({v}) if {v}.__class__ is int else {e}({v})"]
    if f.type == "amount":
        yuan = f"f'{{{v} // 100}}.{{{v} % 100:02d}}'"
        return [get, f"{t} = {yuan} if {v}.__class__ is int and {v} >= 0 else {e}({v})"]
    ymd = f"{{{v}.year:04d}}{{{v}.month:02d}}{{{v}.day:02d}}"
    if f.type == "date":
        return [get, f"{t} = f'{ymd}' if {v}.__class__ is date else {e}({v})"]
    hms = f"{{{v}.hour:02d}}{{{v}.minute:02d}}{{{v}.second:02d}}"
    return [get, f"{t} = f'{ymd}{hms}' if {v}.__class__ is datetime and {v}.tzinfo is None else {e}({v})"]


def _field_code(f: Field, g: str, d: str, text: str, separator: str,
                checks: list[str], env: dict[str, Any]) -> tuple[str, str]:
    """(regex of the field's group, expression of its value); appends checks that may raise."""
    optional = not f.required
    if f.type == "str":
        simple = simple_pattern(f.pattern, separator) if f.pattern else None
        if simple is not None:
            regex, longest = simple
            if f.required and re.fullmatch(f.pattern or "", ""):
                checks.append(f"if not {g}: {d}({g})")
            if longest is None or longest > f.max_length:  # ASCII only: chars = bytes
                checks.append(f"if len({g}) > {f.max_length}: {d}({g})")
            return regex, g
        if f.pattern is not None:  # not inlinable: the decoder checks it
            checks.append(f"{d}({g})")
            return f"{text}+", g
        short = f.max_length // 2
        checks.append(f"if len({g}) > {short} and len({g}.encode(codec)) > {f.max_length}: {d}({g})")
        return f"{text}+", g
    if f.type == "enum":
        return "|".join(re.escape(v) for v in f.values if v), g
    if f.type == "int":
        tail = f"[0-9]{{0,{f.max_length - 1}}}"
        regex = f"[1-9]{tail}" if (f.min or 0) >= 1 else f"0|[1-9]{tail}"
        if (f.min or 0) > 1:
            checks.append(f"if {g} and int({g}) < {f.min}: {d}({g})")
        return regex, (f"(int({g}) if {g} else None)" if optional else f"int({g})")
    if f.type == "amount":
        fen = f"int({g}[:-3] + {g}[-2:])"
        checks.append(f"v{g} = {fen} if {g} else None" if optional else f"v{g} = {fen}")
        if f.positive:
            checks.append(f"if v{g} == 0: {d}({g})")
        return r"(?:0|[1-9][0-9]{0,11})\.[0-9]{2}", f"v{g}"
    if f.type in ("date", "datetime"):
        # The decoder memoises; its cache is shared so a hit costs one dict lookup.
        cache: dict[str, date] = {}
        env[d] = make_decoder(f, env["codec"], cache)
        env[f"c{g}"] = cache.get
        checks.append(f"v{g} = c{g}({g})")
        checks.append(f"if v{g} is None: v{g} = {d}({g})")
        return f"[0-9]{{{8 if f.type == 'date' else 14}}}", f"v{g}"
    raise ValueError(f"field {f.name}: unknown type {f.type!r}")  # pragma: no cover - load checks


Columns = list[list[Any]]
ColumnScan = Callable[[str], "Columns | None"]
_Check = Callable[[list[str]], bool]
_NO_DOT = methodcaller("replace", ".", "")


def compile_columns(block: Match, fields: Sequence[Field], decoders: Sequence[Decoder],
                    wanted: Sequence[str], *, codec: str, separator: str,
                    trailing: bool) -> ColumnScan:
    """A reader of whole blocks of lines that hands out the ``wanted`` fields column by column.

    The scan takes decoded text of complete lines (each ending with ``"\\n"``) and returns one
    list of values per wanted field, the same values the record's ``convert`` gives, or None
    when any line is not a valid record (the caller reads that block line by line to find
    the fault and its line). Per block: one regex call checks every line, one ``split`` at
    the separator cuts every field, and each column is a slice of that list; the checks a
    regex cannot make (GBK lengths, ``positive``, ``min``, real dates) run on whole columns.
    No Python code runs per line, which is what makes it several times faster than the
    line path for big files.

        scan = layout.detail.columns(("seq", "amount"))
        scan("D|1|S1|6231880000000000017|张三|100.00||\\r\\n")   # [[1], [10000]]
    """
    if not trailing:  # the last field and the next line's tag would share one piece
        return lambda text: None
    checks = [(i + 1, check) for i, (f, dec) in enumerate(zip(fields, decoders, strict=True))
              if (check := _column_check(f, dec, codec, separator)) is not None]
    names = [f.name for f in fields]
    converts = [(names.index(n) + 1, _column_convert(fields[names.index(n)], decoders[names.index(n)]))
                for n in wanted]
    stride = 1 + len(fields)  # the tag, the fields; a trailing separator's "" joins the next tag

    def scan(text: str) -> Columns | None:
        if block(text) is None:
            return None
        pieces = text.split(separator)
        for i, check in checks:
            if not check(pieces[i::stride]):
                return None
        return [convert(pieces[i::stride]) for i, convert in converts]

    return scan


def _column_check(f: Field, dec: Decoder, codec: str, separator: str) -> _Check | None:
    """The whole-column form of what ``convert`` checks beyond the line regex (None: nothing)."""
    if f.type == "str":
        simple = simple_pattern(f.pattern, separator) if f.pattern else None
        if simple is not None:
            longest = simple[1]
            empty_ok = not (f.required and re.fullmatch(f.pattern or "", ""))
            too_long = longest is None or longest > f.max_length
            if empty_ok and not too_long:
                return None
            limit = f.max_length
            return lambda col: (empty_ok or "" not in col) and (
                not too_long or max(map(len, col), default=0) <= limit)
        if f.pattern is not None:
            return lambda col: _all_decode(dec, col)
        short, limit = f.max_length // 2, f.max_length
        return lambda col: max(map(len, col), default=0) <= short or all(
            len(v) <= short or len(v.encode(codec)) <= limit for v in col)
    if f.type == "int" and (f.min or 0) > 1:
        low = f.min or 0
        return lambda col: min((int(v) for v in col if v), default=low) >= low
    if f.type == "amount" and f.positive:
        return lambda col: "0.00" not in col
    if f.type in ("date", "datetime"):
        return lambda col: _all_decode(dec, col)
    return None


def _all_decode(dec: Decoder, col: list[str]) -> bool:
    try:
        for v in set(col):
            dec(v)
    except FileFormatError:
        return False
    return True


def _column_convert(f: Field, dec: Decoder) -> Callable[[list[str]], list[Any]]:
    """Column texts -> values, as ``convert`` gives them (the column passed its checks)."""
    if f.type == "int":
        if f.required:
            return lambda col: list(map(int, col))
        return lambda col: [int(v) if v else None for v in col]
    if f.type == "amount":
        if f.required:
            return lambda col: list(map(int, map(_NO_DOT, col)))
        return lambda col: [int(v.replace(".", "")) if v else None for v in col]
    if f.type in ("date", "datetime"):
        def dates(col: list[str]) -> list[Any]:
            table = {v: dec(v) for v in set(col)}
            return list(map(table.__getitem__, col))
        return dates
    return lambda col: col
