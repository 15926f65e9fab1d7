"""Classify reviews as positive or negative: one review per file, or many per file.

Prints one line per input: label, P(positive) and the file name (or, with --json, one
JSON object per line). With --lines, --jsonl or --csv each file holds many reviews (one
per line, a JSON object per line, or a CSV column): every record gives exactly one output,
in input order, named by its source (file:line); a record that cannot be classified gives
an error (a line "error<TAB>-<TAB>file:line", or a JSON object with "error"). --jobs N
scores records in N processes, this one and N - 1 workers (0: one per core), with identical
results, and --ray on Ray. --out FILE writes the output atomically: a complete file or none.

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
  130 interrupted (Ctrl-C): the workers are stopped and no --out file is written
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from runtime import bulk, exitcodes
from runtime.atomic import atomic_file
from runtime.backends import ENGINES, EngineError
from runtime.bundle import BundleError
from runtime.classifier import Classifier, load
from runtime.reading import InputError, is_text_encoding, open_input, open_review
from runtime.records import CSV, JSONL, LINES, Item, Record, read_items
from runtime.render import OutputOptions, Renderer, Result, warnings
from runtime.text import EMPTY_REVIEW
from runtime.workers import WorkerError

BATCH = 256  # files classified together
BATCH_CHARS = 16 << 20  # and at most this much text held for one batch


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
                   help="with --lines/--jsonl/--csv: score in N processes, this one and N - 1 workers, "
                        "0 = one per core (default: 1); "
                        "with --ray, N Ray actors beside this process, 0 = one per CPU of the cluster")
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
        try:
            prediction = clf.predict_stream(review.pieces)
        except ValueError:  # the one it raises: a blank text
            raise InputError(EMPTY_REVIEW) from None
        return Result(name, prediction, warnings(review.replaced, prediction.known_words, encoding))


def classify_files(clf: Classifier, names: list[str], encoding: str, emit, fail) -> None:
    """Classify ``names`` in batches; ``emit(result)`` in input order, ``fail(name, cause)`` for bad ones."""
    pending: list[_Text] = []
    held = 0

    def flush() -> None:
        nonlocal held
        if not pending:
            return
        for t, prediction in zip(pending, clf.predict_batch([t.text for t in pending])):
            emit(Result(t.name, prediction, warnings(t.replaced, prediction.known_words, encoding), text=t.text))
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


def _items(names: list[str], args: argparse.Namespace, key: str) -> Iterator[Item]:
    """The items of every file in turn (see ``runtime.records.read_items``); a file that
    cannot be read is one error record."""
    for name in names:
        try:
            f = open_input(name)
        except InputError as e:
            yield [Record(name, None, str(e))]
            continue
        try:
            yield from read_items(f, name, args.format, args.encoding, key)
        except InputError as e:
            yield [Record(name, None, str(e))]
        finally:
            if f is not sys.stdin.buffer:
                f.close()


def classify_records(clf: Classifier, args: argparse.Namespace, options: OutputOptions) -> Iterator[bulk.Rendered]:
    """Every record of every file, scored and rendered in order (in ``--jobs`` processes or on Ray)."""
    key = args.field if args.format == JSONL else args.column
    job = bulk.Job(bulk.ScorerSpec.of(clf), args.format, args.encoding, key, options)
    items = _items(args.files, args, key)
    if args.ray:
        return bulk.score(items, job, clf, ray_workers=args.jobs or 0)
    return bulk.score(items, job, clf, bulk.jobs_count(1 if args.jobs is None else args.jobs))


class _Progress:
    """A line on stderr, renewed every second, when stderr is a terminal and a run is long."""

    def __init__(self) -> None:
        self.on = sys.stderr.isatty()
        self.count = 0
        self._start = self._shown = time.monotonic()

    def step(self, n: int = 1) -> None:
        self.count += n
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted" + (f"; {args.out} was not written" if args.out else ""), file=sys.stderr)
        return exitcodes.INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    try:
        clf = load(args.model, args.artifact, args.backend, args.threshold, uncertain=args.uncertain)
    except (BundleError, EngineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    failed = False
    model = clf.bundle.manifest.recipe or str(clf.bundle.root)
    progress = _Progress()

    options = OutputOptions(args.json, bool(args.format), args.encoding, model, args.explain)
    renderer = Renderer(clf, options)

    def write(out: TextIO, text: str, errors: list[str], bad: bool, count: int = 1) -> None:
        nonlocal failed
        failed |= bad
        for message in errors:
            print(message, file=sys.stderr)
        out.write(text)
        progress.step(count)

    def emit(r: Result, out: TextIO) -> None:
        write(out, *renderer.render(r))

    try:
        with _output(args.out) as out:
            if args.format:
                with closing(classify_records(clf, args, options)) as scored:  # stops the workers on any exit
                    for rendered in scored:
                        write(out, rendered.out, rendered.errors, rendered.failed, rendered.count)
            else:
                classify_files(clf, args.files, args.encoding, lambda r: emit(r, out),
                               lambda name, cause: emit(Result(name, None, error=cause), out))
    except (BundleError, EngineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    except WorkerError as e:
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
