"""Where the IMDB corpus comes from: ``--data``, ``IMDB_DATA``, or a one-time download."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from tqdm import tqdm

from runtime.atomic import atomic_file
from runtime.checks.reviews import CorpusError
from train.corpus import Corpus, read_corpus

OFFICIAL_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
ARCHIVE_NAME = "aclImdb_v1.tar.gz"


def cache_dir() -> Path:
    """``$IMDB_CACHE``, else ``$XDG_CACHE_HOME/imdb-edge``, else ``~/.cache/imdb-edge``."""
    if os.environ.get("IMDB_CACHE"):
        return Path(os.environ["IMDB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "imdb-edge"


def download(url: str = OFFICIAL_URL, dest_dir: Path | None = None) -> Path:
    """Download the archive once into the cache, with a progress bar; reuse it after."""
    dest_dir = dest_dir or cache_dir()
    dest = dest_dir / ARCHIVE_NAME
    if dest.exists():
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_file(dest) as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="download IMDB") as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
    except OSError as e:
        raise CorpusError(f"{url}: download failed ({e}); pass --data or set IMDB_DATA") from e
    return dest


def resolve(data: str | None) -> Path:
    """The corpus to use: the argument, else ``IMDB_DATA``, else the downloaded archive."""
    chosen = data or os.environ.get("IMDB_DATA")
    return Path(chosen) if chosen else download()


def load(data: str | None, splits: tuple[str, ...] = ("train", "test")) -> Corpus:
    """Read the labelled reviews, showing progress (archive bytes or nothing for folders)."""
    path = resolve(data)
    size = path.stat().st_size if path.is_file() else None
    with tqdm(total=size, unit="B", unit_scale=True, desc=f"read {path.name}", disable=size is None) as bar:
        return read_corpus(path, splits, on_bytes=bar.update)


def local_archive() -> Path | None:
    """The aclImdb corpus already on this machine, without downloading: ``IMDB_DATA``, else the
    download cache's archive; None if neither is there (for word vectors on a user's data)."""
    chosen = os.environ.get("IMDB_DATA")
    if chosen and Path(chosen).exists():
        return Path(chosen)
    cached = cache_dir() / ARCHIVE_NAME
    return cached if cached.exists() else None
