"""Why a review got its probability: the words and word pairs that pushed it each way.

Contributions are on the logit scale (``log(p / (1 - p))``): positive pushes towards the
positive label. Two methods, named in every ``Explanation``:

* ``exact`` (the n-gram family, a linear model): a present n-gram's contribution is its
  weight, read from the artifact itself (dequantized as the artifact stores it), and the
  contributions of all the review's n-grams plus the bias make up the logit.
* ``occlusion`` (multi-hot MLP, LSTM, the order-aware ngram-sequence model: its convolution
  is not linear in the words): a word's contribution is the logit of the whole
  review minus the logit without every occurrence of that word, all computed by the
  engine in batched calls. The logits are the artifact's own when it outputs one (every
  float artifact does: the manifest's ``output: logit``), so a very confident review's
  words keep their contributions; from an artifact that outputs a probability they are
  recovered from it, clipped where it saturates, and an 8-bit output blurs small ones.

Both functions take the model as plain callables, so export can explain with the float
Keras model by the same code the runtime explains an artifact with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from runtime.encoding import text as _text
from runtime.encoding.features import NgramEncoder, NgramSequenceEncoder, SequenceEncoder, pad_word_ids
from runtime.encoding.vocab import UNK_ID

EXACT, OCCLUSION = "exact", "occlusion"
OCCLUSION_BATCH = 256  # occluded rows run at once: bounds memory for any review


class Term(NamedTuple):
    """One term of a review and how far it pushed the review's logit.

    Attributes:
        text: a word, or two words for a bigram; ``<unk>`` is a word outside the vocabulary.
        contribution: on the logit scale; > 0 pushes towards positive.
        positions: where it occurs: indices into the review's tokens.
        length: how many tokens it spans.
    """

    text: str  # a word, or two words for a bigram; "<unk>" is a word outside the vocabulary
    contribution: float  # on the logit scale; > 0 pushes towards positive
    positions: tuple[int, ...]  # where it occurs: indices into the review's tokens
    length: int  # tokens it spans


@dataclass(frozen=True)
class Explanation:
    """Why a review got its probability (``Classifier.explain``).

    Attributes:
        method: ``"exact"`` (the n-gram family's weights) or ``"occlusion"``.
        probability: the classifier's P(positive) for the review.
        logit: exact: bias + every contribution; occlusion: the artifact's logit for the review.
        bias: exact only: the model's logit for a review without any known n-gram (else None).
        positive: the strongest pushes towards positive, strongest first.
        negative: the strongest pushes towards negative, strongest first.
        terms: how many terms of the review were weighed.
        total: the sum of all their contributions.
        label: for a bundle of more than two labels, the label explained: ``logit`` is that
            label's logit, ``probability`` its probability, ``positive`` the terms that pushed
            towards it and ``negative`` those that pushed away; None for two labels.
    """

    method: str  # EXACT or OCCLUSION
    probability: float  # the artifact's P(positive) for the review
    logit: float  # exact: bias + every contribution; occlusion: the artifact's logit for the review
    bias: float | None  # exact only: the model's logit for a review without any known n-gram
    positive: tuple[Term, ...]  # the strongest pushes towards positive, strongest first
    negative: tuple[Term, ...]  # the strongest pushes towards negative, strongest first
    terms: int  # how many terms of the review were weighed
    total: float  # the sum of all their contributions
    label: str | None = None  # N labels: the label whose logit is explained (None: two labels, P(positive))

    def top(self, k: int) -> list[Term]:
        """The strongest terms either way.

        Args:
            k: how many terms.

        Returns:
            The ``k`` terms with the largest absolute contributions, strongest first.
        """
        both = sorted(self.positive + self.negative, key=_strength)
        return both[:k]

    def to_json(self) -> dict:
        """The explanation as the command's ``--json`` output writes it.

        Returns:
            A dict of ``method``, ``logit``, ``bias``, ``terms``, ``towards_positive`` and
            ``towards_negative`` (lists of ``{"term", "contribution"}``), rounded to 6 places.
        """
        def terms(ts: tuple[Term, ...]) -> list[dict]:
            return [{"term": t.text, "contribution": round(t.contribution, 6)} for t in ts]

        out = {"method": self.method, "logit": round(self.logit, 6),
               "bias": None if self.bias is None else round(self.bias, 6), "terms": self.terms,
               "towards_positive": terms(self.positive), "towards_negative": terms(self.negative)}
        if self.label is not None:
            out = {"label": self.label, **out, "towards_label": out.pop("towards_positive"),
                   "away_from_label": out.pop("towards_negative")}
        return out


def _strength(t: Term) -> tuple[float, str]:
    return (-abs(t.contribution), t.text)


def _split(terms: list[Term], k: int) -> tuple[tuple[Term, ...], tuple[Term, ...]]:
    pos = sorted((t for t in terms if t.contribution > 0), key=_strength)[:k]
    neg = sorted((t for t in terms if t.contribution < 0), key=_strength)[:k]
    return tuple(pos), tuple(neg)


def explain_linear(encoder: NgramEncoder, text: str, k: int, weights: Callable[[np.ndarray], np.ndarray],
                   bias: float, run_one: Callable[[np.ndarray], float]) -> Explanation:
    """Exact contributions of an n-gram model: ``weights(ids)`` gives the table rows of ids, and
    ``run_one(model input)`` the artifact's probability.

    The review is tokenized once: its distinct unigram and bigram ids are the model input
    (as ``encoder.model_input`` makes them) and the terms weighed. Only the top ``k`` each way
    are named and located, so the cost is a gather, two sorts and one engine call.
    """
    tokens = encoder.ids_of(text)
    ids = encoder.input_of_ids(tokens)  # the model input: sorted distinct ids
    probability = run_one(ids)
    weighed = ids[ids > UNK_ID]  # reserved rows are zero: padding, start, unknown word
    contributions = weights(weighed.astype(np.int64))
    total = float(contributions.sum())
    order = np.argsort(contributions, kind="stable")
    picked = np.unique(np.concatenate((order[:k], order[::-1][:k])))
    chosen = weighed[picked].astype(np.uint64)  # ascending, as ``weighed`` is
    n = len(tokens)
    positions: dict[int, list[int]] = {}
    if len(chosen):
        features = np.concatenate((tokens, encoder.bigrams_of(tokens)))
        slot = np.minimum(np.searchsorted(chosen, features), len(chosen) - 1)
        where = np.flatnonzero(chosen[slot] == features)  # where the chosen terms occur, in order
        for p, j in zip(where.tolist(), slot[where].tolist()):
            positions.setdefault(j, []).append(p)
    words, terms = encoder.vocab.tokens, []
    for j, c in enumerate(contributions[picked].tolist()):
        if c == 0.0 or j not in positions:
            continue
        at = positions[j][0]
        if at < n:
            name, length = words[int(tokens[at])], 1
        else:
            at -= n
            name, length = f"{words[int(tokens[at])]} {words[int(tokens[at + 1])]}", 2
        terms.append(Term(name, c, tuple(p if p < n else p - n for p in positions[j]), length))
    pos, neg = _split(terms, k)
    return Explanation(EXACT, probability, bias + total, bias, pos, neg, len(weighed), total)


def explain_occlusion(encoder, text: str, k: int, run: Callable[[np.ndarray], np.ndarray],
                      run_one: Callable[[np.ndarray], float]) -> Explanation:
    """Leave-one-word-out contributions: ``run(batch)`` gives the logits of model inputs
    (``Backend.run_logits``), and ``run_one(model input)`` the review's probability.

    Every distinct known word is removed in turn (all its occurrences); the review itself
    and the occluded copies go through ``run`` in batches of ``OCCLUSION_BATCH``. A sequence
    model sees only the last ``length`` tokens, so only the words there can move it: the
    others contribute exactly 0 and are not run, which keeps a long review's cost bounded.
    The order-aware model (``NgramSequenceEncoder``) sees the text again without the word:
    its n-grams and the convolution's windows that held it all change.
    """
    tokens = encoder.ids_of(text).tolist()
    if isinstance(encoder, SequenceEncoder):
        words = sorted({t for t in tokens[-encoder.length :] if t > UNK_ID})  # the words the row can hold

        def row(without: int | None) -> np.ndarray:
            kept: list[int] = []  # the last tokens but ``without``: all the encoder keeps of them
            for t in reversed(tokens):
                if t != without:
                    kept.append(t)
                    if len(kept) == encoder.length:
                        break
            return encoder.input_of_ids(np.array(kept[::-1], dtype=np.uint32))

        rows = [row(None)] + [row(w) for w in words]
    elif isinstance(encoder, NgramSequenceEncoder):
        # the order-aware model: the text again without every occurrence of the word, so its
        # unigram, its bigrams and the windows that held it all go
        ids = np.asarray(tokens, dtype=np.uint32)
        words = sorted({t for t in tokens if t > UNK_ID})
        rows = [encoder.input_of_ids(ids)] + [encoder.input_of_ids(ids[ids != w]) for w in words]
    else:
        words = sorted({t for t in tokens if t > UNK_ID})
        full = np.array(words, dtype=np.int32)
        rows = [full] + [np.delete(full, i) for i in range(len(words))]
    logits = []
    for i in range(0, len(rows), OCCLUSION_BATCH):
        part = rows[i : i + OCCLUSION_BATCH]
        batch = np.stack(part) if isinstance(encoder, SequenceEncoder) else pad_word_ids(part)
        logits.append(np.asarray(run(batch), np.float64).reshape(-1))
    logits = np.concatenate(logits)
    contributions = logits[0] - logits[1:]
    order = np.argsort(contributions, kind="stable")
    chosen = np.unique(np.concatenate((order[:k], order[::-1][:k])))
    index = np.array(tokens, dtype=np.int64)
    terms = [Term(encoder.vocab.tokens[words[j]], float(contributions[j]),
                  tuple(np.flatnonzero(index == words[j]).tolist()), 1)
             for j in chosen.tolist() if contributions[j] != 0.0]
    pos, neg = _split(terms, k)
    return Explanation(OCCLUSION, run_one(rows[0]), float(logits[0]), None, pos, neg, len(words),
                       float(contributions.sum()))


def marked(text: str, explanation: Explanation) -> str:
    """The review's tokens with every occurrence of the explanation's terms marked:
    ``[great]+`` towards positive, ``[waste of]-`` towards negative."""
    tokens = _text.tokenize(text)
    marks: dict[int, tuple[int, str]] = {}
    for t in sorted(explanation.positive + explanation.negative, key=_strength, reverse=True):
        for p in t.positions:
            marks[p] = (t.length, "+" if t.contribution > 0 else "-")  # the stronger term wins a shared start
    out, i = [], 0
    while i < len(tokens):
        if i in marks:
            length, sign = marks[i]
            out.append(f"[{' '.join(tokens[i : i + length])}]{sign}")
            i += length
        else:
            out.append(tokens[i])
            i += 1
    return " ".join(out)
