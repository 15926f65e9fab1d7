"""Token ids of many ASCII reviews at once, in numpy: ``runtime.encoding.text``'s tokenizer, vectorized.

Scoring a large file one review at a time spends most of its time turning each word into a
Python string and looking it up. For reviews that are pure ASCII (nine in ten of IMDB's),
the same tokenizer runs over a whole block of reviews as array operations:

* each review is normalized by ``text.normalized`` (the same lowercasing and line-break rule)
  and the reviews are joined with a space, which no token spans; a review with non-ASCII
  characters whose tokens are all ASCII (curly quotes, accents) is first rewritten as its
  tokens (``ascii_form``);
* every byte gets a class (whitespace, letter or digit, joiner, other) from a table derived
  at import from ``text.TOKEN_RE`` and ``str.split`` themselves;
* a word is a run of letters and digits, joined across single joiners (the apostrophe) that
  have a letter or digit on both sides, as ``TOKEN_RE``'s word pattern matches; every other
  byte that is not whitespace is a token of its own;
* a token of up to 16 bytes is its own key (its bytes packed into two integers), found in
  an open-addressing table of the vocabulary's tokens by comparing keys, so two different
  tokens can never be confused (see ``WordTable``); a longer token (rare) is looked up in
  the vocabulary's dictionary.

The ids are those ``vocab.index.get(token, UNK_ID)`` gives for each token of
``text.tokenize``; tests check it on the corpus and on random strings of all 128 ASCII
characters and of the characters the tokenizer folds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import filterfalse

import numpy as np

from runtime.encoding import text as _text
from runtime.encoding.vocab import UNK_ID, Vocabulary

SPACE, WORD, JOINER, OTHER = 0, 1, 2, 3
KEY_BYTES = 16  # tokens up to this long are keyed by their bytes; longer ones use the dictionary
_TABLE_BITS = 17  # 131,072 slots: a 30,000-word vocabulary fills under a quarter of them
_MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)
_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1], dtype=np.uint64)  # the low n bytes


def _byte_classes() -> np.ndarray:
    """Each ASCII byte's class, as ``str.split`` and ``TOKEN_RE`` treat the character."""
    classes = np.full(128, OTHER, dtype=np.uint8)
    for b in range(128):
        ch = chr(b)
        if not ch.split():
            classes[b] = SPACE
        elif _text.TOKEN_RE.fullmatch(ch * 2):  # two of it make one word
            classes[b] = WORD
        elif _text.TOKEN_RE.fullmatch(f"a{ch}a"):  # it joins two words into one
            classes[b] = JOINER
    return classes


CLASSES = _byte_classes()


def pack(tokens: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The two little-endian uint64 key halves of ASCII tokens of at most ``KEY_BYTES`` bytes."""
    halves = np.frombuffer(b"".join(t.ljust(KEY_BYTES, b"\0") for t in tokens), dtype="<u8").reshape(-1, 2)
    return halves[:, 0].astype(np.uint64), halves[:, 1].astype(np.uint64)


class WordTable:
    """The vocabulary's ASCII tokens of at most ``KEY_BYTES`` bytes without a NUL, keyed by
    their bytes, in an open-addressing table with linear probing.

    A key is the token's bytes padded with NULs, so two tokens share a key only if they differ
    by trailing NULs. The tokenizer's only token with a NUL is the NUL character alone (a word
    is letters, digits and joiners), and the table holds no token with one, so a key found is
    the token itself; the NUL token is looked up in the dictionary. A key whose first half is 0
    marks an empty slot (no token in the table starts with a NUL).
    """

    def __init__(self, vocab: Vocabulary):
        size = 1 << _TABLE_BITS
        self._mask = size - 1
        self.key1 = np.zeros(size, dtype=np.uint64)
        self.key2 = np.zeros(size, dtype=np.uint64)
        self.ids = np.full(size, UNK_ID, dtype=np.uint32)
        entries = [(i, t.encode("ascii")) for i, t in enumerate(vocab.tokens)
                   if t.isascii() and 0 < len(t) <= KEY_BYTES and "\0" not in t]
        if not entries:
            return
        ids = np.array([i for i, _ in entries], dtype=np.uint32)
        key1, key2 = pack([t for _, t in entries])
        slots = self._slots(key1, key2)
        pending = np.arange(len(entries))
        while len(pending):  # each round places, per free slot, the first token probing it
            s = slots[pending]
            free = self.key1[s] == 0
            taken, first = np.unique(s[free], return_index=True)
            placed = pending[free][first]
            self.key1[taken], self.key2[taken], self.ids[taken] = key1[placed], key2[placed], ids[placed]
            left = np.ones(len(pending), dtype=bool)
            left[np.flatnonzero(free)[first]] = False
            pending = pending[left]
            moved = pending[self.key1[slots[pending]] != 0]
            slots[moved] = (slots[moved] + 1) & self._mask

    @staticmethod
    def _slots(key1: np.ndarray, key2: np.ndarray) -> np.ndarray:
        return ((key1 * _MIX1 + key2 * _MIX2) >> np.uint64(64 - _TABLE_BITS)).astype(np.intp)

    def lookup(self, key1: np.ndarray, key2: np.ndarray) -> np.ndarray:
        """The id of each key (``UNK_ID`` for a token outside the table), uint32. Most keys
        are settled by the first probe; the rest probe on, a shrinking set at a time."""
        slots = self._slots(key1, key2)
        found = self.key1[slots]
        hit = (found == key1) & (self.key2[slots] == key2)
        out = np.where(hit, self.ids[slots], np.uint32(UNK_ID))
        todo = np.flatnonzero(~hit & (found != 0))  # occupied by another token: probe the next slot
        slots, key1, key2 = (slots[todo] + 1) & self._mask, key1[todo], key2[todo]
        while len(todo):
            found = self.key1[slots]
            hit = (found == key1) & (self.key2[slots] == key2)
            out[todo[hit]] = self.ids[slots[hit]]
            go = ~hit & (found != 0)
            todo, slots, key1, key2 = todo[go], (slots[go] + 1) & self._mask, key1[go], key2[go]
        return out


_NOT_ASCII = re.compile(r"[^\x00-\x7f]")
_SPACE = re.compile(r"\s")  # exactly what str.split splits on (a test checks every code point)
_ASCII_SPACES = "".join(chr(b) for b in range(128) if CLASSES[b] == SPACE)


@lru_cache(maxsize=4096)
def _as_tokens(chunk: str) -> str:
    """A chunk that is not ASCII as its tokens joined by spaces (folded chunks repeat: "café")."""
    return " ".join(_text.chunk_tokens(chunk))


def ascii_form(text: str) -> str | None:
    """``text.normalized(text)`` when it is ASCII; else, for a review whose tokens are all
    ASCII (curly quotes, accents, cp1252 dashes), an ASCII text with the same tokens: each
    chunk that is not ASCII replaced by its tokens joined by spaces (a token alone is its own
    only token), whitespace that is not ASCII by a space. None if a token is not ASCII (other
    scripts, emoji). The rewritten text is never normalized again: its joins may spell a line
    break that the review did not have."""
    normalized = _text.normalized(text)
    if normalized.isascii():
        return normalized
    return _around(normalized)


FEW = 16  # chunks that are not ASCII, visited one by one; a review with more is split whole


def _around(normalized: str) -> str | None:
    """``ascii_form`` visiting only the chunks around characters that are not ASCII (a review
    has one or two, and splitting it whole costs more than they do); with more than ``FEW``
    of them, ``_by_chunks``. Each character is looked at a bounded number of times: linear."""
    parts, done = [], 0
    for _ in range(FEW):
        found = _NOT_ASCII.search(normalized, done)
        if found is None:
            parts.append(normalized[done:])
            return "".join(parts)
        i = found.start()
        if normalized[i].isspace():
            parts += (normalized[done:i], " ")
            done = i + 1
            continue
        start = max(normalized.rfind(c, done, i) for c in _ASCII_SPACES) + 1 or done  # all ASCII from done to i
        space = _SPACE.search(normalized, i)
        end = space.start() if space else len(normalized)
        tokens = _as_tokens(normalized[start:end])
        if not tokens.isascii():
            return None  # at the first such chunk: a review in another script costs no more
        parts += (normalized[done:start], tokens)
        done = end
    return _by_chunks(normalized)


def _by_chunks(normalized: str) -> str | None:
    """``ascii_form`` splitting the whole review: its chunks joined by spaces, those that are
    not ASCII as their tokens."""
    chunks = normalized.split()
    tokens = {}
    for chunk in set(filterfalse(str.isascii, chunks)):
        tokens[chunk] = _as_tokens(chunk)
        if not tokens[chunk].isascii():
            return None
    return " ".join(map(tokens.get, chunks, chunks))


def block_token_ids(texts: Sequence[str], table: WordTable,
                    get: Callable[[str, int], int]) -> tuple[np.ndarray, np.ndarray]:
    """Every token's id of each of ``texts``, all in one uint32 array, and the number of
    tokens of each text (int64): what ``text.tokenize`` and ``get(token, UNK_ID)`` give,
    review after review. ``texts`` are ``ascii_form``s of reviews; ``get`` is the vocabulary
    dictionary's ``get``, for tokens longer than ``KEY_BYTES``."""
    joined = " ".join(texts) + " "  # ends in a space: every word ends before it
    size = len(joined)
    data = np.frombuffer(joined.encode("ascii") + bytes(KEY_BYTES), dtype=np.uint8)
    classes = CLASSES[data[:size]]
    word = classes == WORD
    letters = word.copy()
    word[1:-1] |= (classes[1:-1] == JOINER) & letters[:-2] & letters[2:]
    single = (classes != SPACE) & ~word
    after_word = np.zeros(size, dtype=bool)
    after_word[1:] = word[:-1]
    starts = np.flatnonzero((word & ~after_word) | single)
    word_ends = np.flatnonzero(word[:-1] & ~word[1:]) + 1
    lengths = np.ones(len(starts), dtype=np.intp)
    is_word = word[starts]
    lengths[is_word] = word_ends - starts[is_word]
    # Every byte offset read as a little-endian uint64 (an unaligned view; the padding after
    # the text keeps the last reads inside the buffer).
    windows = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
    key1 = windows[starts] & _MASKS[np.minimum(lengths, 8)]
    key2 = windows[starts + 8] & _MASKS[np.clip(lengths - 8, 0, 8)]
    key1 = key1.astype(np.uint64, copy=False)  # a copy only where "<u8" is not the native order
    ids = table.lookup(key1, key2.astype(np.uint64, copy=False))
    for j in np.flatnonzero(lengths > KEY_BYTES).tolist():
        start = int(starts[j])
        ids[j] = get(joined[start : start + int(lengths[j])], UNK_ID)
    ids[key1 == 0] = get("\0", UNK_ID)  # the NUL character, a token of its own
    text_starts = np.zeros(len(texts) + 1, dtype=np.intp)
    np.cumsum(np.fromiter(map(len, texts), dtype=np.intp, count=len(texts)) + 1, out=text_starts[1:])
    return ids, np.diff(np.searchsorted(starts, text_starts))
