"""Atomic publishing: a file or a directory appears whole, or not at all.

Everything the project writes for a person or another program (vocabularies, manifests,
reports, model directories, bundles) goes through here, so a failed or killed run never
leaves half a result that looks complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_STAGING = ".staging-"
_OLD = ".old-"


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` (mode 0644) only when the block ends without error."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    with atomic_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def _remove_stale(out: Path) -> None:
    """Staging and old copies that a killed run left beside ``out``."""
    for prefix in (_STAGING, _OLD):
        for stale in out.parent.glob(f".{out.name}{prefix}*"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def staging_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh sibling directory of ``out``; on success it replaces ``out``.

    On an exception (Ctrl-C included) the staging directory is removed and ``out`` is left
    as it was. Leftovers of a run that was killed outright are removed on the next run into
    the same place.
    """
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{_STAGING}"))
    os.chmod(stage, 0o755)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{_OLD}"))
        os.replace(out, old / out.name)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
