"""Reading reviews from a folder or a .tar.gz of ``.txt`` files (``runtime.parity --data``).

The archive is streamed, never extracted, and no file is read whole unless it is small:
a review (or a list of movie links) is a text file of kilobytes, so a file or archive
member over ``MAX_MEMBER_BYTES`` is never read (``read_reviews`` skips it, naming it;
the training corpus refuses it). Labels come from ``pos``/``neg`` folders; in the
aclImdb layout only the test split is read. The training corpus reader (``train.corpus``)
shares the archive streaming and the layout's names. Every expected failure is a
``CorpusError`` whose message names the path and what is wrong.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.encoding.text import EMPTY_REVIEW, is_blank
from runtime.errors import Error

LABELS = {"neg": 0, "pos": 1}
# <anything>/aclImdb/<split>/<pos|neg>/<id>_<stars>.txt, with or without the aclImdb prefix.
MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
MAX_MEMBER_BYTES = 16 << 20  # the largest review the real corpus holds is 14 KB, its largest link list 1 MB


class CorpusError(Error):
    """Reviews that cannot be read; the message names the path and the cause."""


class HashingReader:
    """A file wrapper that hashes what is read and reports progress in bytes."""

    def __init__(self, f, on_bytes: Callable[[int], None] | None):
        self._f = f
        self._on_bytes = on_bytes
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sha256.update(data)
        if self._on_bytes is not None:
            self._on_bytes(len(data))
        return data

    def close(self) -> None:
        self._f.close()

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _too_large(name: str, size: int) -> str:
    return f"{name}: larger than {MAX_MEMBER_BYTES >> 20} MiB ({size} bytes), too large for a review"


def _oversized(path: Path, cause: str, oversized: list[str] | None) -> None:
    if oversized is None:
        raise CorpusError(f"{path}: {cause}")
    oversized.append(cause)


def archive_members(path: Path, reader: HashingReader, pattern: re.Pattern,
                    oversized: list[str] | None = None) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each regular member of the .tar.gz whose name matches ``pattern``, streamed.

    A member over ``MAX_MEMBER_BYTES`` is passed over unread: its "name: cause" is appended
    to ``oversized``, or, when that is None, raised as a ``CorpusError``.
    """
    try:
        with tarfile.open(fileobj=reader, mode="r|gz") as tar:
            for member in tar:
                if member.isfile() and pattern.search(member.name):
                    if member.size > MAX_MEMBER_BYTES:
                        _oversized(path, _too_large(member.name, member.size), oversized)
                        continue
                    f = tar.extractfile(member)
                    yield member.name, f.read() if f else b""
        reader.drain()
    except (tarfile.ReadError, zlib.error, EOFError, OSError) as e:
        if isinstance(e, tarfile.ReadError) and "not a gzip file" in str(e).lower():
            raise CorpusError(f"{path}: not a .tar.gz archive") from e
        raise CorpusError(f"{path}: archive is truncated or corrupt ({e})") from e



def file_members(root: Path, files: Iterable[Path], oversized: list[str] | None = None) -> Iterator[tuple[str, bytes]]:
    """(name relative to ``root``, bytes) of each regular file of ``files``: the folder's
    counterpart of ``archive_members``, with the same cap. Anything but a regular file (a
    FIFO, a device, a folder) is passed over without blocking."""
    for p in files:
        name = p.relative_to(root).as_posix()
        try:
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            if os.path.isdir(p):
                continue
            raise CorpusError(f"{p}: cannot open ({e.strerror})") from e
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_size > MAX_MEMBER_BYTES:
                _oversized(root, _too_large(name, st.st_size), oversized)
                continue
            try:
                data = f.read(MAX_MEMBER_BYTES + 1)
            except OSError as e:
                raise CorpusError(f"{p}: cannot read ({e.strerror})") from e
            if len(data) > MAX_MEMBER_BYTES:  # it grew while it was read
                _oversized(root, _too_large(name, len(data)), oversized)
                continue
        yield name, data


_TEXT_FILE = re.compile(r"\.txt$")


@dataclass
class Reviews:
    """Review texts from any folder or archive of .txt files; labels when every file has one."""

    ids: list[str]
    texts: list[str]
    labels: np.ndarray | None
    skipped: list[str] = field(default_factory=list)  # "file: cause" of each file that is not a review


def read_reviews(path: str | Path, limit: int | None = None, seed: int = 0) -> Reviews:
    """Every .txt review under ``path`` (the test split only, for an aclImdb layout).

    A file's label comes from a ``pos`` or ``neg`` folder above it; labels are returned only
    when every file has one. ``limit`` keeps a seeded sample.
    """
    path = Path(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as e:  # a name too long, a loop of symbolic links
        raise CorpusError(f"{str(path)[:200]}: {e.strerror or e}") from None
    if not exists:
        raise CorpusError(f"{path}: no such file or directory")
    skipped: list[str] = []
    if is_dir:
        members = file_members(path, sorted(path.rglob("*.txt")), skipped)
        items = _usable(members, skipped)
    else:
        try:
            f = open(path, "rb")
        except OSError as e:
            raise CorpusError(f"{path}: cannot open ({e.strerror})") from e
        with f:
            items = sorted(_usable(archive_members(path, HashingReader(f, None), _TEXT_FILE, skipped), skipped))
        skipped.sort()
    if not items:
        raise CorpusError(f"{path}: no .txt reviews found" + (f" ({len(skipped)} unusable files)" if skipped else ""))
    test = [(n, b) for n, b in items if (m := MEMBER.search(n)) and m.group(1) == "test"]
    items = test or items
    if limit is not None and limit < len(items):
        keep = sorted(np.random.default_rng(seed).choice(len(items), limit, replace=False))
        items = [items[i] for i in keep]
    labels = [next((LABELS[part] for part in reversed(Path(n).parts[:-1]) if part in LABELS), None) for n, _ in items]
    return Reviews(
        ids=[n for n, _ in items],
        texts=[b.decode("utf-8", "replace") for _, b in items],
        labels=np.asarray(labels) if all(label is not None for label in labels) else None,
        skipped=skipped,
    )


def _usable(members: Iterable[tuple[str, bytes]], skipped: list[str]) -> list[tuple[str, bytes]]:
    """The members that are reviews; each other one's "name: cause" goes to ``skipped`` (at
    once, so that no unusable file's bytes are kept)."""
    items = []
    for name, data in members:
        cause = _unusable(data)
        if cause:
            skipped.append(f"{name}: {cause}")
        else:
            items.append((name, data))
    return items


def _unusable(data: bytes) -> str | None:
    """Why a file is not a review (None when it is one)."""
    if b"\0" in data:
        return "binary file (contains NUL bytes), not text"
    if is_blank(data):
        return EMPTY_REVIEW
    return None
