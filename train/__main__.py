"""``python -m train``: train a recipe and write the model directory.

--data is the aclImdb corpus (.tar.gz or folder; the default, from $IMDB_DATA or a download)
or your own labelled text: a CSV or TSV with a header (--text-column, --label-column), JSON
Lines (--text-field, --label-field), fastText's "__label__NAME text" lines (.txt), or a folder
with one sub-folder per label (see train.userdata). With your own data the test split is
--test FILE, else a seeded stratified hold-out of --test-fraction (recorded in splits.json);
validation is --validation FILE, else 10% of the training examples, stratified. Rows with
no label or no text are skipped and counted on stderr; 2 to 1,000 labels. A file of any size
is read as a stream: past --max-text-mb of text, a seeded random sample that fits is kept
(a note on stderr says how many; splits.json records it). Your own data's
default recipe is ngram-cnn: the n-gram model beside a convolution over word vectors, which
learn from your training texts and, when the aclImdb archive is at hand ($IMDB_DATA or the
download cache), from its 75,000 training and unlabelled reviews.

exit status (as for every command, see runtime.exitcodes): 0 trained; 4 the corpus or data
is missing, unreadable or unusable (one line on stderr names the file and the cause); 64
usage error; 1 internal error.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from runtime import exitcodes
from runtime.atomic import PublishFailed, UnsafeOutput, check_output_dir
from runtime.checks.reviews import CorpusError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from train.recipes import RECIPES
    from train.userdata import FORMATS

    p = exitcodes.parser("python -m train", __doc__)
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="default: seed-mlp for the aclImdb corpus, ngram-cnn for your own data")
    p.add_argument("--data", help="aclImdb .tar.gz or directory (default: $IMDB_DATA, else download), "
                                  "or your own labelled file or folder")
    p.add_argument("--test", help="your own data: the test file (same format); default: a hold-out of --data")
    p.add_argument("--validation", help="your own data: the validation file; default: 10%% of the training data")
    p.add_argument("--format", choices=FORMATS, help="your own data's format (default: from the extension or layout)")
    p.add_argument("--text-column", "--text-field", dest="text_column",
                   help="the CSV/TSV column or JSON Lines field of the text (default: text)")
    p.add_argument("--label-column", "--label-field", dest="label_column",
                   help="the CSV/TSV column or JSON Lines field of the label (default: label)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="your own data without --test: the stratified share held out for the test figure")
    p.add_argument("--max-text-mb", type=float, default=64,
                   help="your own data: MiB a file's examples may hold in memory (text + 200 bytes each); a larger "
                        "file is read whole and a seeded random sample that fits is trained on (default: 64; "
                        "training takes up to about 50x that in memory)")
    p.add_argument("--time-budget", type=float,
                   help="your own data: seconds for choosing settings on validation (default: 60)")
    p.add_argument("--out", required=True, type=Path, help="model directory to write")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--subset", type=int, help="use a seeded sample of N train and N test reviews (quick runs)")
    p.add_argument("--vocab-size", type=int, help="override the recipe's vocabulary size")
    p.add_argument("--max-epochs", type=int, help="override the recipe's epoch limit")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = p.parse_args(argv)
    if not 0.0 < args.test_fraction < 1.0:
        p.error(f"--test-fraction {args.test_fraction}: expected a number between 0 and 1")
    if not 0 < args.max_text_mb <= 1 << 20:
        p.error(f"--max-text-mb {args.max_text_mb}: expected MiB above 0 (at most 1048576)")
    if args.time_budget is not None and not 0 <= args.time_budget < float("inf"):
        p.error(f"--time-budget {args.time_budget}: expected seconds >= 0")
    if (args.text_column or "text") == (args.label_column or "label"):
        p.error(f"--text-column and --label-column both name {args.text_column or 'text'!r}")
    for option, value, least in (("--seed", args.seed, 0), ("--subset", args.subset, 1),
                                 ("--vocab-size", args.vocab_size, 4), ("--max-epochs", args.max_epochs, 1)):
        # seeds below 2**31 leave room for the recipe's seed + i under the random generators' 2**32
        if value is not None and not least <= value < 1 << 31:
            p.error(f"{option} {value}: expected a whole number from {least} to {(1 << 31) - 1}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stops = exitcodes.StopRequests()
    return stops.run(lambda: _train(args), f"nothing was written to {args.out}")


def _train(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from train import data, dataset, trainer, userdata
    from runtime.errors import Error
    from train.errors import TrainError
    from train.errors import UsageError as TrainUsageError
    from train.recipes import RECIPES

    own = args.data is not None and not dataset.is_imdb(args.data)
    if not own and (args.test or args.validation or args.format):
        print("python -m train: error: --test, --validation and --format are for your own data; the aclImdb "
              "corpus has its own split", file=sys.stderr)
        return exitcodes.USAGE
    try:  # the model directory replaces --out whole: never an input, nor a directory of something else
        check_output_dir(args.out, [x for x in (args.data, args.test, args.validation) if x], "config.json",
                         "model directory", "recipe")
    except UnsafeOutput as e:
        print(f"python -m train: error: --out {e}", file=sys.stderr)
        return exitcodes.USAGE
    named = [o for o, v in (("--text-column", args.text_column), ("--label-column", args.label_column)) if v is not None]
    if named and not own:
        print(f"python -m train: error: {named[0]} is for your own data's CSV, TSV or JSON Lines file", file=sys.stderr)
        return exitcodes.USAGE
    recipe = RECIPES[args.recipe or ("ngram-cnn" if own else "seed-mlp")]
    userdata.allow_long_fields()
    try:
        if own:
            fmt = userdata.detect_format(Path(args.data), args.format) if named and Path(args.data).exists() else None
            if fmt is not None and fmt not in ("csv", "tsv", "jsonl"):
                raise TrainUsageError(f"{named[0]} names a column of a CSV, TSV or JSON Lines file; {args.data} is "
                                      f"read as {fmt}, which has no columns")
            corpus = dataset.load(args.data, args.test, args.validation, args.format, args.text_column or "text",
                                  args.label_column or "label", args.test_fraction, args.seed,
                                  int(args.max_text_mb * (1 << 20)))
        else:
            corpus = data.load(args.data)
        if args.subset:
            for i, name in enumerate(("train", "test")):
                corpus.splits[name] = corpus.splits[name].sample(args.subset, args.seed + i)
        if args.vocab_size is not None:
            recipe = dataclasses.replace(recipe, vocab_size=args.vocab_size)
        if args.max_epochs is not None:
            recipe = dataclasses.replace(recipe, max_epochs=args.max_epochs)
        keep = frozenset(k for k in ("vocab_size", "max_epochs") if getattr(args, k) is not None)
        metrics = trainer.run(corpus, recipe, args.seed, args.out, verbose=0 if args.quiet else 2,
                              time_budget=args.time_budget, keep=keep)
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    except TrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.status
    except PublishFailed as e:  # the finished model directory could not replace --out
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.INTERNAL
    except Error as e:  # the runtime's own (a vocabulary)
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    if len(corpus.labels) > 2 or own:
        extra = f", macro-F1 {metrics['macro_f1']:.4f}, {len(corpus.labels)} labels, trained in " \
                f"{metrics['training_seconds']:.1f} s"
    else:
        extra = f", ROC AUC {metrics['roc_auc']:.4f}"
    print(
        f"{recipe.name}: test accuracy {metrics['test_accuracy']:.4f}{extra}, "
        f"{metrics['epochs_trained']} epochs (kept {metrics['best_epoch']}) -> {args.out}"
    )
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
