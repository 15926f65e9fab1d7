"""The measurements: every artifact on every installed engine beside the Keras float model."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

import runtime
from benchmarks import peers, probe
from benchmarks.stats import interleaved, round_p50s, summarize, throughput
from runtime.encoding.text import tokenize
from runtime.engines.base import EngineError, installed_engines
from runtime.bundle.directory import Bundle
from runtime.classifier import Classifier
from runtime.probability import tempered_all, tempered_softmax
from train.calibration import reliability
from train.model_dir import ModelDir

ROOT = Path(__file__).resolve().parent.parent
KERAS = "keras float32"
KERAS_PREDICT = "keras float32 (predict)"
LOOKUP_FLOOR = "lower().split() + dict look-ups"
BATCH_SIZES = (1, 32, 256)


@dataclass(frozen=True)
class Settings:
    accuracy_reviews: int | None  # None: the whole test split
    latency_reviews: int
    repeats: int
    predict_reviews: int
    throughput_seconds: float
    cold_runs: int
    volume_reviews: int | None  # None: every review of the archive (100,000)
    keras_volume_reviews: int
    volume_copies: int  # the volume job: the reviews this many times over (--volume-copies)


# ``repeats`` is also the number of paired rounds the single-review goal is judged on.
QUICK = Settings(accuracy_reviews=2000, latency_reviews=150, repeats=5, predict_reviews=30,
                 throughput_seconds=0.3, cold_runs=3, volume_reviews=5000, keras_volume_reviews=1000,
                 volume_copies=1)
FULL = Settings(accuracy_reviews=None, latency_reviews=1000, repeats=5, predict_reviews=200,
                throughput_seconds=2.0, cold_runs=7, volume_reviews=None, keras_volume_reviews=20000,
                volume_copies=10)


def classifiers(bundle: Bundle) -> tuple[dict[str, Classifier], dict[str, str]]:
    """One classifier per (artifact, installed engine); and why any could not load."""
    loaded, skipped = {}, {}
    for name, info in bundle.artifacts.items():
        for engine in installed_engines(info.format):
            key = f"{name} @ {engine}"
            try:
                loaded[key] = runtime.load(bundle.root, artifact=name, backend=engine)
            except EngineError as e:
                skipped[key] = str(e)
    return loaded, skipped


class KerasReference:
    """The float Keras model with the project's encoder (an instance of its own): the
    reference and the slow peer. Its probabilities get the bundle's temperature, as every
    artifact's do (``raw_proba``: without it)."""

    def __init__(self, model_dir: ModelDir, temperature: float = 1.0):
        self.model = model_dir.load_model()
        self.encoder = model_dir.encoder
        self.size_bytes = model_dir.model_file.stat().st_size
        self.temperature = temperature

    def probability(self, text: str) -> float:
        return float(self.model(self.encoder.keras_inputs([text]), training=False).numpy()[0, 0])

    def probability_predict(self, text: str) -> float:
        return float(self.model.predict(self.encoder.keras_inputs([text]), verbose=0)[0, 0])

    def raw_proba(self, texts) -> np.ndarray:
        """Two labels: ``(n,)`` P(second label); more: ``(n, N)`` softmax probabilities."""
        probs = self.model(self.encoder.keras_inputs(texts), training=False).numpy()
        return probs.reshape(-1) if probs.shape[1] == 1 else probs

    def predict_proba(self, texts) -> np.ndarray:
        probs = self.raw_proba(texts)
        if self.temperature == 1.0:
            return probs
        if probs.ndim == 2:  # N labels: the temperature divides the logits, as the runtime's does
            return tempered_softmax(probs, self.temperature)
        return tempered_all(probs.tolist(), self.temperature)


def _batched(run, texts: list[str], batch: int = 1000) -> np.ndarray:
    return np.concatenate([np.asarray(run(texts[i : i + batch])).reshape(-1) for i in range(0, len(texts), batch)])


def accuracy(clfs: dict[str, Classifier], keras_ref: KerasReference, tutorial: peers.TutorialPipeline | None,
             texts: list[str], labels: np.ndarray, threshold: float) -> dict:
    """Accuracy, ROC AUC and label agreement with the float model, for every candidate."""
    ref = _batched(keras_ref.predict_proba, texts)
    out = {}

    def row(probs: np.ndarray, size: int | None) -> dict:
        pred = probs >= threshold
        calibration = reliability(probs, labels)
        return {"accuracy": float(np.mean(pred == (labels == 1))), "roc_auc": float(roc_auc_score(labels, probs)),
                "agreement_with_float": float(np.mean(pred == (ref >= threshold))),
                "max_abs_diff_vs_float": float(np.abs(probs - ref).max()), "size_bytes": size, "reviews": len(texts),
                "ece": calibration["ece"], "reliability": calibration}

    out[KERAS] = row(ref, keras_ref.size_bytes)
    out[KERAS]["temperature"] = keras_ref.temperature
    out[KERAS]["ece_without_temperature"] = reliability(_batched(keras_ref.raw_proba, texts), labels)["ece"]
    for key, clf in tqdm(clfs.items(), desc="accuracy", unit="candidate"):
        out[key] = row(_batched(clf.predict_proba, texts), clf.bundle.artifacts[clf.artifact].size_bytes)
    if tutorial is not None:
        out["tutorial pipeline (lower().split())"] = row(np.array([tutorial(t) for t in texts]), None)
    return out


def rewritten_accuracy(clfs: dict[str, Classifier], keras_ref: KerasReference, texts: list[str],
                       labels: np.ndarray, threshold: float) -> dict[str, float]:
    """The float model's and every candidate's accuracy on ``texts`` as ``benchmarks.rewrite``
    writes them."""
    from benchmarks.rewrite import rewrite

    texts = [rewrite(t) for t in texts]
    positive = np.asarray(labels) == 1
    runs = {KERAS: keras_ref.predict_proba, **{key: clf.predict_proba for key, clf in clfs.items()}}
    return {key: float(np.mean((_batched(run, texts) >= threshold) == positive)) for key, run in runs.items()}


def latency(clfs: dict[str, Classifier], keras_ref: KerasReference, tutorial: peers.TutorialPipeline | None,
            texts: list[str], s: Settings) -> tuple[dict, dict, dict]:
    """End-to-end latency (text -> probability), floors and peers, and model-only latency."""
    # The floors get an encoder of their own: sharing a candidate's would warm its memo for
    # every review before that candidate is timed, and favour it.
    encoder = next(iter(clfs.values())).bundle.encoder()
    e2e = {f"runtime {k}": c._probability for k, c in clfs.items()}
    floors = {"lower().split()": peers.split_floor, LOOKUP_FLOOR: peers.LookupFloor(encoder.vocab),
              "tokenize (runtime)": tokenize,
              "tokenize + encode (runtime)": encoder.model_input}
    if tutorial is not None:
        floors["tutorial pipeline"] = tutorial
    bar = tqdm(total=s.repeats * 2 + 1, desc="latency", unit="round")
    samples = interleaved({**floors, **e2e}, texts, s.repeats, on_round=lambda: bar.update(1))
    # Keras is timed on a smaller sample (eager LSTM calls take ~0.5 s), interleaved between its two forms.
    keras_samples = interleaved({KERAS: keras_ref.probability, KERAS_PREDICT: keras_ref.probability_predict},
                                texts[: s.predict_reviews], 1, on_round=lambda: bar.update(1))
    # Model only: what each engine is given for one review (word ids, or a token id row).
    inputs = [encoder.model_input(t) for t in texts]
    model_only = {f"runtime {k}": c._probability_of_input for k, c in clfs.items()}
    model_samples = interleaved(model_only, inputs, s.repeats, on_round=lambda: bar.update(1))
    dense = [encoder.keras_inputs([t]) for t in texts[: s.predict_reviews]]
    model_samples[KERAS] = interleaved({KERAS: lambda x: keras_ref.model(x, training=False)}, dense, 1)[KERAS]
    bar.close()
    # Each candidate's p50 in each round too: a goal against a floor is judged on paired rounds.
    e2e_stats = {k: {**summarize(samples[k]), "round_p50_us": round_p50s(samples[k], s.repeats)} for k in e2e}
    e2e_stats.update({k: summarize(v) for k, v in keras_samples.items()})
    floor_stats = {k: {**summarize(samples[k]), "round_p50_us": round_p50s(samples[k], s.repeats)} for k in floors}
    return e2e_stats, floor_stats, {k: summarize(v) for k, v in model_samples.items()}


def explanation_cost(clf: Classifier, texts: list[str], s: Settings, k: int = 10) -> dict:
    """Single-review p50 of ``explain`` against ``probability`` on the same reviews, interleaved."""
    texts = texts[: max(50, s.latency_reviews // 5)]
    samples = interleaved({"classify": clf._probability, "explain": lambda t: clf.explain(t, k)}, texts, s.repeats)
    return {"method": clf.explain(texts[0], k).method, "k": k, "reviews": len(texts),
            "classify": summarize(samples["classify"]), "explain": summarize(samples["explain"])}


def batch_throughput(clfs: dict[str, Classifier], keras_ref: KerasReference, texts: list[str], s: Settings) -> dict:
    """Reviews per second (text -> probability) at each batch size."""
    runs = {f"runtime {k}": c.predict_proba for k, c in clfs.items()}
    runs[KERAS] = keras_ref.predict_proba
    out = {}
    for name, run in tqdm(runs.items(), desc="throughput", unit="candidate"):
        out[name] = {str(b): throughput(run, texts, b, s.throughput_seconds) for b in BATCH_SIZES}
    return out


def _timed_process(args: list[str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "probe.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip().splitlines()[-3:]}")
    peak = probe.report(proc.stderr)["peak_rss_kb"]
    return elapsed, peak, proc.stdout.strip()


def cold_start(bundle: Bundle, model_dir: ModelDir, review: Path, runs: int) -> dict:
    """Whole-process time and peak memory: runtime.classify against a TensorFlow classify."""
    commands = {
        "runtime.classify": ["runtime.classify", "--model", str(bundle.root), str(review)],
        "tensorflow classify": ["benchmarks.tf_classify", str(model_dir.path), str(review)],
    }
    results: dict[str, list[tuple[float, int, str]]] = {k: [] for k in commands}
    for _ in tqdm(range(runs), desc="cold start", unit="run"):
        for name, args in commands.items():
            results[name].append(_timed_process(args))
    return {
        name: {"runs": len(r), "median_s": statistics.median(x[0] for x in r), "min_s": min(x[0] for x in r),
               "median_peak_rss_kb": statistics.median(x[1] for x in r), "output": r[0][2]}
        for name, r in results.items()
    }
