"""The block tokenizer gives exactly the ids of ``text.tokenize`` + a vocabulary look-up, and
every encoder's many-review path (``model_input_rows``) equals its one-review path."""

import random

import numpy as np
import pytest

from runtime.encoding import block_tokens
from runtime.encoding.block_tokens import CLASSES, KEY_BYTES, WordTable, ascii_form, block_token_ids, pack
from runtime.encoding.features import BLOCK_CHARS, MIN_BLOCK, MultiHotEncoder, NgramEncoder, SequenceEncoder
from runtime.encoding.text import tokenize
from runtime.encoding.vocab import UNK_ID, Vocabulary

ASCII = "".join(map(chr, range(128)))
FOLDED = "\u2019\u2018\u201c\u201d\x92\x93\x85\x96\u2013\u2026\u00e9\u00c9\u00ef\u00df\ufb01\u00a8\u00b4\u0301\u00a0\u2028"
OTHER_SCRIPTS = "\u65e5\u03a9\U0001f600"


def reference_ids(text: str, vocab: Vocabulary) -> list[int]:
    return [vocab.index.get(t, UNK_ID) for t in tokenize(text)]


def block_ids(texts: list[str], vocab: Vocabulary) -> list[list[int]]:
    ids, counts = block_token_ids([ascii_form(t) for t in texts], WordTable(vocab), vocab.index.get)
    assert counts.sum() == len(ids)
    ends = np.cumsum(counts)
    return [ids[e - n : e].tolist() for n, e in zip(counts, ends)]


def test_byte_classes_are_those_of_split_and_the_token_pattern():
    for b in range(128):
        ch = chr(b)
        want = (block_tokens.SPACE if ch.isspace() else block_tokens.WORD if ch.isalnum()
                else block_tokens.JOINER if ch == "'" else block_tokens.OTHER)
        assert CLASSES[b] == want, repr(ch)


def random_text(rng: random.Random, alphabet: str, n: int) -> str:
    words = ["a", "ab", "don't", "rock'n'roll", "x" * 8, "y" * 9, "z" * 16, "w" * 17, "q" * 40, "<br />", "<br", "/>",
             "''", "_", "\x00", "1'2", "it's", "'tis"]
    parts = [rng.choice(words) if rng.random() < 0.4 else "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
             for _ in range(n)]
    return "".join(p + rng.choice(["", " ", "  ", "\t", "\x1c"]) for p in parts)


def vocabulary_of(texts: list[str]) -> Vocabulary:
    """A vocabulary holding about half the texts' tokens (long, short, single characters, NUL)."""
    tokens = sorted({t for text in texts for t in tokenize(text)})
    return Vocabulary(("<pad>", "<start>", "<unk>", *tokens[::2]))


BOTH_WAYS = pytest.mark.parametrize("few", [0, 10**6], ids=["split-whole", "chunk-by-chunk"])


@BOTH_WAYS
@pytest.mark.parametrize("alphabet", [ASCII, "ab'. \t" + ASCII[:32], ASCII + FOLDED, "ab '" + FOLDED + OTHER_SCRIPTS])
def test_block_ids_equal_the_tokenizer_on_random_text(alphabet, few, monkeypatch):
    monkeypatch.setattr(block_tokens, "FEW", few)  # how a review with characters not ASCII is rewritten
    rng = random.Random(len(alphabet))
    texts = [random_text(rng, alphabet, rng.randint(0, 60)) for _ in range(400)]
    vocab = vocabulary_of(texts)
    assert any(len(t) > KEY_BYTES for t in vocab.tokens) and any(len(t) == 1 for t in vocab.tokens)
    kept = [t for t in texts if ascii_form(t) is not None]
    assert len(kept) > 15
    assert block_ids(kept, vocab) == [reference_ids(t, vocab) for t in kept]
    if set(OTHER_SCRIPTS) <= set(alphabet):
        assert len(kept) < len(texts)  # a review with tokens in other scripts keeps the one-review path


@pytest.mark.parametrize("text", [
    "Don\u2019t<br />stop \u201cnow\u201d",
    "caf\u00e9\u00a0na\u00efve\u2028end",
    "x\u2019 <br\t/> y",          # re-joined chunks must not spell a line break that was not one
    "x\u2019 <br  />",
    "a\u00a8b \ufb01ne",          # NFKD makes a space and a ligature's letters
    "``quoted'' \u2018single\u2019",  # ASCII backticks are not folded, curly quotes are
])
@BOTH_WAYS
def test_folded_reviews_rewrite_to_the_same_tokens(text, few, monkeypatch):
    monkeypatch.setattr(block_tokens, "FEW", few)
    vocab = vocabulary_of([text])
    form = ascii_form(text)
    assert form is not None and form.isascii()
    assert block_ids([text], vocab) == [reference_ids(text, vocab)]


def test_whitespace_of_the_pattern_is_that_of_split():
    """``ascii_form`` finds a chunk's end with the pattern's \\s: it must be str.split's whitespace."""
    import sys

    for c in map(chr, range(sys.maxunicode + 1)):
        assert bool(block_tokens._SPACE.match(c)) == c.isspace() == (len(f"a{c}b".split()) == 2), hex(ord(c))
    assert block_tokens._ASCII_SPACES == "".join(c for c in map(chr, range(128)) if c.isspace())


def test_other_scripts_have_no_ascii_form():
    assert ascii_form("good \u65e5\u672c film") is None
    assert ascii_form("fine \U0001f600") is None


def test_word_table_finds_every_short_ascii_token_and_nothing_else():
    rng = random.Random(1)
    tokens = sorted({"".join(rng.choice("abc'xyz019") for _ in range(rng.randint(1, KEY_BYTES))) for _ in range(40000)})
    vocab = Vocabulary(("<pad>", "<start>", "<unk>", *tokens, "\x00", "qq\x00", "\u00e9t\u00e9", "l" * (KEY_BYTES + 1)))
    table = WordTable(vocab)
    short = [t for t in vocab.tokens if t.isascii() and len(t) <= KEY_BYTES and "\x00" not in t]
    assert len(short) > 30000  # collisions: probing is exercised
    assert table.lookup(*pack([t.encode() for t in short])).tolist() == [vocab.index[t] for t in short]
    # keyed by their bytes, the tokens with a NUL would be "" and "qq": they are not in the table
    assert table.lookup(*pack([b"\x00", b"qq\x00", b"qq", b"l" * KEY_BYTES])).tolist() == [UNK_ID] * 4


def test_the_nul_character_is_a_token_found_in_the_dictionary():
    with_nul = Vocabulary(("<pad>", "<start>", "<unk>", "a", "\x00"))
    texts = ["a \x00 b", "\x00\x00a", "a\x00"]
    assert block_ids(texts, with_nul) == [reference_ids(t, with_nul) for t in texts] == [[3, 4, 2], [4, 4, 3], [3, 4]]
    without = Vocabulary(("<pad>", "<start>", "<unk>", "a"))
    assert block_ids(texts, without) == [[3, 2, 2], [2, 2, 3], [3, 2]]


def test_long_and_huge_tokens():
    vocab = Vocabulary(("<pad>", "<start>", "<unk>", "a" * 17, "b" * 200))
    texts = ["a" * 17, "b" * 200 + " " + "a" * 16, "c" * (BLOCK_CHARS + 10)]
    assert block_ids(texts, vocab) == [[3], [4, UNK_ID], [UNK_ID]]


def encoders(vocab: Vocabulary):
    return [MultiHotEncoder(vocab), SequenceEncoder(vocab, 120), NgramEncoder(vocab, 5000)]


def assert_rows_equal(enc, texts: list[str]) -> None:
    rows = enc.model_input_rows(texts)
    assert len(rows) == len(texts)
    for row, text in zip(rows, texts):
        want = enc.model_input(text)
        assert row.dtype == want.dtype == np.int32 and row.tolist() == want.tolist(), text[:80]


def test_every_family_gives_the_same_inputs_both_ways_on_random_text():
    rng = random.Random(7)
    texts = [random_text(rng, ASCII + FOLDED + OTHER_SCRIPTS, rng.randint(0, 80)) for _ in range(300)]
    texts += ["", " ", "one", "two words", "\u65e5"]
    vocab = vocabulary_of(texts)
    for enc in encoders(vocab):
        assert_rows_equal(enc, texts)
        assert_rows_equal(enc, texts[: MIN_BLOCK - 1])  # below a block: one at a time


def test_every_family_gives_the_same_inputs_both_ways_on_reviews(corpus):
    vocab = Vocabulary.build(corpus.splits["train"].texts[:3000], 5000)
    texts = corpus.splits["test"].sample(3000, 3).texts
    assert sum(not t.isascii() for t in texts) > 100
    for enc in encoders(vocab):
        assert_rows_equal(enc, texts)


def test_a_review_longer_than_a_block_takes_the_one_review_path():
    vocab = Vocabulary(("<pad>", "<start>", "<unk>", "ab", "cd"))
    enc = NgramEncoder(vocab, 100)
    huge = "ab cd " * (BLOCK_CHARS // 5)
    texts = ["ab", huge, "cd ab", "zz", "ab ab"]
    assert_rows_equal(enc, texts)
    assert enc._memo  # the long review went through the memo
    short = NgramEncoder(vocab, 100)
    short.model_input_rows(texts[:1] + texts[2:])
    assert not short._memo  # all in one block
