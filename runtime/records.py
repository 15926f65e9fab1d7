"""Many reviews per file: one per line, JSON Lines, or a CSV column.

Each reader streams its file and yields one ``Record`` per input record, in order: a text
to classify, or the reason the record cannot be (a malformed JSON line, a missing field, an
empty review, binary data, a record longer than ``MAX_RECORD``). Memory stays bounded by
``MAX_RECORD`` whatever the file holds: a line that never ends is skipped, not stored.
A whole-file problem (a CSV without the named column) is an ``InputError``.

Lines and JSON Lines are read as blocks of whole lines (``read_items``) and parsed into
records where they are scored (``records_of``): with worker processes the reading process
only cuts the file, and each worker parses, scores and renders its own blocks.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from itertools import islice
from dataclasses import dataclass, field
from typing import BinaryIO

from runtime.reading import BLOCK, InputError
from runtime.text import EMPTY_REVIEW, is_blank

MAX_RECORD = 4 << 20  # bytes (characters for CSV) of one record
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


def line_blocks(f: BinaryIO, name: str, size: int = BLOCK) -> Iterator[Lines]:
    """The lines of ``f`` in blocks of about ``size`` bytes. A line over ``MAX_RECORD`` is
    skipped as it is read, not stored, and left empty in its block, so memory stays bounded."""
    number, parts, held, count, too_long = 1, [], 0, 0, []
    carry, carried, skipping = [], 0, False  # the line being read, not yet ended
    while block := f.read(BLOCK):
        start = 0
        if carry or skipping:
            end = block.find(b"\n")
            if end < 0:
                if not skipping and carried + len(block) <= MAX_RECORD:
                    carry.append(block)
                    carried += len(block)
                else:
                    carry, carried, skipping = [], 0, True
                continue
            if skipping or carried + end > MAX_RECORD:
                too_long.append(count)
                parts.append(b"\n")
            else:
                parts += carry
                parts.append(block[: end + 1])
            held += carried + end + 1
            count += 1
            carry, carried, skipping = [], 0, False
            start = end + 1
        last = block.rfind(b"\n", start)
        if last >= 0:
            parts.append(block[start : last + 1])
            held += last + 1 - start
            count += block.count(b"\n", start, last + 1)
            start = last + 1
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
        obj = json.loads(line)
    except ValueError as e:
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
    name = item.name
    if fmt == JSONL:
        return [_jsonl_record(f"{name}:{number}", data, encoding, key) for number, data in _lines(item)]
    return [_line_record(f"{name}:{number}", data, encoding) for number, data in _lines(item)]


def _csv_lines(f: BinaryIO, encoding: str) -> Iterator[str]:
    """Decoded lines with their newline, for the csv module; a line over ``MAX_RECORD`` is
    cut just past the field size limit, so that the csv module reports it and goes on with
    the next line (memory stays bounded)."""
    for _, data in (line for block in line_blocks(f, "") for line in _lines(block)):
        if data is None:
            yield "x" * (MAX_RECORD + 1) + "\n"
        else:
            yield data.decode(encoding, errors="replace") + "\n"


def read_csv(f: BinaryIO, name: str, encoding: str, column: str) -> Iterator[Record]:
    """A CSV file with a header row; the review is column ``column`` (quoted newlines work)."""
    csv.field_size_limit(MAX_RECORD)
    reader = csv.reader(_csv_lines(f, encoding))
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise InputError(f"unreadable CSV header ({e})") from None
    if header is None:
        raise InputError("empty CSV file (no header row)")
    if column not in header:
        shown = ", ".join(header[:10]) + (", ..." if len(header) > 10 else "")
        raise InputError(f"no column {column!r} in the CSV header (columns: {shown})")
    index = header.index(column)
    while True:
        source = f"{name}:{reader.line_num + 1}"
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield Record(source, None, f"malformed CSV record ({e})")
            continue
        if not row:
            continue  # a blank line is no record in CSV
        if index >= len(row):
            yield Record(source, None, f"the record has no {column!r} column ({len(row)} fields)")
            continue
        text = row[index]
        if "\0" in text:
            yield Record(source, None, "binary data (contains NUL characters), not text")
            continue
        yield _checked(Record(source, text, replaced="\ufffd" in text))


CSV_ITEM = 1024  # CSV records sent to be scored at once


def read_items(f: BinaryIO, name: str, fmt: str, encoding: str, key: str = "text") -> Iterator[Item]:
    """An open file in format ``fmt`` as items to score: blocks of whole lines, which are parsed
    into records where they are scored, or lists of CSV records (a quoted field may hold a
    newline, so CSV is parsed as it is read). ``records_of`` gives the records of an item."""
    if fmt in (LINES, JSONL):
        yield from line_blocks(f, name)
    elif fmt == CSV:
        records = read_csv(f, name, encoding, key)
        while batch := list(islice(records, CSV_ITEM)):
            yield batch
    else:
        raise ValueError(f"unknown record format {fmt!r}; choose from {', '.join(FORMATS)}")
