"""Every file of a bundle is opened here: inside the bundle directory, a regular file, no
larger than its kind's cap (or the size the manifest records), its sha256 checked before use."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from runtime.errors import Error


class BundleError(Error):
    """A bundle that is missing, malformed, tampered with or inconsistent."""


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return _sha256_of(f)


def _sha256_of(f) -> str:
    h = hashlib.sha256()
    while block := f.read(1 << 20):
        h.update(block)
    return h.hexdigest()


def _mib(n: int) -> str:
    return f"{n >> 30} GiB" if n >= 1 << 30 else f"{n >> 20} MiB"


def open_inside(root: Path, rel: str, max_bytes: int, what: str, size: int | None = None):
    """Open the bundle file ``rel`` for binary reading, after checking it is safe to read.

    Args:
        root: the bundle directory.
        rel: the file's name inside it (already checked by ``_Fields.file``).
        max_bytes: the most this kind of file may hold.
        what: what the file is, for the message ("manifest", "golden set", ...).
        size: the exact size the manifest records (artifacts), or None.

    Returns:
        The open file, positioned at its start.

    Raises:
        BundleError: one line naming the file, if it resolves outside ``root``, is missing,
            is not a regular file, or is larger than ``max_bytes`` (or not ``size`` bytes).
    """
    path = root / rel
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise BundleError(f"{path}: cannot resolve ({e})") from e
    if not inside:
        raise BundleError(f"{path}: points outside the bundle directory {root}")
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as e:
        raise BundleError(f"{path}: missing from the bundle") from e
    except OSError as e:
        raise BundleError(f"{path}: cannot open ({e.strerror})") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{path}: not a regular file, not a {what}")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        if size is not None and st.st_size > size:
            raise BundleError(f"{path}: {st.st_size} bytes, more than the {size} the manifest records "
                              f"(modified or corrupt)")
        if st.st_size > max_bytes:
            raise BundleError(f"{path}: larger than {_mib(max_bytes)}, not a {what}")
    except BaseException:
        f.close()
        raise
    return f


def read_inside(root: Path, rel: str, max_bytes: int, what: str, size: int | None = None) -> bytes:
    """The bytes of the bundle file ``rel``, opened by ``open_inside`` and never more than
    ``max_bytes`` of them (a file that grows while it is read is refused)."""
    with open_inside(root, rel, max_bytes, what, size) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise BundleError(f"{root / rel}: cannot read ({e.strerror})") from e
    if len(data) > min(max_bytes, size if size is not None else max_bytes):
        raise BundleError(f"{root / rel}: changed while it was read")
    return data


def _check_size(path: Path, real: int, size: int | None) -> None:
    """A verified file whose size is not the one the manifest records (a smaller file fails
    its sha256 first; a larger one is never read)."""
    if size is not None and real != size:
        raise BundleError(f"{path}: {real} bytes, but the manifest records {size} (field 'size_bytes')")
