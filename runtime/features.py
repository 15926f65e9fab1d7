"""Feature encoders: text -> token ids -> the model's input array (numpy only).

Encoders memoize ``chunk -> token ids`` (see ``runtime.text``): a chunk's ids depend on
that chunk alone, so the memo is exact, and a review costs little more than
``lower().split()`` plus one dictionary look-up per distinct chunk. The memo is bounded:
once full it stops growing, which changes speed, never results.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from itertools import chain

import numpy as np

from runtime import text as _text
from runtime.vocab import PAD_ID, START_ID, UNK_ID, Vocabulary

MULTI_HOT = "multi_hot"
SEQUENCE = "sequence"


class _ChunkMemo(dict):
    """chunk -> ids, computed on a miss and kept while fewer than ``limit`` are kept."""

    def __init__(self, compute, limit: int):
        super().__init__()
        self._compute = compute
        self._limit = limit

    def __missing__(self, chunk: str) -> tuple[int, ...]:
        ids = self._compute(chunk)
        if len(self) < self._limit:
            self[chunk] = ids
        return ids


class MultiHotEncoder:
    """Multi-hot bag of words: column i is 1.0 when token id i occurs in the review.

    The tokenizer never produces a reserved token (``<`` and ``>`` are tokens of their
    own), so reserved columns stay 0 and a review with no known word is all zeros.
    """

    kind = MULTI_HOT

    def __init__(self, vocab: Vocabulary, memo_size: int = 400_000):
        self.vocab = vocab
        self.size = len(vocab)
        self._memo = _ChunkMemo(self._chunk_ids, memo_size)
        self._lookup = self._memo.__getitem__

    def spec(self) -> dict:
        """What a manifest records about the features."""
        return {"kind": self.kind, "size": self.size}

    def _chunk_ids(self, chunk: str) -> tuple[int, ...]:
        tokens = _text.chunk_tokens(chunk)
        get = self.vocab.index.get
        if len(tokens) == 1:
            i = get(tokens[0])
            return () if i is None else (i,)
        return tuple(i for i in map(get, tokens) if i is not None)

    def word_ids(self, text: str) -> np.ndarray:
        """The distinct ids of the known words of ``text``, int32, ascending.

        These are the multi-hot row's ones, and what the exported models take (see
        ``bags``). Each distinct chunk is looked up once. Ascending order makes the models'
        float sums, and so every probability, independent of how a review reached them.
        """
        ids = set(chain.from_iterable(map(self._lookup, set(_text.chunks(text)))))
        array = np.fromiter(ids, dtype=np.int32, count=len(ids))
        array.sort()
        return array

    @staticmethod
    def bags(features: np.ndarray) -> list[np.ndarray]:
        """The ids of each multi-hot row's ones, ascending: what ``word_ids`` gives for its review."""
        rows, cols = np.nonzero(features)
        return np.split(cols.astype(np.int32), np.searchsorted(rows, np.arange(1, len(features))))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """A ``(len(texts), size)`` float32 batch."""
        batch = np.zeros((len(texts), self.size), dtype=np.float32)
        for row, text in zip(batch, texts):
            row[self.word_ids(text)] = 1.0
        return batch

    @staticmethod
    def known_words(features: np.ndarray) -> np.ndarray:
        """Per row, how many distinct vocabulary words the batch holds."""
        return np.count_nonzero(features, axis=1)

    def encode_stream(self, pieces: Iterable[str]) -> np.ndarray:
        """A ``(1, size)`` batch for one text given in pieces (bounded memory)."""
        batch = np.zeros((1, self.size), dtype=np.float32)
        for segment in _text.whole_chunks(pieces):
            batch[0, self.word_ids(segment)] = 1.0
        return batch


class SequenceEncoder:
    """Token ids in order, for Embedding + LSTM models.

    A review becomes ``<start>`` followed by each token's id (``<unk>`` for a word outside
    the vocabulary); the last ``length`` ids are kept (truncation at the front) and the row
    is padded at the front with ``<pad>`` = 0, as Keras's ``pad_sequences`` does by default.
    """

    kind = SEQUENCE

    def __init__(self, vocab: Vocabulary, length: int, memo_size: int = 400_000):
        if length < 1:
            raise ValueError(f"sequence length must be positive, got {length}")
        self.vocab = vocab
        self.length = self.size = length
        self._memo = _ChunkMemo(self._chunk_ids, memo_size)
        self._lookup = self._memo.__getitem__

    def spec(self) -> dict:
        return {"kind": self.kind, "size": self.length, "length": self.length, "vocab_size": len(self.vocab),
                "padding": "pre", "truncating": "pre",
                "ids": {"padding": PAD_ID, "start": START_ID, "unknown": UNK_ID}}

    def _chunk_ids(self, chunk: str) -> tuple[int, ...]:
        get = self.vocab.index.get
        return tuple(get(t, UNK_ID) for t in _text.chunk_tokens(chunk))

    def token_ids(self, text: str) -> list[int]:
        """``<start>`` and every token's id, in order, before truncation."""
        ids = [START_ID]
        ids.extend(chain.from_iterable(map(self._lookup, _text.chunks(text))))
        return ids

    def _row(self, ids: Sequence[int], row: np.ndarray) -> None:
        kept = ids[-self.length :]
        row[self.length - len(kept) :] = kept

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """A ``(len(texts), length)`` int32 batch."""
        batch = np.zeros((len(texts), self.length), dtype=np.int32)
        for row, text in zip(batch, texts):
            self._row(self.token_ids(text), row)
        return batch

    @staticmethod
    def known_words(features: np.ndarray) -> np.ndarray:
        """Per row, how many of the kept ids are vocabulary words (not padding, start or unknown)."""
        return np.count_nonzero(features > UNK_ID, axis=1)

    def encode_stream(self, pieces: Iterable[str]) -> np.ndarray:
        """A ``(1, length)`` batch for one text given in pieces: only the last ids are kept."""
        tail: deque[int] = deque([START_ID], maxlen=self.length)
        for segment in _text.whole_chunks(pieces):
            tail.extend(chain.from_iterable(map(self._lookup, _text.chunks(segment))))
        batch = np.zeros((1, self.length), dtype=np.int32)
        self._row(list(tail), batch[0])
        return batch


Encoder = MultiHotEncoder | SequenceEncoder


def pad_bags(bags: Sequence[np.ndarray]) -> np.ndarray:
    """Reviews' word ids as one int32 batch, padded with 0 to the longest (at least one column).

    Id 0 is ``<pad>``, never a word, and the exported models give it a zero row.
    """
    batch = np.zeros((len(bags), max(1, max(map(len, bags), default=0))), dtype=np.int32)
    for row, ids in zip(batch, bags):
        row[: len(ids)] = ids
    return batch


def make_encoder(spec: dict, vocab: Vocabulary) -> Encoder:
    """The encoder a manifest's feature spec names, checked against the vocabulary."""
    kind = spec.get("kind")
    if kind == SEQUENCE:
        if spec.get("vocab_size") != len(vocab):
            raise ValueError(f"the model embeds {spec.get('vocab_size')} ids but the vocabulary has {len(vocab)} tokens")
        return SequenceEncoder(vocab, int(spec["length"]))
    if kind != MULTI_HOT:
        raise ValueError(f"unsupported feature kind {kind!r}")
    if spec.get("size") != len(vocab):
        raise ValueError(
            f"features expect {spec.get('size')} columns but the vocabulary has {len(vocab)} tokens"
        )
    return MultiHotEncoder(vocab)
