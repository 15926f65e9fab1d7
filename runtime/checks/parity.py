"""Parity: does every artifact of a bundle still give the float model's answers, here?

``python -m runtime.parity BUNDLE [--data PATH] [--engines ...] [--json FILE] [--junit FILE]``

Checks, without TensorFlow: every file's sha256 against the manifest; every artifact on
every installed engine against the golden set (the manifest's tolerances; single reviews,
batches and streamed text alike); and with --data, every quantized artifact against the
bundle's float artifact on that corpus (label agreement, largest probability difference,
accuracy when labels are known). For a bundle of N > 2 labels every check compares all N
probabilities of a text, and a text's label is its top one (arg-max); explanations are of
the golden review's recorded label. An artifact whose engine is not installed is reported as
skipped; asking for an engine that is not installed, or checking nothing, is a failure.

exit status (as for every command, see runtime.exitcodes): 0 all checks passed; 3 some
check failed; 4 bundle or data missing or unreadable, or a requested engine not installed
(a malformed golden set, whatever its sha256, is a malformed bundle: 4); 64 usage error (also:
--json or --junit inside the bundle, on --data, or not a file); 129, 130, 143 stopped by
SIGHUP, Ctrl-C or SIGTERM (no report is left half-written).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from runtime import exitcodes
from runtime.atomic import UnsafeOutput, output_target, write_atomic
from runtime.engines.base import ENGINES, EngineError, engine_version, installed_engines
from runtime.bundle.directory import Bundle, open_bundle
from runtime.bundle.files import BundleError
from runtime.bundle.manifest import CRITERIA, platform_info
from runtime.classifier import Classifier
from runtime.options import ClassifierOptions
from runtime.explain import OCCLUSION
from runtime.checks.reviews import CorpusError, read_reviews

EXPLANATION_TERMS = 5  # golden explanations: the float model's top terms an artifact must share
EXPLANATION_AGREE = 4  # at least this many of them, on every golden review
STREAM_PIECE = 50  # characters per piece when the golden reviews are fed as a stream


@dataclass
class Check:
    artifact: str
    engine: str
    version: str | None
    kind: str  # sha256 | load | golden | explanation | corpus | engine
    passed: bool | None  # None: skipped (engine not installed, or recorded as unable to load it)
    message: str
    figures: dict = field(default_factory=dict)


@dataclass
class GoldenRun:
    """One artifact's answers on the golden reviews, by every path a review can take."""

    want: np.ndarray  # the recorded golden probabilities
    single: np.ndarray  # Classifier.predict, one review at a time
    batch: np.ndarray  # Classifier.predict_proba on all of them
    stream: np.ndarray  # Classifier.predict_stream, each review in pieces


def _many(clf: Classifier) -> bool:
    """Whether ``clf`` has more than two labels (``(n, N)`` probabilities, arg-max labels)."""
    return len(clf.labels) > 2


def _answer(clf: Classifier, prediction) -> float | list[float]:
    """A prediction as the golden set records it: P(labels[1]) for two labels, else the N
    probabilities in the order of ``clf.labels``."""
    if _many(clf):
        return [prediction.probabilities[label] for label in clf.labels]
    return prediction.probability


def decide(probs: np.ndarray, threshold: float | None) -> np.ndarray:
    """Each text's label index: ``P(labels[1]) >= threshold`` for ``(n,)`` probabilities, the
    arg-max of each row for ``(n, N)`` ones."""
    return probs.argmax(axis=1) if probs.ndim == 2 else (probs >= threshold)


def golden_run(clf: Classifier, golden: list[dict], piece: int = STREAM_PIECE) -> GoldenRun:
    """The golden reviews through ``clf`` as single reviews, one batch and streams."""
    texts = [g["text"] for g in golden]
    return GoldenRun(
        want=np.array([g["probabilities"][clf.artifact] for g in golden]),
        single=np.array([_answer(clf, clf.predict(t)) for t in texts]),
        batch=clf.predict_proba(texts).astype(np.float64),
        stream=np.array([_answer(clf, clf.predict_stream(t[i : i + piece] for i in range(0, len(t), piece)))
                         for t in texts]),
    )


def outputs_digest(run: GoldenRun) -> str:
    """sha256 of every answer (single, batch, stream) as float32: equal digests on two
    machines mean bit-identical outputs."""
    answers = np.concatenate([run.single, run.batch, run.stream]).astype("<f4")
    return hashlib.sha256(answers.tobytes()).hexdigest()


def check_golden(clf: Classifier, golden: list[dict]) -> Check:
    name = clf.artifact
    tol = clf.bundle.artifacts[name].golden_tolerance
    run = golden_run(clf, golden)
    diff = np.abs(run.single - run.want)
    worst, column = np.unravel_index(int(diff.argmax()), diff.shape) + (() if diff.ndim == 2 else (None,))
    worst = int(worst)
    batch_gap = float(np.abs(run.batch - run.single).max())
    stream_gap = float(np.abs(run.stream - run.single).max())
    figures = {"reviews": len(golden), "max_abs_diff": float(diff.max()), "tolerance": tol,
               "worst_review": golden[worst]["id"], "batch_vs_single_max_diff": batch_gap,
               "stream_vs_single_max_diff": stream_gap, "outputs_sha256": outputs_digest(run)}
    if diff.ndim == 2:
        # within the tolerance a top label may change only where the golden top-1 margin is under 2 * tol
        figures["top_label_agreement"] = float(np.mean(decide(run.single, None) == decide(run.want, None)))
    version = clf.backend.version
    if diff.max() > tol:
        what = f"P({clf.labels[column]}) " if column is not None else ""
        got, want = (run.single[worst], run.want[worst]) if column is None else (
            run.single[worst, column], run.want[worst, column])
        msg = (f"{name} on {clf.engine}: review {golden[worst]['id']} gives {what}{got:.6f}, golden "
               f"{want:.6f} (|diff| {diff.max():.3g} > tolerance {tol:g})")
        return Check(name, clf.engine, version, "golden", False, msg, figures)
    for path, gap in (("batched", batch_gap), ("streamed", stream_gap)):
        if gap > tol:
            return Check(name, clf.engine, version, "golden", False,
                         f"{name} on {clf.engine}: {path} results differ from single ones by {gap:.3g}", figures)
    return Check(name, clf.engine, version, "golden", True,
                 f"{len(golden)} golden reviews within {tol:g} (max {diff.max():.2g})", figures)


def check_explanations(clf: Classifier, golden: list[dict]) -> Check | None:
    """Each golden review's top terms from this artifact against the float model's: at least
    ``EXPLANATION_AGREE`` of ``EXPLANATION_TERMS`` shared on every review (None: the golden
    set records no explanations, as in bundles exported before they existed)."""
    recorded = [g for g in golden if "explanation" in g]
    if not recorded:
        return None
    name, version = clf.artifact, clf.backend.version

    def explain(g: dict):
        # an N-label golden records which label the float model's explanation is of
        label = {"label": g["explanation"]["label"]} if _many(clf) else {}
        return clf.explain(g["text"], EXPLANATION_TERMS, **label)

    shared, need = [], []
    for g in recorded:
        want = {t for t, _ in g["explanation"]["top"]}
        got = {t.text for t in explain(g).top(EXPLANATION_TERMS)}
        shared.append(len(want & got))
        # An explanation lists only terms with a nonzero contribution. A short text (a question,
        # a sentence) has few terms, and an 8-bit table stores a near-zero weight as 0: such a
        # term cannot be listed, so the bar is at most the terms the artifact lists.
        need.append(min(EXPLANATION_AGREE, len(want), max(len(got), 1)))
    worst = int(np.argmin(shared))
    figures = {"reviews": len(recorded), "terms": EXPLANATION_TERMS, "min_shared": shared[worst],
               "mean_shared": float(np.mean(shared)), "worst_review": recorded[worst]["id"],
               "method": recorded[worst]["explanation"]["method"]}
    failing = [i for i, (s, n) in enumerate(zip(shared, need)) if s < n]
    coarse = clf.bundle.artifacts[name].precision == "int8" and figures["method"] == OCCLUSION
    if failing and coarse:
        return Check(name, clf.engine, version, "explanation", None,
                     f"not judged: an int8 output moves in steps of 1/256, too coarse for leaving one word out "
                     f"(at worst {shared[worst]} of {EXPLANATION_TERMS} terms shared, mean {np.mean(shared):.1f}); "
                     f"explain with the float16 or dynamic-int8 artifact", figures)
    if failing:
        i = failing[0]
        got = [t.text for t in explain(recorded[i]).top(EXPLANATION_TERMS)]
        want = [t for t, _ in recorded[i]["explanation"]["top"]]
        return Check(name, clf.engine, version, "explanation", False,
                     f"{name} on {clf.engine}: review {recorded[i]['id']} shares {shared[i]} of the float model's top "
                     f"{len(want)} terms ({', '.join(want)}) with {', '.join(got)} ({len(failing)} reviews below "
                     f"{EXPLANATION_AGREE})", figures)
    return Check(name, clf.engine, version, "explanation", True,
                 f"top {EXPLANATION_TERMS} terms share >= {EXPLANATION_AGREE} (or every term listed) with float on "
                 f"{len(recorded)} golden reviews (worst {shared[worst]}, review {recorded[worst]['id']})", figures)


def _float_reference(bundle: Bundle) -> str | None:
    floats = [n for n, a in bundle.artifacts.items() if a.is_float32]
    return next((n for n in floats if installed_engines(bundle.artifacts[n].format)), None)


def check_corpus(clf: Classifier, ids: list[str], probs_ref: np.ndarray, texts: list[str],
                 labels: np.ndarray | None, criteria: dict, reference: str) -> Check:
    name = clf.artifact
    probs = clf.predict_proba(texts).astype(np.float64)
    diff = np.abs(probs - probs_ref)
    t = None if _many(clf) else clf.threshold
    agree = decide(probs, t) == decide(probs_ref, t)
    worst = int(np.unravel_index(int(diff.argmax()), diff.shape)[0])
    figures = {"reviews": len(texts), "reference": reference, "label_agreement": float(agree.mean()),
               "max_abs_diff": float(diff.max()), "worst_review": ids[worst]}
    failures = []
    if clf.bundle.artifacts[name].is_float32:
        if diff.max() > criteria["float32_max_abs_diff"]:
            failures.append(f"max |diff| {diff.max():.3g} > {criteria['float32_max_abs_diff']:g} "
                            f"(review {figures['worst_review']})")
    elif agree.mean() < criteria["min_label_agreement"]:
        first = ids[int(np.flatnonzero(~agree)[0])]
        failures.append(f"label agreement {agree.mean():.4f} < {criteria['min_label_agreement']} "
                        f"(first disagreement: review {first})")
    if labels is not None and not _many(clf):  # the reader's labels are aclImdb's pos and neg folders
        # labels: indexes of clf.labels (0 negative, 1 positive)
        acc = float(np.mean(decide(probs, t) == labels))
        ref_acc = float(np.mean(decide(probs_ref, t) == labels))
        figures.update(accuracy=acc, reference_accuracy=ref_acc)
        if acc < ref_acc - criteria["max_test_accuracy_drop"]:
            failures.append(f"accuracy {acc:.4f} is {(ref_acc - acc) * 100:.2f} points below {reference}")
    if failures:
        return Check(name, clf.engine, clf.backend.version, "corpus", False,
                     f"{name} on {clf.engine} against {reference}: " + "; ".join(failures), figures)
    accuracy = f", accuracy {figures['accuracy']:.4f} ({reference} {figures['reference_accuracy']:.4f})" if "accuracy" in figures else ""
    return Check(name, clf.engine, clf.backend.version, "corpus", True,
                 f"agreement {agree.mean():.4f}, max |diff| {diff.max():.2g}{accuracy}", figures)


def run(bundle_path: str | Path, engines: list[str] | None = None, data: str | Path | None = None,
        limit: int | None = None) -> list[Check]:
    """Every check on every installed (or requested) engine; raises BundleError/CorpusError on bad input."""
    bundle = open_bundle(bundle_path)
    checks: list[Check] = []
    for problem in bundle.verify_all():
        checks.append(Check(problem.artifact or "bundle", "-", None, "sha256", False, problem.message))
    if any(c.artifact == "bundle" for c in checks):
        return checks
    broken = {c.artifact for c in checks}
    whole = "every file matches the manifest" if not broken else "every other file matches the manifest"
    checks.append(Check("bundle", "-", None, "sha256", True, whole))
    installed = installed_engines()
    for engine in engines or []:
        if engine not in installed:
            checks.append(Check("-", engine, None, "engine", False,
                                f"engine {engine} was asked for but is not installed: pip install {ENGINES[engine][2]}"))
    golden = bundle.golden()
    if data is not None:
        missing = [k for k in CRITERIA if k not in bundle.manifest.validation_criteria]
        if missing:
            raise BundleError(f"{bundle.manifest_path}: field 'validation_criteria.{missing[0]}' is missing "
                              f"(parity --data judges the corpus by it)")
    corpus = read_reviews(data, limit) if data is not None else None
    for skipped in corpus.skipped if corpus is not None else []:
        checks.append(Check("-", "-", None, "corpus", None, f"skipped (not a review): {skipped}"))
    reference = _float_reference(bundle) if corpus is not None else None
    if corpus is not None and reference is None:  # said in the report, not dropped silently
        checks.append(Check("-", "-", None, "corpus", None, f"not compared: the bundle has no float32 artifact that "
                                                          f"runs here to compare {data} against"))
    ref_probs = None
    if corpus is not None and reference is not None:
        reference_clf = Classifier._from_bundle(bundle, ClassifierOptions(artifact=reference))
        ref_probs = reference_clf.predict_proba(corpus.texts).astype(np.float64)
    for name, entry in bundle.artifacts.items():
        if name in broken:
            continue
        wanted = [e for e, (fmt, _, _) in ENGINES.items() if fmt == entry.format and (not engines or e in engines)]
        for engine in wanted:
            version = engine_version(engine)
            if engine not in installed:
                if not engines:
                    checks.append(Check(name, engine, None, "load", None, "skipped (engine not installed)"))
                continue
            try:
                clf = Classifier._from_bundle(bundle, ClassifierOptions(artifact=name, engine=engine))
            except EngineError as e:
                known = entry.refuses(engine, version)
                checks.append(Check(name, engine, version, "load", None if known else False, str(e)))
                continue
            checks.append(check_golden(clf, golden))
            explained = check_explanations(clf, golden)
            if explained is not None:
                checks.append(explained)
            if ref_probs is not None and name != reference:
                checks.append(check_corpus(clf, corpus.ids, ref_probs, corpus.texts, corpus.labels,
                                           bundle.manifest.validation_criteria, reference))
    if not any(c.kind == "golden" for c in checks):
        checks.append(Check("-", "-", None, "golden", False,
                            "nothing was checked: no artifact of the bundle runs on the installed or requested engines"))
    return checks


def table(checks: list[Check]) -> str:
    rows = [("artifact", "engine", "check", "result", "detail")]
    for c in checks:
        result = {True: "pass", False: "FAIL", None: "skipped"}[c.passed]
        rows.append((c.artifact, f"{c.engine} {c.version or ''}".strip(), c.kind, result, c.message))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows)


def junit(checks: list[Check], path: Path) -> None:
    suite = ET.Element("testsuite", name="bundle-parity", tests=str(len(checks)),
                       failures=str(sum(c.passed is False for c in checks)),
                       skipped=str(sum(c.passed is None for c in checks)))
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"parity.{c.kind}", name=f"{c.artifact} @ {c.engine}")
        if c.passed is False:
            ET.SubElement(case, "failure", message=c.message)
        elif c.passed is None:
            ET.SubElement(case, "skipped", message=c.message)
    write_atomic(path, ET.tostring(suite, encoding="utf-8", xml_declaration=True))


def _positive_int(text: str) -> int:
    """An argument that must be a whole number of at least 1 (a usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text[:40]!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    with exitcodes.stop_signals_interrupt():  # SIGTERM and SIGHUP stop the run as Ctrl-C does
        try:
            return _main(argv)
        except KeyboardInterrupt as e:
            print(exitcodes.interrupt_name(e), file=sys.stderr)
            return exitcodes.status_of(e)


def _main(argv: list[str] | None) -> int:
    p = exitcodes.parser("python -m runtime.parity", __doc__)
    p.add_argument("bundle", type=Path)
    p.add_argument("--data", help="folder or .tar.gz of review .txt files (aclImdb layout: its test split)")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="use at most N reviews of --data (seeded sample)")
    p.add_argument("--engines", nargs="+", choices=list(ENGINES), help="only these engines (default: all installed)")
    p.add_argument("--json", type=Path, help="write the checks as JSON here")
    p.add_argument("--junit", type=Path, help="write JUnit XML here, for CI systems")
    args = p.parse_args(argv)
    if args.json is not None and args.junit is not None and os.path.realpath(args.json) == os.path.realpath(args.junit):
        print(f"error: --json and --junit both name {args.json}; one report would replace the other", file=sys.stderr)
        return exitcodes.USAGE
    for out in (args.json, args.junit):
        try:
            missing = out is not None and not out.parent.is_dir()
        except OSError as e:  # a name too long, a loop of symbolic links
            print(f"error: {str(out)[:200]}: {e.strerror or e}", file=sys.stderr)
            return exitcodes.USAGE
        if missing:
            print(f"error: {out}: its directory {out.parent} does not exist", file=sys.stderr)
            return exitcodes.USAGE
        try:
            if out is not None:
                output_target(out, [args.bundle, *([args.data] if args.data else [])])
        except UnsafeOutput as e:
            print(f"error: {e}", file=sys.stderr)
            return exitcodes.USAGE
    try:
        checks = run(args.bundle, args.engines, args.data, args.limit)
    except (BundleError, CorpusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    print(table(checks))
    try:
        if args.json:
            here = platform_info()
            write_atomic(args.json, json.dumps([{**asdict(c), "platform": here} for c in checks], indent=2) + "\n")
        if args.junit:
            junit(checks, args.junit)
    except OSError as e:
        print(f"error: cannot write the report: {e}", file=sys.stderr)
        return exitcodes.INTERNAL
    failed = [c for c in checks if c.passed is False]
    for c in failed:
        print(f"FAIL: {c.message}", file=sys.stderr)
    skipped = sum(c.passed is None for c in checks)
    print(f"{sum(c.passed is True for c in checks)} passed, {len(failed)} failed" + (f", {skipped} skipped" if skipped else ""))
    if any(c.kind == "engine" for c in failed):
        return exitcodes.UNUSABLE
    return exitcodes.CHECK_FAILED if failed else exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
