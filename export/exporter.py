"""Model directory -> validated bundle. Everything is written to a staging directory and
published by one rename, so a failed conversion or validation never leaves a bundle."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from export import convert, golden, validate
from runtime import text as tokenizer
from runtime.backends import load_backend
from runtime.bundle import FORMAT, FORMAT_VERSION, MANIFEST, sha256_file
from runtime.corpus import Corpus
from runtime.features import MULTI_HOT, SEQUENCE, Encoder, make_encoder, pad_bags
from runtime.vocab import Vocabulary, VocabularyError
from train.artifacts import staging_dir, write_json
from train.recipes import Recipe, build_model
from train.trainer import CONFIG_FILE, MODEL_FILE, SPLITS_FILE, VOCAB_FILE

DEFAULT_ARTIFACT = "tflite-int8"
GOLDEN_FILE = "golden.json"
# How far an artifact may drift from its own recorded golden probabilities on another
# engine, engine version or CPU (kernels differ in rounding; int8 outputs step by ~1/256).
# Float32 artifacts take the gate's limit for their feature family (validate.FLOAT32_MAX_DIFF).
GOLDEN_TOLERANCE = {"float16": 1e-3, "dynamic-int8": 8e-3, "int8": 8e-3}


def golden_tolerance(precision: str, family: str) -> float:
    """How far one artifact may drift from its golden probabilities."""
    return validate.FLOAT32_MAX_DIFF[family] if precision == "float32" else GOLDEN_TOLERANCE[precision]


class ModelDirError(Exception):
    """A model directory that cannot be exported."""


class ModelDir:
    """A trained model directory, checked for what export needs."""

    def __init__(self, path: Path):
        self.path = path
        if not path.is_dir():
            raise ModelDirError(f"{path}: not a model directory")
        for name in (MODEL_FILE, VOCAB_FILE, CONFIG_FILE, SPLITS_FILE):
            if not (path / name).is_file():
                raise ModelDirError(f"{path / name}: missing from the model directory")
        try:
            self.config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
            self.splits = json.loads((path / SPLITS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelDirError(f"{path}: unreadable config or splits ({e})") from e
        try:
            self.vocab = Vocabulary.load(path / VOCAB_FILE)
        except VocabularyError as e:
            raise ModelDirError(str(e)) from e
        if self.config.get("tokenizer") != tokenizer.settings():
            raise ModelDirError(f"{path}: trained with tokenizer {self.config.get('tokenizer')}, "
                                f"this code has {tokenizer.settings()}")
        try:
            self.encoder = make_encoder(self.config.get("features", {}), self.vocab)
        except (ValueError, KeyError) as e:
            raise ModelDirError(f"{path / VOCAB_FILE}: {e}") from e
        self.family = self.encoder.kind

    def load_model(self):
        import keras

        try:
            model = keras.models.load_model(self.path / MODEL_FILE)
        except Exception as e:  # Keras raises many types for a bad file
            raise ModelDirError(f"{self.path / MODEL_FILE}: cannot load the Keras model ({e})") from e
        shape = tuple(model.inputs[0].shape)
        if len(model.inputs) != 1 or len(shape) != 2 or tuple(model.outputs[0].shape)[1:] != (1,):
            raise ModelDirError(f"{self.path}: unsupported model: expected one (batch, N) input and a (batch, 1) "
                                f"output, got inputs {[tuple(i.shape) for i in model.inputs]}")
        if shape[1] != self.encoder.size:
            what = "tokens" if self.family == MULTI_HOT else "ids a sequence"
            raise ModelDirError(f"{self.path / VOCAB_FILE}: {self.encoder.size} {what} but the model takes "
                                f"{shape[1]} features")
        if self.family == SEQUENCE:
            return self._without_dropout(model)
        return model

    def _without_dropout(self, model):
        """The same weights in the same architecture with dropout 0: identical at inference,
        without the dropout's random state, which would stay in the converted graph."""
        recipe = Recipe(**{**self.config["recipe"], "hidden": tuple(self.config["recipe"]["hidden"])})
        clean = build_model(recipe, self.encoder.size, len(self.vocab), dropout=0.0)
        clean.set_weights(model.get_weights())
        return clean


def _select(corpus: Corpus, ids: list[str], n: int, seed: int) -> list[str]:
    """Texts of a seeded sample of ``n`` of the given training-split ids."""
    index = {rid: i for i, rid in enumerate(corpus.splits["train"].ids)}
    missing = [rid for rid in ids[:5] if rid not in index]
    if missing:
        raise ModelDirError(f"the corpus lacks training reviews the model was split on, e.g. {missing[0]}")
    chosen = np.random.default_rng(seed).permutation(len(ids))[:n]
    texts = corpus.splits["train"].texts
    return [texts[index[ids[i]]] for i in sorted(chosen)]


def _encode_compact(encoder: Encoder, texts: list[str]) -> np.ndarray:
    """Features for many reviews in little memory: uint8 multi-hot, int32 ids."""
    out = np.zeros((len(texts), encoder.size), dtype=np.uint8 if encoder.kind == MULTI_HOT else np.int32)
    for i in range(0, len(texts), validate.BATCH):
        out[i : i + validate.BATCH] = encoder.encode(texts[i : i + validate.BATCH])
    return out


def model_inputs(encoder: Encoder, texts: list[str]) -> np.ndarray:
    """What the exported models take for ``texts``: padded word ids, or token id rows."""
    if encoder.kind == MULTI_HOT:
        return pad_bags([encoder.word_ids(t) for t in texts])
    return encoder.encode(texts)


def model_input(encoder: Encoder, sequence_batch: int | None) -> dict:
    """The manifest's description of the exported models' input."""
    if encoder.kind == MULTI_HOT:
        return {"name": "ids", "dtype": "int32", "shape": [None, None], "features": encoder.spec(),
                "meaning": "each review's distinct vocabulary ids (the multi-hot row's ones), padded with 0"}
    return {"name": "features", "dtype": "int32", "shape": [sequence_batch, encoder.size], "features": encoder.spec(),
            "meaning": "token ids, <start> first, padded and truncated at the front"}


def versions() -> dict:
    found = {}
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def export_bundle(
    model_dir: Path,
    out: Path,
    corpus: Corpus,
    artifacts: list[str] | None = None,
    default: str | None = None,
    validation_size: int = 2500,
    calibration_size: int = 500,
    test_limit: int | None = None,
) -> dict:
    """Convert, validate and publish; returns the manifest. Raises on any failed check."""
    md = ModelDir(model_dir)
    family = convert.FAMILY_ARTIFACTS[md.family]
    names = artifacts or family
    unknown = [n for n in names if n not in family]
    if unknown:
        raise ValueError(f"artifact {unknown[0]!r} is not available for {md.family} models; choose from {', '.join(family)}")
    default = default or (DEFAULT_ARTIFACT if DEFAULT_ARTIFACT in names else names[0])
    if default not in names:
        raise ValueError(f"default artifact {default!r} is not among the exported ones")
    seed = int(md.config.get("seed", 0))
    model = md.load_model()
    encoder = md.encoder

    test = corpus.splits["test"]
    test_idx = np.arange(len(test))
    if test_limit and test_limit < len(test):
        test_idx = np.sort(np.random.default_rng(seed).choice(len(test), test_limit, replace=False))
    test_texts = [test.texts[i] for i in test_idx]
    val_texts = _select(corpus, md.splits["validation_ids"], validation_size, seed)
    calibration = model_inputs(encoder, _select(corpus, md.splits["train_ids"], calibration_size, seed + 1))

    keras_run = lambda x: model(x, training=False).numpy()  # noqa: E731
    val_features = _encode_compact(encoder, val_texts)
    test_features = _encode_compact(encoder, test_texts)
    ref = validate.Reference(
        val_features=val_features,
        val_probs=validate.predict_batched(keras_run, val_features),
        test_features=test_features,
        test_labels=np.asarray([test.labels[i] for i in test_idx]),
        test_probs=validate.predict_batched(keras_run, test_features),
    )
    gold = golden.choose(test_texts, [test.ids[i] for i in test_idx], ref.test_labels, ref.test_probs)
    gold_features = encoder.encode([g["text"] for g in gold])

    entries: dict[str, dict] = {}
    with staging_dir(out) as stage:
        # Sequence models' TFLite forms take a fixed batch of 1 and so run row by row.
        tflite_batch = 1 if md.family == SEQUENCE else None
        frozen = convert.frozen_function(convert.serving_function(model, md.family, encoder.size, tflite_batch))
        serve = convert.serving_function(model, md.family, encoder.size)
        onnx_float = None
        for name in tqdm(names, desc="export", unit="artifact"):
            spec = convert.ARTIFACTS[name]
            path = stage / spec.file
            tqdm.write(f"converting {name}: {spec.description}")
            if spec.format == "tflite":
                path.write_bytes(convert.to_tflite(frozen, spec.precision, calibration, spec.per_tensor))
            elif spec.is_float32:
                convert.to_onnx(serve, path, len(md.vocab))
            else:
                if onnx_float is None:
                    onnx_float = stage / ".float32-for-quantization.onnx"
                    convert.to_onnx(serve, onnx_float, len(md.vocab))
                convert.quantize_onnx(onnx_float, path, spec.precision, calibration, len(md.vocab))
            batch_invariant = spec.batch_invariant and not (spec.format == "tflite" and tflite_batch == 1)
            backend = load_backend(path, spec.format, batch_invariant=batch_invariant)
            figures = validate.measure(backend, ref)
            tqdm.write(f"  {name}: max|dp| {figures['max_abs_diff']:.2e}, agreement {figures['label_agreement']:.4f}, "
                       f"test accuracy {figures['test_accuracy']:.4f} ({figures['test_accuracy_delta'] * 100:+.2f} pts)")
            validate.check(name, spec.is_float32, figures, md.family)
            probs = backend.run(gold_features)
            for g, p in zip(gold, probs):
                g["probabilities"][name] = float(p)
            entries[name] = {
                "file": spec.file,
                "format": spec.format,
                "precision": spec.precision,
                "description": spec.description,
                "size_bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "golden_tolerance": golden_tolerance(spec.precision, md.family),
                "batch_invariant": batch_invariant,
                "engines": [{"engine": backend.engine, "version": backend.version, "loads": True,
                             "matches_golden": True, "checked_by": "export"}],
                "min_versions": {backend.engine: backend.version},
                "validation": figures,
            }
        if onnx_float is not None:
            onnx_float.unlink()

        shutil.copyfile(md.path / VOCAB_FILE, stage / VOCAB_FILE)
        write_json(stage / GOLDEN_FILE, {"source": "test split", "reviews": gold})
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "recipe": md.config["recipe"]["name"],
            "model": {
                "keras_sha256": sha256_file(md.path / MODEL_FILE),
                "float_test_accuracy": ref.test_accuracy,
                "test_reviews": int(len(test_idx)),
                "training": {k: md.config[k] for k in ("recipe", "seed", "data")},
            },
            "producer": versions(),
            "tokenizer": tokenizer.settings(),
            "vocabulary": {"file": VOCAB_FILE, "size": len(md.vocab), "sha256": sha256_file(stage / VOCAB_FILE)},
            "input": model_input(encoder, tflite_batch),
            "output": {"name": "probability", "dtype": "float32", "shape": [None, 1],
                       "meaning": "probability that the review is positive"},
            "labels": ["negative", "positive"],
            "threshold": 0.5,
            "default_artifact": default,
            "validation_criteria": validate.criteria(md.family),
            "golden": {"file": GOLDEN_FILE, "sha256": sha256_file(stage / GOLDEN_FILE), "reviews": len(gold)},
            "artifacts": entries,
        }
        write_json(stage / MANIFEST, manifest)
    return manifest

