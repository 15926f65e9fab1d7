"""Many reviews per file: one per line, JSON Lines, or a CSV column.

Each reader streams its file and yields one ``Record`` per input record, in order: a text
to classify, or the reason the record cannot be (a malformed JSON line or CSV record, a
missing field, an empty review, binary data, a record longer than ``MAX_RECORD``). Memory
stays bounded by ``MAX_RECORD`` and time linear whatever the file holds: a line that never
ends is skipped, not stored, and a CSV quote that is never closed (or runs on past
``MAX_RECORD_LINES`` lines) is one malformed record, after which the lines it swallowed are
read again as records of their own. A whole-file problem (a CSV without the named column,
UTF-16 or UTF-32 text, an over-long line of binary data such as /dev/zero) is an ``InputError``.

Sources are ``file:line`` with the file name as ``runtime.cli.reading.shown`` writes it (one
field on one line, always encodable).

Lines and JSON Lines are read as blocks of whole lines (``read_items``) and parsed into
records where they are scored (``records_of``): with worker processes the reading process
only cuts the file, and each worker parses, scores and renders its own blocks.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
from collections import deque
from collections.abc import Iterator
from itertools import islice
from dataclasses import dataclass, field
from typing import BinaryIO

from runtime.cli.reading import BLOCK, InputError, shown, wide_bom
from runtime.encoding.text import EMPTY_REVIEW, is_blank

MAX_RECORD = 4 << 20  # bytes (characters for CSV) of one record
MAX_RECORD_LINES = 1000  # lines one CSV record may span (a quoted field holding newlines)
MAX_BLOCK_LINES = 16_384  # lines a block holds at most: each costs a few hundred bytes downstream
BINARY = "binary file (contains NUL bytes), not text"
LINES, JSONL, CSV = "lines", "jsonl", "csv"
FORMATS = (LINES, JSONL, CSV)


@dataclass
class Record:
    source: str  # "file:line"
    text: str | None  # None when the record cannot be classified
    error: str | None = None
    fields: dict = field(default_factory=dict)  # other JSON fields, carried to the output
    replaced: bool = False  # invalid bytes were replaced


@dataclass(frozen=True)
class Lines:
    """Whole lines of a ``--lines`` or ``--jsonl`` file as read: the reading process only cuts
    the file into blocks, and the records are parsed where they are scored (see ``records_of``)."""

    name: str
    first: int  # the number of the block's first line
    data: bytes  # the lines, each ending with a newline except perhaps the file's last one
    too_long: tuple[int, ...] = ()  # positions in the block of lines over MAX_RECORD (left empty)


def _read(f: BinaryIO) -> bytes:
    try:
        return f.read(BLOCK)
    except OSError as e:
        raise InputError(e.strerror or str(e)) from None


def _blocks(f: BinaryIO, first: bytes | None) -> Iterator[bytes]:
    """``first`` (the file's bytes already read; empty at its end) then the rest of ``f``."""
    if first is not None:
        if not first:
            return
        yield first
    while block := _read(f):
        yield block


def _nth_newline(block: bytes, start: int, n: int) -> int:
    """The position of the ``n``-th newline of ``block`` from ``start`` (``start - 1`` for n = 0;
    the caller knows there are at least ``n``)."""
    pos = start - 1
    for _ in range(n):
        pos = block.find(b"\n", pos + 1)
    return pos


def line_blocks(f: BinaryIO, name: str, size: int = BLOCK, first: bytes | None = None) -> Iterator[Lines]:
    """The lines of ``f`` (after ``first``, its bytes already read) in blocks of about
    ``size`` bytes and at most ``MAX_BLOCK_LINES`` lines. A line over ``MAX_RECORD`` is skipped as it is read, not stored, and left empty in
    its block, so memory stays bounded; if it holds a NUL byte the file is binary (/dev/zero
    is one endless such line) and ``InputError`` stops it."""
    number, parts, held, count, too_long = 1, [], 0, 0, []
    carry, carried, skipping = [], 0, False  # the line being read, not yet ended
    for block in _blocks(f, first):
        start = 0
        if carry or skipping:
            end = block.find(b"\n")
            if end < 0:
                if not skipping and carried + len(block) <= MAX_RECORD:
                    carry.append(block)
                    carried += len(block)
                else:
                    if any(b"\0" in part for part in carry) or b"\0" in block:
                        raise InputError(BINARY)
                    carry, carried, skipping = [], 0, True
                continue
            if skipping or carried + end > MAX_RECORD:
                if block.find(b"\0", 0, end) >= 0 or any(b"\0" in part for part in carry):
                    raise InputError(BINARY)
                too_long.append(count)
                parts.append(b"\n")
            else:
                parts += carry
                parts.append(block[: end + 1])
            held += carried + end + 1
            count += 1
            carry, carried, skipping = [], 0, False
            start = end + 1
            if count >= MAX_BLOCK_LINES:
                yield Lines(name, number, b"".join(parts), tuple(too_long))
                number, parts, held, count, too_long = number + count, [], 0, 0, []
        last = block.rfind(b"\n", start)
        while last >= start:  # the read's whole lines, at most MAX_BLOCK_LINES a block
            room = max(MAX_BLOCK_LINES - count, 0)
            lines = block.count(b"\n", start, last + 1)
            cut = last if lines <= room else _nth_newline(block, start, room)
            parts.append(block[start : cut + 1])
            held += cut + 1 - start
            count += min(lines, room)
            start = cut + 1
            if count >= MAX_BLOCK_LINES:
                yield Lines(name, number, b"".join(parts), tuple(too_long))
                number, parts, held, count, too_long = number + count, [], 0, 0, []
        if start < len(block):
            carry, carried = [block[start:]], len(block) - start  # shorter than BLOCK <= MAX_RECORD
        if held and held + carried >= size:  # a read's worth with the line begun: blocks of even size
            yield Lines(name, number, b"".join(parts), tuple(too_long))
            number, parts, held, count, too_long = number + count, [], 0, 0, []
    if skipping:
        too_long.append(count)
        parts.append(b"\n")
        count += 1
    elif carried:
        parts += carry
        count += 1
    if count:
        yield Lines(name, number, b"".join(parts), tuple(too_long))


def _lines(block: Lines) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the newline) for each line of a block; None for one over ``MAX_RECORD``."""
    lines = block.data.split(b"\n")
    if block.data.endswith(b"\n"):
        lines.pop()  # after the last newline: no line
    too_long = set(block.too_long)
    for i, data in enumerate(lines):
        yield block.first + i, (None if i in too_long else data)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _finite(number: str) -> float:
    value = float(number)
    if value in (math.inf, -math.inf):
        raise ValueError(f"{number[:20]} is out of a double's range")
    return value


# Strict JSON that the output can carry as strict JSON: NaN, Infinity and numbers beyond a
# double's range (1e400, which would come back as Infinity) are refused.
_JSON = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


def _text(data: bytes, encoding: str) -> tuple[str | None, str | None, bool]:
    """(text, error, replaced) of one record's bytes."""
    if b"\0" in data:
        return None, "binary data (contains NUL bytes), not text", False
    try:
        return data.decode(encoding), None, False
    except UnicodeDecodeError:
        return data.decode(encoding, errors="replace"), None, True


def _checked(record: Record) -> Record:
    if record.error is None and is_blank(record.text):
        record.text, record.error = None, EMPTY_REVIEW
    return record


def _line_record(source: str, data: bytes | None, encoding: str) -> Record:
    if data is None:
        return Record(source, None, f"record longer than {MAX_RECORD} bytes")
    text, error, replaced = _text(data.removesuffix(b"\r"), encoding)
    return _checked(Record(source, text, error, replaced=replaced))


def _jsonl_record(source: str, data: bytes | None, encoding: str, key: str) -> Record:
    if data is None:
        return Record(source, None, f"record longer than {MAX_RECORD} bytes")
    if not data.strip():
        return Record(source, None, "empty line, not a JSON object")
    line, error, replaced = _text(data, encoding)
    if error:
        return Record(source, None, error)
    try:
        obj = _JSON.decode(line)
    except ValueError as e:
        if "integer string conversion" in str(e):  # Python's own limit on digits, named in its terms
            return Record(source, None, "malformed JSON (an integer of more than 4,300 digits)")
        return Record(source, None, f"malformed JSON ({e})")
    except RecursionError:
        return Record(source, None, "malformed JSON (nested too deeply)")
    if not isinstance(obj, dict):
        return Record(source, None, f"a JSON {type(obj).__name__}, not an object")
    if key not in obj:
        return Record(source, None, f"field {key!r} is missing", fields=obj)
    value = obj.pop(key)
    if not isinstance(value, str):
        return Record(source, None, f"field {key!r} is not a string ({type(value).__name__})", fields=obj)
    if "\0" in value:
        return Record(source, None, "binary data (contains NUL characters), not text", fields=obj)
    return _checked(Record(source, value, fields=obj, replaced=replaced))


Item = Lines | list[Record]  # what is scored at once: a block of lines, or records the reader parsed (CSV)


def records_of(item: Item, fmt: str, encoding: str, key: str = "text") -> list[Record]:
    """The records of a block of ``--lines`` (one review per line) or ``--jsonl`` lines (one
    JSON object per line, the review in its string field ``key``, the other fields carried);
    CSV records come parsed."""
    if not isinstance(item, Lines):
        return item
    name = shown(item.name)
    if fmt == JSONL:
        return [_jsonl_record(f"{name}:{number}", data, encoding, key) for number, data in _lines(item)]
    return [_line_record(f"{name}:{number}", data, encoding) for number, data in _lines(item)]


def _numbered_lines(f: BinaryIO, encoding: str, first: bytes | None) -> Iterator[tuple[int, str | None]]:
    """(line number, the decoded line with its newline) for each line; None for one over ``MAX_RECORD``."""
    for block in line_blocks(f, "", first=first):
        for number, data in _lines(block):
            yield number, (None if data is None else data.decode(encoding, errors="replace") + "\n")


# Lines that make a strict csv.reader fail at once, to cut short a record that runs on too
# long: inside a quoted field (where the reader reads on), a quote followed by a letter;
# at the start of a record, an empty quoted field followed by one.
_CUT_INSIDE, _CUT_AT_START = '"x\n', '""x\n'


class _Feed:
    """The lines a ``csv.reader`` reads, holding those of the record being read, so that the
    lines a malformed record swallowed can be read again (``again``). A record that runs on
    past ``MAX_RECORD`` characters or ``MAX_RECORD_LINES`` lines is cut short by a line the
    reader refuses, and ``over`` says why."""

    def __init__(self, lines: Iterator[tuple[int, str | None]]):
        self.lines = lines
        self.again: deque[tuple[int, str | None]] = deque()
        self.held: list[tuple[int, str | None]] = []
        self.size = 0
        self.over: str | None = None

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        number, line = self.again.popleft() if self.again else next(self.lines)
        held = self.held
        held.append((number, line))
        if line is None:
            self.over = f"record longer than {MAX_RECORD} characters"
        elif len(held) == 1:
            self.size = len(line)
            return line
        elif (size := self.size + len(line)) > MAX_RECORD:
            self.over = f"record longer than {MAX_RECORD} characters"
        elif len(held) > MAX_RECORD_LINES:
            self.over = f"malformed CSV record (a quoted field runs on over {MAX_RECORD_LINES} lines: a stray quote?)"
        else:
            self.size = size
            return line
        return _CUT_INSIDE if len(held) > 1 else _CUT_AT_START

    def take(self) -> list[tuple[int, str | None]]:
        """The lines of the record just read (or refused); the next record starts afresh."""
        held, self.held, self.over = self.held, [], None
        return held


def _csv_error(e: csv.Error) -> str:
    message = str(e)
    if message == "unexpected end of data":
        message = "a quoted field is not closed: a stray quote?"
    elif message.startswith("new-line character seen in unquoted field"):
        message = "a carriage return inside an unquoted field"
    return f"malformed CSV record ({message})"


def _csv_record(source: str, row: list[str], index: int, column: str) -> Record:
    if index >= len(row):
        return Record(source, None, f"the record has no {column!r} column ({len(row)} fields)")
    text = row[index]
    if "\0" in text:
        return Record(source, None, "binary data (contains NUL characters), not text")
    return _checked(Record(source, text, replaced="\ufffd" in text))


def _alone(source: str, line: str | None, index: int, column: str) -> Record | None:
    """The record of one line read on its own (after a malformed record that swallowed it); None for a blank line."""
    if line is None:
        return Record(source, None, f"record longer than {MAX_RECORD} characters")
    try:
        row = next(csv.reader((line,), strict=True), [])
    except csv.Error as e:
        return Record(source, None, _csv_error(e))
    return _csv_record(source, row, index, column) if row else None


def read_csv(f: BinaryIO, name: str, encoding: str, column: str, first: bytes | None = None) -> Iterator[Record]:
    """A CSV file with a header row; the review is column ``column`` (quoted newlines work).

    Every record gives one ``Record``. A malformed record (a quote not closed by the end of
    the file, a closing quote followed by more text, a quoted field running on past
    ``MAX_RECORD`` characters or ``MAX_RECORD_LINES`` lines, or a record spanning lines whose
    number of fields is not the header's) is one error record at its first line; the lines it
    swallowed are then read again, each as a record of its own (the last one may begin a
    record that spans lines again). Each line is so read at most three times: linear time.
    """
    csv.field_size_limit(MAX_RECORD)
    feed = _Feed(_numbered_lines(f, encoding, first))
    reader = csv.reader(feed, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise InputError(f"unreadable CSV header: {feed.over or _csv_error(e)}") from None
    feed.take()
    if header is None:
        raise InputError("empty CSV file (no header row)")
    if any("\0" in h for h in header):
        raise InputError("binary data or UTF-16/UTF-32 text (NUL bytes in the header row), not CSV text")
    if column not in header:
        shown_header = ", ".join(shown(h) for h in header[:10]) + (", ..." if len(header) > 10 else "")
        raise InputError(f"no column {column!r} in the CSV header (columns: {shown_header})")
    if header.count(column) > 1:
        raise InputError(f"the CSV header names the column {column!r} {header.count(column)} times; which one "
                         f"holds the review cannot be told")
    index, width = header.index(column), len(header)
    name = shown(name)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            over = feed.over
            held = feed.take()
            error = over or _csv_error(e)
        else:
            held = feed.take()
            if len(held) == 1 or len(row) == width:
                if row:  # a blank line is no record in CSV
                    yield _csv_record(f"{name}:{held[0][0]}", row, index, column)
                continue
            error = (f"malformed CSV record (a quoted field spans lines {held[0][0]}-{held[-1][0]} and the record "
                     f"has {len(row)} fields, not {width}: a stray quote?)")
        yield Record(f"{name}:{held[0][0]}", None, error)
        for number, line in held[1:-1]:
            if (record := _alone(f"{name}:{number}", line, index, column)) is not None:
                yield record
        if len(held) > 1:
            feed.again.append(held[-1])


CSV_ITEM = 1024  # CSV records sent to be scored at once


def read_items(f: BinaryIO, name: str, fmt: str, encoding: str, key: str = "text") -> Iterator[Item]:
    """An open file in format ``fmt`` as items to score: blocks of whole lines, which are parsed
    into records where they are scored, or lists of CSV records (a quoted field may hold a
    newline, so CSV is parsed as it is read). ``records_of`` gives the records of an item."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown record format {fmt!r}; choose from {', '.join(FORMATS)}")
    first = _read(f)
    if wide := wide_bom(first):
        raise InputError(f"looks like {wide} text (byte-order mark): --lines, --jsonl and --csv need an encoding "
                         f"in which a newline is one byte; convert it (iconv -f {wide} -t UTF-8)")
    if first.startswith(codecs.BOM_UTF8) and codecs.lookup(encoding).name == "utf-8":
        first = first[len(codecs.BOM_UTF8):] or None  # a UTF-8 byte-order mark is no part of the first record
    if fmt == CSV:
        records = read_csv(f, name, encoding, key, first)
        while batch := list(islice(records, CSV_ITEM)):
            yield batch
    else:
        yield from line_blocks(f, name, first=first)
