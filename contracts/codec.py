"""The batch-file codec: one implementation of ``contracts/layouts/*.yaml`` for both sides.

The simulator reads requests and writes return, rejection and statement files with it; the
platform client does the reverse. It imports nothing of either side and no network code.

    layout = load_layout("disbursement_request")
    with open(path, "rb") as fh:
        reader = FileReader(layout, fh)        # reads and checks the header (line 1)
        for line_no, record in reader:         # block by block: constant memory
            ...
        reader.trailer                         # the trailer's values, or None

    data = encode_file(load_layout("return"), header, details)   # trailer filled in

Values: amounts are int fen, dates ``datetime.date``, datetimes naive
``datetime.datetime`` in China Standard Time, ints int, the rest str. Record dicts leave
the tag out (it is implied by the record kind). A file that breaks its layout raises
:class:`FileFormatError` with a 4xxx code and the 1-based line: 4001 not GBK, 4002
structure (tag, field count, line ending, missing header or trailer, trailer count),
4007 amount, 4010 empty, 4012 account number, 4013 any other field.

Checks across records (header count/total against the details, duplicate serials, seq
order) are the receiver's business rules, not the codec's; :func:`summarize` helps.

Lines are decoded to text before they are split: 0x7C (``|``) is a valid second byte of
many GBK characters (弢 is ``0x8F 0x7C``), so splitting the raw bytes would cut names.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from contracts.fields import FileFormatError
from contracts.layout import (
    LAYOUT_NAMES,
    REQUEST_LAYOUTS,
    Layout,
    identify,
    kind_for_file_name,
    load_layout,
    sanitize_file_name,
)

__all__ = [
    "LAYOUT_NAMES",
    "REQUEST_LAYOUTS",
    "ColumnBlock",
    "DecodedFile",
    "DetailBlock",
    "FileFormatError",
    "FileReader",
    "FileWriter",
    "Layout",
    "decode_file",
    "encode_file",
    "encode_record",
    "identify",
    "kind_for_file_name",
    "load_layout",
    "rejection_file_name",
    "return_file_name",
    "sanitize_file_name",
    "summarize",
]

Values = dict[str, Any]


class ReadableBinary(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class WritableBinary(Protocol):
    def write(self, data: bytes, /) -> int: ...


def encode_record(layout: Layout, kind: str, values: Mapping[str, Any]) -> bytes:
    """One line (with its line ending) of record ``kind`` ("header", "detail", "trailer").

    Every value is validated as the reader would; a missing optional value is written
    empty, a missing value with a layout ``default`` as that default. Raises FileFormatError.
    """
    return layout.record(kind).encode(values) + layout.eol


class FileWriter:
    """Writes a file line by line in layout order: header, details, then the trailer.

    ``lines`` counts the lines written; :meth:`write_trailer` fills in ``line_count`` (and
    the END marker) itself, so a streamed file needs no second pass.
    """

    def __init__(self, layout: Layout, fileobj: WritableBinary) -> None:
        self.layout = layout
        self._write = fileobj.write
        self.lines = 0
        self.details = 0
        self._state = "start"  # start -> header -> trailer

    def write_header(self, values: Mapping[str, Any]) -> None:
        self._expect("start", "the header must be the first line, written once")
        self._line(encode_record(self.layout, "header", values))
        self._state = "header"

    def write_detail(self, values: Mapping[str, Any]) -> None:
        self._expect("header", "details go between the header and the trailer")
        try:
            self._line(encode_record(self.layout, "detail", values))
        except FileFormatError as exc:
            exc.line = self.lines + 1
            raise
        self.details += 1

    def write_trailer(self, values: Mapping[str, Any] | None = None) -> None:
        if self.layout.trailer is None:
            raise FileFormatError("4002", f"{self.layout.name} files have no trailer")
        self._expect("header", "the trailer follows the header and details, once")
        self._line(encode_record(self.layout, "trailer", {"line_count": self.lines + 1, **(values or {})}))
        self._state = "trailer"

    def _expect(self, state: str, rule: str) -> None:
        if self._state != state:
            raise FileFormatError("4002", rule)

    def _line(self, data: bytes) -> None:
        self._write(data)
        self.lines += 1


def encode_file(layout: Layout, header: Mapping[str, Any], details: Iterable[Mapping[str, Any]],
                trailer: Mapping[str, Any] | None = None) -> bytes:
    """A whole file in memory; a layout with a trailer gets one even when ``trailer`` is None."""
    buf = io.BytesIO()
    writer = FileWriter(layout, buf)
    writer.write_header(header)
    for values in details:
        writer.write_detail(values)
    if layout.trailer is not None:
        writer.write_trailer(trailer)
    elif trailer is not None:
        raise FileFormatError("4002", f"{layout.name} files have no trailer")
    return buf.getvalue()


class FileReader:
    """Streams a file: the header on construction, then ``(line_no, values)`` per detail.

    Reads blocks of ``BLOCK_BYTES`` cut at the last line break, decodes each block with one
    strict GBK call (line breaks are single bytes no GBK character contains, so a block
    boundary never splits a character) and parses its lines; memory does not grow with the
    file. Iterate once; afterwards ``trailer`` holds the trailer (None if the layout has
    none) and ``lines`` the number of lines read.
    """

    BLOCK_BYTES = 256 * 1024

    def __init__(self, layout: Layout, fileobj: ReadableBinary) -> None:
        self.layout = layout
        self.trailer: Values | None = None
        self.lines = 0
        self._iterated = False
        self._texts = _decoded_texts(fileobj, layout, self.BLOCK_BYTES)
        first = next(self._texts, None)
        if first is None:
            raise FileFormatError("4010", "the file is empty", None)
        cut = first.index("\n")
        line = first[:cut]
        self._rest = first[cut + 1:]  # the first block's lines after the header
        tag = line.split(layout.separator, 1)[0]
        if tag != layout.header.tag:
            raise FileFormatError("4002", f"line 1 must be the header ({layout.header.tag}), "
                                          f"found tag {tag[:8]!r}", 1)
        self.header: Values = layout.header.decode(line, 1)
        self.lines = 1

    def __iter__(self) -> Iterator[tuple[int, Values]]:
        if self._iterated:
            raise RuntimeError("a FileReader is iterated once")
        self._iterated = True
        layout, detail = self.layout, self.layout.detail
        # Locals for the hot loop: it runs once per line of million-line files.
        match, convert = detail.match, detail.convert
        trailer = layout.trailer
        trailer_start = trailer.tag + layout.separator if trailer is not None else None
        line_no = 1
        block: list[str] | None = _lines(self._rest)
        self._rest = ""  # do not hold the first block for the whole iteration
        while block is not None:
            first_of_block = line_no + 1
            for line in block:
                line_no += 1
                m = match(line)
                if m is None:
                    if trailer_start is not None and line.startswith(trailer_start):
                        self._finish(line, line_no, more=len(block) > line_no - first_of_block + 1)
                        return
                    err = detail.diagnose(line)
                    err.line = line_no
                    raise err
                try:
                    values = convert(m.groups())
                except FileFormatError as exc:
                    exc.line = line_no
                    raise
                self.lines = line_no
                yield line_no, values
            block = self._next_lines()
        if trailer is not None and trailer.required:
            raise FileFormatError("4002", f"the file ends without its trailer ({trailer.tag}|END|...): "
                                          "truncated?", line_no + 1)

    def blocks(self) -> Iterator[DetailBlock]:
        """The details block by block: ``DetailBlock(first line no, lines, values)``.

        The bulk form of iterating the reader (use one or the other, once): a block holds
        the detail lines of one read (a few thousand), each line as decoded (its ``\\r``
        kept, when the layout ends lines with CRLF) beside its values. A line that breaks
        the layout ends the block before it: the block is handed out first, then the error
        is raised, so a receiver checking records in order reports the first fault by line.

            for block in reader.blocks():
                for line_no, values in zip(block.line_numbers(), block.values): ...
        """
        if self._iterated:
            raise RuntimeError("a FileReader is iterated once")
        self._iterated = True
        line_no = 1
        block: list[str] | None = _lines(self._rest)
        self._rest = ""
        while block is not None:
            first = line_no + 1
            values, error = self._parse(block, first)
            n = len(values)
            line_no = first + n - 1
            if n:
                self.lines = line_no
                yield DetailBlock(first, block[:n] if n < len(block) else block, values)
            if error is not None:
                raise error
            if n < len(block):  # the trailer
                self._finish(block[n], line_no + 1, more=n + 1 < len(block))
                return
            block = self._next_lines()
        self._no_trailer(line_no)

    def columns(self, names: tuple[str, ...]) -> Iterator[ColumnBlock]:
        """The details block by block as text and as columns of the ``names`` fields.

        The bulk form for big files (use it, :meth:`blocks` or the iteration, once): a
        block's ``text`` is its detail lines as decoded, joined by ``"\\n"`` (each keeps its
        ``\\r`` when the layout ends lines with CRLF; no line break after the last), and
        ``columns`` holds, per name, the values of the block's records in order (the values
        iteration gives). A block whose every line is a valid detail is checked and cut in a
        few calls (:meth:`RecordLayout.columns`); any other block is read line by line, so
        errors and the trailer come exactly as from :meth:`blocks`: the lines before a bad
        one are handed out first, then the error is raised.

            for block in reader.columns(("seq", "amount")):
                seqs, amounts = block.columns   # block.first_line is the first one's line number
        """
        if self._iterated:
            raise RuntimeError("a FileReader is iterated once")
        self._iterated = True
        scan = self.layout.detail.columns(names)
        line_no = 1
        text: str | None = self._rest
        self._rest = ""
        while text is not None:
            if text:
                first = line_no + 1
                found = scan(text)
                if found is not None:
                    n = text.count("\n")
                    line_no += n
                    self.lines = line_no
                    yield ColumnBlock(first, text[:-1], n, found)
                else:
                    block = _lines(text)
                    values, error = self._parse(block, first)
                    n = len(values)
                    line_no = first + n - 1
                    if n:
                        self.lines = line_no
                        kept = block[:n] if n < len(block) else block
                        yield ColumnBlock(first, "\n".join(kept), n,
                                          [[v[name] for v in values] for name in names])
                    if error is not None:
                        raise error
                    if n < len(block):  # the trailer
                        self._finish(block[n], line_no + 1, more=n + 1 < len(block))
                        return
            text = next(self._texts, None)
        self._no_trailer(line_no)

    def _parse(self, block: list[str], first: int) -> tuple[list[Values], FileFormatError | None]:
        """The values of the block's detail lines up to the first line that is not one.

        Returns them with the error of that line, or with None when the block ends or the
        line there is the trailer (the caller tells which by the count).
        """
        detail = self.layout.detail
        match, convert = detail.match, detail.convert
        trailer = self.layout.trailer
        trailer_start = trailer.tag + self.layout.separator if trailer is not None else None
        values: list[Values] = []
        add = values.append
        line_no = first
        try:
            for line in block:
                m = match(line)
                if m is None:
                    if trailer_start is not None and line.startswith(trailer_start):
                        return values, None
                    error = detail.diagnose(line)
                    error.line = line_no
                    return values, error
                add(convert(m.groups()))
                line_no += 1
        except FileFormatError as exc:
            exc.line = line_no
            return values, exc
        return values, None

    def _next_lines(self) -> list[str] | None:
        text = next(self._texts, None)
        return None if text is None else _lines(text)

    def _no_trailer(self, line_no: int) -> None:
        """At the end of the file: a layout whose trailer is required must have had it."""
        trailer = self.layout.trailer
        if trailer is not None and trailer.required:
            raise FileFormatError("4002", f"the file ends without its trailer ({trailer.tag}|END|...): "
                                          "truncated?", line_no + 1)

    def _finish(self, line: str, line_no: int, *, more: bool) -> None:
        """Parse the trailer, check its line count, and that nothing follows it."""
        assert self.layout.trailer is not None
        self.lines = line_no
        self.trailer = self.layout.trailer.decode(line, line_no)
        if self.trailer["line_count"] != line_no:
            raise FileFormatError("4002", f"the trailer counts {self.trailer['line_count']} lines, "
                                          f"the file has {line_no}: truncated?", line_no)
        if more or next(self._texts, None) is not None:
            raise FileFormatError("4002", "a line follows the trailer", line_no + 1)


def _lines(text: str) -> list[str]:
    """The lines of decoded text that ends with a line break, each without its ``"\\n"``."""
    lines = text.split("\n")
    lines.pop()  # "" after the last line break
    return lines


def _decoded_texts(fileobj: ReadableBinary, layout: Layout, size: int) -> Iterator[str]:
    """Decoded text of whole lines, block by block, each block ending with ``"\\n"``.

    Errors surface in line order, as if every line were decoded on its own: the lines
    before a bad byte (or an overlong line) are handed out first, so a broken header is
    reported as such even when line 3 is not GBK.
    """
    read, codec, limit = fileobj.read, layout.codec, layout.max_line_bytes
    rest = b""
    done = 0  # lines handed out so far
    while chunk := read(size):
        data = rest + chunk if rest else chunk
        cut = data.rfind(b"\n") + 1
        block, rest = data[:cut], data[cut:]
        if block:
            try:
                text = block.decode(codec)
            except UnicodeDecodeError as exc:
                error = _encoding_error(block, exc, done, layout)
                good = block[: block.rfind(b"\n", 0, exc.start) + 1]
                if good:
                    yield good.decode(codec)
                raise error from None
            done += text.count("\n")
            yield text
        if len(rest) > limit:
            raise FileFormatError("4002", f"line longer than {limit} bytes", done + 1)
    if rest:
        raise FileFormatError("4002", f"the last line has no {layout.line_ending}: truncated?", done + 1)


class DetailBlock(NamedTuple):
    """Consecutive detail lines of a file: the first one's line number, texts, values."""

    first_line: int
    lines: list[str]
    values: list[Values]

    def line_numbers(self) -> range:
        return range(self.first_line, self.first_line + len(self.values))


class ColumnBlock(NamedTuple):
    """Consecutive detail lines of a file: the first one's line number, their text (lines
    joined by ``"\\n"``), how many, and the values of the fields asked for, column by column."""

    first_line: int
    text: str
    records: int
    columns: list[list[Any]]


class DecodedFile(NamedTuple):
    header: Values
    details: list[Values]
    trailer: Values | None


def decode_file(layout: Layout, data: bytes) -> DecodedFile:
    """A whole file held in memory (small files and tests); big files: use FileReader."""
    reader = FileReader(layout, io.BytesIO(data))
    details = [values for _, values in reader]
    return DecodedFile(reader.header, details, reader.trailer)


def summarize(details: Iterable[Mapping[str, Any]], amount_field: str = "amount") -> tuple[int, int]:
    """``(count, total fen)`` of detail records, to compare with a header."""
    count = total = 0
    for values in details:
        count += 1
        total += values[amount_field]
    return count, total


def return_file_name(request_file_name: str) -> str:
    """``DF_M_20260105_1.txt`` -> ``DF_M_20260105_1_RET.txt``; ValueError for a non-request name."""
    found = identify(request_file_name)
    if found is None:
        raise ValueError(f"{request_file_name!r} is not a request file name")
    return load_layout("return").file_name(**found[1])


def rejection_file_name(request_file_name: str, rejected_at: datetime) -> str:
    """``<stem>_REJ.txt`` for a request name, ``REJ_<sanitized>_<yyyymmddHHMMSS>.txt`` otherwise."""
    rejection = load_layout("rejection")
    found = identify(request_file_name)
    if found is not None:
        return rejection.file_name(**found[1])
    return rejection.file_name(original=sanitize_file_name(request_file_name), rejected_at=rejected_at)


def _encoding_error(block: bytes, exc: UnicodeDecodeError, done: int, layout: Layout) -> FileFormatError:
    line_start = block.rfind(b"\n", 0, exc.start) + 1
    line_no = done + block.count(b"\n", 0, exc.start) + 1
    bad = block[exc.start:exc.end]
    return FileFormatError("4001", f"bytes {bad.hex(' ')} at byte {exc.start - line_start + 1} of the "
                                   f"line are not {layout.encoding}", line_no)
