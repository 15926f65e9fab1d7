"""Results as the command line prints them: a text line or a JSON object per input, and the
warnings and errors that go to standard error.

Rendering is a pure function of a result and the output options, so a worker process or a
Ray actor renders its own records and the reading process only writes what comes back: the
output is the same bytes wherever a record was scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from runtime.classifier import Classifier, Prediction
from runtime.explain import Explanation, marked


@dataclass
class Result:
    name: str
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


def warnings(replaced: bool, known: int, encoding: str) -> list[str]:
    """What a user should know about a classified input."""
    out = []
    if replaced:
        out.append(f"invalid {encoding} bytes were replaced (use --encoding if the file has another encoding)")
    if known == 0:
        out.append("no known words; the result is only the model's prior")
    return out


def explanation_text(e: Explanation, text: str) -> str:
    """Indented lines under a result: the method, the terms each way, the marked review."""
    def terms(ts) -> str:
        return ", ".join(f"{t.text} ({t.contribution:+.2f})" for t in ts) or "-"

    how = (f"exact n-gram weights: logit {e.logit:+.2f} = bias {e.bias:+.2f} + {e.terms} terms" if e.bias is not None
           else f"occlusion of each of {e.terms} words: logit {e.logit:+.2f}")
    return (f"  why: {how}\n  towards positive: {terms(e.positive)}\n  towards negative: {terms(e.negative)}\n"
            f"  review: {marked(text, e)}")


class Renderer:
    """Turns results into (output text, standard error lines, failed)."""

    def __init__(self, clf: Classifier, options: OutputOptions):
        self.clf = clf
        self.o = options

    def render(self, r: Result) -> tuple[str, list[str], bool]:
        o = self.o
        if r.prediction is None:
            errors = [f"error: {r.name}: {r.error}"]
            if o.records and o.json:
                return json.dumps({**r.fields, "source": r.name, "error": r.error}, ensure_ascii=False) + "\n", errors, True
            return (f"error\t-\t{r.name}\n" if o.records else ""), errors, True
        p = r.prediction
        explanation = None
        if o.explain is not None:
            if r.text is None:
                r.warnings.append("too long to explain (it was streamed); explain an excerpt of it")
            else:
                explanation = self.clf.explain(r.text, o.explain)
        errors = [f"warning: {r.name}: {w}" for w in r.warnings]
        if o.json:
            where = {"source": r.name} if o.records else {"file": r.name}
            record = {**r.fields, **where, "label": p.label, "probability": round(p.probability, 6),
                      "known_words": p.known_words, "model": o.model, "artifact": self.clf.artifact,
                      "engine": self.clf.engine, "warnings": r.warnings}
            if self.clf.uncertain is not None:
                record["uncertain_band"] = list(self.clf.uncertain)
            if explanation is not None:
                record["explanation"] = explanation.to_json()
            return json.dumps(record, ensure_ascii=False) + "\n", errors, False
        line = f"{p.label}\t{p.probability:.4f}\t{r.name}\n"
        if explanation is not None:
            line += explanation_text(explanation, r.text) + "\n"
        return line, errors, False
