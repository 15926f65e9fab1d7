"""The training corpus: the labelled reviews of the aclImdb layout, from a .tar.gz or a
directory, with their movies (from ``urls_*.txt``) and a content hash.

The archive is streamed (never extracted), so the 50,000 labelled reviews of the real
corpus are read in seconds. Every expected failure is a ``CorpusError`` whose message names
the path and what is wrong.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.checks.reviews import LABELS, MEMBER as _MEMBER, CorpusError, HashingReader, archive_members, file_members

SPLITS = ("train", "test")
# Line i of urls_pos.txt is the IMDb page of the movie that review pos/i_* is about.
_URLS = re.compile(r"(?:^|/)(train|test)/urls_(pos|neg)\.txt$")
_CORPUS_FILE = re.compile(f"{_MEMBER.pattern}|{_URLS.pattern}")
_MOVIE = re.compile(r"tt\d+")


@dataclass
class Split:
    """One split's reviews in a fixed order (label, then numeric id)."""

    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    movies: list[str] = field(default_factory=list)  # IMDb title of each review ("" if unknown)

    def __len__(self) -> int:
        return len(self.texts)

    def sample(self, n: int | None, seed: int) -> Split:
        """A seeded sample of ``n`` reviews, kept in corpus order (all of them when ``n`` is None
        or not smaller than the split)."""
        if n is None or n >= len(self):
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False))
        return Split([self.texts[i] for i in keep], [self.labels[i] for i in keep], [self.ids[i] for i in keep],
                     [self.movies[i] for i in keep] if self.movies else [])


@dataclass
class Corpus:
    """Labelled texts in a train and a test split; ``Split.labels`` index ``labels``.

    The aclImdb corpus has the labels ``negative``, ``positive``; a user's data
    (``train.dataset``) has its own, sorted, and may bring a ``validation`` split and the
    record of how its splits were made (``split_record``, for ``splits.json``).
    """

    source: str
    splits: dict[str, Split]
    archive_sha256: str | None
    content_sha256: str
    labels: tuple[str, ...] = ("negative", "positive")  # runtime.bundle.manifest.LABELS
    validation: Split | None = None
    split_record: dict | None = None
    user_data: bool = False

    def counts(self) -> dict[str, dict[str, int]]:
        named = dict(self.splits)
        if self.validation is not None:
            named["validation"] = self.validation
        # the aclImdb corpus counts by its folder names (neg, pos), as it always has
        names = dict(enumerate(self.labels)) if self.user_data else {v: k for k, v in LABELS.items()}
        return {name: {label: split.labels.count(value) for value, label in names.items()}
                for name, split in named.items()}


def _directory_members(root: Path) -> Iterator[tuple[str, bytes]]:
    """The directory's counterpart of ``archive_members``: the same names, the same size cap."""
    for split in SPLITS:
        for label in LABELS:
            folder = root / split / label
            if folder.is_dir():
                yield from file_members(root, folder.iterdir())
            urls = root / split / f"urls_{label}.txt"
            if urls.is_file():
                yield from file_members(root, [urls])


_ANY_REVIEW = re.compile(r"(?:^|/)(?:train|test)/(?:pos|neg|unsup)/\d+_\d+\.txt$")


_TRAINING_REVIEW = re.compile(r"(?:^|/)train/(?:pos|neg|unsup)/\d+_\d+\.txt$")


def all_review_texts(path: str | Path, training_only: bool = False) -> Iterator[str]:
    """Every review of the archive or directory, labelled or not (train, test and unsup:
    100,000 in the real corpus), streamed in archive order; for volume measurements.
    ``training_only``: the training split's labelled and unlabelled reviews (75,000), never
    the test split's (what word vectors learn from)."""
    path = Path(path)
    if path.is_dir():
        root = _directory_root(path)
        for split in ("train",) if training_only else SPLITS:
            for label in (*LABELS, "unsup"):
                folder = root / split / label
                if folder.is_dir():
                    for _, data in file_members(root, sorted(folder.iterdir())):
                        yield data.decode("utf-8", "replace")
        return
    try:
        f = open(path, "rb")
    except OSError as e:
        raise CorpusError(f"{path}: cannot open ({e.strerror})") from e
    with f:
        pattern = _TRAINING_REVIEW if training_only else _ANY_REVIEW
        for _, data in archive_members(path, HashingReader(f, None), pattern):
            yield data.decode("utf-8", "replace")


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
        reader = HashingReader(fobj, on_bytes)
        members = archive_members(path, reader, _CORPUS_FILE)
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
