"""``python -m benchmarks --bundle BUNDLE --model-dir MODEL_DIR --out DIR [--quick]``.

Writes benchmark.json, benchmark.md and PNG plots to DIR. A model trained on your own data
(``python -m train --data FILE``) is benchmarked on its own split, read again from the files
its config.json names, with per-label figures and a confusion matrix plot per artifact and
peer (``benchmarks.own_data``). exit status (as for every
command, see runtime.exitcodes): 0 written; 4 the bundle, model directory or corpus is
missing or unusable; 64 usage error; 1 internal error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
from pathlib import Path

from runtime import exitcodes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = exitcodes.parser("python -m benchmarks", __doc__)
    p.add_argument("--bundle", required=True, type=Path, help="bundle written by python -m export")
    p.add_argument("--model-dir", required=True, type=Path, help="the model directory the bundle was exported from")
    p.add_argument("--data", help="aclImdb .tar.gz or directory (default: $IMDB_DATA, else download); "
                                       "not for a model trained on your own data, which names its files")
    p.add_argument("--out", required=True, type=Path, help="report directory")
    p.add_argument("--quick", action="store_true", help="a sample of reviews and fewer repetitions (CI)")
    p.add_argument("--peers", action=argparse.BooleanOptionalAction, default=None,
                   help="train and score the desktop peers (scikit-learn, fastText, NB-weighted LR for two "
                        "labels) on the model's split "
                        "(default: IMDB: in full mode only; a model trained on "
                        "your own data: always)")
    p.add_argument("--volume-copies", type=int, metavar="N",
                   help="write the archive's reviews N times into the volume section's lines file (default: 10 in "
                        "full mode, the 1,000,000-review job the volume goals are judged on; 1 in quick mode)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.volume_copies is not None and args.volume_copies < 1:
        p.error("--volume-copies must be 1 or more")
    if not 0 <= args.seed < 1 << 31:
        p.error(f"--seed {args.seed}: expected a whole number from 0 to {(1 << 31) - 1}")
    return args


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _meta(args: argparse.Namespace, bundle, s) -> dict:
    from runtime.bundle.files import sha256_file
    from train.environment import library_versions

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
        "python": platform.python_version(),
        "versions": library_versions(),
        "bundle": str(args.bundle),
        "manifest_sha256": sha256_file(bundle.root / "manifest.json"),
        "settings": s.__dict__,
    }


def _own_data(args: argparse.Namespace, bundle, model_dir) -> int:
    """The benchmark of a model trained on a user's data (``benchmarks.own_data``): every
    artifact, the float model and the peers on the model's own split, with per-label figures
    and a confusion matrix plot each. Peers run unless ``--no-peers``, in quick mode too
    (small data sets train them in seconds)."""
    import numpy as np

    from benchmarks import measure, own_data, report
    from runtime.atomic import staging_dir
    from train.model_dir import write_json

    pool, val_mask, test, labels = own_data.load_split(model_dir)
    s = measure.QUICK if args.quick else measure.FULL
    texts, y = list(test.texts), np.asarray(test.labels)
    lat_texts = test.sample(s.latency_reviews, args.seed + 1).texts
    candidates = _candidates(args, bundle, model_dir)
    if candidates is None:
        return exitcodes.UNUSABLE
    clfs, skipped, default_key, keras_ref = candidates
    threshold = bundle.manifest.threshold if len(labels) == 2 else None
    files = model_dir.config["data"]["files"]
    result: dict = {"meta": _meta(args, bundle, s), "skipped": skipped, "not_run": dict(own_data.NOT_RUN), "data": {
        "train": files["train"]["path"], "format": model_dir.config["data"]["reading"].get("format"),
        "files": files, "labels": list(labels),
        "test_source": "file " + files["test"]["path"] if "test" in files else "held out of the training file",
        "test_examples": len(texts), "test_ids_sha256": _ids_sha256(test.ids),
        "training_examples": len(pool), "validation_examples": int(val_mask.sum())}}
    result["accuracy"] = own_data.accuracy(clfs, keras_ref, texts, y, labels, threshold)
    if args.peers is not False:
        result["peers"] = own_data.peers(pool, val_mask, texts, y, labels, lat_texts, s.repeats)
    else:
        result["not_run"]["peers"] = "--no-peers"
    result["latency_e2e"], result["floors"], result["latency_model"] = measure.latency(
        clfs, keras_ref, None, lat_texts, s)
    result["throughput"] = measure.batch_throughput(clfs, keras_ref, lat_texts, s)
    result["explanation_cost"] = {**measure.explanation_cost(clfs[default_key], lat_texts, s), "artifact": default_key}
    with staging_dir(args.out, "benchmark report") as stage:
        _cold_start(result, stage / "text.txt", lat_texts, bundle, model_dir, s)
        result["confusion_plots"] = own_data.plot_confusions(result, stage)
        write_json(stage / "benchmark.json", result)
        (stage / "benchmark.md").write_text(own_data.markdown(result), encoding="utf-8")
        report.plot_latency(result, stage / "latency.png")
        report.plot_throughput(result, stage / "throughput.png")
    print(f"benchmark ({result['meta']['mode']}, your data: {len(labels)} labels, {len(texts):,} test texts) -> "
          f"{args.out}/benchmark.md")
    rows = {**result["accuracy"], **result.get("peers", {})}
    for name, a in rows.items():
        print(f"  {name}: accuracy {a['accuracy']:.2%}, macro-F1 {a['macro_f1']:.4f}")
    print(f"  recommended default artifact: {result['recommended_default']}")
    return exitcodes.OK


def _candidates(args: argparse.Namespace, bundle, model_dir):
    """``(classifiers, skipped, default key, Keras reference)``, or None (said in one line) when
    no artifact of the bundle runs on the installed engines."""
    from benchmarks import measure

    clfs, skipped = measure.classifiers(bundle)
    if not clfs:
        print(f"error: no artifact of {args.bundle} can run on the installed engines: {skipped}", file=sys.stderr)
        return None
    default_key = next((k for k in clfs if k.startswith(bundle.manifest.default_artifact + " @")), next(iter(clfs)))
    return clfs, skipped, default_key, measure.KerasReference(model_dir, bundle.manifest.temperature)


def _cold_start(result: dict, sample: Path, lat_texts: list[str], bundle, model_dir, s) -> None:
    """Cold start on the median-length latency text (written to ``sample``), then the
    recommended default artifact, into ``result``."""
    from benchmarks import measure, report

    sample.write_text(sorted(lat_texts, key=len)[len(lat_texts) // 2], encoding="utf-8")
    result["cold_start"] = measure.cold_start(bundle, model_dir, sample, s.cold_runs)
    result["recommended_default"] = report.recommend(result)


def _ids_sha256(ids) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from runtime.atomic import UnsafeOutput, check_output_dir
    from train.model_dir import data_files

    try:  # the report replaces --out whole: never an input, nor a directory of something else
        check_output_dir(args.out, [args.bundle, args.model_dir, *data_files(args.model_dir),
                                    *([args.data] if args.data else [])], "benchmark.json", "benchmark report", "meta")
    except UnsafeOutput as e:
        print(f"python -m benchmarks: error: --out {e}", file=sys.stderr)
        return exitcodes.USAGE
    stops = exitcodes.StopRequests()
    return stops.run(lambda: _published(args), f"nothing was written to {args.out}")


def _published(args: argparse.Namespace) -> int:
    from runtime.atomic import PublishFailed

    try:
        return _benchmark(args)
    except PublishFailed as e:  # the finished report could not replace --out
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.INTERNAL


def _benchmark(args: argparse.Namespace) -> int:
    from train.userdata import allow_long_fields

    allow_long_fields()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    from benchmarks import measure, own_data, peers, report, rewrite, volume
    from runtime.atomic import staging_dir
    from runtime.engines.base import LOGIT
    from runtime.bundle.directory import open_bundle
    from runtime.bundle.files import BundleError
    from runtime.encoding.features import MULTI_HOT
    from runtime.checks.reviews import CorpusError
    from train import data
    from train.corpus import all_review_texts
    from train.errors import DataError
    from train.model_dir import ModelDir, ModelDirError, write_json

    try:
        bundle = open_bundle(args.bundle)
        problems = bundle.verify_all()
        if problems:
            raise BundleError(problems[0].message)
        model_dir = ModelDir(args.model_dir)
        if model_dir.model_sha256() != bundle.manifest.model.get("keras_sha256"):
            raise BundleError(f"{model_dir.model_file}: not the model {args.bundle} was exported from (sha256 differs)")
        if own_data.is_user_model(model_dir):
            if args.data is not None:
                print(f"python -m benchmarks: error: --data is for the IMDB benchmark; {args.model_dir} was trained "
                      "on your own data, which its config.json names", file=sys.stderr)
                return exitcodes.USAGE
            return _own_data(args, bundle, model_dir)
        with_peers = (not args.quick) if args.peers is None else args.peers
        corpus = data.load(args.data, splits=("train", "test") if with_peers else ("test",))
        test = corpus.splits["test"]
    except (BundleError, CorpusError, ModelDirError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE

    s = measure.QUICK if args.quick else measure.FULL
    accuracy_split = test.sample(s.accuracy_reviews, args.seed)
    acc_texts, labels = accuracy_split.texts, np.asarray(accuracy_split.labels)
    lat_texts = test.sample(s.latency_reviews, args.seed + 1).texts

    candidates = _candidates(args, bundle, model_dir)
    if candidates is None:
        return exitcodes.UNUSABLE
    clfs, skipped, default_key, keras_ref = candidates
    tutorial = None
    if "tflite-float32" in bundle.artifacts and model_dir.family == MULTI_HOT:
        float32 = bundle.artifacts["tflite-float32"]
        tutorial = peers.TutorialPipeline(str(bundle.path(float32.file)), model_dir.vocab, float32.output == LOGIT)

    result: dict = {"meta": _meta(args, bundle, s), "skipped": skipped}
    result["accuracy"] = measure.accuracy(clfs, keras_ref, tutorial, acc_texts, labels, bundle.manifest.threshold)
    result["rewritten_text"] = {"how": rewrite.HOW, "accuracy": measure.rewritten_accuracy(
        clfs, keras_ref, acc_texts, labels, bundle.manifest.threshold)}
    result["latency_e2e"], result["floors"], result["latency_model"] = measure.latency(
        clfs, keras_ref, tutorial, lat_texts, s)
    result["throughput"] = measure.batch_throughput(clfs, keras_ref, lat_texts, s)
    result["explanation_cost"] = measure.explanation_cost(clfs[default_key], lat_texts, s)
    fitted_peers: dict = {}
    if with_peers:
        from benchmarks import peer_models

        train = corpus.splits["train"]
        held = set(model_dir.splits["validation_ids"])
        result["peers"] = peer_models.measure(train.texts, np.asarray(train.labels),
                                              np.array([i in held for i in train.ids]), acc_texts, labels,
                                              lat_texts, s.repeats, fitted_peers)
    try:
        with tempfile.TemporaryDirectory() as work:
            result["volume"] = volume.measure(all_review_texts(data.resolve(args.data)), bundle, model_dir,
                                              Path(work), s.volume_reviews, s.keras_volume_reviews, fitted_peers,
                                              args.volume_copies or s.volume_copies, judged=not args.quick,
                                              one_copy_figures=not args.quick)
    except volume.ClusterError as e:  # an outside tool failed: nothing was written to --out
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.INTERNAL
    with staging_dir(args.out, "benchmark report") as stage:
        _cold_start(result, stage / "review.txt", lat_texts, bundle, model_dir, s)
        result["ratios"] = report.ratios(result, default_key)
        write_json(stage / "benchmark.json", result)
        (stage / "benchmark.md").write_text(report.markdown(result), encoding="utf-8")
        report.plot_latency(result, stage / "latency.png")
        report.plot_accuracy_size(result, stage / "accuracy_size.png")
        report.plot_throughput(result, stage / "throughput.png")
        report.plot_reliability(result, stage / "reliability.png")
        volume.plot(result["volume"], stage / "volume.png")
    r = result["ratios"]
    print(f"benchmark ({result['meta']['mode']}) -> {args.out}/benchmark.md")
    for key, e in r.items():
        if isinstance(e, dict) and "goal" in e:
            on = volume.judged_on(e)
            print(f"  {e['meaning']}: {e['value']:.3g} (goal {e['goal']}: {'met' if e['met'] else 'NOT met'}"
                  f"{'; ' + on if on else ''})")
    v = result["volume"]
    if args.quick:
        print(f"  volume goals are judged in full mode only (on {volume.GOAL_REVIEWS:,} reviews); with "
              f"{v['reviews']:,} reviews, starting the workers dominates")
    for engine, g in volume.goals(v):
        on = volume.judged_on(g, v)
        print(f"  {g['what']}, {engine}: {g['value']:.3g} (goal {g['goal']}: {volume.verdict(g, v, markdown=False)}"
              f"{'; ' + on if on else ''})")
    print(f"  recommended default artifact: {result['recommended_default']}")
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
