"""Reading labelled review corpora in the aclImdb layout, from a .tar.gz or a directory.

The archive is streamed (never extracted), so the 50,000 labelled reviews of the real
corpus are read in seconds. No TensorFlow (the parity suite uses this); numpy only for
``read_reviews``' labels and sampling. Every expected failure is a ``CorpusError`` whose message names the path and
what is wrong.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

LABELS = {"neg": 0, "pos": 1}
SPLITS = ("train", "test")

# <anything>/aclImdb/<split>/<pos|neg>/<id>_<stars>.txt, with or without the aclImdb prefix.
_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
# Line i of urls_pos.txt is the IMDb page of the movie that review pos/i_* is about.
_URLS = re.compile(r"(?:^|/)(train|test)/urls_(pos|neg)\.txt$")
_CORPUS_FILE = re.compile(f"{_MEMBER.pattern}|{_URLS.pattern}")
_MOVIE = re.compile(r"tt\d+")


class CorpusError(Exception):
    """A corpus that cannot be read; the message names the path and the cause."""


@dataclass
class Split:
    """One split's reviews in a fixed order (label, then numeric id)."""

    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    movies: list[str] = field(default_factory=list)  # IMDb title of each review ("" if unknown)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Corpus:
    source: str
    splits: dict[str, Split]
    archive_sha256: str | None
    content_sha256: str

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            name: {label: split.labels.count(value) for label, value in LABELS.items()}
            for name, split in self.splits.items()
        }


class _HashingReader:
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


def _archive_members(path: Path, reader: _HashingReader, pattern: re.Pattern = _MEMBER) -> Iterator[tuple[str, bytes]]:
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


def _directory_members(root: Path) -> Iterator[tuple[str, bytes]]:
    for split in SPLITS:
        for label in LABELS:
            folder = root / split / label
            if folder.is_dir():
                for p in folder.iterdir():
                    yield f"{split}/{label}/{p.name}", p.read_bytes()
            urls = root / split / f"urls_{label}.txt"
            if urls.is_file():
                yield f"{split}/urls_{label}.txt", urls.read_bytes()


_TEXT_FILE = re.compile(r"\.txt$")


@dataclass
class Reviews:
    """Review texts from any folder or archive of .txt files; labels when every file has one."""

    ids: list[str]
    texts: list[str]
    labels: np.ndarray | None


def read_reviews(path: str | Path, limit: int | None = None, seed: int = 0) -> Reviews:
    """Every .txt review under ``path`` (the test split only, for an aclImdb layout).

    A file's label comes from a ``pos`` or ``neg`` folder above it; labels are returned only
    when every file has one. ``limit`` keeps a seeded sample.
    """
    import numpy as np

    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: no such file or directory")
    if path.is_dir():
        items = [(str(p.relative_to(path)), p.read_bytes()) for p in sorted(path.rglob("*.txt")) if p.is_file()]
    else:
        with open(path, "rb") as f:
            items = sorted(_archive_members(path, _HashingReader(f, None), _TEXT_FILE))
    if not items:
        raise CorpusError(f"{path}: no .txt reviews found")
    test = [(n, b) for n, b in items if (m := _MEMBER.search(n)) and m.group(1) == "test"]
    items = test or items
    if limit is not None and limit < len(items):
        keep = sorted(np.random.default_rng(seed).choice(len(items), limit, replace=False))
        items = [items[i] for i in keep]
    labels = [next((LABELS[part] for part in reversed(Path(n).parts[:-1]) if part in LABELS), None) for n, _ in items]
    return Reviews(
        ids=[n for n, _ in items],
        texts=[b.decode("utf-8", "replace") for _, b in items],
        labels=np.asarray(labels) if all(label is not None for label in labels) else None,
    )


def _directory_root(path: Path) -> Path:
    for candidate in (path, path / "aclImdb"):
        if any((candidate / s).is_dir() for s in SPLITS):
            return candidate
    return path


def read_corpus(
    path: str | Path,
    splits: tuple[str, ...] = SPLITS,
    on_bytes: Callable[[int], None] | None = None,
) -> Corpus:
    """Read the labelled reviews of ``splits`` from an aclImdb archive or directory."""
    path = Path(path)
    rows: dict[str, list[tuple[int, int, str, str]]] = {s: [] for s in splits}
    archive_sha = None
    if not path.exists():
        raise CorpusError(f"{path}: no such file or directory")
    if path.is_dir():
        members = _directory_members(_directory_root(path))
        reader = None
    else:
        try:
            fobj = open(path, "rb")
        except OSError as e:
            raise CorpusError(f"{path}: cannot open ({e.strerror})") from e
        reader = _HashingReader(fobj, on_bytes)
        members = _archive_members(path, reader, _CORPUS_FILE)
    movies: dict[tuple[str, str], list[str]] = {}
    try:
        for name, data in members:
            u = _URLS.search(name)
            if u is not None:
                movies[u.group(1), u.group(2)] = [
                    m.group(0) if (m := _MOVIE.search(line)) else "" for line in data.decode("utf-8", "replace").splitlines()
                ]
                continue
            m = _MEMBER.search(name)
            if m is None or m.group(1) not in rows:
                continue
            split, label, num = m.group(1), m.group(2), int(m.group(3))
            review_id = f"{split}/{label}/{m.group(3)}_{m.group(4)}"
            rows[split].append((LABELS[label], num, review_id, data.decode("utf-8", "replace")))
    except OSError as e:
        raise CorpusError(f"{path}: cannot read ({e})") from e
    finally:
        if reader is not None:
            reader.close()
            archive_sha = reader.sha256.hexdigest()

    _check_layout(path, rows)
    digest = hashlib.sha256()
    result: dict[str, Split] = {}
    for split, items in rows.items():
        items.sort()
        s = Split()
        for label, num, review_id, text in items:
            s.texts.append(text)
            s.labels.append(label)
            s.ids.append(review_id)
            titles = movies.get((split, review_id.split("/")[1]), [])
            s.movies.append(titles[num] if num < len(titles) else "")
            digest.update(f"{review_id}\0{text}\0".encode("utf-8"))
        result[split] = s
    return Corpus(str(path), result, archive_sha, digest.hexdigest())


def _check_layout(path: Path, rows: dict[str, list]) -> None:
    if not any(rows.values()):
        raise CorpusError(
            f"{path}: no reviews found; expected aclImdb/{{train,test}}/{{pos,neg}}/<id>_<stars>.txt"
        )
    empty = [
        f"{split}/{label}"
        for split, items in rows.items()
        for label, value in LABELS.items()
        if not any(item[0] == value for item in items)
    ]
    if empty:
        raise CorpusError(f"{path}: empty split, no reviews in {', '.join(empty)}")
