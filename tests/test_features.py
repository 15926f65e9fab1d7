"""Multi-hot encoding against a naive reference, and the exactness of the memo."""

import numpy as np

import pytest

from runtime.encoding.features import MultiHotEncoder, SequenceEncoder
from runtime.encoding.text import tokenize
from runtime.encoding.vocab import Vocabulary


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
    got = MultiHotEncoder(vocab).keras_inputs(texts)
    assert got.dtype == np.float32 and got.shape == (1500, 4000)
    np.testing.assert_array_equal(got, naive_multi_hot(texts, vocab))


def test_word_ids_are_the_ones_of_the_row_ascending_and_round_trip(corpus):
    """What the exported models take: each review's distinct word ids, sorted."""
    from runtime.encoding.features import known_words, pad_word_ids

    vocab = Vocabulary.build(corpus.splits["train"].texts[:3000], 4000)
    enc = MultiHotEncoder(vocab)
    texts = corpus.splits["test"].texts[:500] + ["", "zzzqqq", "the the the"]
    dense = naive_multi_hot(texts, vocab)
    word_ids = [enc.model_input(t) for t in texts]
    for ids, row in zip(word_ids, dense):
        assert ids.dtype == np.int32
        np.testing.assert_array_equal(ids, np.flatnonzero(row))
    padded = pad_word_ids(word_ids)
    np.testing.assert_array_equal(enc.model_inputs(texts), padded)
    assert padded.shape == (len(texts), max(map(len, word_ids))) and padded.dtype == np.int32
    for ids, row in zip(word_ids, padded):
        assert list(row[: len(ids)]) == list(ids) and not row[len(ids) :].any()
    np.testing.assert_array_equal(known_words(padded), np.count_nonzero(dense, axis=1))
    assert pad_word_ids([np.zeros(0, np.int32)]).shape == (1, 1)


def test_memo_never_changes_results(corpus):
    vocab = Vocabulary.build(corpus.splits["train"].texts[:2000], 3000)
    texts = corpus.splits["test"].texts[:800]
    full = MultiHotEncoder(vocab).keras_inputs(texts)
    tiny = MultiHotEncoder(vocab, memo_size=50)
    np.testing.assert_array_equal(tiny.keras_inputs(texts), full)
    np.testing.assert_array_equal(tiny.keras_inputs(texts), full)  # second pass: memo full
    assert len(tiny._memo) == 50


def test_a_smaller_memo_set_later_changes_no_answer_and_bulk_scorers_use_it(corpus):
    from runtime import ReviewScorer
    from runtime.encoding.features import BULK_MEMO_SIZE, MEMO_SIZE

    vocab = Vocabulary.build(corpus.splits["train"].texts[:2000], 3000)
    texts = corpus.splits["test"].texts[:300]
    enc = MultiHotEncoder(vocab)
    before = enc.keras_inputs(texts)
    enc.set_memo_size(40)
    assert len(enc._memo) == 0
    np.testing.assert_array_equal(enc.keras_inputs(texts), before)
    assert len(enc._memo) == 40
    assert BULK_MEMO_SIZE < MEMO_SIZE
    assert ReviewScorer().classifier.encoder._memo._limit == BULK_MEMO_SIZE


def test_reserved_columns_are_never_set():
    vocab = Vocabulary.build(["a b c <pad> <unk> <start>"], 10)
    x = MultiHotEncoder(vocab).keras_inputs(["<pad> <unk> <start> a zzz"])
    assert x[0, :3].sum() == 0 and x[0, vocab.index["a"]] == 1


def test_no_known_words_is_all_zeros():
    vocab = Vocabulary.build(["a b c"], 10)
    assert MultiHotEncoder(vocab).keras_inputs(["xyz qqq", ""]).sum() == 0


def test_stream_equals_whole(corpus):
    vocab = Vocabulary.build(corpus.splits["train"].texts[:2000], 3000)
    enc = MultiHotEncoder(vocab)
    text = " ".join(corpus.splits["test"].texts[:50])
    pieces = [text[i : i + 997] for i in range(0, len(text), 997)]
    np.testing.assert_array_equal(enc.model_input_stream(pieces), enc.model_input(text))


def seq_vocab():
    return Vocabulary(("<pad>", "<start>", "<unk>", "good", "film", "bad", "!"))


@pytest.mark.parametrize("text, length, row", [
    ("good film", 5, [0, 0, 1, 3, 4]),                       # front padding, start id
    ("good film !", 4, [1, 3, 4, 6]),                        # exactly full
    ("bad good film good film !", 4, [4, 3, 4, 6]),          # front truncation keeps the end
    ("awful good", 4, [0, 1, 2, 3]),                         # unknown word -> <unk>
    ("", 3, [0, 0, 1]),                                      # empty: only the start id
])
def test_sequence_golden_cases(text, length, row):
    enc = SequenceEncoder(seq_vocab(), length)
    got = enc.model_inputs([text])
    assert got.dtype == np.int32 and got.tolist() == [row]
    np.testing.assert_array_equal(enc.model_input(text), got[0])


def test_sequence_matches_keras_pad_sequences_rule(corpus):
    vocab = Vocabulary.build(corpus.splits["train"].texts[:2000], 3000)
    enc = SequenceEncoder(vocab, 200)
    texts = corpus.splits["test"].texts[:300]
    got = enc.model_inputs(texts)
    for row, text in zip(got, texts):
        ids = [1] + [vocab.index.get(t, 2) for t in tokenize(text)]
        want = ([0] * max(0, 200 - len(ids)) + ids)[-200:]
        assert row.tolist() == want


def test_sequence_stream_equals_whole(corpus):
    vocab = Vocabulary.build(corpus.splits["train"].texts[:2000], 3000)
    enc = SequenceEncoder(vocab, 300)
    for text in (corpus.splits["test"].texts[0], " ".join(corpus.splits["test"].texts[:30])):
        pieces = [text[i : i + 501] for i in range(0, len(text), 501)]
        np.testing.assert_array_equal(enc.model_input_stream(pieces), enc.model_input(text))


def test_encoder_from_spec_checks_the_vocabulary():
    from runtime.encoding.features import encoder_from_spec

    spec = SequenceEncoder(seq_vocab(), 8).spec()
    assert isinstance(encoder_from_spec(spec, seq_vocab()), SequenceEncoder)
    assert isinstance(encoder_from_spec(MultiHotEncoder(seq_vocab()).spec(), seq_vocab()), MultiHotEncoder)
    with pytest.raises(ValueError, match="index 7 words but the vocabulary has 4 tokens"):
        encoder_from_spec(spec, Vocabulary(("<pad>", "<start>", "<unk>", "x")))
    with pytest.raises(ValueError, match="unsupported feature family 'bag'"):
        encoder_from_spec({**spec, "family": "bag"}, seq_vocab())
