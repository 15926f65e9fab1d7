"""``python -m export MODEL_DIR --out BUNDLE_DIR``: convert, quantize, validate, publish.

exit status (as for every command, see runtime.exitcodes): 0 published; 3 some artifact
failed validation (all failures are named; nothing published); 4 the model directory or
the corpus is missing or unusable; 64 usage error; 1 internal error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from runtime import exitcodes
from runtime.atomic import PublishFailed, UnsafeOutput, check_output_dir


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
    args = p.parse_args(argv)
    for option, value in (("--validation-size", args.validation_size), ("--calibration-size", args.calibration_size),
                          ("--test-limit", args.test_limit)):
        if value is not None and value < 1:
            p.error(f"{option} {value}: expected a positive whole number")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from train.userdata import allow_long_fields

    allow_long_fields()
    stops = exitcodes.StopRequests()
    return stops.run(lambda: _export(args, stops), f"nothing was published to {args.out}")


def _export(args: argparse.Namespace, stops: exitcodes.StopRequests) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from export.exporter import export_bundle, load_corpus
    from export.validate import ValidationError
    from runtime.checks.reviews import CorpusError
    from runtime.errors import Error
    from train.errors import TrainError
    from train.model_dir import ModelDirError, data_files

    try:  # the bundle replaces --out whole: never the model directory, its data, or another kind of directory
        check_output_dir(args.out, [args.model_dir, *data_files(args.model_dir), *([args.data] if args.data else [])],
                         "manifest.json", "bundle", "format")
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
            before_publishing=stops.check,
        )
    except ValidationError as e:
        stops.check()
        print(f"error: {e}; nothing was published to {args.out}", file=sys.stderr)
        return exitcodes.CHECK_FAILED
    except TrainError as e:  # the user's data, read again (a UsageError: options that do not fit it)
        stops.check()
        print(f"error: {e}", file=sys.stderr)
        return e.status
    except PublishFailed as e:  # the validated bundle could not replace --out
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.INTERNAL
    except (CorpusError, ModelDirError, ValueError, Error) as e:
        stops.check()
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    print(f"bundle {args.out}: {len(manifest.artifacts)} artifacts validated "
          f"(float test accuracy {manifest.model['float_test_accuracy']:.4f}), default {manifest.default_artifact}")
    for name, a in manifest.artifacts.items():
        v = a.validation
        print(f"  {name:27s} {a.size_bytes / 1024:8.1f} KiB  max|dp| {v['max_abs_diff']:.2e}  "
              f"agreement {v['label_agreement']:.4f}  test accuracy {v['test_accuracy']:.4f}")
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
