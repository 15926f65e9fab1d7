"""The one muting of stderr the runtime does: ai-edge-litert's start-up INFO line."""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_FIRST_LOCK = threading.Lock()
_first_done = False


@contextmanager
def _first_interpreter_quietly() -> Iterator[None]:
    """Hide the one INFO line ("Created TensorFlow Lite XNNPACK delegate for CPU") that
    ai-edge-litert prints, once per process, when its first interpreter is created.

    File descriptor 2 belongs to the whole process, so it is pointed at /dev/null only for
    that first creation and only while this is the process's only thread; otherwise nothing
    is touched and the line shows. Meanwhile faulthandler writes to the real stderr, so a
    crash inside the engine still prints its traceback; an engine's failure reaches the
    caller as an exception, whose message the runtime reports.

    Nothing is touched either (and the line shows) when fd 2 is closed, or when faulthandler
    is already enabled: Python cannot tell which file it writes to, so it could be neither
    redirected nor restored, and muting fd 2 might hide its traceback. ``sys.stderr`` is only
    flushed, if it can be: it may be None or lack a file descriptor (pytest's ``capsys``).
    """
    global _first_done
    with _FIRST_LOCK:
        quiet = not _first_done and threading.active_count() == 1
        _first_done = True
    if not quiet or faulthandler.is_enabled():
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # fd 2 is closed: there is nothing to mute
        yield
        return
    try:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
        except (OSError, ValueError):
            pass
        faulthandler.enable(file=saved)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        faulthandler.disable()
        os.close(saved)
