"""Batch-file layouts loaded from ``contracts/layouts/<name>.yaml`` (the layouts are data).

A layout gives the file's encoding, line ending and separator, its file-name rules and
its records (header ``H``, detail ``D``, optional trailer ``T``), each an ordered list
of fields. Loading validates the YAML strictly (an unknown key is a typo, not an
extension) and precompiles every field's converters once, so the codec's hot loop does
no per-field dispatch.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from contracts import contract_path
from contracts.fastpath import ColumnScan, compile_columns, compile_record
from contracts.fields import (
    CONTROL,
    FIELD_TYPES,
    Decoder,
    Encoder,
    Field,
    FileFormatError,
    make_decoder,
    make_encoder,
    wire_width,
)
from contracts.yamltext import load as yaml_load

LAYOUT_NAMES = ("disbursement_request", "withholding_request", "return", "rejection", "statement")
REQUEST_LAYOUTS = ("disbursement_request", "withholding_request")
RECORD_KINDS = ("header", "detail", "trailer")
_CODECS = {"GBK": "gbk"}
_LINE_ENDINGS = {"CRLF": "\r\n", "LF": "\n"}
_LAYOUT_KEYS = {"layout", "title", "direction", "encoding", "line_ending", "separator",
                "trailing_separator", "file_names", "records"}
_FIELD_KEYS = {"name", "label", "type", "required", "max_length", "pattern", "values",
               "positive", "min", "account", "default"}
_PART_TYPES = {"str", "date", "datetime"}


class RecordLayout:
    """One record kind: its tag, fields (the tag excluded) and precompiled converters."""

    def __init__(self, kind: str, raw: dict[str, Any], codec: str, separator: str, trailing: bool,
                 line_end: str) -> None:
        _only(raw, {"required", "fields"}, f"{kind} record")
        fields = [_field(f) for f in raw["fields"]]
        first = fields[0] if fields else None
        if first is None or first.name != "tag" or first.type != "enum" or len(first.values) != 1:
            raise ValueError(f"{kind} record: the first field must be `tag`, an enum of one value")
        self.kind = kind
        self.tag = first.values[0]
        self.required = bool(raw.get("required", kind != "trailer"))
        self.fields: tuple[Field, ...] = tuple(fields[1:])
        self.names = tuple(f.name for f in self.fields)
        if len(set(self.names)) != len(self.names) or "tag" in self.names:
            raise ValueError(f"{kind} record: field names must be unique")
        for f in fields:
            if any(separator in v or CONTROL.search(v) for v in f.values):
                raise ValueError(f"field {f.name}: enum values cannot hold the separator")
        self.separator = separator
        self.trailing = trailing
        self.line_end = line_end
        self.decoders: tuple[Decoder, ...] = tuple(make_decoder(f, codec) for f in self.fields)
        self.encoders: tuple[Encoder, ...] = tuple(make_encoder(f, codec, separator) for f in self.fields)
        compiled = compile_record(self.tag, self.fields, self.decoders, self.encoders, codec=codec,
                                  separator=separator, trailing=trailing, line_end=line_end)
        self.match, self.convert, self.format = compiled.match, compiled.convert, compiled.format
        self._block = compiled.block
        self._scans: dict[tuple[str, ...], ColumnScan] = {}
        self.codec = codec
        self._allowed = frozenset(("tag", *self.names))
        # Items a correct line splits into: the tag, the fields, and "" after a trailing separator.
        self.parts = 1 + len(self.fields) + (1 if trailing else 0)
        self.max_bytes = len(self.tag) + sum(wire_width(f) for f in self.fields) + self.parts

    def columns(self, names: tuple[str, ...]) -> ColumnScan:
        """A scan of whole blocks of these records giving the ``names`` fields column by column.

        See :func:`contracts.fastpath.compile_columns`; compiled once per tuple of names.

            seqs, amounts = layout.detail.columns(("seq", "amount"))(text) or fallback(text)
        """
        scan = self._scans.get(names)
        if scan is None:
            unknown = set(names) - set(self.names)
            if unknown:
                raise ValueError(f"a {self.kind} has no field {', '.join(sorted(unknown))}")
            scan = self._scans[names] = compile_columns(
                self._block, self.fields, self.decoders, names, codec=self.codec,
                separator=self.separator, trailing=self.trailing)
        return scan

    def encode(self, values: Mapping[str, Any]) -> bytes:
        """The record's line in the layout's encoding, without the line ending.

        The formatted text is validated by the fast path of the reader (so what is written
        reads back); if it fails, the per-field encoders name the field at fault.
        """
        if not self._allowed.issuperset(values.keys()):
            unknown = ", ".join(sorted(set(values) - self._allowed))
            raise FileFormatError("4013", f"a {self.kind} has no field {unknown}")
        if values.get("tag", self.tag) != self.tag:
            raise FileFormatError("4002", f"a {self.kind} has tag {self.tag}, not {values['tag']!r}")
        text = self.format(values)
        m = self.match(text + self.line_end)
        try:
            if m is None:
                raise self._encode_error(values)
            self.convert(m.groups())
            return text.encode(self.codec)
        except UnicodeEncodeError:
            raise self._encode_error(values) from None

    def _encode_error(self, values: Mapping[str, Any]) -> FileFormatError:
        for name, enc in zip(self.names, self.encoders, strict=True):
            try:
                enc(values.get(name))
            except FileFormatError as exc:
                return exc
        return FileFormatError("4013", f"the {self.kind} does not match the layout")  # pragma: no cover

    def decode(self, line: str, line_no: int | None = None) -> dict[str, Any]:
        """One decoded line (split at ``"\\n"``, so still ending with ``line_end``) -> values."""
        m = self.match(line)
        try:
            if m is None:
                raise self.diagnose(line)
            return self.convert(m.groups())
        except FileFormatError as exc:
            exc.line = line_no
            raise

    def diagnose(self, line: str) -> FileFormatError:
        """The precise error of a line the fast path refused."""
        try:
            self.decode_slow(line)
        except FileFormatError as exc:
            return exc
        return FileFormatError("4013", f"the {self.kind} line does not match the layout")  # pragma: no cover

    def decode_slow(self, line: str) -> dict[str, Any]:
        """Split, then one decoder per field: slower, but names the field and code at fault."""
        if self.line_end:
            if not line.endswith(self.line_end):
                raise FileFormatError("4002", "the line ends with a bare LF, not CRLF")
            line = line[: -len(self.line_end)]
        parts = line.split(self.separator)
        if parts[0] != self.tag:
            raise FileFormatError("4002", f"expected a {self.kind} line ({self.tag}), "
                                          f"found tag {parts[0][:8]!r}")
        if len(parts) != self.parts:
            raise FileFormatError("4002", f"a {self.kind} line splits into {self.parts} items at "
                                          f"{self.separator!r}, this one into {len(parts)}")
        if self.trailing and parts[-1]:
            raise FileFormatError("4002", f"the line must end with the separator {self.separator!r}")
        for name, value in zip(("tag", *self.names), parts, strict=False):
            if CONTROL.search(value):
                if "\r" in value or "\n" in value:
                    raise FileFormatError("4002", f"a stray line break inside field {name}")
                raise FileFormatError("4013", f"field {name}: holds a control character: {value!r}")
        texts = parts[1 : 1 + len(self.fields)]
        return {name: dec(v) for name, dec, v in zip(self.names, self.decoders, texts, strict=True)}

    def __repr__(self) -> str:
        return f"RecordLayout({self.kind!r}, tag={self.tag!r}, fields={self.names!r})"


@dataclass(frozen=True)
class FileNameRule:
    """One way to name a file: a regex with named groups and the format string that builds it."""

    pattern: re.Pattern[str]
    format: str
    types: dict[str, str]  # group -> str | date | datetime
    placeholders: frozenset[str]

    def parse(self, name: str) -> dict[str, Any] | None:
        m = self.pattern.fullmatch(name)
        if m is None:
            return None
        parts: dict[str, Any] = {}
        for key, text in m.groupdict().items():
            kind = self.types.get(key, "str")
            try:
                if kind == "date":
                    parts[key] = datetime.strptime(text, "%Y%m%d").date()
                elif kind == "datetime":
                    parts[key] = datetime.strptime(text, "%Y%m%d%H%M%S")
                else:
                    parts[key] = text
            except ValueError:  # 20261340 has the shape of a date but is none
                return None
        return parts

    def build(self, parts: dict[str, Any]) -> str:
        texts = {k: _part_text(v) for k, v in parts.items()}
        name = self.format.format(**texts)
        if self.pattern.fullmatch(name) is None or self.parse(name) is None:
            raise ValueError(f"{name!r} does not match {self.pattern.pattern}")
        return name


def _part_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y%m%d%H%M%S")
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    return str(value)


class Layout:
    """A loaded layout. Use :func:`load_layout`; instances are shared and immutable."""

    def __init__(self, raw: dict[str, Any]) -> None:
        _only(raw, _LAYOUT_KEYS, "layout")
        self.name: str = raw["layout"]
        self.title: str = raw.get("title", "")
        self.direction: str = raw.get("direction", "")
        self.encoding: str = raw["encoding"]
        if self.encoding not in _CODECS:
            raise ValueError(f"{self.name}: encoding {self.encoding!r} is not one of {sorted(_CODECS)}")
        self.codec = _CODECS[self.encoding]  # the Python codec name
        self.line_ending: str = raw["line_ending"]
        self.eol = _LINE_ENDINGS[self.line_ending].encode("ascii")
        line_end = _LINE_ENDINGS[self.line_ending][:-1]  # what a line keeps once split at "\n"
        self.separator: str = raw["separator"]
        if len(self.separator) != 1 or not self.separator.isascii():
            raise ValueError(f"{self.name}: the separator must be one ASCII character")
        self.trailing_separator = bool(raw["trailing_separator"])
        records = raw["records"]
        _only(records, set(RECORD_KINDS), f"{self.name} records")
        args = (self.codec, self.separator, self.trailing_separator, line_end)
        self.header = RecordLayout("header", records["header"], *args)
        self.detail = RecordLayout("detail", records["detail"], *args)
        self.trailer = RecordLayout("trailer", records["trailer"], *args) if "trailer" in records else None
        tags = [r.tag for r in self.records()]
        if len(set(tags)) != len(tags):
            raise ValueError(f"{self.name}: record tags must differ")
        if self.trailer is not None and "line_count" not in self.trailer.names:
            raise ValueError(f"{self.name}: a trailer needs a line_count field")
        self.file_names = tuple(_file_name_rule(r) for r in raw["file_names"])
        # Longest line the reader accepts before calling it a structure error: generous (a
        # field too long is reported as that field's error) yet bounded, so a file without
        # line breaks cannot make the reader buffer it whole.
        self.max_line_bytes = max(4096, 2 * max(r.max_bytes for r in self.records()))

    def records(self) -> tuple[RecordLayout, ...]:
        return (self.header, self.detail) + ((self.trailer,) if self.trailer else ())

    def record(self, kind: str) -> RecordLayout:
        rec = {"header": self.header, "detail": self.detail, "trailer": self.trailer}.get(kind)
        if rec is None:
            raise ValueError(f"{self.name} has no {kind} record")
        return rec

    def file_name(self, **parts: Any) -> str:
        """Build a file name; the rule used is the one whose placeholders are exactly ``parts``."""
        for rule in self.file_names:
            if rule.placeholders == parts.keys():
                return rule.build(parts)
        wanted = " or ".join(str(sorted(r.placeholders)) for r in self.file_names)
        raise ValueError(f"{self.name} file names take {wanted}, got {sorted(parts)}")

    def parse_file_name(self, name: str) -> dict[str, Any] | None:
        """The parts of ``name`` (dates as ``date``), or None if no rule of this layout matches."""
        for rule in self.file_names:
            parts = rule.parse(name)
            if parts is not None:
                return parts
        return None

    def __repr__(self) -> str:
        return f"Layout({self.name!r})"


@cache
def load_layout(name: str) -> Layout:
    """The layout ``contracts/layouts/<name>.yaml``, loaded and compiled once per process."""
    if name not in LAYOUT_NAMES:
        raise ValueError(f"unknown layout {name!r}; known: {', '.join(LAYOUT_NAMES)}")
    path = contract_path("layouts") / f"{name}.yaml"
    layout = Layout(yaml_load(path.read_text("utf-8")))
    if layout.name != name:
        raise ValueError(f"{path} declares layout {layout.name!r}")
    return layout


def identify(file_name: str, layouts: tuple[str, ...] = REQUEST_LAYOUTS) -> tuple[str, dict[str, Any]] | None:
    """``("disbursement_request", {"kind": "DF", "merchant": ..., "date": date, "batch": ...})``.

    Only request names by default (what the bank accepts from a platform); pass
    ``LAYOUT_NAMES`` to recognise return, rejection and statement names as well.
    """
    for name in layouts:
        parts = load_layout(name).parse_file_name(file_name)
        if parts is not None:
            return name, parts
    return None


def kind_for_file_name(file_name: str, layouts: tuple[str, ...] = LAYOUT_NAMES) -> str | None:
    """The layout name of any file this bank exchanges, or None."""
    found = identify(file_name, layouts)
    return found[0] if found else None


_SAFE = frozenset(string.ascii_letters + string.digits + ".-_")
SANITIZED_MAX = 100


def sanitize_file_name(name: str) -> str:
    """An uploaded name reduced to ``[A-Za-z0-9._-]{1,100}`` for a ``REJ_..._<ts>.txt`` name."""
    safe = "".join(c if c in _SAFE else "_" for c in name[:SANITIZED_MAX])
    return safe or "_"


def _field(raw: dict[str, Any]) -> Field:
    _only(raw, _FIELD_KEYS, f"field {raw.get('name')!r}")
    kind = raw["type"]
    if kind not in FIELD_TYPES:
        raise ValueError(f"field {raw['name']!r}: type {kind!r} is not one of {sorted(FIELD_TYPES)}")
    values = tuple(str(v) for v in raw.get("values", ()))
    if (kind == "enum") != bool(values):
        raise ValueError(f"field {raw['name']!r}: `values` belongs to enums, and every enum has some")
    if kind in ("str", "int", "enum") and "max_length" not in raw and not values:
        raise ValueError(f"field {raw['name']!r}: max_length is required for {kind}")
    max_length = int(raw.get("max_length") or max((len(v) for v in values), default=0))
    if kind in ("date", "datetime", "amount"):
        max_length = wire_width(Field(raw["name"], kind, True, 0))
    return Field(
        name=str(raw["name"]), type=kind, required=bool(raw["required"]), max_length=max_length,
        label=str(raw.get("label", "")), pattern=raw.get("pattern"), values=values,
        positive=bool(raw.get("positive", False)), min=raw.get("min"),
        account=bool(raw.get("account", False)), default=raw.get("default"),
    )


def _file_name_rule(raw: dict[str, Any]) -> FileNameRule:
    _only(raw, {"pattern", "format", "types"}, "file name rule")
    pattern = re.compile(raw["pattern"])
    types = dict(raw.get("types") or {})
    if not set(types.values()) <= _PART_TYPES:
        raise ValueError(f"file name part types must be in {sorted(_PART_TYPES)}")
    placeholders = frozenset(f for _, f, _, _ in string.Formatter().parse(raw["format"]) if f)
    if placeholders != set(pattern.groupindex):
        raise ValueError(f"{raw['format']!r} and {raw['pattern']!r} name different parts")
    return FileNameRule(pattern, raw["format"], types, placeholders)


def _only(raw: Any, allowed: set[str], where: str) -> None:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a mapping expected")
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
