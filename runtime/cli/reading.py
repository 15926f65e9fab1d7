"""Reading review text from a file, a FIFO, a device or standard input: one layer for every
input the commands take.

Input is read in blocks and decoded incrementally, so memory stays bounded and time linear
whatever the content: a small review comes back whole, a large one as pieces to stream into
the encoder. What is not text is refused with an ``InputError`` whose message is the cause:
NUL bytes anywhere (NUL characters, for UTF-16 and UTF-32), or a UTF-16 byte-order mark read
as another encoding. Invalid bytes are replaced, and ``Review.replaced`` says so.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import BinaryIO

from runtime.errors import Error
from runtime.encoding.text import EMPTY_REVIEW, is_blank
from runtime.classifier import WHOLE_UP_TO

BLOCK = 1 << 20  # bytes read at a time
# UTF-32's first: its little-endian mark begins with UTF-16's.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


class InputError(Error):
    """An input that cannot be classified; the message is the cause."""


def wide_bom(first: bytes) -> str | None:
    """``"UTF-32"`` or ``"UTF-16"`` when ``first`` (a file's first bytes) begins with that
    encoding's byte-order mark, else None."""
    for bom, wide in _WIDE_BOMS:
        if first.startswith(bom):
            return wide
    return None


def _escape(c: str) -> str:
    if c.isprintable():
        return c
    if "\udc80" <= c <= "\udcff":  # a byte that was not valid in the file system's encoding
        return f"\\x{ord(c) - 0xDC00:02x}"
    return c.encode("unicode_escape").decode("ascii")  # \t, \n, \x1b, \u2028, \ud800


def shown(name: str) -> str:
    """``name`` (a file name, a CSV column) as outputs and messages write it: one field on one
    line that always encodes as UTF-8. Printable names are unchanged; in others, control
    characters, line and tab breaks and other unprintable characters are written as Python
    escapes (``\\n``, ``\\t``, ``\\x1b``, ``\\u2028``), and bytes not valid in the file system's
    encoding (carried in ``str`` as lone surrogates) as ``\\xNN``."""
    if name.isprintable():
        return name
    return "".join(map(_escape, name))


def is_text_encoding(encoding: str) -> bool:
    """Whether ``encoding`` is a known codec that decodes bytes to text (not rot13 or base64)."""
    try:
        return isinstance(codecs.getincrementaldecoder(encoding)().decode(b"", final=True), str)
    except (LookupError, TypeError, ValueError):
        return False


class _Decoder:
    """Incremental decoding that refuses non-text and replaces invalid bytes, remembering that it did."""

    def __init__(self, encoding: str):
        self._strict = codecs.getincrementaldecoder(encoding)(errors="strict")
        self._lenient = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._name = codecs.lookup(encoding).name
        self._wide = self._name.startswith(("utf-16", "utf-32"))
        self._encoding = encoding
        self.replaced = False
        self.blank = True  # nothing but whitespace so far

    def _sniff(self, first: bytes) -> None:
        wide = wide_bom(first)
        if wide and not self._name.startswith(wide.lower()):
            raise InputError(f"looks like {wide} text (byte-order mark): use --encoding {wide.lower()}")

    def decode(self, data: bytes, final: bool = False) -> str:
        if not self._wide and b"\0" in data:
            raise InputError("binary file (contains NUL bytes), not text")
        text = None
        try:
            if not self.replaced:
                try:
                    text = self._strict.decode(data, final)
                except UnicodeDecodeError:
                    self.replaced = True
                    self._lenient.setstate(self._strict.getstate())
            if text is None:
                text = self._lenient.decode(data, final)
        except UnicodeError as e:  # a decoder that cannot go on at all (UTF-16 without a byte-order mark)
            raise InputError(f"not {self._encoding} text ({e})") from None
        if self._wide and "\0" in text:
            raise InputError("binary file (contains NUL characters), not text")
        if self.blank and not is_blank(text):
            self.blank = False
        return text

    def pieces(self, f: BinaryIO) -> Iterator[str]:
        first = True
        while block := _read_block(f):
            if first:
                self._sniff(block)
                first = False
            yield self.decode(block)
        yield self.decode(b"", final=True)


def _read_block(f: BinaryIO) -> bytes:
    try:
        return f.read(BLOCK)
    except OSError as e:
        raise InputError(e.strerror or str(e)) from None


@dataclass
class Review:
    """One input's text: whole (``text``) when short, else ``pieces`` to be consumed once."""

    name: str
    text: str | None
    pieces: Iterator[str] | None
    decoder: _Decoder

    @property
    def replaced(self) -> bool:
        return self.decoder.replaced

    @property
    def blank(self) -> bool:
        """Whether everything read so far is whitespace (for a streamed review: once consumed)."""
        return self.decoder.blank


def open_input(name: str) -> BinaryIO:
    """The binary stream of file ``name`` (``-``: standard input); ``InputError`` if it cannot be opened."""
    if name == "-":
        return sys.stdin.buffer
    try:
        if os.path.isdir(name):
            raise InputError("is a directory")
        return open(name, "rb")
    except FileNotFoundError:
        raise InputError("no such file") from None
    except PermissionError:
        raise InputError("permission denied") from None
    except IsADirectoryError:
        raise InputError("is a directory") from None
    except OSError as e:
        raise InputError(e.strerror or str(e)) from None


@contextmanager
def open_review(name: str, encoding: str = "utf-8") -> Iterator[Review]:
    """The review in file ``name`` (``-``: standard input), read while the block runs.

    Raises ``InputError`` for a missing, unreadable, binary, empty or whitespace-only input;
    for a streamed review, non-text met later is raised while its pieces are consumed.
    """
    f = open_input(name)
    try:
        decoder = _Decoder(encoding)
        pieces = decoder.pieces(f)
        head: list[str] = []
        size = 0
        for piece in pieces:
            head.append(piece)
            size += len(piece)
            if size > WHOLE_UP_TO:
                yield Review(name, None, chain(head, pieces), decoder)
                return
        if decoder.blank:
            raise InputError(EMPTY_REVIEW)
        yield Review(name, "".join(head), None, decoder)
    finally:
        if f is not sys.stdin.buffer:
            f.close()
