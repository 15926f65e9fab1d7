"""The vocabulary: a plain text file, one token per line, where line i holds token id i.

Reserved ids (the first three lines):

====  ===========  ===========================================================
id    token        meaning
====  ===========  ===========================================================
0     ``<pad>``    padding in sequence features; never set in multi-hot
1     ``<start>``  start of a sequence; never set in multi-hot
2     ``<unk>``    a token outside the vocabulary (sequences); never set in
                   multi-hot
====  ===========  ===========================================================

Words follow from id 3, most frequent first, ties broken by the token's text, so the
same corpus always gives the same file. Tokens never contain whitespace, so a line is
always exactly one token. The file is UTF-8 and ends with a newline.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from runtime.encoding import text as _text
from runtime.atomic import write_atomic
from runtime.errors import Error

PAD, START, UNK = "<pad>", "<start>", "<unk>"
RESERVED = (PAD, START, UNK)
PAD_ID, START_ID, UNK_ID = 0, 1, 2


class VocabularyError(Error, ValueError):
    """A vocabulary file that cannot be used."""


class Vocabulary:
    """An immutable token list with its token -> id lookup built once."""

    def __init__(self, tokens: Iterable[str]):
        self.tokens: tuple[str, ...] = tuple(tokens)
        if self.tokens[: len(RESERVED)] != RESERVED:
            raise VocabularyError(f"the first tokens must be {', '.join(RESERVED)}")
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise VocabularyError("the vocabulary has duplicate tokens")

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, texts: Iterable[str], size: int) -> "Vocabulary":
        """The ``size - 3`` most frequent tokens of ``texts``, after the reserved ids.

        Counts whitespace chunks first and tokenizes each distinct chunk once: the token
        counts are exactly those of ``tokenize`` over every text, at a fraction of the cost.
        """
        if size <= len(RESERVED):
            raise VocabularyError(f"size must exceed {len(RESERVED)}, got {size}")
        chunk_counts: Counter[str] = Counter()
        for text in texts:
            chunk_counts.update(_text.chunks(text))
        counts: Counter[str] = Counter()
        for chunk, n in chunk_counts.items():
            for token in _text.chunk_tokens(chunk):
                counts[token] += n
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        words = [t for t, _ in ranked[: size - len(RESERVED)]]
        return cls(RESERVED + tuple(words))

    def to_text(self) -> str:
        """The file content: one token per line."""
        return "".join(t + "\n" for t in self.tokens)

    def sha256(self) -> str:
        return hashlib.sha256(self.to_text().encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike) -> None:
        """Write the file atomically."""
        write_atomic(path, self.to_text())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise VocabularyError(f"{path}: cannot read vocabulary: {e}") from e
        if not text.endswith("\n"):
            raise VocabularyError(f"{path}: vocabulary is truncated (no final newline)")
        try:
            return cls(text[:-1].split("\n"))
        except VocabularyError as e:
            raise VocabularyError(f"{path}: {e}") from e
