"""``python -m export MODEL_DIR --out BUNDLE_DIR``: convert, quantize, validate, publish.

exit status (as for every command, see runtime.exitcodes): 0 published; 3 some artifact
failed validation (all failures are named; nothing published); 4 the model directory or
the corpus is missing or unusable; 64 usage error; 1 internal error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from runtime import exitcodes
from runtime.atomic import UnsafeOutput, check_output_dir


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from export.convert import ARTIFACTS

    p = exitcodes.parser("python -m export", __doc__)
    p.add_argument("model_dir", type=Path, help="directory written by python -m train")
    p.add_argument("--out", required=True, type=Path, help="bundle directory to publish")
    p.add_argument("--data", help="aclImdb .tar.gz or directory (default: $IMDB_DATA, else download); for a model "
                                  "trained on your own data, its training file (default: the one in its config.json)")
    p.add_argument("--artifacts", help=f"comma-separated subset of: {', '.join(ARTIFACTS)} (default: all)")
    p.add_argument("--default", help="the bundle's default artifact (default: tflite-int8)")
    p.add_argument("--validation-size", type=int, default=2500, help="held-out training reviews compared (>= 2000)")
    p.add_argument("--calibration-size", type=int, default=500, help="training reviews for int8 calibration")
    p.add_argument("--test-limit", type=int, help="use a seeded sample of the test split (quick checks only)")
    return p.parse_args(argv)


class _Interrupt:
    """Remembers a Ctrl-C. Python raises ``KeyboardInterrupt`` wherever the main thread is, and
    TensorFlow's C++ code may turn it into another exception on the way out (a bare ``TypeError``
    from ``nest.flatten``, seen in CI): after a Ctrl-C, whatever ends the export is the interruption.
    Raised inside a finalizer, it is not raised at all: Python reports it as "Exception ignored"
    with a traceback (also seen in CI) and goes on, so after a Ctrl-C such reports are dropped and
    the export checks for the Ctrl-C before it publishes."""

    seen = False

    @classmethod
    def handler(cls, signum, frame) -> None:
        cls.seen = True
        raise KeyboardInterrupt

    @classmethod
    def check(cls) -> None:
        """Raise ``KeyboardInterrupt`` if a Ctrl-C came: an error seen since may be its echo."""
        if cls.seen:
            raise KeyboardInterrupt

    @classmethod
    def unraisable(cls, report) -> None:
        """``sys.unraisablehook``: an exception in a finalizer after a Ctrl-C is its echo."""
        if not cls.seen:
            sys.__unraisablehook__(report)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from train.userdata import allow_long_fields

    allow_long_fields()
    _Interrupt.seen = False
    previous = signal.getsignal(signal.SIGINT)
    previous_unraisable = sys.unraisablehook
    if previous is signal.default_int_handler:  # not when Ctrl-C is ignored (nohup, background jobs)
        signal.signal(signal.SIGINT, _Interrupt.handler)
        sys.unraisablehook = _Interrupt.unraisable
    try:
        return _export(args)
    except BaseException as e:
        if not (_Interrupt.seen or isinstance(e, KeyboardInterrupt)):
            raise
        print(f"interrupted; nothing was published to {args.out}", file=sys.stderr)
        return exitcodes.INTERRUPTED
    finally:
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)
            sys.unraisablehook = previous_unraisable


def _data_files(model_dir: Path) -> list[str]:
    """The data files a model directory was trained on, as its config.json names them (none if unreadable)."""
    import json

    try:
        files = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))["data"]["files"]
        return [f["path"] for f in files.values() if isinstance(f, dict) and isinstance(f.get("path"), str)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def _export(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from export.exporter import export_bundle, load_corpus
    from export.validate import ValidationError
    from runtime.checks.reviews import CorpusError
    from train.model_dir import ModelDirError

    try:  # the bundle replaces --out whole: never the model directory, its data, or another kind of directory
        check_output_dir(args.out, [args.model_dir, *_data_files(args.model_dir), *([args.data] if args.data else [])],
                         "manifest.json", "bundle")
    except UnsafeOutput as e:
        print(f"python -m export: error: --out {e}", file=sys.stderr)
        return exitcodes.USAGE
    try:
        corpus = load_corpus(args.model_dir, args.data)
        manifest = export_bundle(
            args.model_dir,
            args.out,
            corpus,
            artifacts=args.artifacts.split(",") if args.artifacts else None,
            default=args.default,
            validation_size=args.validation_size,
            calibration_size=args.calibration_size,
            test_limit=args.test_limit,
            before_publishing=_Interrupt.check,
        )
    except (CorpusError, ModelDirError, ValueError) as e:
        _Interrupt.check()
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    except ValidationError as e:
        _Interrupt.check()
        print(f"error: {e}; nothing was published to {args.out}", file=sys.stderr)
        return exitcodes.CHECK_FAILED
    print(f"bundle {args.out}: {len(manifest.artifacts)} artifacts validated "
          f"(float test accuracy {manifest.model['float_test_accuracy']:.4f}), default {manifest.default_artifact}")
    for name, a in manifest.artifacts.items():
        v = a.validation
        print(f"  {name:27s} {a.size_bytes / 1024:8.1f} KiB  max|dp| {v['max_abs_diff']:.2e}  "
              f"agreement {v['label_agreement']:.4f}  test accuracy {v['test_accuracy']:.4f}")
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
