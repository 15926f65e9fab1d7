"""Word vectors learned from raw text: positive PMI over a window, reduced by a truncated SVD.

The order-aware model (``train.order_model``) starts its embedding from these vectors, so that
a few thousand labelled sentences get words that behave alike placed alike. They are learned
from text the toolkit already holds: the user's training texts and, when the aclImdb archive is
at hand, its training and unlabelled reviews (never its test split); no pretrained weights
from anywhere (Levy, Goldberg & Dagan 2015: PPMI + SVD matches word2vec's SGNS at this scale).

* co-occurrence: every pair of vocabulary tokens at most ``window`` tokens apart within one
  text, weighted ``1/distance``, counted in both directions;
* PPMI: ``max(0, log(P(w, c) / (P(w) P_0.75(c))))``, the context distribution smoothed by the
  power 0.75 (rare contexts otherwise dominate);
* a seeded randomized SVD of the sparse PPMI matrix; the vectors are ``U * sqrt(S)``, scaled
  to unit length per word (words never seen get zeros).

Memory is bounded by the vocabulary's co-occurring pairs, not by the text: the texts are read
as a stream and counted in blocks.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from runtime.encoding.vocab import UNK_ID

BLOCK_TOKENS = 2_000_000  # tokens counted per block: a block's pairs take about window x 32 MB


def cooccurrence(token_ids: Iterable[np.ndarray], size: int, window: int = 5):
    """The symmetric ``(size, size)`` scipy CSR matrix of ``1/distance``-weighted counts.

    Args:
        token_ids: each text's token ids in order (reserved ids and ``<unk>`` are skipped as
            words but still count as positions).
        size: the vocabulary size.
        window: the largest distance counted.

    Returns:
        float64 CSR matrix; entry ``(a, b)`` sums ``1/d`` over pairs ``a``, ``b`` ``d`` apart.
    """
    from scipy import sparse

    total = sparse.csr_matrix((size, size), dtype=np.float64)
    pending: list[np.ndarray] = []
    held = 0

    def flush() -> None:
        nonlocal total
        if not pending:
            return
        ids = np.concatenate(pending).astype(np.int64)
        # each text is followed by ``window`` separators (-1), so no pair spans two texts
        rows, cols, weights = [], [], []
        for d in range(1, window + 1):
            a, b = ids[:-d], ids[d:]
            keep = (a > UNK_ID) & (b > UNK_ID)
            rows.append(a[keep])
            cols.append(b[keep])
            weights.append(np.full(int(keep.sum()), 1.0 / d))
        r, c, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
        total = total + sparse.coo_matrix((w, (r, c)), shape=(size, size)).tocsr()
        pending.clear()

    gap = np.full(window, -1, dtype=np.int64)
    for ids in token_ids:
        pending.append(np.asarray(ids, dtype=np.int64))
        pending.append(gap)
        held += len(ids) + window
        if held >= BLOCK_TOKENS:
            flush()
            held = 0
    flush()
    return total + total.T  # each pair was counted once, in text order


def ppmi(counts, context_power: float = 0.75):
    """The positive PMI of a co-occurrence matrix (scipy sparse), as a CSR matrix."""
    from scipy import sparse

    counts = sparse.csr_matrix(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return counts
    word = np.asarray(counts.sum(axis=1)).ravel()
    context = np.asarray(counts.sum(axis=0)).ravel() ** context_power
    context /= context.sum()
    coo = counts.tocoo()
    values = np.log(coo.data / total) - np.log(word[coo.row] / total) - np.log(context[coo.col])
    keep = values > 0
    return sparse.csr_matrix((values[keep], (coo.row[keep], coo.col[keep])), shape=counts.shape)


def learn(token_ids: Iterable[np.ndarray], size: int, dim: int = 64, window: int = 5, seed: int = 0) -> np.ndarray:
    """``(size, dim)`` float32 word vectors, unit length (zero for words never seen in a window).

    Args:
        token_ids: each text's token ids in order.
        size: the vocabulary size (ids ``0 .. size - 1``).
        dim: the vectors' dimension (a vocabulary of ``size`` words fills at most ``size - 1``
            of them; the others are 0).
        window: the co-occurrence window.
        seed: the randomized SVD's seed.

    Returns:
        The vectors; rows of reserved ids are zero.
    """
    from sklearn.utils.extmath import randomized_svd

    # float32 halves the memory the SVD's sparse products stream through (their top vectors
    # are the float64 ones to within rounding)
    matrix = ppmi(cooccurrence(token_ids, size, window)).astype(np.float32)
    vectors = np.zeros((size, dim), dtype=np.float64)
    rank = min(dim, size - 1)  # a small vocabulary has fewer dimensions: the rest stay 0
    if matrix.nnz == 0 or rank < 1:
        return vectors.astype(np.float32)
    u, s, _ = randomized_svd(matrix, rank, n_iter=5, random_state=seed)
    found = u.astype(np.float64) * np.sqrt(s.astype(np.float64))
    norms = np.linalg.norm(found, axis=1, keepdims=True)
    vectors[:, :rank] = np.divide(found, norms, out=np.zeros_like(found), where=norms > 0)
    vectors[: UNK_ID + 1] = 0.0
    return vectors.astype(np.float32)
