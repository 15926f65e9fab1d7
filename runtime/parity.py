"""Parity: does every artifact of a bundle still give the float model's answers, here?

``python -m runtime.parity BUNDLE [--data PATH] [--engines ...] [--json FILE] [--junit FILE]``

Checks, without TensorFlow: every file's sha256 against the manifest; every artifact on
every installed engine against the golden set (the manifest's tolerances; single reviews
and batches alike); and with --data, every quantized artifact against the bundle's float
artifact on that corpus (label agreement, largest probability difference, accuracy when
labels are known).

exit status: 0 all checks passed; 1 some check failed; 2 bad input (bundle or data missing
or unreadable).
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from runtime.backends import ENGINES, EngineError, engine_version, installed_engines
from runtime.bundle import Bundle, BundleError, open_bundle
from runtime.classifier import Classifier
from runtime.corpus import CorpusError, read_reviews

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2


@dataclass
class Check:
    artifact: str
    engine: str
    version: str | None
    kind: str  # sha256 | load | golden | corpus
    passed: bool | None  # None: not applicable (the engine cannot load this artifact, as recorded)
    message: str
    figures: dict = field(default_factory=dict)


def _recorded(info: dict, engine: str, version: str | None) -> dict | None:
    for rec in info.get("engines", []):
        if rec["engine"] == engine and rec["version"] == version:
            return rec
    return None


def check_golden(clf: Classifier, name: str, golden: list[dict]) -> Check:
    info = clf.bundle.artifacts[name]
    tol = info["golden_tolerance"]
    texts = [g["text"] for g in golden]
    want = np.array([g["probabilities"][name] for g in golden])
    single = np.array([clf.probability(t) for t in texts])
    batch = clf.predict_proba(texts).astype(np.float64)
    diff = np.abs(single - want)
    worst = int(diff.argmax())
    batch_gap = float(np.abs(batch - single).max())
    figures = {"reviews": len(golden), "max_abs_diff": float(diff.max()), "tolerance": tol,
               "worst_review": golden[worst]["id"], "batch_vs_single_max_diff": batch_gap}
    if diff.max() > tol:
        msg = (f"{name} on {clf.engine}: review {golden[worst]['id']} gives {single[worst]:.6f}, golden "
               f"{want[worst]:.6f} (|diff| {diff.max():.3g} > tolerance {tol:g})")
        return Check(name, clf.engine, clf.backend.version, "golden", False, msg, figures)
    if batch_gap > tol:
        return Check(name, clf.engine, clf.backend.version, "golden", False,
                     f"{name} on {clf.engine}: batched results differ from single ones by {batch_gap:.3g}", figures)
    return Check(name, clf.engine, clf.backend.version, "golden", True,
                 f"{len(golden)} golden reviews within {tol:g} (max {diff.max():.2g})", figures)


def _float_reference(bundle: Bundle) -> str | None:
    floats = [n for n, a in bundle.artifacts.items() if a["precision"] == "float32"]
    return next((n for n in floats if installed_engines(bundle.artifacts[n]["format"])), None)


def check_corpus(clf: Classifier, name: str, ids: list[str], probs_ref: np.ndarray, texts: list[str],
                 labels: np.ndarray | None, criteria: dict, reference: str) -> Check:
    probs = clf.predict_proba(texts).astype(np.float64)
    diff = np.abs(probs - probs_ref)
    agree = (probs >= 0.5) == (probs_ref >= 0.5)
    figures = {"reviews": len(texts), "reference": reference, "label_agreement": float(agree.mean()),
               "max_abs_diff": float(diff.max()), "worst_review": ids[int(diff.argmax())]}
    failures = []
    if clf.bundle.artifacts[name]["precision"] == "float32":
        if diff.max() > criteria["float32_max_abs_diff"]:
            failures.append(f"max |diff| {diff.max():.3g} > {criteria['float32_max_abs_diff']:g} "
                            f"(review {figures['worst_review']})")
    elif agree.mean() < criteria["min_label_agreement"]:
        first = ids[int(np.flatnonzero(~agree)[0])]
        failures.append(f"label agreement {agree.mean():.4f} < {criteria['min_label_agreement']} "
                        f"(first disagreement: review {first})")
    if labels is not None:
        acc = float(np.mean((probs >= 0.5) == (labels == 1)))
        ref_acc = float(np.mean((probs_ref >= 0.5) == (labels == 1)))
        figures.update(accuracy=acc, reference_accuracy=ref_acc)
        if acc < ref_acc - criteria["max_test_accuracy_drop"]:
            failures.append(f"accuracy {acc:.4f} is {(ref_acc - acc) * 100:.2f} points below {reference}")
    if failures:
        return Check(name, clf.engine, clf.backend.version, "corpus", False,
                     f"{name} on {clf.engine} against {reference}: " + "; ".join(failures), figures)
    accuracy = f", accuracy {figures['accuracy']:.4f} ({reference} {figures['reference_accuracy']:.4f})" if labels is not None else ""
    return Check(name, clf.engine, clf.backend.version, "corpus", True,
                 f"agreement {agree.mean():.4f}, max |diff| {diff.max():.2g}{accuracy}", figures)


def run(bundle_path: str | Path, engines: list[str] | None = None, data: str | Path | None = None,
        limit: int | None = None) -> list[Check]:
    """Every check on every installed (or requested) engine; raises BundleError/CorpusError on bad input."""
    bundle = open_bundle(bundle_path)
    checks: list[Check] = []
    broken = set()
    for problem in bundle.verify_all():
        culprit = next((n for n, a in bundle.artifacts.items() if f"/{a['file']}:" in problem), "bundle")
        broken.add(culprit)
        checks.append(Check(culprit, "-", None, "sha256", False, problem))
    if "bundle" in broken:
        return checks
    checks.append(Check("bundle", "-", None, "sha256", True, "every file matches the manifest"))
    golden = bundle.golden()
    corpus = read_reviews(data, limit) if data is not None else None
    reference = _float_reference(bundle) if corpus is not None else None
    ref_probs = None
    if corpus is not None and reference is not None:
        ref_probs = Classifier(bundle, reference).predict_proba(corpus.texts).astype(np.float64)
    for name, info in bundle.artifacts.items():
        if name in broken:
            continue
        for engine in installed_engines(info["format"]):
            if engines and engine not in engines:
                continue
            version = engine_version(engine)
            try:
                clf = Classifier(bundle, name, backend=engine)
            except EngineError as e:
                rec = _recorded(info, engine, version)
                known = rec is not None and rec["loads"] is False
                checks.append(Check(name, engine, version, "load", None if known else False, str(e)))
                continue
            checks.append(check_golden(clf, name, golden))
            if ref_probs is not None and name != reference:
                checks.append(check_corpus(clf, name, corpus.ids, ref_probs, corpus.texts, corpus.labels,
                                           bundle.manifest["validation_criteria"], reference))
    return checks


def table(checks: list[Check]) -> str:
    rows = [("artifact", "engine", "check", "result", "detail")]
    for c in checks:
        result = {True: "pass", False: "FAIL", None: "n/a"}[c.passed]
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
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.parity", description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--data", help="folder or .tar.gz of review .txt files (aclImdb layout: its test split)")
    p.add_argument("--limit", type=int, help="use at most N reviews of --data (seeded sample)")
    p.add_argument("--engines", nargs="+", choices=list(ENGINES), help="only these engines (default: all installed)")
    p.add_argument("--json", type=Path, help="write the checks as JSON here")
    p.add_argument("--junit", type=Path, help="write JUnit XML here, for CI systems")
    args = p.parse_args(argv)
    try:
        checks = run(args.bundle, args.engines, args.data, args.limit)
    except (BundleError, CorpusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    print(table(checks))
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in checks], indent=2) + "\n", encoding="utf-8")
    if args.junit:
        junit(checks, args.junit)
    failed = [c for c in checks if c.passed is False]
    for c in failed:
        print(f"FAIL: {c.message}", file=sys.stderr)
    print(f"{sum(c.passed is True for c in checks)} passed, {len(failed)} failed")
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
