"""Classify reviews as positive or negative: one review per file, or many per file.

Prints one line per input: label, P(positive) and the file name (or, with --json, one
JSON object per line). With --lines, --jsonl or --csv each file holds many reviews (one
per line, a JSON object per line, or a CSV column): every record gives exactly one output,
in input order, named by its source (file:line); a record that cannot be classified gives
an error (a line "error<TAB>-<TAB>file:line", or a JSON object with "error"). --jobs N
scores records in N processes, this one and N - 1 workers (0: one per core; never more than
the cores this process may use), with identical results, and --ray on Ray (never more actors
than the cluster's CPUs). A worker that has not answered is named on stderr after 30 s (or
half of --worker-timeout) and fails the run after --worker-timeout seconds.

--out FILE writes the output atomically: a complete file or none; a symbolic link's file is
replaced (the link stays); a FIFO or a character device (/dev/null, /proc/self/fd/1) is
written through; anything else that is not a file, and any of the inputs, is refused. The
output is UTF-8, whatever the locale; standard output carries only the results (any other
output, from a library or a worker, goes to standard error).

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
  64  usage error (also: --out names an input, a directory, a socket or a block device)
  129, 130, 143  stopped by SIGHUP, Ctrl-C (SIGINT) or SIGTERM: the workers are stopped and
      no --out file is written (a FIFO or device written through has part of the output)
A closed standard input makes "-" an input that cannot be read (status 2); a closed standard
output without --out is status 1; a closed standard error hides the messages only.
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
from typing import BinaryIO, TextIO

from runtime import exitcodes
from runtime.cli import bulk
from runtime.atomic import UnsafeOutput, atomic_file, output_target
from runtime.engines.base import ENGINES, EngineError
from runtime.bundle.files import BundleError
from runtime.classifier import Classifier, load
from runtime.errors import Error
from runtime.cli.reading import InputError, is_text_encoding, open_input, open_review
from runtime.cli.records import CSV, JSONL, LINES, Item, Record, read_items
from runtime.cli.render import OutputOptions, Renderer, Result, warnings
from runtime.encoding.text import EMPTY_REVIEW
from runtime.cli.workers import WorkerError

BATCH = 256  # files classified together
BATCH_CHARS = 16 << 20  # and at most this much text held for one batch
STDIN_CLOSED = "standard input is closed"  # the cause given for "-" when the command was started without one
WORKER_TIMEOUT = 300.0  # seconds a worker may leave an item unanswered before the run fails


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = exitcodes.parser("python -m runtime.classify", __doc__)
    p.add_argument("files", nargs="+", metavar="FILE", help="review files; - reads standard input")
    p.add_argument("--model", metavar="BUNDLE", help="bundle directory (default: the bundle shipped with the package)")
    p.add_argument("--artifact", help="artifact of the bundle to run (default: the manifest's default)")
    p.add_argument("--backend", default="auto", choices=["auto", *ENGINES], help="inference engine (default: auto)")
    p.add_argument("--threshold", type=float, help="P(positive) at or above which a review is positive (default: the "
                   "bundle's); for a bundle of two labels only")
    p.add_argument("--top", type=int, metavar="K", help="the K most probable labels with their probabilities "
                   "(text: label and probability K times, then the name; --json: a 'top' list)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of the inputs (default: utf-8)")
    p.add_argument("--json", action="store_true", help="one JSON object per input instead of text lines")
    formats = p.add_mutually_exclusive_group()
    formats.add_argument("--lines", dest="format", action="store_const", const=LINES,
                         help="each file holds one review per line")
    formats.add_argument("--jsonl", dest="format", action="store_const", const=JSONL,
                         help="each file holds one JSON object per line (see --field)")
    formats.add_argument("--csv", dest="format", action="store_const", const=CSV,
                         help="each file is a CSV with a header row (see --column)")
    p.add_argument("--field", help="--jsonl: the field holding the review (default: text); "
                   "the other fields are carried to --json output")
    p.add_argument("--column", help="--csv: the column holding the review (default: text)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="with --lines/--jsonl/--csv: score in N processes, this one and N - 1 workers, "
                        "0 = one per core (default: 1); "
                        "with --ray, N Ray actors beside this process, 0 = one per CPU of the cluster")
    p.add_argument("--ray", action="store_true",
                   help="with --lines/--jsonl/--csv: score on Ray (the cluster RAY_ADDRESS names, else a local "
                        "one); needs pip install 'imdb-edge[ray]'")
    p.add_argument("--worker-timeout", type=_seconds, default=WORKER_TIMEOUT, metavar="SECONDS",
                   help="with --jobs/--ray: fail when a worker has not answered for SECONDS "
                        f"(default {WORKER_TIMEOUT:g}; 0: wait for ever)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the output to FILE atomically instead of stdout")
    p.add_argument("--explain", type=int, nargs="?", const=10, metavar="K",
                   help="show the K terms (default 10) that pushed each review most towards each label")
    p.add_argument("--uncertain", type=_band, metavar="LOW:HIGH",
                   help="label a review 'uncertain' when LOW <= P(positive) <= HIGH; with more than two labels, "
                        "when LOW <= the top label's probability <= HIGH (a single X means 0:X)")
    args = p.parse_args(argv)
    if args.explain is not None and args.explain < 1:
        p.error("--explain K must be at least 1")
    if args.top is not None and args.top < 1:
        p.error("--top K must be at least 1")
    for option, value, fmt in (("--field", args.field, JSONL), ("--column", args.column, CSV)):
        if value is not None and args.format != fmt:
            p.error(f"{option} names where the review is in a {'--jsonl' if fmt == JSONL else '--csv'} file; "
                    f"it does nothing {'without one' if args.format is None else 'here'}")
    args.field = "text" if args.field is None else args.field
    args.column = "text" if args.column is None else args.column
    if args.model == "":
        p.error("--model: an empty path; name a bundle directory, or leave --model out for the shipped bundle")
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
    if args.out is not None:
        inputs = [0 if name == "-" else name for name in args.files]
        try:
            target = output_target(args.out, inputs)  # before anything is read
        except UnsafeOutput as e:
            p.exit(exitcodes.USAGE, f"{p.prog}: error: --out {e}\n")  # one line: the command line is right
        if not target.through and not target.path.parent.is_dir():
            p.error(f"--out {args.out}: the directory {target.path.parent} does not exist")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        p.error("--threshold must be between 0 and 1")
    return args


def _seconds(value: str) -> float | None:
    """A number of seconds, 0 meaning no limit (None), for argparse."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: need 0 (no limit) or more seconds")
    return seconds or None


def _band(value: str) -> tuple[float, float]:
    """``LOW:HIGH`` (or ``X``, meaning ``0:X``) as a pair of probabilities, for argparse."""
    try:
        low, high = (float(v) for v in (value.split(":") if ":" in value else ("0", value)))
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


def classify_files(clf: Classifier, names: list[str], encoding: str, emit, fail, stdin_closed: bool = False) -> None:
    """Classify ``names`` in batches; ``emit(result)`` in input order, ``fail(name, cause)`` for
    bad ones (``-`` among them if the command was started with standard input closed)."""
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
            if name == "-" and stdin_closed:
                raise InputError(STDIN_CLOSED)
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
    """The items of every file in turn (see ``runtime.cli.records.read_items``); a file that
    cannot be read is one error record."""
    for name in names:
        if name == "-" and args.stdin_closed:
            yield [Record(name, None, STDIN_CLOSED)]
            continue
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


def classify_records(clf: Classifier, args: argparse.Namespace, options: OutputOptions,
                     note=None) -> Iterator[bulk.Rendered]:
    """Every record of every file, scored and rendered in order (in ``--jobs`` processes or on
    Ray); ``note(line)`` gets what the user should know about the workers (default: stderr)."""
    note = note or _note
    key = args.field if args.format == JSONL else args.column
    job = bulk.Job(bulk.ScorerSpec.of(clf), args.format, args.encoding, key, options)
    items = _items(args.files, args, key)
    timeout = getattr(args, "worker_timeout", WORKER_TIMEOUT)
    if args.ray:
        return bulk.score(items, job, clf, ray_workers=args.jobs or 0, timeout=timeout, note=note)
    asked = 1 if args.jobs is None else args.jobs
    jobs = bulk.jobs_count(asked)
    if asked > jobs:
        note(f"note: --jobs {asked} capped at {jobs}, the cores this process may use")
    return bulk.score(items, job, clf, jobs, timeout=timeout, note=note)


def _note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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


class _OutputFailed(Error):
    """Writing the results failed (``cause``), as opposed to anything else the run does."""

    def __init__(self, cause: OSError):
        super().__init__(cause)
        self.cause = cause


class _Records:
    """Where the results go, as UTF-8 bytes whatever the locale or PYTHONIOENCODING: a binary
    stream (flushed after each write on a terminal), or a text stream without one (a program
    that replaced ``sys.stdout``)."""

    def __init__(self, stream: BinaryIO | TextIO):
        self.stream = stream
        self.binary = not isinstance(stream, io.TextIOBase)
        try:
            self.interactive = stream.isatty()
        except (OSError, ValueError):
            self.interactive = False

    def write(self, text: str) -> None:
        try:
            # render.py gives only encodable text; backslashreplace keeps the output valid UTF-8 whatever comes
            self.stream.write(text.encode("utf-8", "backslashreplace") if self.binary else text)
            if self.interactive:
                self.stream.flush()
        except OSError as e:
            raise _OutputFailed(e) from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as e:
            raise _OutputFailed(e) from None


def _real_stdout() -> bool:
    """Whether ``sys.stdout`` writes to file descriptor 1 (not a program's own stream)."""
    try:
        return sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):
        return False


@contextmanager
def _output(path: Path | None) -> Iterator[_Records]:
    """The results' stream: a file that appears complete or not at all (``runtime.atomic``),
    or standard output. File descriptor 1 points at standard error meanwhile, so that nothing
    but the results reaches standard output: not a library's print (Ray's "(raylet) ..."
    lines), not a worker process's output (they inherit it)."""
    if path is not None:
        inside = None  # an error of the run itself, not of the output
        try:
            with atomic_file(path) as raw, _stdout_to_stderr():
                records = _Records(raw)
                try:
                    yield records
                except OSError as e:
                    inside = e
                    raise
                records.flush()
        except OSError as e:  # the output cannot be made or published
            if e is inside:
                raise
            raise _OutputFailed(e) from None
        return
    if not _real_stdout():
        stream = getattr(sys.stdout, "buffer", sys.stdout)
        records = _Records(stream)
        yield records
        records.flush()
        return
    sys.stdout.flush()
    raw = open(os.dup(1), "wb", closefd=True)  # the results' own descriptor: fd 1 itself is redirected
    try:
        with _stdout_to_stderr():
            records = _Records(raw)
            yield records
            records.flush()
    finally:
        try:
            raw.close()
        except OSError:
            pass  # a broken pipe: reported by the write that met it


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 at standard error while the block runs (only when ``sys.stdout``
    is file descriptor 1: a program's own stream is left alone)."""
    if not _real_stdout():
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        try:
            sys.stdout.flush()
        except OSError:
            pass
        os.dup2(saved, 1)
        os.close(saved)


@contextmanager
def _standard_streams() -> Iterator[set[int]]:
    """Standard input, output and error that the command was started without (``<&-``, ``>&-``,
    ``2>&-``) opened on the null device while the command runs, so that no file the command
    opens takes their place and no message fails; yields the set of those that were closed."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
    for fd in sorted(closed):  # the lowest free descriptor is fd itself
        new = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if new != fd:
            os.dup2(new, fd)
            os.close(new)
    saved = sys.stdin, sys.stdout, sys.stderr
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)
    if sys.stderr is None:
        sys.stderr = open(2, "w", errors="backslashreplace", closefd=False)
    try:
        yield closed
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    with _standard_streams() as closed:
        args = parse_args(argv)
        args.stdin_closed = 0 in closed
        if 1 in closed and args.out is None:
            print("error: standard output is closed: nowhere to write the results (use --out FILE)", file=sys.stderr)
            return exitcodes.INTERNAL
        with exitcodes.stop_signals_interrupt():  # SIGTERM and SIGHUP stop the run as Ctrl-C does
            try:
                return _run(args)
            except KeyboardInterrupt as e:
                print(f"{exitcodes.interrupt_name(e)}{_unwritten(args.out)}", file=sys.stderr)
                return exitcodes.status_of(e)


def _unwritten(out: Path | None) -> str:
    """What an interrupted or failed run says about its --out file."""
    if out is None:
        return ""
    try:
        through = output_target(out).through
    except OSError:
        through = False
    return f"; the output written through {out} is incomplete" if through else f"; {out} was not written"


def _run(args: argparse.Namespace) -> int:
    try:
        clf = load(args.model, args.artifact, args.backend, args.threshold, uncertain=args.uncertain)
    except (BundleError, EngineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    except ValueError as e:  # --threshold with a bundle of more than two labels, or another option's value
        hint = ("--threshold is for a bundle of two labels; --uncertain P marks a top probability at or below P"
                if args.threshold is not None and "threshold" in str(e) else str(e))
        print(f"python -m runtime.classify: error: {hint}", file=sys.stderr)
        return exitcodes.USAGE
    exitcodes.check_stop()  # a stop swallowed while the engine loaded ends the run before any work
    if args.out is not None and clf.bundle is not None and Path(clf.bundle.root).resolve() in (
            Path(args.out).resolve().parents):
        print(f"python -m runtime.classify: error: --out {args.out}: inside the bundle in use; write it elsewhere",
              file=sys.stderr)
        return exitcodes.USAGE
    if args.top is not None and args.top > len(clf.labels):
        print(f"python -m runtime.classify: error: --top {args.top}: the bundle has {len(clf.labels)} labels",
              file=sys.stderr)
        return exitcodes.USAGE
    failed = False
    model = clf.bundle.manifest.recipe or str(clf.bundle.root)
    progress = _Progress()

    options = OutputOptions(args.json, bool(args.format), args.encoding, model, args.explain, args.top)
    renderer = Renderer(clf, options)

    def write(out: _Records, text: str, errors: list[str], bad: bool, count: int = 1) -> None:
        nonlocal failed
        failed |= bad
        for message in errors:
            print(message, file=sys.stderr)
        out.write(text)
        progress.step(count)

    def emit(r: Result, out: _Records) -> None:
        write(out, *renderer.render(r))

    def fail(name: str, cause: str, out: _Records) -> None:
        emit(Result(name, None, error=cause), out)

    try:
        with _output(args.out) as out:
            if args.format:
                with closing(classify_records(clf, args, options)) as scored:  # stops the workers on any exit
                    for rendered in scored:
                        write(out, rendered.out, rendered.errors, rendered.failed, rendered.count)
            else:
                classify_files(clf, args.files, args.encoding, lambda r: emit(r, out),
                               lambda name, cause: fail(name, cause, out), args.stdin_closed)
    except (BundleError, EngineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    except WorkerError as e:
        print(f"error: {e}{_unwritten(args.out)}", file=sys.stderr)
        return exitcodes.INTERNAL
    except _OutputFailed as e:
        if isinstance(e.cause, BrokenPipeError) and args.out is None:
            _silence_stdout()
            return exitcodes.OK  # the reader has gone (| head): not an error
        print(f"error: cannot write the output: {e.cause.strerror or e.cause}", file=sys.stderr)
        return exitcodes.INTERNAL
    except OSError as e:  # not the output's fault (too many open files, no memory, ...): the real cause
        print(f"error: {e.strerror or e}" + (f": {e.filename}" if e.filename else "") + _unwritten(args.out),
              file=sys.stderr)
        return exitcodes.INTERNAL
    finally:
        progress.done()
    return exitcodes.INPUT if failed else exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
