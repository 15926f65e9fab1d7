"""The errors ``python -m train`` reports in one line, with their exit status.

``TrainError`` is the base of every error training raises on its own account (it derives
from ``runtime.Error``, so ``except runtime.Error`` catches it too). ``DataError`` is labelled
data that cannot be used (exit status ``runtime.exitcodes.UNUSABLE``, 4); ``UsageError`` is a
command line that cannot work with the data given (``runtime.exitcodes.USAGE``, 64).
"""

from __future__ import annotations

from runtime import exitcodes
from runtime.errors import Error


class TrainError(Error):
    """An error of training itself; its message is one line naming the file and the cause."""

    status = exitcodes.UNUSABLE


class DataError(TrainError):
    """Labelled data that cannot be used: unreadable, malformed, or unfit to train on."""


class UsageError(TrainError):
    """Options that do not fit the data (e.g. ``--text-column`` for a fastText file)."""

    status = exitcodes.USAGE
