"""Multi-hot encoding against a naive reference, and the exactness of the memo."""

import numpy as np

from runtime.features import MultiHotEncoder
from runtime.text import tokenize
from runtime.vocab import Vocabulary


def naive_multi_hot(texts, vocab):
    out = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    for row, t in enumerate(texts):
        for tok in tokenize(t):
            if tok in vocab.index:
                out[row, vocab.index[tok]] = 1.0
    return out


def test_matches_naive_reference(corpus):
    vocab = Vocabulary.build(corpus.splits["train"].texts[:3000], 4000)
    texts = corpus.splits["test"].texts[:1500]
    got = MultiHotEncoder(vocab).encode(texts)
    assert got.dtype == np.float32 and got.shape == (1500, 4000)
    np.testing.assert_array_equal(got, naive_multi_hot(texts, vocab))


def test_memo_never_changes_results(corpus):
    vocab = Vocabulary.build(corpus.splits["train"].texts[:2000], 3000)
    texts = corpus.splits["test"].texts[:800]
    full = MultiHotEncoder(vocab).encode(texts)
    tiny = MultiHotEncoder(vocab, memo_size=50)
    np.testing.assert_array_equal(tiny.encode(texts), full)
    np.testing.assert_array_equal(tiny.encode(texts), full)  # second pass: memo full
    assert len(tiny._memo) == 50


def test_reserved_columns_are_never_set():
    vocab = Vocabulary.build(["a b c <pad> <unk> <start>"], 10)
    x = MultiHotEncoder(vocab).encode(["<pad> <unk> <start> a zzz"])
    assert x[0, :3].sum() == 0 and x[0, vocab.index["a"]] == 1


def test_no_known_words_is_all_zeros():
    vocab = Vocabulary.build(["a b c"], 10)
    assert MultiHotEncoder(vocab).encode(["xyz qqq", ""]).sum() == 0


def test_stream_equals_whole(corpus):
    vocab = Vocabulary.build(corpus.splits["train"].texts[:2000], 3000)
    enc = MultiHotEncoder(vocab)
    text = " ".join(corpus.splits["test"].texts[:50])
    pieces = [text[i : i + 997] for i in range(0, len(text), 997)]
    np.testing.assert_array_equal(enc.encode_stream(pieces), enc.encode([text]))
