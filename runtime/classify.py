"""Classify reviews as positive or negative: one review per file, or many per file.

Prints one line per input: label, P(positive) and the file name (or, with --json, one
JSON object per line). With --lines, --jsonl or --csv each file holds many reviews (one
per line, a JSON object per line, or a CSV column): every record gives exactly one output,
in input order, named by its source (file:line); a record that cannot be classified gives
an error (a line "error<TAB>-<TAB>file:line", or a JSON object with "error"). --jobs N
scores records in N worker processes (0: one per core) with identical results, and --ray
on Ray. --out FILE writes the output atomically: a complete file or none.

--explain [K] adds the K words or word pairs that pushed each review most towards each
label (exact weights for the n-gram models, occlusion for the others) and the review with
them marked; --uncertain LOW:HIGH labels a probability between LOW and HIGH "uncertain".

Files are read as text (UTF-8 unless --encoding says otherwise; invalid bytes are replaced,
with a warning). Many files are classified in batches; a review longer than 4 MiB is
streamed, so memory stays bounded whatever its size, standard input included.

exit status (as for every command, see runtime.exitcodes):
  0   every input was classified
  1   internal error, or a worker process died, or the output cannot be written
  2   some input or record could not be classified (missing, unreadable, empty,
      binary, malformed); the others are still printed
  4   the bundle or the engine cannot be used (missing, corrupt or tampered bundle,
      no engine); nothing was classified
  64  usage error
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from runtime import bulk, exitcodes
from runtime.atomic import atomic_file
from runtime.backends import ENGINES, EngineError
from runtime.bundle import BundleError
from runtime.classifier import Classifier, Prediction, load
from runtime.explain import Explanation, marked
from runtime.features import BULK_MEMO_SIZE
from runtime.reading import InputError, is_text_encoding, open_input, open_review
from runtime.records import CSV, JSONL, LINES, Record, read_records

BATCH = 256  # files classified together
BATCH_CHARS = 16 << 20  # and at most this much text held for one batch


@dataclass
class Result:
    name: str
    prediction: Prediction | None  # None: not classified, ``error`` says why
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    fields: dict = field(default_factory=dict)  # carried from a JSON record
    text: str | None = None  # kept for --explain
    explanation: Explanation | None = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = exitcodes.parser("python -m runtime.classify", __doc__)
    p.add_argument("files", nargs="+", metavar="FILE", help="review files; - reads standard input")
    p.add_argument("--model", metavar="BUNDLE", help="bundle directory (default: the bundle shipped with the package)")
    p.add_argument("--artifact", help="artifact of the bundle to run (default: the manifest's default)")
    p.add_argument("--backend", default="auto", choices=["auto", *ENGINES], help="inference engine (default: auto)")
    p.add_argument("--threshold", type=float, help="P(positive) at or above which a review is positive (default: the bundle's)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of the inputs (default: utf-8)")
    p.add_argument("--json", action="store_true", help="one JSON object per input instead of text lines")
    formats = p.add_mutually_exclusive_group()
    formats.add_argument("--lines", dest="format", action="store_const", const=LINES,
                         help="each file holds one review per line")
    formats.add_argument("--jsonl", dest="format", action="store_const", const=JSONL,
                         help="each file holds one JSON object per line (see --field)")
    formats.add_argument("--csv", dest="format", action="store_const", const=CSV,
                         help="each file is a CSV with a header row (see --column)")
    p.add_argument("--field", default="text", help="--jsonl: the field holding the review (default: text); "
                   "the other fields are carried to --json output")
    p.add_argument("--column", default="text", help="--csv: the column holding the review (default: text)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="with --lines/--jsonl/--csv: score in N worker processes, 0 = one per core (default: 1); "
                        "with --ray, N Ray workers, 0 = one per CPU of the cluster")
    p.add_argument("--ray", action="store_true",
                   help="with --lines/--jsonl/--csv: score on Ray (the cluster RAY_ADDRESS names, else a local "
                        "one); needs pip install 'imdb-edge[ray]'")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the output to FILE atomically instead of stdout")
    p.add_argument("--explain", type=int, nargs="?", const=10, metavar="K",
                   help="show the K terms (default 10) that pushed each review most towards each label")
    p.add_argument("--uncertain", type=_band, metavar="LOW:HIGH",
                   help="label a review 'uncertain' when LOW <= P(positive) <= HIGH")
    args = p.parse_args(argv)
    if args.explain is not None and args.explain < 1:
        p.error("--explain K must be at least 1")
    if args.explain is not None and (args.ray or (args.jobs is not None and args.jobs != 1)):
        p.error("--explain runs in this process: leave out --jobs and --ray")
    if not is_text_encoding(args.encoding):
        p.error(f"{args.encoding!r} is not a text encoding")
    if args.format and args.encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32")):
        p.error("--lines, --jsonl and --csv need an encoding in which a newline is one byte (utf-8, latin-1, ...)")
    if args.jobs is not None and args.jobs < 0:
        p.error("--jobs must be 0 (one per core) or more")
    if (args.jobs is not None or args.ray) and not args.format:
        p.error("--jobs and --ray go with --lines, --jsonl or --csv")
    if args.ray and importlib.util.find_spec("ray") is None:
        p.error("--ray needs Ray: pip install 'imdb-edge[ray]'")
    if args.out is not None and not args.out.parent.is_dir():
        p.error(f"--out {args.out}: the directory {args.out.parent} does not exist")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        p.error("--threshold must be between 0 and 1")
    return args


def _band(value: str) -> tuple[float, float]:
    """``LOW:HIGH`` as a pair of probabilities, for argparse."""
    try:
        low, high = (float(v) for v in value.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not LOW:HIGH (e.g. 0.4:0.6)") from None
    if not 0.0 <= low <= high <= 1.0:
        raise argparse.ArgumentTypeError(f"{value!r}: need 0 <= LOW <= HIGH <= 1")
    return low, high


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
            emit(Result(t.name, prediction, _warnings(t.replaced, prediction.known_words, encoding), text=t.text))
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


def _records(names: list[str], args: argparse.Namespace) -> Iterator[Record]:
    """The records of every file in turn; a file that cannot be read is one error record."""
    key = args.field if args.format == JSONL else args.column
    for name in names:
        try:
            f = open_input(name)
        except InputError as e:
            yield Record(name, None, str(e))
            continue
        try:
            yield from read_records(f, name, args.format, args.encoding, key)
        except InputError as e:
            yield Record(name, None, str(e))
        finally:
            if f is not sys.stdin.buffer:
                f.close()


def classify_records(clf: Classifier, args: argparse.Namespace, emit) -> None:
    """Every record of every file, scored in order (in ``--jobs`` processes), to ``emit``."""
    clf.encoder.set_memo_size(BULK_MEMO_SIZE)  # as the workers do: record files are the bulk path
    if args.ray:
        scored = bulk.score(_records(args.files, args), clf, ray_workers=args.jobs or 0)
    else:
        scored = bulk.score(_records(args.files, args), clf, bulk.jobs_count(1 if args.jobs is None else args.jobs))
    for record, prediction in scored:
        if prediction is None:
            emit(Result(record.source, None, error=record.error, fields=record.fields))
        else:
            emit(Result(record.source, prediction, _warnings(record.replaced, prediction.known_words, args.encoding),
                        fields=record.fields, text=record.text))


class _Progress:
    """A line on stderr, renewed every second, when stderr is a terminal and a run is long."""

    def __init__(self) -> None:
        self.on = sys.stderr.isatty()
        self.count = 0
        self._start = self._shown = time.monotonic()

    def step(self) -> None:
        self.count += 1
        if self.on and (now := time.monotonic()) - self._shown >= 1.0:
            self._shown = now
            rate = self.count / (now - self._start)
            print(f"\r{self.count:,} classified, {rate:,.0f}/s", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.on and self._shown > self._start:
            print(file=sys.stderr)


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    """Standard output, or a file that appears complete or not at all."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_file(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
        yield text
        text.flush()
        text.detach()


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _explanation_text(e: Explanation, text: str) -> str:
    """Indented lines under a result: the method, the terms each way, the marked review."""
    def terms(ts) -> str:
        return ", ".join(f"{t.text} ({t.contribution:+.2f})" for t in ts) or "-"

    how = (f"exact n-gram weights: logit {e.logit:+.2f} = bias {e.bias:+.2f} + {e.terms} terms" if e.bias is not None
           else f"occlusion of each of {e.terms} words: logit {e.logit:+.2f}")
    return (f"  why: {how}\n  towards positive: {terms(e.positive)}\n  towards negative: {terms(e.negative)}\n"
            f"  review: {marked(text, e)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        clf = load(args.model, args.artifact, args.backend, args.threshold, uncertain=args.uncertain)
    except (BundleError, EngineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    failed = False
    model = clf.bundle.manifest.recipe or str(clf.bundle.root)
    progress = _Progress()

    def emit(r: Result, out: TextIO) -> None:
        nonlocal failed
        progress.step()
        if r.prediction is None:
            failed = True
            print(f"error: {r.name}: {r.error}", file=sys.stderr)
            if args.format and args.json:
                print(json.dumps({**r.fields, "source": r.name, "error": r.error}, ensure_ascii=False), file=out)
            elif args.format:
                print(f"error\t-\t{r.name}", file=out)
            return
        p = r.prediction
        if args.explain is not None:
            if r.text is None:
                r.warnings.append("too long to explain (it was streamed); explain an excerpt of it")
            else:
                r.explanation = clf.explain(r.text, args.explain)
        for w in r.warnings:
            print(f"warning: {r.name}: {w}", file=sys.stderr)
        if args.json:
            where = {"source": r.name} if args.format else {"file": r.name}
            record = {**r.fields, **where, "label": p.label, "probability": round(p.probability, 6),
                      "known_words": p.known_words, "model": model, "artifact": clf.artifact,
                      "engine": clf.engine, "warnings": r.warnings}
            if args.uncertain is not None:
                record["uncertain_band"] = list(args.uncertain)
            if r.explanation is not None:
                record["explanation"] = r.explanation.to_json()
            print(json.dumps(record, ensure_ascii=False), file=out)
        else:
            print(f"{p.label}\t{p.probability:.4f}\t{r.name}", file=out)
            if r.explanation is not None:
                print(_explanation_text(r.explanation, r.text), file=out)

    try:
        with _output(args.out) as out:
            if args.format:
                classify_records(clf, args, lambda r: emit(r, out))
            else:
                classify_files(clf, args.files, args.encoding, lambda r: emit(r, out),
                               lambda name, cause: emit(Result(name, None, error=cause), out))
    except (BundleError, EngineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    except bulk.WorkerError as e:
        print(f"error: {e}" + (f"; {args.out} was not written" if args.out else ""), file=sys.stderr)
        return exitcodes.INTERNAL
    except BrokenPipeError:
        _silence_stdout()
        return exitcodes.OK
    except OSError as e:
        _silence_stdout()
        print(f"error: cannot write the output: {e.strerror or e}", file=sys.stderr)
        return exitcodes.INTERNAL
    finally:
        progress.done()
    return exitcodes.INPUT if failed else exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
