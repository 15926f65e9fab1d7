"""Reading reviews from a folder or a .tar.gz of ``.txt`` files (``runtime.parity --data``).

The archive is streamed, never extracted. Labels come from ``pos``/``neg`` folders; in the
aclImdb layout only the test split is read. The training corpus reader (``train.corpus``)
shares the archive streaming and the layout's names. Every expected failure is a
``CorpusError`` whose message names the path and what is wrong.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import Error

LABELS = {"neg": 0, "pos": 1}
# <anything>/aclImdb/<split>/<pos|neg>/<id>_<stars>.txt, with or without the aclImdb prefix.
MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")


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


def archive_members(path: Path, reader: HashingReader, pattern: re.Pattern) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(fileobj=reader, mode="r|gz") as tar:
            for member in tar:
                if member.isfile() and pattern.search(member.name):
                    f = tar.extractfile(member)
                    yield member.name, f.read() if f else b""
        reader.drain()
    except (tarfile.ReadError, zlib.error, EOFError, OSError) as e:
        if isinstance(e, tarfile.ReadError) and "not a gzip file" in str(e).lower():
            raise CorpusError(f"{path}: not a .tar.gz archive") from e
        raise CorpusError(f"{path}: archive is truncated or corrupt ({e})") from e



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
    if not path.exists():
        raise CorpusError(f"{path}: no such file or directory")
    if path.is_dir():
        items = [(str(p.relative_to(path)), p.read_bytes()) for p in sorted(path.rglob("*.txt")) if p.is_file()]
    else:
        with open(path, "rb") as f:
            items = sorted(archive_members(path, HashingReader(f, None), _TEXT_FILE))
    skipped = [f"{name}: {cause}" for name, data in items if (cause := _unusable(data))]
    items = [(name, data) for name, data in items if not _unusable(data)]
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


def _unusable(data: bytes) -> str | None:
    """Why a file is not a review (None when it is one)."""
    if b"\0" in data:
        return "binary file (contains NUL bytes), not text"
    if not data.strip():
        return "empty or whitespace-only"
    return None
