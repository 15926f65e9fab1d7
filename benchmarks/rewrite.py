"""Review text written differently from the corpus: whether a model learnt the words of a
review or the way this corpus happens to write them.

``rewrite`` lower-cases a review, drops its HTML line breaks and splits punctuation off as the
Penn Treebank tokenizer writes it (``did n't``, ``costner 's``, ``the end .``): how movie-review
text looks in SST, in other tokenized corpora, or after another tool's clean-up. The IMDB
benchmark scores the float model and every artifact on its test reviews rewritten, beside the
same reviews as written (``benchmark.json``: ``rewritten_text``).

The runtime's tokenizer already lower-cases, drops ``<br />`` and makes each punctuation mark a
token, so of these changes only the split contractions (``did n't`` for ``didn't``) reach the
models' features: the section measures what is left of the difference, not the tokenizer.
"""

from __future__ import annotations

import re

HOW = "lower-cased, HTML line breaks removed, punctuation split off as in \"did n't\" and \"it 's\""

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_NOT = re.compile(r"n't\b")
_CLITIC = re.compile(r"'(s|re|ve|ll|d|m)\b")
_MARKS = re.compile(r'([.,!?;:()"])')
_QUOTE = re.compile(r"(?<=\s)'(?!(?:s|re|ve|ll|d|m)\b)|'(?=\s|$)|^'")  # a quote mark, not a clitic's


def rewrite(text: str) -> str:
    """``text`` lower-cased, without ``<br />``, its punctuation split off PTB-style."""
    t = _BREAK.sub(" ", text).lower()
    t = _NOT.sub(" n't", t)
    t = _CLITIC.sub(r" '\1", t)
    t = _MARKS.sub(r" \1 ", t)
    t = _QUOTE.sub(" ' ", t)
    return " ".join(t.split())
