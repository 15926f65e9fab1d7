"""Classify review files as positive or negative.

Prints one line per input: label, P(positive) and the file name (or, with --json, one
JSON object per line). Files are read as text (UTF-8 unless --encoding says otherwise;
invalid bytes are replaced, with a warning). Many files are classified in batches; a file
larger than 4 MiB is streamed, so memory stays bounded whatever its size.

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
import codecs
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO


from runtime import exitcodes
from runtime.backends import ENGINES, EngineError
from runtime.bundle import BundleError
from runtime.classifier import Classifier, Prediction, load

STREAM_ABOVE = 4 << 20
BLOCK = 1 << 20
BATCH = 256
SNIFF = 8192


class InputError(Exception):
    """An input that cannot be classified; the message is the cause."""


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
    try:
        if not codecs.lookup(args.encoding)._is_text_encoding:
            p.error(f"{args.encoding!r} is not a text encoding")
    except LookupError:
        p.error(f"unknown encoding {args.encoding!r}")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        p.error("--threshold must be between 0 and 1")
    return args


class _Decoder:
    """Incremental decoding that replaces invalid bytes and remembers that it did."""

    def __init__(self, encoding: str):
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        self._lenient = codecs.getincrementaldecoder(encoding)(errors="replace")
        self.replaced = False

    def decode(self, data: bytes, final: bool = False) -> str:
        if not self.replaced:
            try:
                return self._decoder.decode(data, final)
            except UnicodeDecodeError:
                self.replaced = True
                self._lenient.setstate(self._decoder.getstate())
        return self._lenient.decode(data, final)


def _open(name: str) -> tuple[BinaryIO, int | None]:
    if name == "-":
        return sys.stdin.buffer, None
    try:
        if os.path.isdir(name):
            raise InputError("is a directory")
        f = open(name, "rb")
    except FileNotFoundError:
        raise InputError("no such file") from None
    except PermissionError:
        raise InputError("permission denied") from None
    except IsADirectoryError:
        raise InputError("is a directory") from None
    except OSError as e:
        raise InputError(e.strerror or str(e)) from None
    return f, os.fstat(f.fileno()).st_size


def _pieces(f: BinaryIO, first: bytes, decoder: _Decoder) -> Iterator[str]:
    yield decoder.decode(first)
    while block := f.read(BLOCK):
        yield decoder.decode(block)
    yield decoder.decode(b"", final=True)


@dataclass
class _Text:
    name: str
    text: str
    replaced: bool


def _read(name: str, encoding: str, clf: Classifier) -> _Text | Result:
    """The text of a small input, or the finished result of a streamed large one."""
    f, size = _open(name)
    try:
        first = f.read(SNIFF)
        if b"\0" in first and not encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32")):
            raise InputError("binary file (contains NUL bytes), not text")
        decoder = _Decoder(encoding)
        if size is not None and size > STREAM_ABOVE:
            prediction = clf.predict_stream(_pieces(f, first, decoder))
            if prediction.known_words == 0 and not first.strip():
                raise InputError("empty or whitespace-only")
            return Result(name, prediction, _warnings(decoder.replaced, prediction.known_words, encoding))
        text = decoder.decode(first + f.read(), final=True)
    except OSError as e:
        raise InputError(e.strerror or str(e)) from None
    finally:
        if f is not sys.stdin.buffer:
            f.close()
    if not text.strip():
        raise InputError("empty or whitespace-only")
    return _Text(name, text, decoder.replaced)


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

    def flush() -> None:
        if not pending:
            return
        for t, prediction in zip(pending, clf.predict_batch([t.text for t in pending])):
            emit(Result(t.name, prediction, _warnings(t.replaced, prediction.known_words, encoding)))
        pending.clear()

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
        if len(pending) >= BATCH:
            flush()
    flush()


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
    except (BundleError, EngineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    except BrokenPipeError:
        return exitcodes.OK
    return exitcodes.INPUT if failed else exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
