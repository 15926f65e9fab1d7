"""Atomic publishing: a file or a directory appears whole, or not at all.

Everything the project writes for a person or another program (vocabularies, manifests,
reports, model directories, bundles, ``runtime.classify --out``) goes through here, so a failed
or killed run never leaves half a result that looks complete, and nothing but the file named
is ever replaced:

- a regular file (or a new name) is replaced atomically by a complete file; it keeps its
  permission bits (a new file gets 0644);
- a symbolic link is followed: the file it leads to is replaced, the link stays;
- a FIFO or a character device (``/dev/null``, a terminal, ``/proc/self/fd/1``) is written
  through, as a shell's ``>`` would, not atomically; it is never replaced;
- anything else (a directory, a socket, a block device) is refused (``UnsafeOutput``), and so
  is an output that is one of the inputs a command names (``output_target``).

A temporary file is named ``.NAME.PID.XXXXXXXX.tmp`` beside the output and locked while it is
written. A run that is killed outright (SIGKILL, a power cut) cannot remove it: the next
publication of the same name removes such files that nobody holds locked and whose writer is
no longer running (or that are older than ``STALE_SECONDS``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runtime import exitcodes
from runtime.errors import Error

try:
    import fcntl
except ImportError:  # Windows: stale temporary files are recognised by their age alone
    fcntl = None

_STAGING = ".staging-"
_OLD = ".old-"
STALE_SECONDS = 24 * 3600  # a temporary file not written for this long is a killed run's, whatever its pid
_NEW_FILE_MODE = 0o644


class UnsafeOutput(Error, OSError):
    """An output that publishing refuses: replacing it would destroy something not named as output."""


@dataclass(frozen=True)
class Target:
    """Where an output goes: ``path`` (a symbolic link's final file) is replaced atomically,
    unless ``through`` (a FIFO or a character device), which is opened and written through."""

    path: Path
    through: bool
    mode: int = _NEW_FILE_MODE  # permission bits the published file gets: the replaced file's


def _kind(st: os.stat_result) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISBLK, "a block device")):
        if test(st.st_mode):
            return name
    return "not a regular file"


def output_target(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | int] = ()) -> Target:
    """Where publishing ``path`` writes, or ``UnsafeOutput`` (one line, naming ``path``).

    ``inputs`` are the files (paths, or open file descriptors such as 0 for standard input)
    and directories a command reads: an output that is one of them (the same file, through
    any symbolic or hard link) or lies inside one of the directories is refused.
    """
    path = Path(path)
    try:
        st = os.stat(path)  # follows symbolic links, /proc/self/fd/N included
    except FileNotFoundError:
        st = None  # a new file, or a symbolic link to a file still to be made
    except OSError as e:
        raise UnsafeOutput(f"{path}: {e.strerror}") from None
    if st is not None and (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        target = Target(path, through=True)
    elif st is not None and not stat.S_ISREG(st.st_mode):
        raise UnsafeOutput(f"{path} is {_kind(st)}, not a file; it is left alone")
    else:
        real = Path(os.path.realpath(path))
        if st is not None:
            try:
                same = os.path.samestat(os.stat(real), st)
            except OSError:
                same = False
            if not same:  # e.g. /proc/self/fd/1 open on a deleted file
                raise UnsafeOutput(f"{path} leads to a file that has no name of its own; it is not replaced")
        target = Target(real, through=False, mode=stat.S_IMODE(st.st_mode) if st is not None else _NEW_FILE_MODE)
    for item in inputs:
        try:
            seen = os.fstat(item) if isinstance(item, int) else os.stat(item)
        except OSError:
            continue  # not there, or closed: the command reports it as an input
        name = "standard input" if item == 0 else f"the input {item}"
        if stat.S_ISDIR(seen.st_mode):
            if not target.through and target.path.is_relative_to(os.path.realpath(item)):
                raise UnsafeOutput(f"{path} is inside {name}; it would change what it is read from")
        elif st is not None and not stat.S_ISCHR(st.st_mode) and os.path.samestat(seen, st):
            raise UnsafeOutput(f"{path} is {name}; it would be overwritten")
    return target


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (when in doubt, yes)."""
    if os.name != "posix":
        return True  # os.kill would end it, not probe it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


def _lock(fd: int, wait: bool) -> bool:
    """Take the advisory lock of an open file; False if another holder has it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError:
        return True  # a file system without locks: the pid and the age decide
    return True


def _remove_stale_files(out: Path) -> None:
    """Remove temporary files of killed runs publishing ``out`` (see the module's docstring).

    A file is removed only if it is this user's, has the temporary files' name, nobody holds
    it locked (a writer does until it renames it) and its writer (the pid in its name) is not
    running, or it has not been written for ``STALE_SECONDS``.
    """
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}\.tmp")
    prefix = f".{out.name}."
    now = time.time()
    try:
        entries = list(os.scandir(out.parent))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix) or not (m := pattern.fullmatch(entry.name)):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or (hasattr(os, "geteuid") and st.st_uid != os.geteuid()):
            continue
        dead = m.group(1) is not None and int(m.group(1)) != os.getpid() and not _running(int(m.group(1)))
        if not dead and now - st.st_mtime < STALE_SECONDS:
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if _lock(fd, wait=False):
                os.unlink(entry.path)
        except OSError:
            pass
        finally:
            os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block ends without error (see the
    module's docstring for symbolic links, FIFOs and devices); ``UnsafeOutput`` (an ``OSError``)
    if ``path`` must not be replaced."""
    target = output_target(path)
    if target.through:
        fd = os.open(target.path, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "wb") as f:
            yield f
        return
    _remove_stale_files(target.path)
    fd, tmp = tempfile.mkstemp(dir=target.path.parent, prefix=f".{target.path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        _lock(fd, wait=True)  # tells a later run's clean-up that this file is being written
        with os.fdopen(fd, "wb") as f:
            yield f
        exitcodes.check_stop()  # a stop the command did not see (swallowed in an import) publishes nothing
        with exitcodes.signals_held():
            os.chmod(tmp, target.mode)
            os.replace(tmp, target.path)
            exitcodes.note_published(target.path)
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


WRITTEN_LIST = ".written.json"  # what a published directory holds: its kind and every path in it
MAX_LISTED = 100_000  # entries an existing output directory may hold for the check to look at
# atomic_file's temporary file of a killed run: ``.NAME.PID.XXXXXXXX.tmp`` beside a file NAME
_OUR_TEMPORARY = re.compile(r"(?:(?P<dir>.*)/)?\.(?P<name>[^/]+)\.\d+\.[a-z0-9_]{8}\.tmp")
_SYSTEM_FILES = frozenset({".DS_Store"})  # what a file manager adds to any folder it shows


class PublishFailed(Error, OSError):
    """The finished output could not replace the old one (its staging copy is kept and named)."""


def _entries(root: Path) -> Iterator[str]:
    """Every path below ``root`` (files, links and directories, not followed), relative, posix.

    Raises:
        OSError: a directory below ``root`` (or ``root``) cannot be listed.
    """
    def fail(error: OSError) -> None:
        raise error

    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
        base = Path(dirpath).relative_to(root)
        for name in (*dirnames, *filenames):
            yield (base / name).as_posix()


def _read_json(path: Path, limit: int = 64 << 20):
    """The JSON value of ``path``, or None if it is missing, too large or not JSON."""
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def _ours(path: str, written: set[str]) -> bool:
    """Whether ``path`` is in the record, a killed run's temporary file of a recorded file, or
    a file manager's."""
    if path in written or path.rpartition("/")[2] in _SYSTEM_FILES:
        return True
    m = _OUR_TEMPORARY.fullmatch(path)
    return bool(m) and (f"{m['dir']}/{m['name']}" if m["dir"] else m["name"]) in written


def _check_writable(target: Path, out: str | os.PathLike) -> None:
    """Refuse ``target`` if it cannot be made or replaced: a file on its path, a mount point, a
    directory or parent nobody here can write."""
    if target.exists() and (os.path.ismount(target) or not os.access(target, os.R_OK | os.W_OK | os.X_OK)):
        why = "a mount point" if os.path.ismount(target) else "a directory this user cannot read and write"
        raise UnsafeOutput(f"{out}: {why}; it cannot be replaced: name a directory inside it or elsewhere")
    parent = target.parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UnsafeOutput(f"{out}: {parent} is not a directory; the output cannot be made below it")
    try:
        probe = tempfile.mkdtemp(dir=parent, prefix=".write-check-")
    except OSError as e:
        raise UnsafeOutput(f"{out}: cannot write in {parent} ({e.strerror or e})") from None
    os.rmdir(probe)


def check_output_dir(out: str | os.PathLike, inputs: Iterable[str | os.PathLike], marker: str, what: str,
                     marker_key: str) -> None:
    """Refuse an output directory that would destroy what the user did not name as output.

    ``staging_dir`` replaces ``out`` whole, so ``out`` must not be empty (an unset variable),
    the working directory or one holding it, an input, hold an input or lie inside one, and
    must be a place that can be written and replaced (checked before any work starts). An
    existing ``out`` must be empty or a directory this kind of command published: its
    ``WRITTEN_LIST`` names this kind and every path in it (a file the user added would be
    deleted: refused; an unreadable record is not ours). A directory published before that
    record existed is recognised by its ``marker`` file, a JSON object with ``marker_key``.

    Args:
        out: the directory the command will publish.
        inputs: the files and directories the command reads.
        marker: the file that every directory of this kind holds (``config.json``).
        what: what the directory is, for the record and the message ("model directory", "bundle").
        marker_key: a key of ``marker``'s JSON object (``recipe``).

    Raises:
        UnsafeOutput: one line naming ``out`` and the cause.
    """
    if not os.fspath(out):
        raise UnsafeOutput(f"an empty path (an unset variable?); name a new or empty directory for the {what}")
    try:
        target = Path(out).resolve()
        sources = [(given, Path(given).resolve()) for given in inputs]
        here = Path.cwd().resolve()
    except (OSError, RuntimeError) as e:  # a symbolic link loop, a deleted working directory
        raise UnsafeOutput(f"{out}: {e}") from None
    if target == here or target in here.parents:
        raise UnsafeOutput(f"{out}: the working directory or one holding it; name a directory for the {what}")
    for given, source in sources:
        if target == source or target in source.parents:
            raise UnsafeOutput(f"{out}: it holds the input {given}, which writing the {what} would delete")
        if source in target.parents:
            raise UnsafeOutput(f"{out}: it lies inside the input {given}; write the {what} elsewhere")
    if not (target.exists() or target.is_symlink()):
        _check_writable(target, out)
        return
    if not target.is_dir():
        raise UnsafeOutput(f"{out}: exists and is not a directory; name a new path for the {what}")
    present = []
    try:
        for path in _entries(target):
            present.append(path)
            if len(present) > MAX_LISTED:
                raise UnsafeOutput(f"{out}: holds over {MAX_LISTED:,} files, not a {what}; name a new or empty "
                                   f"directory")
    except OSError as e:
        if isinstance(e, UnsafeOutput):
            raise
        raise UnsafeOutput(f"{out}: cannot list what it holds ({e.strerror or e}); name a new or empty "
                           f"directory") from None
    if present:
        record = _read_json(target / WRITTEN_LIST)
        ok = isinstance(record, dict) and isinstance(record.get("what"), str) and isinstance(record.get("paths"), list)
        if WRITTEN_LIST in present and not ok:
            raise UnsafeOutput(f"{out}: its {WRITTEN_LIST} is unreadable, so what it holds cannot be told from "
                               f"your files; name a new or empty directory")
        if not ok:
            data = _read_json(target / marker)
            if not (isinstance(data, dict) and marker_key in data):
                raise UnsafeOutput(f"{out}: an existing directory that is not a {what} (no {marker} of ours); it "
                                   f"would be replaced whole: name a new or empty directory")
        elif record["what"] != what:
            raise UnsafeOutput(f"{out}: holds a {record['what']}, not a {what}; name a new or empty directory")
        else:
            written = {str(x) for x in record["paths"]} | {WRITTEN_LIST}
            extra = sorted(x for x in present if not _ours(x, written))
            if extra:
                more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
                raise UnsafeOutput(f"{out}: holds {extra[0]}{more}, which the {what} there did not write; replacing "
                                   f"the directory would delete it: move it or name a new directory")
    _check_writable(target, out)


@contextmanager
def staging_dir(out: str | os.PathLike, what: str | None = None) -> Iterator[Path]:
    """Yield a fresh sibling directory of ``out``; on success it replaces ``out``.

    On an exception (Ctrl-C included) the staging directory is removed and ``out`` is left
    as it was. Leftovers of a run that was killed outright are removed on the next run into
    the same place. With ``what`` (the kind of directory), the published directory holds a
    ``WRITTEN_LIST`` of its kind and paths, which ``check_output_dir`` reads the next time.
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
    try:
        if what is not None:
            record = {"what": what, "paths": sorted(_entries(stage))}
            (stage / WRITTEN_LIST).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        exitcodes.check_stop()  # a stop the body did not see (swallowed in native code) publishes nothing
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    with exitcodes.signals_held():  # the two renames: ``out`` is never left missing by a stop
        old = None
        try:
            if out.exists():
                old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{_OLD}"))
                os.replace(out, old / out.name)
            os.replace(stage, out)
        except OSError as e:
            if old is not None:
                if (old / out.name).exists() and not out.exists():
                    os.replace(old / out.name, out)
                shutil.rmtree(old, ignore_errors=True)
            raise PublishFailed(f"{out}: cannot be replaced ({e.strerror or e}); the new output is in {stage} "
                                f"until the next run to {out.name}: move it elsewhere") from None
        exitcodes.note_published(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
