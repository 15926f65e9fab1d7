"""Many reviews per file: one per line, JSON Lines, or a CSV column.

Each reader streams its file and yields one ``Record`` per input record, in order: a text
to classify, or the reason the record cannot be (a malformed JSON line, a missing field, an
empty review, binary data, a record longer than ``MAX_RECORD``). Memory stays bounded by
``MAX_RECORD`` whatever the file holds: a line that never ends is skipped, not stored.
A whole-file problem (a CSV without the named column) is an ``InputError``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from runtime.reading import BLOCK, InputError

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


def _lines(f: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the newline) for each line; None for a line over ``MAX_RECORD``."""
    number, part, size, too_long = 1, [], 0, False
    while block := f.read(BLOCK):
        start = 0
        while (end := block.find(b"\n", start)) >= 0:
            if not too_long and size + end - start <= MAX_RECORD:
                part.append(block[start:end])
                yield number, b"".join(part)
            else:
                yield number, None
            number, part, size, too_long = number + 1, [], 0, False
            start = end + 1
        rest = len(block) - start
        if not too_long and size + rest <= MAX_RECORD:
            part.append(block[start:])
            size += rest
        else:
            part, too_long = [], True
    if too_long:
        yield number, None
    elif size:
        yield number, b"".join(part)


def _text(data: bytes, encoding: str) -> tuple[str | None, str | None, bool]:
    """(text, error, replaced) of one record's bytes."""
    if b"\0" in data:
        return None, "binary data (contains NUL bytes), not text", False
    try:
        return data.decode(encoding), None, False
    except UnicodeDecodeError:
        return data.decode(encoding, errors="replace"), None, True


def _checked(record: Record) -> Record:
    if record.error is None and not record.text.strip():
        record.text, record.error = None, "empty or whitespace-only review"
    return record


def read_lines(f: BinaryIO, name: str, encoding: str) -> Iterator[Record]:
    """One review per line (a final line without a newline counts; ``\\r\\n`` is fine)."""
    for number, data in _lines(f):
        source = f"{name}:{number}"
        if data is None:
            yield Record(source, None, f"record longer than {MAX_RECORD} bytes")
            continue
        text, error, replaced = _text(data.removesuffix(b"\r"), encoding)
        yield _checked(Record(source, text, error, replaced=replaced))


def read_jsonl(f: BinaryIO, name: str, encoding: str, key: str) -> Iterator[Record]:
    """One JSON object per line; the review is its string field ``key``, the other fields are carried."""
    for number, data in _lines(f):
        source = f"{name}:{number}"
        if data is None:
            yield Record(source, None, f"record longer than {MAX_RECORD} bytes")
            continue
        if not data.strip():
            yield Record(source, None, "empty line, not a JSON object")
            continue
        line, error, replaced = _text(data, encoding)
        if error:
            yield Record(source, None, error)
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            yield Record(source, None, f"malformed JSON ({e})")
            continue
        except RecursionError:
            yield Record(source, None, "malformed JSON (nested too deeply)")
            continue
        if not isinstance(obj, dict):
            yield Record(source, None, f"a JSON {type(obj).__name__}, not an object")
            continue
        if key not in obj:
            yield Record(source, None, f"field {key!r} is missing", fields=obj)
            continue
        value = obj.pop(key)
        if not isinstance(value, str):
            yield Record(source, None, f"field {key!r} is not a string ({type(value).__name__})", fields=obj)
            continue
        if "\0" in value:
            yield Record(source, None, "binary data (contains NUL characters), not text", fields=obj)
            continue
        yield _checked(Record(source, value, fields=obj, replaced=replaced))


def _csv_lines(f: BinaryIO, encoding: str) -> Iterator[str]:
    """Decoded lines with their newline, for the csv module; a line over ``MAX_RECORD`` is
    cut just past the field size limit, so that the csv module reports it and goes on with
    the next line (memory stays bounded)."""
    for _, data in _lines(f):
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


def read_records(f: BinaryIO, name: str, fmt: str, encoding: str, key: str = "text") -> Iterator[Record]:
    """The records of an open file in format ``fmt`` (``key``: the JSON field or CSV column)."""
    if fmt == LINES:
        return read_lines(f, name, encoding)
    if fmt == JSONL:
        return read_jsonl(f, name, encoding, key)
    if fmt == CSV:
        return read_csv(f, name, encoding, key)
    raise ValueError(f"unknown record format {fmt!r}; choose from {', '.join(FORMATS)}")
