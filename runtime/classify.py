"""Classify review files as positive or negative.

Prints one line per input: label, P(positive) and the file name (or, with --json, one
JSON object per line). Files are read as text (UTF-8 unless --encoding says otherwise;
invalid bytes are replaced, with a warning). Many files are classified in batches; a review
longer than 4 MiB is streamed, so memory stays bounded whatever its size, standard input
included.

exit status (as for every command, see runtime.exitcodes):
  0   every input was classified
  2   some input could not be classified (missing, unreadable, empty or binary);
      the others are still printed
  4   the bundle or the engine cannot be used (missing, corrupt or tampered bundle,
      no engine); nothing was classified
  64  usage error
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

from runtime import exitcodes
from runtime.backends import ENGINES, EngineError
from runtime.bundle import BundleError
from runtime.classifier import Classifier, Prediction, load
from runtime.reading import InputError, is_text_encoding, open_review

BATCH = 256  # files classified together
BATCH_CHARS = 16 << 20  # and at most this much text held for one batch


@dataclass
class Result:
    name: str
    prediction: Prediction
    warnings: list[str]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = exitcodes.parser("python -m runtime.classify", __doc__)
    p.add_argument("files", nargs="+", metavar="FILE", help="review text files; - reads standard input")
    p.add_argument("--model", metavar="BUNDLE", help="bundle directory (default: the bundle shipped with the package)")
    p.add_argument("--artifact", help="artifact of the bundle to run (default: the manifest's default)")
    p.add_argument("--backend", default="auto", choices=["auto", *ENGINES], help="inference engine (default: auto)")
    p.add_argument("--threshold", type=float, help="P(positive) at or above which a review is positive (default: the bundle's)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of the inputs (default: utf-8)")
    p.add_argument("--json", action="store_true", help="one JSON object per input instead of text lines")
    args = p.parse_args(argv)
    if not is_text_encoding(args.encoding):
        p.error(f"{args.encoding!r} is not a text encoding")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        p.error("--threshold must be between 0 and 1")
    return args


@dataclass
class _Text:
    name: str
    text: str
    replaced: bool


def _read(name: str, encoding: str, clf: Classifier) -> _Text | Result:
    """The text of a short input, or the finished result of a streamed long one."""
    with open_review(name, encoding) as review:
        if review.text is not None:
            return _Text(name, review.text, review.replaced)
        prediction = clf.predict_stream(review.pieces)
        if review.blank:
            raise InputError("empty or whitespace-only")
        return Result(name, prediction, _warnings(review.replaced, prediction.known_words, encoding))


def _warnings(replaced: bool, known: int, encoding: str) -> list[str]:
    out = []
    if replaced:
        out.append(f"invalid {encoding} bytes were replaced (use --encoding if the file has another encoding)")
    if known == 0:
        out.append("no known words; the result is only the model's prior")
    return out


def classify_files(clf: Classifier, names: list[str], encoding: str, emit, fail) -> None:
    """Classify ``names`` in batches; ``emit(result)`` in input order, ``fail(name, cause)`` for bad ones."""
    pending: list[_Text] = []
    held = 0

    def flush() -> None:
        nonlocal held
        if not pending:
            return
        for t, prediction in zip(pending, clf.predict_batch([t.text for t in pending])):
            emit(Result(t.name, prediction, _warnings(t.replaced, prediction.known_words, encoding)))
        pending.clear()
        held = 0

    for name in names:
        try:
            item = _read(name, encoding, clf)
        except InputError as e:
            flush()
            fail(name, str(e))
            continue
        if isinstance(item, Result):
            flush()
            emit(item)
            continue
        pending.append(item)
        held += len(item.text)
        if len(pending) >= BATCH or held >= BATCH_CHARS:
            flush()
    flush()


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        clf = load(args.model, args.artifact, args.backend, args.threshold)
    except (BundleError, EngineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    failed = False
    model = clf.bundle.manifest.recipe or str(clf.bundle.root)

    def emit(r: Result) -> None:
        p = r.prediction
        for w in r.warnings:
            print(f"warning: {r.name}: {w}", file=sys.stderr)
        if args.json:
            print(json.dumps({"file": r.name, "label": p.label, "probability": round(p.probability, 6),
                              "known_words": p.known_words, "model": model, "artifact": clf.artifact,
                              "engine": clf.engine, "warnings": r.warnings}, ensure_ascii=False))
        else:
            print(f"{p.label}\t{p.probability:.4f}\t{r.name}")

    def fail(name: str, cause: str) -> None:
        nonlocal failed
        failed = True
        print(f"error: {name}: {cause}", file=sys.stderr)

    try:
        classify_files(clf, args.files, args.encoding, emit, fail)
        sys.stdout.flush()
    except (BundleError, EngineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    except BrokenPipeError:
        _silence_stdout()
        return exitcodes.OK
    except OSError as e:
        _silence_stdout()
        print(f"error: cannot write the output: {e.strerror or e}", file=sys.stderr)
        return exitcodes.INTERNAL
    return exitcodes.INPUT if failed else exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
