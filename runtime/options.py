"""``ClassifierOptions``: everything a classifier is made of, in one picklable value.

``runtime.load`` builds one from its arguments, a loaded ``Classifier`` reports the one it
was loaded with (``Classifier.options``), and every way of rebuilding a classifier in another
process carries one: pickling (``Classifier.__reduce__``), the command's worker processes and
Ray actors (``runtime.cli.bulk.ScorerSpec``) and ``ReviewScorer``. So no option can be lost
on the way to a worker: a new option is a new field here.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path

from runtime.engines.base import engine_threads

DEFAULT_BUNDLE = Path(__file__).parent / "default_bundle"
AUTO = "auto"  # the engine option that picks the first installed engine for the artifact


def is_probability(x: object) -> bool:
    """A real number (numpy's included, bool not) between 0 and 1; NaN is not."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and 0.0 <= x <= 1.0


def check_threshold(threshold: object) -> float | None:
    """``threshold`` as a float (None stays None).

    Raises:
        ValueError: it is not a number between 0 and 1.
    """
    if threshold is None:
        return None
    if not is_probability(threshold):
        raise ValueError(f"threshold must be a number between 0 and 1, got {threshold!r}")
    return float(threshold)


def check_band(band: object) -> tuple[float, float] | None:
    """An uncertainty band as a pair of floats (None: no band).

    Raises:
        ValueError: it is not a ``(low, high)`` pair with ``0 <= low <= high <= 1``.
    """
    if band is None:
        return None
    if (not isinstance(band, (tuple, list)) or len(band) != 2 or not all(map(is_probability, band))
            or not band[0] <= band[1]):
        raise ValueError(f"uncertain must be a (low, high) pair with 0 <= low <= high <= 1, got {band!r}")
    return float(band[0]), float(band[1])


def _bundle_path(bundle: object) -> str | None:
    """The bundle as an absolute path, None for the bundle shipped in the package."""
    if bundle is None:
        return None
    if not isinstance(bundle, (str, os.PathLike)):
        raise TypeError(f"bundle must be a path (str or os.PathLike) or None, got {type(bundle).__name__}")
    path = os.fspath(bundle)
    if not isinstance(path, str):  # a bytes path: the bundle's files are named by str
        raise TypeError(f"bundle must be a str path or None, got {type(path).__name__} {path!r}")
    if not path:  # an unset variable, not a choice of the shipped bundle (that is None)
        raise ValueError("bundle is an empty path; name a bundle directory, or None for the shipped bundle")
    root = os.path.abspath(path)
    return None if root == os.path.abspath(DEFAULT_BUNDLE) else root


def _optional_name(what: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{what} must be a str or None, got {type(value).__name__} {value!r}")
    return value


@dataclass(frozen=True)
class ClassifierOptions:
    """What a classifier is made of: which bundle and artifact, on which engine, with what
    threads, threshold and uncertainty band. Frozen, hashable and picklable; checked once,
    when built.

    Attributes:
        bundle: the bundle directory as an absolute path (a relative one is made absolute
            when the options are built); None for the bundle shipped inside the package, so
            that a process elsewhere (a Ray or Spark worker) loads its own copy.
        artifact: the artifact of the bundle to run; None for the manifest's default (or the
            first one an installed engine can run).
        engine: ``"auto"`` (the first installed engine for the artifact) or an engine name
            (``"litert"``, ``"tflite-runtime"``, ``"onnxruntime"``). An unknown or missing
            engine is refused when the classifier is loaded (``runtime.Error``), not here.
        num_threads: the threads the engine may use; None for one (see
            ``runtime.engines.base.engine_threads``).
        threshold: P(positive) at or above which a review is positive; None for the bundle's.
        uncertain: a ``(low, high)`` band: a probability with ``low <= p <= high`` is
            labelled ``uncertain``; None for no band.

    Raises:
        TypeError: ``bundle`` is not a path or None, ``artifact`` not a str or None,
            ``engine`` not a str, or ``num_threads`` not an int or None.
        ValueError: ``threshold`` is not a number between 0 and 1 (bool is not),
            ``uncertain`` not a ``(low, high)`` band inside it, or ``num_threads`` below 1.
    """

    bundle: str | None = None
    artifact: str | None = None
    engine: str = AUTO
    num_threads: int | None = None
    threshold: float | None = None
    uncertain: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        # The cheap checks of the arguments first, in the order load() has always named them.
        set_ = object.__setattr__
        set_(self, "threshold", check_threshold(self.threshold))
        set_(self, "uncertain", check_band(self.uncertain))
        if self.num_threads is not None:
            engine_threads(self.num_threads)  # TypeError or ValueError for what no engine can be given
            set_(self, "num_threads", int(self.num_threads))
        if not isinstance(self.engine, str):
            raise TypeError(f"engine must be a str, got {type(self.engine).__name__} {self.engine!r}")
        set_(self, "artifact", _optional_name("artifact", self.artifact))
        set_(self, "bundle", _bundle_path(self.bundle))

    @property
    def bundle_path(self) -> Path:
        """The bundle directory to open: ``bundle``, or the one shipped inside the package."""
        return DEFAULT_BUNDLE if self.bundle is None else Path(self.bundle)
