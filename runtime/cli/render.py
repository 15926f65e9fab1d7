"""Results as the command line prints them: a text line or a JSON object per input, and the
warnings and errors that go to standard error.

Rendering is a pure function of a result and the output options, so a worker process or a
Ray actor renders its own records and the reading process only writes what comes back: the
output is the same bytes wherever a record was scored.

What is rendered is always one line per record (its explanation's indented lines aside) and
encodes as strict UTF-8: names are written as ``runtime.cli.reading.shown`` writes them; a JSON
object holding a lone surrogate (a JSON Lines field ``"\\udc80"``) is written with ASCII
escapes (``\\udc80``), so it stays the same JSON value; in text, a lone surrogate (in an
explained review) is written as the escape ``\\udc80``. A carried field named as one of the
output's own keys (``OUTPUT_KEYS``) is carried as ``input_KEY``, so it never poses as the
result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from runtime.classifier import Classifier, Prediction
from runtime.explain import Explanation, marked
from runtime.cli.reading import shown

OUTPUT_KEYS = frozenset({"source", "file", "label", "probability", "known_words", "model", "artifact", "engine",
                         "warnings", "uncertain_band", "explanation", "error", "probabilities", "top"})
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
_ASCII_JSON = json.JSONEncoder(allow_nan=False)


@dataclass
class Result:
    name: str  # a file name, or a record's source as runtime.cli.records gives it (already shown)
    prediction: Prediction | None  # None: not classified, ``error`` says why
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    fields: dict = field(default_factory=dict)  # carried from a JSON record
    text: str | None = None  # kept for --explain


@dataclass(frozen=True)
class OutputOptions:
    """How results are written, from the command line. What the classifier is (artifact, engine,
    uncertainty band) is read from the classifier a ``Renderer`` holds."""

    json: bool
    records: bool  # --lines, --jsonl or --csv: sources are file:line, errors are output records too
    encoding: str
    model: str  # the manifest's recipe, or the bundle's path, as the command named it
    explain: int | None = None
    top: int | None = None  # --top K: the K most probable labels with their probabilities


def warnings(replaced: bool, known: int, encoding: str) -> list[str]:
    """What a user should know about a classified input."""
    out = []
    if replaced:
        out.append(f"invalid {encoding} bytes were replaced (use --encoding if the file has another encoding)")
    if known == 0:
        out.append("no known words; the result is only the model's prior")
    return out


def carried(fields: dict) -> dict:
    """A JSON record's other fields as carried to its output: one named as an output key
    (``OUTPUT_KEYS``) becomes ``input_`` + its name (again, until the name is free)."""
    if not fields or OUTPUT_KEYS.isdisjoint(fields):
        return fields
    out = {}
    for key, value in fields.items():
        if key in OUTPUT_KEYS:
            key = "input_" + key
            while key in fields or key in out:
                key = "input_" + key
        out[key] = value
    return out


def _json_line(record: dict) -> str:
    """``record`` as one line of strict JSON that encodes as UTF-8."""
    line = _JSON.encode(record)
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: written as its escape
            line = _ASCII_JSON.encode(record)
    return line + "\n"


def _encodable(text: str) -> str:
    """``text`` with any lone surrogate written as its escape (``\\udc80``), so it encodes as UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def explanation_text(e: Explanation, text: str) -> str:
    """Indented lines under a result: the method, the terms each way, the marked review."""
    def terms(ts) -> str:
        return ", ".join(f"{t.text} ({t.contribution:+.2f})" for t in ts) or "-"

    how = (f"exact n-gram weights: logit {e.logit:+.2f} = bias {e.bias:+.2f} + {e.terms} terms" if e.bias is not None
           else f"occlusion of each of {e.terms} words: logit {e.logit:+.2f}")
    if e.label is not None:
        return (f"  why {e.label}: {how}\n  towards {e.label}: {terms(e.positive)}\n"
                f"  away from {e.label}: {terms(e.negative)}\n  review: {marked(text, e)}")
    return (f"  why: {how}\n  towards positive: {terms(e.positive)}\n  towards negative: {terms(e.negative)}\n"
            f"  review: {marked(text, e)}")


class Renderer:
    """Turns results into (output text, standard error lines, failed)."""

    def __init__(self, clf: Classifier, options: OutputOptions):
        self.clf = clf
        self.o = options

    def render(self, r: Result) -> tuple[str, list[str], bool]:
        o = self.o
        name = r.name if o.records and r.prediction is not None else shown(r.name)  # records come shown
        if r.prediction is None:
            errors = [f"error: {name}: {r.error}"]
            if o.records and o.json:
                return _json_line({**carried(r.fields), "source": name, "error": r.error}), errors, True
            return (f"error\t-\t{name}\n" if o.records else ""), errors, True
        p = r.prediction
        explanation = None
        if o.explain is not None:
            if r.text is None:
                r.warnings.append("too long to explain (it was streamed); explain an excerpt of it")
            else:
                explanation = self.clf.explain(r.text, o.explain)
        errors = [f"warning: {name}: {w}" for w in r.warnings]
        if o.json:
            where = {"source": name} if o.records else {"file": name}
            record = {**carried(r.fields), **where, "label": p.label, "probability": round(p.probability, 6),
                      "known_words": p.known_words, "model": o.model, "artifact": self.clf.artifact,
                      "engine": self.clf.engine, "warnings": r.warnings}
            if self.clf.uncertain is not None:
                record["uncertain_band"] = list(self.clf.uncertain)
            if p.scores is not None:  # more than two labels: every label's probability
                record["probabilities"] = {k: round(v, 6) for k, v in p.probabilities.items()}
            if o.top is not None:
                record["top"] = [[k, round(v, 6)] for k, v in p.top(o.top)]
            if explanation is not None:
                record["explanation"] = explanation.to_json()
            return _json_line(record), errors, False
        if o.top is not None and o.top > 1:
            ranked = "\t".join(f"{k}\t{v:.4f}" for k, v in p.top(o.top))
            line = f"{ranked}\t{name}\n"  # always K pairs: the band shows in --json's label and without --top
        else:
            line = f"{p.label}\t{p.probability:.4f}\t{name}\n"
        if explanation is not None:
            line += _encodable(explanation_text(explanation, r.text)) + "\n"
        return line, errors, False
