"""Text normalization and word tokenization: the one tokenizer used by training and serving.

A review becomes tokens in two steps:

1. ``chunks(text)``: lowercase, turn HTML line breaks into spaces, split on whitespace.
2. ``chunk_tokens(chunk)``: fold unicode (cp1252 leftovers, curly quotes, accents), then
   cut the chunk into words (letters and digits, apostrophes inside words kept, as in
   ``don't``) and single-character punctuation tokens.

``tokenize(text)`` is the concatenation of ``chunk_tokens`` over ``chunks``. Because a
token never spans whitespace, ``chunk_tokens`` is a pure function of one chunk, so the
encoders can memoize it per chunk and stay exactly equal to this definition while doing
almost no per-review work beyond ``lower().split()``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator

TOKENIZER_NAME = "imdb-words"
TOKENIZER_VERSION = 1

_BREAKS = ("<br />", "<br/>", "<br>")
MAX_CHUNK = 1 << 20
PIECE = 1 << 18  # characters taken at a time from a longer piece by ``whole_chunks``
EMPTY_REVIEW = "empty or whitespace-only review"  # why a blank review is refused, everywhere

# Reviews scraped as cp1252 carry C1 control characters where punctuation was meant;
# quote-like characters become apostrophes so that "don’t" and "don't" are one word.
_FOLD = str.maketrans(
    {
        "\x91": "'",
        "\x92": "'",
        "\x93": '"',
        "\x94": '"',
        "\x96": "-",
        "\x97": "-",
        "\x85": "...",
        "\u2018": "'",
        "\u2019": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u00b4": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
    }
)

# A word: letters/digits (unicode), optionally joined by single inner apostrophes.
# Anything else that is not whitespace is a one-character token.
TOKEN_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*|\S")


def settings() -> dict:
    """The tokenizer's identity, recorded in configs and bundle manifests."""
    return {"name": TOKENIZER_NAME, "version": TOKENIZER_VERSION}


def normalized(text: str) -> str:
    """``text`` lowercased, with HTML line breaks turned into spaces."""
    text = text.lower()
    if "<br" in text:
        for br in _BREAKS:
            text = text.replace(br, " ")
    return text


def is_blank(text: str | bytes) -> bool:
    """Whether a review has nothing to classify (empty, or whitespace only): the one check
    the API, the commands, the record readers and the corpus reader (on a file's bytes:
    ASCII whitespace) all refuse a review by, with ``EMPTY_REVIEW``.

    Only whitespace counts: a review of HTML line breaks alone is text, whose answer is the
    model's prior (and its known-word count 0 says so)."""
    return not text or text.isspace()


def chunks(text: str) -> list[str]:
    """Lowercase ``text``, drop HTML line breaks and split it on whitespace."""
    return normalized(text).split()


def _fold_unicode(chunk: str) -> str:
    chunk = chunk.translate(_FOLD)
    decomposed = unicodedata.normalize("NFKD", chunk)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", stripped)


def chunk_tokens(chunk: str) -> tuple[str, ...]:
    """Tokens of one whitespace-free, lowercased chunk (pure: safe to memoize)."""
    if chunk.isalnum() and chunk.isascii():
        return (chunk,)  # letters and digits only: one word, as the pattern would find
    if not chunk.isascii():
        chunk = _fold_unicode(chunk).lower()
    return tuple(TOKEN_RE.findall(chunk))


def tokenize(text: str) -> list[str]:
    """All tokens of ``text`` in order; the reference definition of the tokenizer."""
    return [token for chunk in chunks(text) for token in chunk_tokens(chunk)]


def whole_chunks(pieces: Iterable[str]) -> Iterator[str]:
    """Re-cut a text given in arbitrary pieces into segments that end between chunks.

    The segments concatenate to the same text, and tokenizing each one gives the same
    tokens as tokenizing the whole: cuts fall on whitespace or just after an HTML line break
    (which the tokenizer turns into a space), never inside one. A piece longer than ``PIECE``
    characters is taken ``PIECE`` at a time, so memory stays bounded by ``MAX_CHUNK`` plus
    ``PIECE`` whatever the pieces (a 200 MB file in lines, or one 100 MB string). Only a run
    of over ``MAX_CHUNK`` characters with neither whitespace nor a line break is cut where it
    is, which may split its one "word".
    """
    carry = ""
    for piece in pieces:
        for start in range(0, len(piece), PIECE):
            buf = carry + (piece[start : start + PIECE] if len(piece) > PIECE else piece)
            cut = _safe_cut(buf)
            carry = buf[cut:]
            if cut:
                yield buf[:cut]
    if carry:
        yield carry


# A place to cut: just after whitespace, or just after a whole line break (``_BREAKS``, in
# either case, as ``normalized`` sees it after lowercasing).
_CUT = re.compile(r"\s|<[bB][rR](?: ?/)?>")
_BREAK_LEN = max(map(len, _BREAKS))
_WINDOW = 512  # characters searched at a time, from the end, for a place to cut


def _safe_cut(buf: str) -> int:
    """The end of the last whole chunk of ``buf`` (0 when there is none), in time linear in
    what it searches.

    A cut falls just after a whitespace character or a whole line break: a break ends in
    ``>``, which no break has elsewhere, so no break spans the cut, and both sides turn it
    into the same space. The whitespace that is not a safe place is the space inside
    ``<br />`` (a line break the tokenizer turns into a space as a whole), or a space after
    ``<br`` with too little text after it to tell. Only the last ``MAX_CHUNK`` characters
    are searched: a longer run without a safe place is cut anyway, to bound memory, but never
    inside a line break begun at its end.
    """
    end = len(buf)
    stop = max(0, end - MAX_CHUNK)
    while end > stop:
        start = max(stop, end - _WINDOW)
        # Searched up to a break's length past the window, for a break that straddles its end.
        for match in reversed(list(_CUT.finditer(buf, start, min(len(buf), end + _BREAK_LEN - 1)))):
            cut = match.end()
            inside_break = (buf[cut - 1] == " " and buf[max(0, cut - 4) : cut - 1].lower() == "<br"
                            and "/>".startswith(buf[cut : cut + 2]))
            if not inside_break:
                return cut
        end = start
    if len(buf) <= MAX_CHUNK:
        return 0
    begun = buf.rfind("<", len(buf) - len(_BREAKS[0]) + 1)
    if begun > 0 and any(br.startswith(buf[begun:].lower()) for br in _BREAKS):
        return begun
    return len(buf)
