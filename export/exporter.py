"""Model directory -> validated bundle. Everything is written to a staging directory and
published by one rename, so a failed conversion or validation never leaves a bundle."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from export import convert, golden, validate
from runtime.encoding.text import settings as tokenizer_settings
from runtime.atomic import staging_dir
from runtime.engines.base import LOGIT
from runtime.engines.load import load_backend
from runtime.bundle.files import sha256_file
from runtime.bundle.manifest import Artifact, DEFAULT_THRESHOLD, EngineRecord, LABELS, MANIFEST, Manifest, platform_info
from runtime.classifier import Classifier
from runtime.options import ClassifierOptions
from runtime.encoding.features import MULTI_HOT, NGRAM, NGRAM_SEQUENCE, SEQUENCE, Encoder
from runtime.probability import label_logits, logits, tempered_all
from train.corpus import Corpus
from train.environment import library_versions
from train.model_dir import METRICS_FILE, VOCAB_FILE, ModelDir, ModelDirError

DEFAULT_ARTIFACT = "tflite-int8"
GOLDEN_FILE = "golden.json"
# How far an artifact may drift from its own recorded golden probabilities on another
# engine, engine version or CPU (kernels differ in rounding; int8 outputs step by ~1/256).
# Float32 artifacts take the gate's limit for their feature family (validate.FLOAT32_MAX_DIFF).
GOLDEN_TOLERANCE = {"float16": 1e-3, "dynamic-int8": 8e-3, "int8": 8e-3}


def golden_tolerance(precision: str, family: str) -> float:
    """How far one artifact may drift from its golden probabilities."""
    return validate.FLOAT32_MAX_DIFF[family] if precision == "float32" else GOLDEN_TOLERANCE[precision]


def _select(corpus: Corpus, ids: list[str], n: int, seed: int) -> list[str]:
    """Texts of a seeded sample of ``n`` of the given training-split ids (a user's data with a
    validation file: its ids too, which training joined to the training split)."""
    splits = [corpus.splits["train"]] + ([corpus.validation] if corpus.validation is not None else [])
    texts = {rid: text for split in splits for rid, text in zip(split.ids, split.texts)}
    missing = [rid for rid in ids[:5] if rid not in texts]
    if missing:
        raise ModelDirError(f"the corpus lacks training reviews the model was split on, e.g. {missing[0]}")
    chosen = np.random.default_rng(seed).permutation(len(ids))[:n]
    return [texts[ids[i]] for i in sorted(chosen)]


def user_data(md: ModelDir) -> dict | None:
    """How to read again the user's data a model was trained on (``config.json``'s ``data``),
    or None for the aclImdb corpus."""
    data = md.config.get("data") or {}
    return data if data.get("reading") and data.get("files") else None


def load_corpus(model_dir: Path, data: str | None = None) -> Corpus:
    """The corpus ``model_dir`` was trained on: the user's files named in its ``config.json``
    (``data``: another path to the training file), else the aclImdb corpus (``train.data.load``).

    Raises:
        ModelDirError: a user's file that is missing, or differs from the one trained on (its
            sha256): its ids would not be the ones the model was split on.
    """
    from train import data as imdb_data, dataset
    from train.errors import DataError

    md = ModelDir(model_dir)
    recorded = user_data(md)
    if recorded is None:
        return imdb_data.load(data)
    files, reading = recorded["files"], recorded["reading"]
    paths = {name: files[name]["path"] for name in files}
    if data:
        paths["train"] = data
    for name, path in paths.items():
        if not Path(path).exists():
            raise ModelDirError(f"{path}: the {name} file the model was trained on is missing; pass --data for "
                                f"the training file")
    record = md.splits if md.splits.get("reading") else {}
    try:
        corpus = dataset.load(paths["train"], paths.get("test"), paths.get("validation"), reading["format"],
                              reading["text_column"], reading["label_column"],
                              float((record.get("test") or {}).get("fraction") or 0.1),
                              int(record.get("seed", 1337)), dataset.recorded_max_bytes(reading))
    except DataError as e:
        raise ModelDirError(str(e)) from e
    for name, path in paths.items():
        now = corpus.split_record["files"][name]["sha256"]
        if now != files[name]["sha256"]:
            raise ModelDirError(f"{path}: changed since the model was trained (sha256 {now[:12]}..., trained on "
                                f"{files[name]['sha256'][:12]}...)")
    if tuple(corpus.labels) != md.labels:
        raise ModelDirError(f"{paths['train']}: labels {list(corpus.labels)} differ from the model's {list(md.labels)}")
    return corpus


def _calibration_texts(md: ModelDir, corpus: Corpus, model, n: int, seed: int) -> tuple[list[str], dict]:
    """Training reviews for int8 calibration, and what the manifest records about them.

    A recipe with ``calibration_logit_range`` R keeps only reviews whose float logit lies
    within ±R. A full-integer linear model holds its logit in 8 bits, with a range calibrated
    on these reviews: a few extreme ones would make the step coarse at the decision boundary.
    Beyond R the logit saturates, which moves a probability by at most 1 - sigmoid(R).

    For N > 2 labels the full-integer model holds all N logits in one 8-bit tensor with one
    range, so a text is kept when its largest |logit| is within ±R: the same bound on every
    column. (Bounding the spread around each text's mean instead would ignore the bias, which
    the tensor holds too.)
    """
    limit = md.config["recipe"].get("calibration_logit_range")
    if not limit:
        return _select(corpus, md.splits["train_ids"], n, seed), {"training_reviews": n}
    pool = _select(corpus, md.splits["train_ids"], 2 * n, seed)
    if md.outputs == 1:
        p = validate.keras_probabilities(model, md.encoder, pool).astype(np.float64)
        extreme = np.abs(logits(p))
    else:
        # N logits share one 8-bit tensor (one range for all N): a text is kept when every one
        # of its logits lies within ±R, the two-label rule applied to each column.
        extreme = np.abs(validate.keras_logits(model, md.encoder, pool)).max(axis=1)
    kept = [t for t, x in zip(pool, extreme) if x <= limit][:n]
    if not kept:
        raise validate.ValidationError(f"no training review has a float logit within ±{limit} to calibrate on")
    return kept, {"training_reviews": len(kept), "max_abs_float_logit": limit}


def _temperature_of(md: ModelDir) -> dict:
    """The manifest's calibration: the temperature training found worth applying (else 1) and
    the figures behind the decision, from the model directory's metrics."""
    try:
        found = json.loads((md.path / METRICS_FILE).read_text(encoding="utf-8")).get("calibration")
    except (OSError, ValueError):
        found = None
    if not found:
        return {"temperature": 1.0, "note": "not measured when this model was trained"}
    return {"temperature": float(found["fitted_temperature"]) if found["applied"] else 1.0, **found}


def _tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    return probs if temperature == 1.0 else tempered_all(probs.tolist(), temperature)


def _float_probabilities(model, encoder: Encoder, texts: list[str], temperature: float, outputs: int) -> np.ndarray:
    """The float model's tempered probabilities: ``(n,)`` P(labels[1]) for two labels, else
    ``(n, N)``: the softmax of the Keras logits, tempered as the runtime and training's fit
    temper it (``runtime.probability.tempered_softmax``: ``softmax(log(clip(p, EPS, 1)) / T)``),
    in float64."""
    if outputs == 1:
        return _tempered(validate.keras_probabilities(model, encoder, texts), temperature)
    p = validate.softmax(validate.keras_logits(model, encoder, texts))
    return p if temperature == 1.0 else validate.softmax(label_logits(p), temperature)


def model_input(encoder: Encoder, sequence_batch: int | None) -> dict:
    """The manifest's description of the exported models' input."""
    if encoder.family == MULTI_HOT:
        return {"name": "ids", "dtype": "int32", "shape": [None, None],
                "meaning": "each review's distinct vocabulary ids (the multi-hot row's ones), padded with 0"}
    if encoder.family == NGRAM:
        return {"name": "ids", "dtype": "int32", "shape": [None, None],
                "meaning": "each review's distinct unigram and hashed bigram ids, ascending, padded with 0"}
    if encoder.family == NGRAM_SEQUENCE:
        return {"name": "ids", "dtype": "int32", "shape": [None, None],
                "meaning": f"each text's first {encoder.length} token ids (padded with 0), then its distinct "
                           f"unigram and hashed bigram ids, ascending, padded with 0"}
    return {"name": "features", "dtype": "int32", "shape": [sequence_batch, encoder.length],
            "meaning": "token ids, <start> first, padded and truncated at the front"}


def export_bundle(
    model_dir: Path,
    out: Path,
    corpus: Corpus,
    artifacts: list[str] | None = None,
    default: str | None = None,
    validation_size: int = 2500,
    calibration_size: int = 500,
    test_limit: int | None = None,
    before_publishing: Callable[[], None] | None = None,
) -> Manifest:
    """Convert, validate and publish; returns the manifest.

    Every artifact is converted and measured even after one fails, so that the one
    ``ValidationError`` raised at the end names them all; nothing is published then.
    ``before_publishing`` is called last; an exception it raises discards the bundle.
    """
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
    model = md.inference_model()
    encoder = md.encoder

    calibration_decision = _temperature_of(md)
    temperature = calibration_decision["temperature"]
    labels, outputs = md.labels, md.outputs
    if tuple(corpus.labels) != labels:
        raise ModelDirError(f"{corpus.source}: labels {list(corpus.labels)} differ from the model's {list(labels)}")
    test = corpus.splits["test"].sample(test_limit, seed)
    val_texts = _select(corpus, md.splits["validation_ids"], validation_size, seed)
    calibration_texts, calibration_record = _calibration_texts(md, corpus, model, calibration_size, seed + 1)
    calibration = encoder.model_inputs(calibration_texts)
    ref = validate.Reference(
        val_texts=val_texts,
        val_probs=_float_probabilities(model, encoder, val_texts, temperature, outputs),
        test_texts=test.texts,
        test_labels=np.asarray(test.labels),
        test_probs=_float_probabilities(model, encoder, test.texts, temperature, outputs),
        threshold=DEFAULT_THRESHOLD if outputs == 1 else None,
    )
    gold = golden.choose(test.texts, test.ids, ref.test_labels, ref.test_probs, ref.threshold, names=labels)
    golden.add_explanations(model, encoder, gold, names=labels)
    gold_texts = [g["text"] for g in gold]
    named = {} if outputs == 1 else {"labels": labels}  # binary calls stay as they always were

    entries: dict[str, Artifact] = {}
    refused: list[str] = []
    with staging_dir(out, "bundle") as stage:
        # Sequence models' TFLite forms take a fixed batch of 1 and so run row by row.
        tflite_batch = 1 if md.family == SEQUENCE else None
        sequence_length = encoder.length if md.family == NGRAM_SEQUENCE else None
        width = encoder.length if md.family == SEQUENCE else encoder.table_rows
        frozen: dict[tuple[bool, bool], object] = {}  # (portable, ends at the logit) -> TFLite's graph
        serve: dict[bool, object] = {}  # ends at the logit -> ONNX's function
        onnx_float: dict[str, Path] = {}  # output -> float32 ONNX to quantize from
        for name in tqdm(names, desc="export", unit="artifact"):
            spec = convert.ARTIFACTS[name]
            path = stage / spec.file
            tqdm.write(f"converting {name}: {spec.description}")
            output = convert.output_of(spec)
            logit = output == LOGIT
            if spec.format == "tflite":
                key = (convert.portable_float(md.family, spec), logit)
                if key not in frozen:
                    frozen[key] = convert.frozen_function(
                        convert.serving_function(model, md.family, width, tflite_batch, *key))
                path.write_bytes(convert.to_tflite(frozen[key], spec.precision, calibration, spec.per_tensor))
            else:
                if logit not in serve:
                    serve[logit] = convert.serving_function(model, md.family, width, logit=logit)
                if spec.is_float32:
                    convert.to_onnx(serve[logit], path, encoder.table_rows, output, sequence_length)
                else:
                    if output not in onnx_float:
                        onnx_float[output] = stage / f".float32-{output}-for-quantization.onnx"
                        convert.to_onnx(serve[logit], onnx_float[output], encoder.table_rows, output,
                                        sequence_length)
                    convert.quantize_onnx(onnx_float[output], path, spec.precision, calibration, encoder.table_rows,
                                          sequence_length)
            batch_invariant = spec.batch_invariant and not (spec.format == "tflite" and tflite_batch == 1)
            backend = load_backend(path, spec.format, batch_invariant=batch_invariant, output=output)
            clf = Classifier(encoder, backend, ClassifierOptions(artifact=name), name=str(path), temperature=temperature,
                             **named)
            figures = validate.measure(clf, ref)
            tqdm.write(f"  {name}: max|dp| {figures['max_abs_diff']:.2e}, agreement {figures['label_agreement']:.4f}, "
                       f"test accuracy {figures['test_accuracy']:.4f} ({figures['test_accuracy_delta'] * 100:+.2f} pts)")
            failed = validate.failures(spec.is_float32, figures, md.family)
            if failed:
                refused.append(f"{name} failed validation: {'; '.join(failed)}")
                continue
            for g, p in zip(gold, clf.predict_proba(gold_texts)):
                g["probabilities"][name] = float(p) if outputs == 1 else [float(x) for x in p]
            entries[name] = Artifact(
                name=name, file=spec.file, format=spec.format, precision=spec.precision,
                description=spec.description, size_bytes=path.stat().st_size, sha256=sha256_file(path),
                golden_tolerance=golden_tolerance(spec.precision, md.family), batch_invariant=batch_invariant,
                validation=figures, output=output,
            )
            entries[name].record(EngineRecord(backend.engine, backend.version, True, True, "export",
                                              platform=platform_info()))
        if refused:
            raise validate.ValidationError(" | ".join(refused))
        for temporary in onnx_float.values():
            temporary.unlink()

        shutil.copyfile(md.path / VOCAB_FILE, stage / VOCAB_FILE)
        (stage / GOLDEN_FILE).write_text(json.dumps({"source": "test split", "reviews": gold}, indent=2) + "\n",
                                         encoding="utf-8")
        manifest = Manifest(
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            recipe=md.config["recipe"]["name"],
            model={
                "keras_sha256": md.model_sha256(),
                "int8_calibration": calibration_record,
                "float_test_accuracy": ref.test_accuracy,
                "test_reviews": len(test),
                **({"user_data": True} if user_data(md) else {}),
                "training": {k: md.config[k] for k in ("recipe", "seed", "data")},
            },
            producer=library_versions(),
            tokenizer=tokenizer_settings(),
            vocabulary={"file": VOCAB_FILE, "size": len(md.vocab), "sha256": sha256_file(stage / VOCAB_FILE)},
            features=encoder.spec(),
            input=model_input(encoder, tflite_batch),
            output=({"name": "probability", "dtype": "float32", "shape": [None, 1],
                     "meaning": "probability that the review is positive"} if outputs == 1 and labels == LABELS else
                    {"name": "probability", "dtype": "float32", "shape": [None, 1],
                     "meaning": f"probability of the label {labels[1]!r}"} if outputs == 1 else
                    {"name": "probabilities", "dtype": "float32", "shape": [None, len(labels)],
                     "meaning": "the probability of each label, in the order of labels"}),
            labels=labels,
            threshold=ref.threshold,
            default_artifact=default,
            validation_criteria=validate.criteria(md.family),
            golden={"file": GOLDEN_FILE, "sha256": sha256_file(stage / GOLDEN_FILE), "reviews": len(gold)},
            artifacts=entries,
            calibration=calibration_decision,
        )
        manifest.write(stage / MANIFEST)
        if before_publishing is not None:
            before_publishing()
    return manifest
