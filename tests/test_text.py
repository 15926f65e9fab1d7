"""Tokenizer golden cases and the exactness of its chunk decomposition."""

import random

import pytest

from runtime.encoding import text
from runtime.encoding.text import chunk_tokens, chunks, tokenize, whole_chunks


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Great movie!", ["great", "movie", "!"]),
        ("Good.<br /><br />Bad.", ["good", ".", "bad", "."]),
        ("one<br/>two<BR>three<br />four", ["one", "two", "three", "four"]),
        ("I don't think everyone's happy", ["i", "don't", "think", "everyone's", "happy"]),
        ("'quoted' words", ["'", "quoted", "'", "words"]),
        ("rock'n'roll", ["rock'n'roll"]),
        ("it's--really (sort of) fine...", ["it's", "-", "-", "really", "(", "sort", "of", ")", "fine", ".", ".", "."]),
        ("Rated 7/10, 3.5 stars in 2005", ["rated", "7", "/", "10", ",", "3", ".", "5", "stars", "in", "2005"]),
        ("snake_case", ["snake", "_", "case"]),
        ("don\u2019t \u201cwow\u201d", ["don't", '"', "wow", '"']),
        ("don\x92t stop\x97now", ["don't", "stop", "-", "now"]),
        ("Caf\u00e9 na\u00efve R\u00c9SUM\u00c9", ["cafe", "naive", "resume"]),
        ("\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u65e5\u672c\u8a9e \u0645\u0631\u062d\u0628\u0627", ["ελληνικα", "日本語", "مرحبا"]),
        ("emoji \U0001f600 ok", ["emoji", "\U0001f600", "ok"]),
        ("tab\tnew\nline\u00a0nbsp", ["tab", "new", "line", "nbsp"]),
        ("", []),
        ("   \n\t  ", []),
        ("<br /><br />", []),
    ],
)
def test_golden_cases(raw, expected):
    assert tokenize(raw) == expected


def test_no_token_contains_whitespace_or_is_empty():
    rng = random.Random(0)
    alphabet = "ab '\u2019.,!<br />\t\n\u00e9\u0301\u00a8\u00b4`\x85\x92_9Ω日"
    for _ in range(2000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for tok in tokenize(s):
            assert tok and not any(c.isspace() for c in tok), (s, tok)


def test_accents_and_combining_marks_fold_the_same_way():
    assert tokenize("cafe\u0301") == tokenize("caf\u00e9") == ["cafe"]


def test_surrogates_and_control_characters_do_not_crash():
    tokenize("bad \ud800 surrogate \x00 nul \x1b esc")


def test_very_long_text_is_linear_enough():
    review = "This film is great, and I mean it! " * 20000  # ~700 KB
    toks = tokenize(review)
    assert len(toks) == 20000 * 10
    assert toks[:4] == ["this", "film", "is", "great"]


def test_tokenize_is_the_concatenation_of_chunk_tokens(corpus):
    for review in corpus.splits["test"].texts[:2000]:
        assert tokenize(review) == [t for c in chunks(review) for t in chunk_tokens(c)]


def test_stream_cuts_give_the_same_tokens(corpus):
    rng = random.Random(1)
    for review in corpus.splits["train"].texts[:300]:
        cuts = sorted(rng.sample(range(len(review) + 1), min(len(review), 15)))
        pieces = [review[a:b] for a, b in zip([0] + cuts, cuts + [len(review)])]
        got = [t for seg in whole_chunks(pieces) for t in tokenize(seg)]
        assert got == tokenize(review)


@pytest.mark.parametrize("cut", range(1, 12))
def test_stream_never_cuts_inside_a_line_break(cut):
    s = "great<br />film<BR />end"
    assert [t for seg in whole_chunks([s[:cut], s[cut:]]) for t in tokenize(seg)] == tokenize(s)


def test_settings_identify_the_tokenizer():
    assert text.settings() == {"name": "imdb-words", "version": 1}


def test_letters_and_digits_shortcut_is_what_the_pattern_finds(corpus):
    """chunk_tokens returns an ASCII letters-and-digits chunk as it is, skipping the pattern."""
    from runtime.encoding.text import TOKEN_RE

    seen = {c for review in corpus.splits["train"].texts[:5000] for c in chunks(review)}
    shortcut = [c for c in seen if c.isalnum() and c.isascii()]
    assert len(shortcut) > 10000
    for c in shortcut:
        assert TOKEN_RE.findall(c) == [c], c
    assert chunk_tokens("abc123") == ("abc123",) and chunk_tokens("naïve") == ("naive",)
    assert chunk_tokens("²³") == ("23",)  # not ASCII: folded first, then the pattern


def test_stream_cuts_are_exact_around_line_breaks_at_random():
    """Texts dense in ``<br />``, ``<br`` followed by words, and ``/>``, cut into random pieces."""
    rng = random.Random(7)
    parts = ["<br />", "<BR />", "<br/>", "<br>", "<br ", "/>", "good", " ", "  ", "\n", "film", "<", "br"]
    for _ in range(300):
        s = "".join(rng.choice(parts) for _ in range(rng.randint(1, 60)))
        cuts = sorted(rng.sample(range(len(s) + 1), min(len(s) + 1, rng.randint(1, 6))))
        pieces = [s[a:b] for a, b in zip([0] + cuts, cuts + [len(s)])]
        assert [t for seg in whole_chunks(pieces) for t in tokenize(seg)] == tokenize(s), (s, cuts)


def test_stream_cutting_is_linear_when_every_space_follows_br():
    """``good<br `` repeated: each space is a real separator, and is found as one at once."""
    pieces = ["good<br " * 8192] * 40
    segments = list(whole_chunks(pieces))
    assert len(segments) >= 39 and "".join(segments) == "".join(pieces)
