"""Fitting a recipe to a user's data: sizes from the data, the rest chosen on validation.

The IMDB recipes were tuned on IMDB's 25,000 reviews. On a user's set of a few thousand
sentences the same table of a million bigram buckets, batches of 256 and a dozen epochs
waste memory and under-train, so ``adapt`` derives the sizes from the data (hashed-bigram
buckets from its token count, batch size from its example count, the LSTM's sequence length
from its text lengths, at most the recipe's), and ``candidates`` lists variants of the
data-dependent settings (vocabulary size, regularisation, dropout) in order of prior belief.
``python -m train`` trains them in turn on the training examples, scores each on the
validation split, and starts no new one once the time budget would be passed; the first
always runs. The test split plays no part.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from runtime.encoding.features import MULTI_HOT, NGRAM, NGRAM_SEQUENCE, SEQUENCE, token_counts
from train.recipes import Recipe

MIN_BUCKETS = 1 << 14
TABLE_BUDGET = 1 << 24  # n-gram table cells (rows x labels): 64 MiB of float32 per weight array
SAMPLE_TEXTS = 20_000  # texts whose token counts set the ngram-sequence family's length
DEFAULT_TIME_BUDGET = 60.0  # seconds for the search; the final refit comes after it


def best_epoch_of(history: dict, monitor: str) -> int:
    """The 1-based epoch early stopping kept: lowest loss, or highest accuracy."""
    values = history[monitor]
    return int(np.argmax(values) if "accuracy" in monitor else np.argmin(values)) + 1


def _next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 1).bit_length()


def adapt(recipe: Recipe, texts: list[str], labels: int, keep: frozenset[str] = frozenset()) -> Recipe:
    """``recipe`` with its size settings fitted to ``texts`` (the training examples).

    Args:
        recipe: a recipe of ``train.recipes``.
        texts: the training texts.
        labels: the number of labels.
        keep: the recipe's fields the user set (``--vocab-size``, ``--max-epochs``): left as they are.

    Returns:
        The recipe with batch size, epochs and patience (every family), buckets (n-gram) and
        sequence length (LSTM) derived from the data; never larger than the recipe's own sizes.
    """
    n = len(texts)
    words = np.fromiter((len(t.split()) for t in texts), np.int64, count=n)
    changes: dict = {
        "batch_size": int(min(recipe.batch_size, max(32, n // 100))),
        # small sets make few steps an epoch: allow more epochs; early stopping still decides
        "max_epochs": max(recipe.max_epochs, 20 if n < 50_000 else recipe.max_epochs),
        "patience": max(recipe.patience, 3),
        "monitor": "val_loss",
        "validation_by": "review",
    }
    if recipe.family in (NGRAM, NGRAM_SEQUENCE):
        buckets = min(recipe.buckets, max(MIN_BUCKETS, _next_pow2(int(words.sum()))))
        columns = 1 if labels == 2 else labels
        vocab = recipe.vocab_size
        while (vocab + buckets) * columns > TABLE_BUDGET and buckets > 1024:
            buckets //= 2
        while (vocab + buckets) * columns > TABLE_BUDGET and vocab > 2048:
            vocab //= 2
        changes.update(buckets=buckets, vocab_size=vocab)
    if recipe.family == SEQUENCE:
        length = int(np.percentile(words, 95)) + 8 if n else recipe.sequence_length
        changes["sequence_length"] = int(min(recipe.sequence_length, max(16, length)))
    if recipe.family == NGRAM_SEQUENCE:  # the convolution sees all of nearly every text
        sample = texts[:: max(1, n // SAMPLE_TEXTS)]
        tokens = token_counts(sample)
        length = int(np.percentile(tokens, 99)) + 2 if len(sample) else recipe.sequence_length
        changes["sequence_length"] = int(min(recipe.sequence_length, max(8, length)))
    return dataclasses.replace(recipe, **{k: v for k, v in changes.items() if k not in keep})


def candidates(recipe: Recipe, keep: frozenset[str] = frozenset()) -> list[Recipe]:
    """Variants of ``recipe`` (already ``adapt``-ed) to try, most promising first; the fields
    in ``keep`` (set by the user) are not varied."""
    if recipe.family == NGRAM:
        grid = [(recipe.l2, recipe.dropout), (recipe.l2 / 10, recipe.dropout), (recipe.l2 * 10, recipe.dropout),
                (recipe.l2 / 10, 0.5), (recipe.l2 / 100, recipe.dropout)]
        return [dataclasses.replace(recipe, l2=l2, dropout=d) for l2, d in grid]
    if recipe.family == MULTI_HOT and "vocab_size" not in keep:
        return [dataclasses.replace(recipe, vocab_size=v)
                for v in (recipe.vocab_size, recipe.vocab_size // 2, recipe.vocab_size * 2)]
    return [recipe]


def score(history: dict, monitor: str) -> tuple[float, float]:
    """A trial's sort key (lower is better): best validation accuracy first, then its loss."""

    best = best_epoch_of(history, monitor) - 1
    return (-history["val_accuracy"][best], history["val_loss"][best])


def search(fit_trial, recipes: list[Recipe], budget: float, log) -> tuple[int, list[dict]]:
    """Run ``fit_trial(recipe)`` for each recipe until ``budget`` seconds would be passed.

    Args:
        fit_trial: trains one recipe without refit and returns its ``trainer.Trained``.
        recipes: the candidates, in order.
        budget: seconds; a trial starts only if the time spent plus the slowest trial so far fits.
        log: called with one line per trial.

    Returns:
        The index of the best trial and one record per trial run (the ``Trained`` in ``"trained"``).
    """
    start = time.monotonic()
    trials: list[dict] = []
    slowest = 0.0
    for i, recipe in enumerate(recipes):
        if trials and time.monotonic() - start + slowest > budget:
            log(f"tuning: time budget of {budget:g} s reached after {len(trials)} of {len(recipes)} candidates")
            break
        t0 = time.monotonic()
        trained = fit_trial(recipe)
        seconds = time.monotonic() - t0
        slowest = max(slowest, seconds)
        key = score(trained.history, recipe.monitor)
        if getattr(trained, "order", None):  # the order-aware model: the combined model's accuracy
            key = (-trained.order["validation_accuracy"]["combined"], key[1])
        trials.append({"recipe": recipe, "trained": trained, "seconds": seconds, "key": key,
                       "validation_accuracy": -key[0], "validation_loss": key[1]})
        log(f"tuning: {_describe(recipe)}: validation accuracy {-key[0]:.4f}, loss {key[1]:.4f} ({seconds:.1f} s)")
    best = min(range(len(trials)), key=lambda i: trials[i]["key"])
    return best, trials


def _describe(recipe: Recipe) -> str:
    if recipe.family == NGRAM_SEQUENCE:
        return f"l2 {recipe.l2:g}, {recipe.hidden[0]} filters of widths {', '.join(map(str, recipe.widths))}, " \
               f"{recipe.sequence_length} tokens"
    if recipe.family == NGRAM:
        return f"l2 {recipe.l2:g}, dropout {recipe.dropout:g}"
    if recipe.family == MULTI_HOT:
        return f"vocabulary {recipe.vocab_size:,}"
    return recipe.name


def record(trials: list[dict], best: int, budget: float) -> dict:
    """The search as it goes into metrics.json."""
    return {"time_budget_seconds": budget, "chosen": best,
            "trials": [{"setting": _describe(t["recipe"]), "validation_accuracy": t["validation_accuracy"],
                        "validation_loss": t["validation_loss"], "seconds": round(t["seconds"], 2)} for t in trials]}
