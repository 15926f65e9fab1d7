"""Vocabulary building, file format and reserved ids."""

from collections import Counter

import pytest

from runtime.encoding.text import tokenize
from runtime.encoding.vocab import RESERVED, Vocabulary, VocabularyError

TEXTS = ["b a c a", "c a d", "e e e e b"]


def test_most_frequent_first_ties_broken_by_text():
    v = Vocabulary.build(TEXTS, 3 + 4)
    # counts: e 4, a 3, then b and c tie at 2 (b first by text), d 1 is cut
    assert v.tokens == RESERVED + ("e", "a", "b", "c")
    assert v.index["e"] == 3


def test_build_matches_naive_token_counting(corpus):
    texts = corpus.splits["train"].texts[:3000]
    v = Vocabulary.build(texts, 5000)
    counts = Counter(t for x in texts for t in tokenize(x))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: 5000 - 3]
    assert list(v.tokens[3:]) == [t for t, _ in ranked]


def test_build_is_deterministic_across_order(corpus):
    texts = corpus.splits["train"].texts[:2000]
    assert Vocabulary.build(texts, 3000).tokens == Vocabulary.build(list(reversed(texts)), 3000).tokens


def test_save_load_roundtrip(tmp_path):
    v = Vocabulary.build(TEXTS + ["don't caf\u00e9 日本"], 50)
    v.save(tmp_path / "vocab.txt")
    raw = (tmp_path / "vocab.txt").read_text(encoding="utf-8")
    assert raw.splitlines()[:3] == list(RESERVED) and raw.endswith("\n")
    w = Vocabulary.load(tmp_path / "vocab.txt")
    assert w.tokens == v.tokens and w.sha256() == v.sha256()


@pytest.mark.parametrize(
    "content, message",
    [
        ("<pad>\n<start>\n<unk>\nword", "truncated"),
        ("word\n<pad>\n<start>\n<unk>\n", "first tokens"),
        ("<pad>\n<start>\n<unk>\na\na\n", "duplicate"),
    ],
)
def test_bad_files_are_refused(tmp_path, content, message):
    p = tmp_path / "v.txt"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(VocabularyError, match=message):
        Vocabulary.load(p)


def test_size_must_leave_room_for_words():
    with pytest.raises(VocabularyError):
        Vocabulary.build(TEXTS, 3)
