"""Reading a user's own labelled text: CSV/TSV, JSON Lines, fastText, or one folder per label.

=============  ===================================================================================
format         layout
=============  ===================================================================================
``csv``        a header row, then one example per row; ``text_column`` and ``label_column`` name
``tsv``        the columns (default ``text`` and ``label``); ``.csv`` / ``.tsv`` files (TSV
               fields are not quoted: a tab or newline cannot be inside one)
``jsonl``      one JSON object per line with ``text_field`` and ``label_field`` (default ``text``
               and ``label``); ``.jsonl`` / ``.ndjson`` files
``fasttext``   ``__label__NAME text`` per line (fastText's ``train_supervised`` format); ``.txt``
``folder``     a directory with one sub-folder per label, one text file per example (the aclImdb
               layout: ``pos/1.txt``, ``neg/2.txt``...)
=============  ===================================================================================

Files are read as a stream of lines with a cap on each (``MAX_RECORD_BYTES``), in memory
bounded by ``max_bytes`` whatever the file's size: when the examples' text (plus
``EXAMPLE_OVERHEAD`` bytes of bookkeeping each) passes it, a seeded, uniform random sample of
the examples that fits is kept (each example gets a random key; the smallest keys stay), with
the first ``KEEP_PER_LABEL`` examples of every label kept ahead of the rest so that every label
can still be stratified. ``Records.sample`` then says how many were read and kept. Text must be
strict UTF-8 (a UTF-8 byte-order mark is allowed): a bad byte is refused naming the file and
line, never replaced silently. Labels are any non-empty strings; rows whose label is missing or
empty, and rows whose text is empty, are skipped and counted (``Records.skipped``; the first
such row is named). Several labels on one example (multi-label) are refused. Every refusal is a
``train.errors.DataError`` (or ``UsageError`` for options that do not fit the format) whose
message is one line.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runtime.bundle.manifest import label_problem
from train.errors import DataError, UsageError

FORMATS = ("csv", "tsv", "jsonl", "fasttext", "folder")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "fasttext"}
MAX_RECORD_BYTES = 4 << 20  # one line, one CSV field or one example file
MAX_BYTES = 64 << 20  # text a training run holds (``--max-text-mb``): training takes up to about 50x this
EXAMPLE_OVERHEAD = 200  # bytes counted per kept example beside its text (its strings and index entries)
KEEP_PER_LABEL = 2  # examples of each label kept ahead of the sample: a stratified split needs 2
MAX_LABELS = 1_000  # the n-gram table has one column per label
FASTTEXT_PREFIX = "__label__"
_BOM = "\ufeff"


@dataclass
class Records:
    """The examples of one file, in file order, with their label names as read.

    ``add`` every example, then ``finish``: the lists hold the examples kept (all of them when
    their text fits in ``max_bytes``, else the seeded sample described in the module).
    """

    source: str
    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # "line N" (where the example starts) or a file's path
    sha256: str = ""  # of the file's bytes (of every example file, in order, for a folder)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    first_skipped: dict[str, str] = field(default_factory=dict)  # reason -> id of the first
    max_bytes: int = MAX_BYTES
    seed: int = 0
    sample: dict | None = None  # when sampled: examples read and kept, their bytes, the budget and seed
    _seen: dict[str, int] = field(default_factory=dict, repr=False)  # label -> examples read
    _heap: list = field(default_factory=list, repr=False)  # (-key, order, cost, text, label, id)
    _cost: int = 0
    _read: int = 0
    _read_bytes: int = 0
    _rng: random.Random | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.texts)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.first_skipped.setdefault(reason, where)

    def add(self, text: str, label: str, where: str) -> None:
        """Count one example: skipped without a label or text, else kept or sampled."""
        if not label.strip():
            self.skip("no label", where)
            return
        if not text.strip():
            self.skip("no text", where)
            return
        label = label.strip()
        seen = self._seen.get(label)
        if seen is None:  # each distinct label is checked once
            problem = label_problem(label)
            if problem:
                raise DataError(f"{self.source}: {where}: {problem}")
            if len(self._seen) == MAX_LABELS:
                raise DataError(f"{self.source}: {where}: more than {MAX_LABELS:,} distinct labels; is the label "
                                f"column right?")
            seen = 0
        self._seen[label] = seen + 1
        if self._rng is None:
            self._rng = random.Random(self.seed)
        size = len(text.encode("utf-8", "surrogatepass"))
        cost = size + EXAMPLE_OVERHEAD
        # a label's first examples sort ahead of every other (keys in [-2, -1) against [0, 1))
        key = self._rng.random() - (2.0 if seen < KEEP_PER_LABEL else 0.0)
        heapq.heappush(self._heap, (-key, self._read, cost, text, label, where))
        self._read += 1
        self._read_bytes += size
        self._cost += cost
        while self._cost > self.max_bytes and len(self._heap) > 1:
            self._cost -= heapq.heappop(self._heap)[2]  # the largest key leaves

    def finish(self) -> None:
        """Put the kept examples into ``texts``, ``labels`` and ``ids`` in file order."""
        kept = sorted(self._heap, key=lambda item: item[1])
        self._heap = []
        self.texts = [item[3] for item in kept]
        self.labels = [item[4] for item in kept]
        self.ids = [item[5] for item in kept]
        if len(kept) < self._read:
            self.sample = {"examples_read": self._read, "examples_kept": len(kept), "text_bytes_read": self._read_bytes,
                           "bytes_read": self._read_bytes + self._read * EXAMPLE_OVERHEAD, "max_bytes": self.max_bytes, "seed": self.seed}
            lost = len(self._seen) - len(set(self.labels))
            if lost:
                raise DataError(f"{self.source}: --max-text-mb {self.max_bytes / (1 << 20):g} cannot hold "
                                f"{KEEP_PER_LABEL} examples of each of the {len(self._seen):,} labels ({lost:,} would "
                                f"be left out); raise it")

    def warnings(self) -> list[str]:
        """One line per kind of skipped example."""
        return [f"warning: {self.source}: skipped {n:,} example{'s' if n > 1 else ''} with {reason} "
                f"(first: {self.first_skipped[reason]})" for reason, n in self.skipped.items()]

    def note(self) -> str | None:
        """One line saying the examples were sampled, or None."""
        if self.sample is None:
            return None
        s = self.sample
        return (f"note: {self.source}: {s['examples_read']:,} examples ({_mib(s['text_bytes_read'])} of text, "
                f"{_mib(s['bytes_read'])} with {EXAMPLE_OVERHEAD} bytes each for bookkeeping) pass the "
                f"{_mib(s['max_bytes'])} a run holds (--max-text-mb): kept a seeded "
                f"random sample of {s['examples_kept']:,} ({len(set(self.labels))} of {len(self._seen)} labels)")


def allow_long_fields() -> None:
    """Raise the csv module's field cap (process-wide, 128 KiB by default) to ``MAX_RECORD_BYTES``.

    For the commands that read a user's data (train, export, benchmarks), not the library: a
    CSV that one of them read must be readable by the others.
    """
    csv.field_size_limit(MAX_RECORD_BYTES)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.{0 if n >= 10 << 20 else 2}f} MiB"


def detect_format(path: Path, fmt: str | None = None) -> str:
    """``fmt`` if given, else the format of ``path`` from its extension, or ``folder`` for a directory.

    Raises:
        UsageError: an unknown ``fmt``, or an extension that names no format.
    """
    if fmt is not None:
        if fmt not in FORMATS:
            raise UsageError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
        return fmt
    if path.is_dir():
        return "folder"
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise UsageError(f"{path}: cannot tell the format from the extension {path.suffix or '(none)'!r}; "
                         f"pass --format ({', '.join(FORMATS)})")
    return found


def read(path: str | Path, fmt: str | None = None, text_column: str = "text", label_column: str = "label",
         max_bytes: int = MAX_BYTES, seed: int = 0) -> Records:
    """The labelled examples of ``path``.

    Args:
        path: a CSV/TSV/JSON Lines/fastText file, or a folder with one sub-folder per label.
        fmt: one of ``FORMATS``; None to tell it from the extension or the layout.
        text_column: the column (CSV/TSV) or field (JSON Lines) holding the text.
        label_column: the column or field holding the label.
        max_bytes: the text (plus ``EXAMPLE_OVERHEAD`` per example) to hold; beyond it, a
            seeded sample that fits is kept.
        seed: the sample's seed.

    Returns:
        The examples, with the count of skipped ones, the file's sha256 and, if sampled, how.

    Raises:
        DataError: the file is missing, unreadable, not strict UTF-8, malformed, multi-label,
            has too many labels, or a line or example file is over ``MAX_RECORD_BYTES``.
        UsageError: the format cannot be told, or an option does not fit it.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    fmt = detect_format(path, fmt)
    if fmt == "folder":
        if not path.is_dir():
            raise UsageError(f"{path}: --format folder needs a directory with one sub-folder per label")
        records = _read_folder(path, max_bytes, seed)
    else:
        if path.is_dir():
            raise UsageError(f"{path}: a directory, but --format {fmt} reads a file")
        records = Records(str(path), max_bytes=max_bytes, seed=seed)
        lines = _Lines(path)
        try:
            if fmt in ("csv", "tsv"):
                _read_csv(lines, records, "\t" if fmt == "tsv" else ",", text_column, label_column)
            elif fmt == "jsonl":
                _read_jsonl(lines, records, text_column, label_column)
            else:
                _read_fasttext(lines, records)
        finally:
            lines.close()
        records.sha256 = lines.digest.hexdigest()
    records.finish()
    if not records.texts:
        raise DataError(f"{path}: no labelled examples" + (f" ({'; '.join(records.warnings())})" if records.skipped else ""))
    return records


class _Lines:
    """The decoded lines of a file (newlines kept), each checked: strict UTF-8, at most
    ``MAX_RECORD_BYTES``; ``number`` is the current line."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._f = open(path, "rb")
        except OSError as e:
            raise DataError(f"{path}: cannot open ({e.strerror})") from e
        self.number = 0
        self.digest = hashlib.sha256()

    def close(self) -> None:
        self._f.close()

    def __iter__(self) -> Iterator[str]:
        while True:
            try:
                raw = self._f.readline(MAX_RECORD_BYTES + 1)
            except OSError as e:
                raise DataError(f"{self.path}: cannot read ({e})") from e
            if not raw:
                return
            self.number += 1
            self.digest.update(raw)
            if len(raw) > MAX_RECORD_BYTES:
                raise DataError(f"{self.path}:{self.number}: line longer than {MAX_RECORD_BYTES >> 20} MiB")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{self.path}:{self.number}: not UTF-8 (byte 0x{raw[e.start]:02x} at column "
                                f"{e.start + 1}); re-encode the file as UTF-8") from None
            if self.number == 1 and line.startswith(_BOM):
                line = line[1:]
            yield line


def _read_csv(lines: _Lines, records: Records, delimiter: str, text_column: str, label_column: str) -> None:
    # TSV has no quoting (a text may start with a quote, as in GLUE's SST-2); CSV quotes as Excel does
    quoting = {"quoting": csv.QUOTE_NONE} if delimiter == "\t" else {"strict": True}
    rows = csv.reader(iter(lines), delimiter=delimiter, **quoting)
    try:
        header = next(rows, None)
        if header is None:
            raise DataError(f"{lines.path}: empty file; expected a header row naming the columns")
        header = [h.strip() for h in header]
        missing = [c for c in (text_column, label_column) if c not in header]
        if missing:
            option = "--text-column" if text_column in missing else "--label-column"
            raise DataError(f"{lines.path}: no column {missing[0]!r} (the header has "
                            f"{', '.join(repr(h) for h in header)}); name it with {option}")
        for column in (text_column, label_column):
            if header.count(column) > 1:
                raise DataError(f"{lines.path}: the header names {column!r} {header.count(column)} times; "
                                f"rename all but one")
        ti, li = header.index(text_column), header.index(label_column)
        start = lines.number + 1
        for row in rows:
            where = f"line {start}"
            start = lines.number + 1
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{lines.path}:{where[5:]}: {len(row)} fields, the header has {len(header)}")
            records.add(row[ti], row[li], where)
    except csv.Error as e:
        raise DataError(f"{lines.path}:{lines.number}: malformed {'TSV' if delimiter == chr(9) else 'CSV'} ({e})") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode (JSON's ``\\ud800`` escapes can make a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_jsonl(lines: _Lines, records: Records, text_field: str, label_field: str) -> None:
    kinds: dict[str, tuple[str, int]] = {}  # label name -> (JSON type it was read as, first line)
    for line in lines:
        if not line.strip():
            continue
        where = f"line {lines.number}"
        try:
            obj = json.loads(line, parse_constant=_no_constant)
        except ValueError as e:
            raise DataError(f"{lines.path}:{lines.number}: not JSON ({e})") from None
        except RecursionError:
            raise DataError(f"{lines.path}:{lines.number}: not a record: JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise DataError(f"{lines.path}:{lines.number}: expected a JSON object, got {type(obj).__name__}")
        if text_field not in obj:
            raise DataError(f"{lines.path}:{lines.number}: no field {text_field!r} (the object has "
                            f"{', '.join(repr(k) for k in obj) or 'no fields'}); name it with --text-field")
        text, label = obj[text_field], obj.get(label_field)
        if not isinstance(text, str):
            raise DataError(f"{lines.path}:{lines.number}: field {text_field!r} is {type(text).__name__}, not a string")
        if not _encodable(text):
            raise DataError(f"{lines.path}:{lines.number}: field {text_field!r} holds a lone surrogate escape "
                            f"(\\ud800-\\udfff without its pair): not text")
        if isinstance(label, list):
            raise DataError(f"{lines.path}:{lines.number}: field {label_field!r} is a list: several labels per "
                            f"text (multi-label) is not supported")
        if isinstance(label, dict):
            raise DataError(f"{lines.path}:{lines.number}: field {label_field!r} is an object, not a label")
        name = "" if label is None else str(label).lower() if isinstance(label, bool) else str(label)
        if not name.strip() or not text.strip():  # skipped and counted by ``add``: no label to remember
            records.add(text, name, where)
            continue
        kind = type(label).__name__
        # keyed as ``add`` names labels (stripped): as many keys as labels, which ``add`` caps
        seen = kinds.setdefault(name.strip(), (kind, lines.number))
        if seen[0] != kind:  # 1 and "1" would silently become one label
            raise DataError(f"{lines.path}:{lines.number}: label {label!r} ({kind}) and the {seen[0]} on line "
                            f"{seen[1]} would be the same label {name!r}; write every label as one JSON type")
        records.add(text, name, where)


def _read_fasttext(lines: _Lines, records: Records) -> None:
    for line in lines:
        if not line.strip():
            continue
        words = line.split()
        if not words[0].startswith(FASTTEXT_PREFIX):
            raise DataError(f"{lines.path}:{lines.number}: expected {FASTTEXT_PREFIX}NAME first (fastText format)")
        labels = [w for w in words if w.startswith(FASTTEXT_PREFIX)]
        if len(labels) > 1:
            raise DataError(f"{lines.path}:{lines.number}: {len(labels)} labels on one line; several labels per "
                            f"text (multi-label) is not supported")
        label = words[0][len(FASTTEXT_PREFIX):]
        if not label:
            raise DataError(f"{lines.path}:{lines.number}: empty label ({FASTTEXT_PREFIX} with no name)")
        text = line.strip()[len(words[0]):].strip()
        if not text:
            raise DataError(f"{lines.path}:{lines.number}: label {label!r} but no text")
        records.add(text, label, f"line {lines.number}")


def _read_folder(root: Path, max_bytes: int, seed: int) -> Records:
    records = Records(str(root), max_bytes=max_bytes, seed=seed)
    digest = hashlib.sha256()
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: no sub-folders; expected one sub-folder per label holding one text file per example")
    for folder in folders:
        # the file names are listed and sorted (memory grows with their number, not their text)
        for file_name in sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
            path = folder / file_name
            name = f"{folder.name}/{file_name}"
            try:
                size = path.stat().st_size
                if size > MAX_RECORD_BYTES:
                    raise DataError(f"{path}: larger than {MAX_RECORD_BYTES >> 20} MiB")
                data = path.read_bytes()[:MAX_RECORD_BYTES + 1]
            except OSError as e:
                raise DataError(f"{path}: cannot read ({e.strerror})") from e
            digest.update(f"{name}\0".encode())
            digest.update(data)
            try:
                text = data.decode("utf-8").removeprefix(_BOM)
            except UnicodeDecodeError as e:
                line = data[: e.start].count(b"\n") + 1
                raise DataError(f"{path}:{line}: not UTF-8 (byte 0x{data[e.start]:02x}); re-encode the file as UTF-8") from None
            records.add(text, folder.name, name)
    records.sha256 = digest.hexdigest()
    return records
