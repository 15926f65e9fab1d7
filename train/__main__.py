"""``python -m train``: train a recipe and write the model directory.

exit status (as for every command, see runtime.exitcodes): 0 trained; 4 the corpus is
missing or unreadable; 64 usage error; 1 internal error.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from runtime import exitcodes
from runtime.checks.reviews import CorpusError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from train.recipes import RECIPES

    p = exitcodes.parser("python -m train", __doc__)
    p.add_argument("--recipe", choices=sorted(RECIPES), default="seed-mlp")
    p.add_argument("--data", help="aclImdb .tar.gz or directory (default: $IMDB_DATA, else download)")
    p.add_argument("--out", required=True, type=Path, help="model directory to write")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--subset", type=int, help="use a seeded sample of N train and N test reviews (quick runs)")
    p.add_argument("--vocab-size", type=int, help="override the recipe's vocabulary size")
    p.add_argument("--max-epochs", type=int, help="override the recipe's epoch limit")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from train import data, trainer
    from train.recipes import RECIPES

    recipe = RECIPES[args.recipe]
    try:
        corpus = data.load(args.data)
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    if args.subset:
        for i, name in enumerate(("train", "test")):
            corpus.splits[name] = corpus.splits[name].sample(args.subset, args.seed + i)
        n = len(corpus.splits["train"])
        recipe = dataclasses.replace(recipe, validation_size=min(recipe.validation_size, int(n * 0.4)))
    if args.vocab_size:
        recipe = dataclasses.replace(recipe, vocab_size=args.vocab_size)
    if args.max_epochs:
        recipe = dataclasses.replace(recipe, max_epochs=args.max_epochs)
    metrics = trainer.run(corpus, recipe, args.seed, args.out, verbose=0 if args.quiet else 2)
    print(
        f"{recipe.name}: test accuracy {metrics['test_accuracy']:.4f}, ROC AUC {metrics['roc_auc']:.4f}, "
        f"{metrics['epochs_trained']} epochs (kept {metrics['best_epoch']}) -> {args.out}"
    )
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
