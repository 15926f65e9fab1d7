"""Feature encoders: text -> token ids -> what a model takes (numpy only).

One encoder per feature family, shared by training and serving:

* ``multi_hot``: a review's distinct word ids. The exported models take them as they are
  (``model_input``); Keras trains on the equivalent dense multi-hot rows (``keras_inputs``).
* ``sequence``: ``<start>`` and every token's id, truncated and padded at the front to a
  fixed length, for Embedding + LSTM models (Keras and the exported models alike).
* ``ngram``: a review's distinct word ids and hashed word-bigram ids, for linear models
  over a table of ``vocab_size + buckets`` rows (see ``NgramEncoder``). Like multi-hot, the
  exported models and Keras both take the ids, padded with 0.
* ``ngram-sequence``: the text's first ``length`` token ids in order, then its n-gram ids,
  in one row (see ``NgramSequenceEncoder``), for the order-aware model: a convolution over
  the tokens beside the linear n-gram table.

Encoders memoize ``chunk -> token ids`` (see ``runtime.encoding.text``): a chunk's ids depend on
that chunk alone, so the memo is exact, and a review costs little more than
``lower().split()`` plus one dictionary look-up per distinct chunk. The memo is bounded in
entries and in characters (a chunk longer than any word is never kept): once full it stops
growing, which changes speed, never results.

Many reviews at once (``model_input_rows``, what batches and bulk scoring use) take another
road to the same ids: reviews whose tokens are ASCII are tokenized together in numpy
(``runtime.encoding.block_tokens``), which gives each review's token ids exactly as the memo does, at a
fraction of the cost.

A text longer than ``STREAM_OVER`` characters is encoded in pieces by every road
(``model_input_stream``, cut where ``runtime.encoding.text.whole_chunks`` cuts), so a 100 MB string
costs memory bounded by the piece size, not by the string.
"""

from __future__ import annotations

import struct
import sys
from collections import deque
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import chain, repeat

import numpy as np

from runtime.encoding import text as _text
from runtime.encoding.block_tokens import WordTable, ascii_form, block_token_ids
from runtime.encoding.vocab import PAD_ID, START_ID, UNK_ID, Vocabulary

MULTI_HOT = "multi_hot"
SEQUENCE = "sequence"
NGRAM = "ngram"
NGRAM_SEQUENCE = "ngram-sequence"
FAMILIES = (MULTI_HOT, SEQUENCE, NGRAM, NGRAM_SEQUENCE)
_START = np.array([START_ID], dtype=np.uint32)


MEMO_CHUNK_CHARS = 100  # longer chunks (rare: no word is that long) are never kept
MEMO_CHARS = 8 << 20  # the most chunk text the memo keeps
MEMO_SIZE = 400_000  # the most chunks a memo keeps (all 236k distinct chunks of the test split)
# A bulk worker's memo (worker processes, Ray actors, ReviewScorer): smaller than MEMO_SIZE, as a
# worker sees only its share of a run's distinct chunks (docs/notes/bulk.md).
BULK_MEMO_SIZE = 200_000
BLOCK_CHARS = 1 << 16  # the most review text tokenized in one block: bounds its arrays to about 2 MB
MIN_BLOCK = 4  # fewer reviews than this go through the memo (a block's numpy calls cost more)
# A longer text is encoded in pieces (``model_input_stream``), to the same ids: memory stays
# bounded whatever the text's length, as when the commands stream a long file.
STREAM_OVER = _text.MAX_CHUNK
MAX_LENGTH = 1 << 16  # the most sequence columns an ngram-sequence spec may ask for


class _ChunkMemo(dict):
    """chunk -> ids, computed on a miss and kept while fewer than ``limit`` chunks and
    ``char_limit`` characters of chunk text are kept, so its memory is bounded whatever the
    texts."""

    def __init__(self, compute, limit: int, char_limit: int = MEMO_CHARS):
        super().__init__()
        self._compute = compute
        self._limit = limit
        self.char_limit = char_limit
        self._chars = 0

    def __missing__(self, chunk: str) -> tuple[int, ...]:
        ids = self._compute(chunk)
        n = len(chunk)
        if n <= MEMO_CHUNK_CHARS and len(self) < self._limit and self._chars + n <= self.char_limit:
            self[chunk] = ids
            self._chars += n
        return ids


def known_words(inputs: np.ndarray) -> np.ndarray:
    """How many vocabulary words each multi-hot or sequence model input holds (not padding,
    start or unknown): word ids are never reserved ids, and padding is id 0."""
    return np.count_nonzero(np.asarray(inputs) > UNK_ID, axis=-1)


def token_counts(texts: Sequence[str]) -> np.ndarray:
    """How many tokens the tokenizer makes of each text (int64): what a sequence's length is
    fitted to."""
    return np.fromiter((len(_text.tokenize(t)) for t in texts), np.int64, count=len(texts))


def pad_word_ids(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Reviews' word ids as one int32 batch, padded with 0 to the longest (at least one column).

    Id 0 is ``<pad>``, never a word, and the exported models give it a zero row.
    """
    batch = np.zeros((len(rows), max(1, max(map(len, rows), default=0))), dtype=np.int32)
    for row, ids in zip(batch, rows):
        row[: len(ids)] = ids
    return batch


class _TokenEncoder:
    """An encoder that reads chunk -> ids through a bounded memo (``_ChunkMemo``) one review
    at a time, and tokenizes reviews whose tokens are ASCII in blocks when given many."""

    vocab: Vocabulary
    _word_table: WordTable | None = None

    def _start_memo(self, compute, size: int) -> None:
        self._memo = _ChunkMemo(compute, size)
        self._lookup = self._memo.__getitem__

    def set_memo_size(self, size: int) -> None:
        """Start again with an empty memo of at most ``size`` chunks (bulk workers keep a
        smaller one: ``BULK_MEMO_SIZE``)."""
        self._start_memo(self._memo._compute, size)

    def model_input(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def ids_of(self, text: str) -> np.ndarray:
        """Every token's id of ``text``, in order (uint32; ``<unk>`` for a word outside the
        vocabulary): what ``input_of_ids`` takes."""
        get = self.vocab.index.get
        return np.array([get(t, UNK_ID) for t in _text.tokenize(text)], dtype=np.uint32)

    def input_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """``model_input`` from a review's token ids (uint32, as ``ids_of`` gives them)."""
        raise NotImplementedError

    def model_input_rows(self, texts: Sequence[str]) -> list[np.ndarray]:
        """``model_input`` of each text, equal array for array. Reviews whose tokens are ASCII
        are tokenized together in blocks of up to ``BLOCK_CHARS`` characters
        (``runtime.encoding.block_tokens``), so a block's arrays stay small whatever the reviews; the
        others (and longer reviews, and batches of fewer than ``MIN_BLOCK``) one at a time."""
        if len(texts) < MIN_BLOCK:
            return [self.model_input(t) for t in texts]
        rows: list = [None] * len(texts)
        block: list[int] = []
        forms: list[str] = []
        chars = 0
        for i, text in enumerate(texts):
            form = None if len(text) > BLOCK_CHARS else ascii_form(text)  # a long text is never copied whole
            if form is None or len(form) > BLOCK_CHARS:
                rows[i] = self.model_input(text)
                continue
            if block and chars + len(form) > BLOCK_CHARS:
                self._block_rows(block, forms, rows)
                block, forms, chars = [], [], 0
            block.append(i)
            forms.append(form)
            chars += len(form)
        if block:
            self._block_rows(block, forms, rows)
        return rows

    def _block_rows(self, block: list[int], forms: list[str], rows: list) -> None:
        if self._word_table is None:
            self._word_table = WordTable(self.vocab)  # built once, on the first block
        ids, counts = block_token_ids(forms, self._word_table, self.vocab.index.get)
        for i, row in zip(block, self._block_inputs(ids, counts)):
            rows[i] = row

    def _block_inputs(self, ids: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
        """``model_input`` of each review of a block, from all their token ids and each one's count."""
        ends = np.cumsum(counts).tolist()
        return [self.input_of_ids(ids[end - n : end]) for n, end in zip(counts.tolist(), ends)]


class MultiHotEncoder(_TokenEncoder):
    """Multi-hot bag of words over a vocabulary; a review is the set of its word ids.

    The tokenizer never produces a reserved token (``<`` and ``>`` are tokens of their
    own), so reserved ids are never set and a review with no known word has no ids.
    """

    family = MULTI_HOT
    word_ids = True

    def __init__(self, vocab: Vocabulary, memo_size: int = MEMO_SIZE):
        self.vocab = vocab
        self.vocab_size = len(vocab)
        self.table_rows = self.vocab_size  # the rows the model's ids index
        self._start_memo(self._chunk_ids, memo_size)

    def spec(self) -> dict:
        """What a model directory and a manifest record about the features."""
        return {"family": self.family, "vocab_size": self.vocab_size}

    def _chunk_ids(self, chunk: str) -> tuple[int, ...]:
        tokens = _text.chunk_tokens(chunk)
        get = self.vocab.index.get
        if len(tokens) == 1:
            i = get(tokens[0])
            return () if i is None else (i,)
        return tuple(i for i in map(get, tokens) if i is not None)

    def _id_set(self, text: str) -> set[int]:
        return set(chain.from_iterable(map(self._lookup, set(_text.chunks(text)))))

    @staticmethod
    def _sorted(ids: set[int]) -> np.ndarray:
        array = np.fromiter(ids, dtype=np.int32, count=len(ids))
        array.sort()
        return array

    def model_input(self, text: str) -> np.ndarray:
        """The distinct word ids of ``text``, int32, ascending: what the exported models take.

        Each distinct chunk is looked up once. Ascending order makes the models' float
        sums, and so every probability, independent of how a review reached them.
        """
        if len(text) > STREAM_OVER:
            return self.model_input_stream((text,))
        return self._sorted(self._id_set(text))

    def input_of_ids(self, ids: np.ndarray) -> np.ndarray:
        return np.unique(ids[ids != UNK_ID]).astype(np.int32)

    def model_inputs(self, texts: Sequence[str]) -> np.ndarray:
        """A batch of reviews' word ids, padded with 0 (see ``pad_word_ids``)."""
        return pad_word_ids(self.model_input_rows(texts))

    def model_input_stream(self, pieces: Iterable[str]) -> np.ndarray:
        """``model_input`` of one text given in pieces (memory bounded by the vocabulary)."""
        ids: set[int] = set()
        for segment in _text.whole_chunks(pieces):
            ids |= self._id_set(segment)
        return self._sorted(ids)

    def known_words(self, inputs: np.ndarray) -> np.ndarray:
        return known_words(inputs)

    def keras_inputs(self, texts: Sequence[str]) -> np.ndarray:
        """The dense ``(len(texts), vocab_size)`` float32 multi-hot rows Keras trains on."""
        batch = np.zeros((len(texts), self.vocab_size), dtype=np.float32)
        for row, ids in zip(batch, self.model_input_rows(texts)):
            row[ids] = 1.0
        return batch


class SequenceEncoder(_TokenEncoder):
    """Token ids in order, for Embedding + LSTM models.

    A review becomes ``<start>`` followed by each token's id (``<unk>`` for a word outside
    the vocabulary); the last ``length`` ids are kept (truncation at the front) and the row
    is padded at the front with ``<pad>`` = 0, as Keras's ``pad_sequences`` does by default.
    """

    family = SEQUENCE
    word_ids = False

    def __init__(self, vocab: Vocabulary, length: int, memo_size: int = MEMO_SIZE):
        if length < 1:
            raise ValueError(f"sequence length must be positive, got {length}")
        self.vocab = vocab
        self.vocab_size = len(vocab)
        self.table_rows = self.vocab_size
        self.length = length
        self._start_memo(self._chunk_ids, memo_size)

    def spec(self) -> dict:
        return {"family": self.family, "vocab_size": self.vocab_size, "length": self.length,
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

    def _row(self, ids: Sequence[int]) -> np.ndarray:
        row = np.zeros(self.length, dtype=np.int32)
        kept = ids[-self.length :]
        row[self.length - len(kept) :] = kept
        return row

    def model_input(self, text: str) -> np.ndarray:
        """One review's ``(length,)`` int32 row."""
        if len(text) > STREAM_OVER:
            return self.model_input_stream((text,))
        return self._row(self.token_ids(text))

    def input_of_ids(self, ids: np.ndarray) -> np.ndarray:
        return self._row(np.concatenate((_START, ids[-self.length :])))

    def model_inputs(self, texts: Sequence[str]) -> np.ndarray:
        """A ``(len(texts), length)`` int32 batch."""
        rows = self.model_input_rows(texts)
        return np.stack(rows) if rows else np.zeros((0, self.length), dtype=np.int32)

    keras_inputs = model_inputs

    def model_input_stream(self, pieces: Iterable[str]) -> np.ndarray:
        """``model_input`` of one text given in pieces: only the last ids are kept."""
        tail: deque[int] = deque([START_ID], maxlen=self.length)
        for segment in _text.whole_chunks(pieces):
            tail.extend(chain.from_iterable(map(self._lookup, _text.chunks(segment))))
        return self._row(list(tail))

    def known_words(self, inputs: np.ndarray) -> np.ndarray:
        return known_words(inputs)


# The n-gram family's bigram hash, fixed forever for NGRAM_HASH: changing it, the bucket
# count or the order makes a different encoder, which a bundle's spec names and old runtimes
# refuse. ``BIGRAM_MULTIPLIER`` is 2^64 divided by the golden ratio (Fibonacci hashing).
NGRAM_HASH = "fibonacci64-v1"
BIGRAM_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_HIGH_BITS = np.uint64(32)
_LOW_BITS = np.uint64(0xFFFFFFFF)
_TOKEN_BYTES = np.dtype("<u4")
_pack_id = struct.Struct("<I").pack
_PACK_IDS = [struct.Struct(f"<{n}I").pack for n in range(16)]  # n token ids as bytes, prepared once
_HIGH_HALF = 1 if sys.byteorder == "little" else 0  # where a uint64's high 32 bits sit in its uint32 view


def bigram_ids(left: np.ndarray, right: np.ndarray, vocab_size: int, buckets: int,
               out: np.ndarray | None = None) -> np.ndarray:
    """The feature ids of bigrams ``(left[i], right[i])`` of token ids (1-D unsigned integer
    arrays), as uint32: the one bigram hash of the n-gram family, used by every road.

    ``vocab_size + ((((left * vocab_size + right) * BIGRAM_MULTIPLIER) mod 2^64) >> 32) mod buckets``:
    the pair's unique index, mixed by one 64-bit multiply, its high 32 bits reduced to a bucket.
    Unsigned numpy arithmetic wraps modulo 2^64 on every platform, so the ids are the same
    on x86 and ARM, 32- or 64-bit.

    The product is computed in uint64 whatever the inputs (numpy 1 would pick uint32 for
    uint32 ids); its high halves are read as a uint32 view instead of shifted, and reduced
    and offset in uint32 (every id is below ``table_rows`` < 2^31). A review has a few
    hundred ids, where each numpy call's fixed cost is most of the work, so ``out`` (a uint32
    array of ``len(left)``) lets a caller have them written where it needs them.
    """
    vocab_u64, buckets_u32, vocab_u32 = _hash_sizes(vocab_size, buckets)
    h = np.multiply(left, vocab_u64, dtype=np.uint64)
    h += right
    h *= BIGRAM_MULTIPLIER
    bigrams = np.remainder(h.view(np.uint32)[_HIGH_HALF::2], buckets_u32, out=out)
    bigrams += vocab_u32
    return bigrams


@lru_cache(maxsize=16)
def _hash_sizes(vocab_size: int, buckets: int) -> tuple[np.uint64, np.uint32, np.uint32]:
    """The sizes as the numpy scalars ``bigram_ids`` computes with, made once per encoder
    (making them costs about as much as one of its numpy calls)."""
    return np.uint64(vocab_size), np.uint32(buckets), np.uint32(vocab_size)


class NgramEncoder(_TokenEncoder):
    """Word unigrams and hashed token bigrams: the inputs of a linear model over a table.

    A review's features are its distinct token ids (unigrams, exact: ``0 .. vocab_size - 1``)
    and the ``bigram_ids`` of every two consecutive tokens (from ``vocab_size`` up: bigrams
    share ``buckets`` rows by hashing). A token outside the vocabulary is ``<unk>``: its
    unigram row is zero like every reserved id's, and its bigrams ("not <unk>") are kept. As
    for multi-hot, the ids are sorted and distinct and padding is id 0.
    """

    family = NGRAM
    word_ids = True
    order = 2

    def __init__(self, vocab: Vocabulary, buckets: int, memo_size: int = MEMO_SIZE):
        if not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 1:
            raise ValueError(f"buckets must be a positive integer, got {buckets!r}")
        self.vocab = vocab
        self.vocab_size = len(vocab)
        self.buckets = buckets
        self.table_rows = self.vocab_size + buckets
        if self.table_rows >= 1 << 31:
            raise ValueError(f"{self.vocab_size} words and {buckets} buckets make more rows than int32 ids can index")
        self._get = vocab.index.get
        self._start_memo(self._chunk_bytes, memo_size)

    def spec(self) -> dict:
        return {"family": self.family, "vocab_size": self.vocab_size, "order": self.order,
                "buckets": self.buckets, "hash": NGRAM_HASH, "rows": self.table_rows}

    _chunk_ids = SequenceEncoder._chunk_ids  # every token's id, <unk> outside the vocabulary

    def _chunk_bytes(self, chunk: str) -> bytes:
        """A chunk's token ids as little-endian uint32 bytes: what the memo keeps. A memo miss
        costs this once per distinct chunk, which is most of the work on a first pass over a
        large file, so ``text.chunk_tokens`` is inlined for ASCII chunks (one word, or the
        pattern applied as it is) and the ids are packed without a tuple or a numpy array."""
        if chunk.isascii():
            if chunk.isalnum():
                return _pack_id(self._get(chunk, UNK_ID))
            tokens = _text.TOKEN_RE.findall(chunk)
        else:
            tokens = _text.chunk_tokens(chunk)
        n = len(tokens)
        ids = map(self._get, tokens, repeat(UNK_ID))
        return _PACK_IDS[n](*ids) if n < len(_PACK_IDS) else struct.pack(f"<{n}I", *ids)

    def ids_of(self, text: str) -> np.ndarray:
        """Every token's id in order (uint32, read-only): the memo's bytes of each chunk, joined
        and read by numpy at once (a dictionary look-up per chunk, then one numpy call)."""
        return np.frombuffer(b"".join(map(self._lookup, _text.chunks(text))), dtype=_TOKEN_BYTES)

    def _features(self, ids: np.ndarray) -> np.ndarray:
        """The sorted distinct unigram and bigram ids of consecutive token ids (uint32), int32.

        The bigrams' ``bigram_ids`` are written beside the unigrams, and the ids are sorted
        as uint32 (``table_rows`` < 2^31).
        """
        n = len(ids)
        if n < 2:
            return ids.astype(np.int32)
        found = np.empty(2 * n - 1, dtype=np.uint32)
        found[:n] = ids
        bigram_ids(ids[:-1], ids[1:], self.vocab_size, self.buckets, out=found[n:])
        found.sort()
        keep = np.empty(len(found), dtype=bool)
        keep[0] = True
        np.not_equal(found[1:], found[:-1], out=keep[1:])
        return found[keep].view(np.int32)

    def model_input(self, text: str) -> np.ndarray:
        """The distinct unigram and bigram ids of ``text``, int32, ascending."""
        if len(text) > STREAM_OVER:
            return self.model_input_stream((text,))
        return self._features(self.ids_of(text))

    def input_of_ids(self, ids: np.ndarray) -> np.ndarray:
        return self._features(ids)

    def bigrams_of(self, ids: np.ndarray) -> np.ndarray:
        """The ``bigram_ids`` of every two consecutive token ids, in order (uint32)."""
        return bigram_ids(ids[:-1], ids[1:], self.vocab_size, self.buckets)

    def _block_inputs(self, ids: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
        """``_features`` of every review of a block at once: each feature id is keyed by its
        review's position (``position << 32 | id``), so one sort of the block's keys orders
        every review's ids and puts its duplicates side by side."""
        position = np.repeat(np.arange(len(counts), dtype=np.uint64), counts)
        same = position[:-1] == position[1:]  # two consecutive tokens of one review
        bigrams = bigram_ids(ids[:-1][same], ids[1:][same], self.vocab_size, self.buckets)
        keys = np.concatenate((position << _HIGH_BITS | ids, position[:-1][same] << _HIGH_BITS | bigrams))
        keys.sort()
        distinct = np.ones(len(keys), dtype=bool)
        np.not_equal(keys[1:], keys[:-1], out=distinct[1:])
        keys = keys[distinct]
        per_review = np.bincount((keys >> _HIGH_BITS).astype(np.intp), minlength=len(counts))
        values = (keys & _LOW_BITS).astype(np.int32)
        return [values[end - n : end] for n, end in zip(per_review.tolist(), np.cumsum(per_review).tolist())]

    def model_inputs(self, texts: Sequence[str]) -> np.ndarray:
        """A batch of reviews' ids, padded with 0 (see ``pad_word_ids``)."""
        return pad_word_ids(self.model_input_rows(texts))

    keras_inputs = model_inputs

    def model_input_stream(self, pieces: Iterable[str]) -> np.ndarray:
        """``model_input`` of one text given in pieces (memory bounded by the table)."""
        found = np.zeros(0, dtype=np.int32)
        last = np.zeros(0, dtype=_TOKEN_BYTES)  # the segment's previous token, for the bigram across
        for segment in _text.whole_chunks(pieces):
            ids = np.concatenate((last, self.ids_of(segment)))
            found = np.union1d(found, self._features(ids))
            last = ids[-1:]
        return found.astype(np.int32)

    def known_words(self, inputs: np.ndarray) -> np.ndarray:
        """How many vocabulary words (unigram ids, not bigrams or padding) each input holds."""
        inputs = np.asarray(inputs)
        return np.count_nonzero((inputs > UNK_ID) & (inputs < self.vocab_size), axis=-1)


class NgramSequenceEncoder(NgramEncoder):
    """The order-aware model's input: token ids in order, then the n-gram ids, in one int32 row.

    A row is ``length`` columns of the text's first ``length`` token ids (``<unk>`` for a word
    outside the vocabulary), padded with 0 at the end, followed by ``NgramEncoder``'s sorted
    distinct unigram and bigram ids of the whole text. One row keeps one model input, so a
    batch is padded with 0 at the end like the n-gram family's (padding ids add nothing). The
    model reads columns ``[:length]`` as the sequence and the rest as the n-gram ids.
    """

    family = NGRAM_SEQUENCE

    def __init__(self, vocab: Vocabulary, buckets: int, length: int, memo_size: int = MEMO_SIZE):
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise ValueError(f"sequence length must be a positive integer, got {length!r}")
        super().__init__(vocab, buckets, memo_size)
        self.length = length

    def spec(self) -> dict:
        return {**super().spec(), "family": self.family, "length": self.length,
                "sequence": "first tokens, padded with 0 at the end"}

    def _row(self, ids: np.ndarray) -> np.ndarray:
        row = np.zeros(self.length, dtype=np.int32)
        kept = ids[: self.length]
        row[: len(kept)] = kept
        return row

    def model_input(self, text: str) -> np.ndarray:
        """``length`` token ids, then the distinct unigram and bigram ids of ``text``, int32."""
        if len(text) > STREAM_OVER:
            return self.model_input_stream((text,))
        ids = self.ids_of(text)
        return np.concatenate((self._row(ids), self._features(ids)))

    def input_of_ids(self, ids: np.ndarray) -> np.ndarray:
        return np.concatenate((self._row(ids), self._features(ids)))

    def _block_inputs(self, ids: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
        features = super()._block_inputs(ids, counts)
        ends = np.cumsum(counts).tolist()
        return [np.concatenate((self._row(ids[end - n : end]), f))
                for n, end, f in zip(counts.tolist(), ends, features)]

    def model_input_stream(self, pieces: Iterable[str]) -> np.ndarray:
        """``model_input`` of one text given in pieces (memory bounded by the table)."""
        found = np.zeros(0, dtype=np.int32)
        first = np.zeros(0, dtype=_TOKEN_BYTES)
        last = np.zeros(0, dtype=_TOKEN_BYTES)
        for segment in _text.whole_chunks(pieces):
            ids = np.concatenate((last, self.ids_of(segment)))
            if len(first) < self.length:
                first = np.concatenate((first, ids[len(last):][: self.length - len(first)]))
            found = np.union1d(found, self._features(ids))
            last = ids[-1:]
        return np.concatenate((self._row(first), found.astype(np.int32)))

    def parts(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A batch's (or a row's) sequence columns and n-gram ids."""
        inputs = np.asarray(inputs)
        return inputs[..., : self.length], inputs[..., self.length :]

    def known_words(self, inputs: np.ndarray) -> np.ndarray:
        """How many vocabulary words (unigram ids) each input holds."""
        return super().known_words(self.parts(inputs)[1])


Encoder = MultiHotEncoder | SequenceEncoder | NgramEncoder | NgramSequenceEncoder


def encoder_from_spec(spec: dict, vocab: Vocabulary) -> Encoder:
    """The encoder a feature spec names (as ``Encoder.spec`` wrote it), checked against the vocabulary."""
    family = spec.get("family")
    if family not in FAMILIES:
        raise ValueError(f"unsupported feature family {family!r}")
    if spec.get("vocab_size") != len(vocab):
        raise ValueError(f"the features index {spec.get('vocab_size')} words but the vocabulary has {len(vocab)} tokens")
    if family == SEQUENCE:
        return SequenceEncoder(vocab, int(spec["length"]))
    if family in (NGRAM, NGRAM_SEQUENCE):
        for field, expected in (("order", NgramEncoder.order), ("hash", NGRAM_HASH)):
            if spec.get(field) != expected:
                raise ValueError(f"features field {field!r} is {spec.get(field)!r}; this runtime's "
                                 f"n-gram encoder has {expected!r}")
        buckets = spec.get("buckets")
        if not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 1:
            raise ValueError(f"features field 'buckets' must be a positive integer, not {buckets!r}")
        if family == NGRAM_SEQUENCE:
            length = spec.get("length")
            if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= MAX_LENGTH:
                raise ValueError(f"features field 'length' must be an integer from 1 to {MAX_LENGTH}, not {length!r}")
            encoder = NgramSequenceEncoder(vocab, buckets, length)
        else:
            encoder = NgramEncoder(vocab, buckets)
        if spec.get("rows") != encoder.table_rows:
            raise ValueError(f"features field 'rows' is {spec.get('rows')!r}, but {len(vocab)} words and "
                             f"{buckets} buckets make {encoder.table_rows}")
        return encoder
    return MultiHotEncoder(vocab)
