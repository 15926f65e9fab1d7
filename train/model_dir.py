"""The model directory: what ``python -m train`` publishes and export, the benchmark and the
TensorFlow reference read. This module owns its layout; nothing else names its files.

====================  ==========================================================
file                  content
====================  ==========================================================
``model.keras``       the trained Keras model
``vocab.txt``         the vocabulary (``runtime.encoding.vocab`` format)
``config.json``       recipe, seed, tokenizer, feature spec, vocabulary, labels (sorted names;
                      a two-label model's output is P(labels[1])), data, versions
``splits.json``       the training and validation ids (a user's data: also the test ids, the
                      files' sha256 and how the test and validation splits were made)
``history.json``      per-epoch training and validation figures
``metrics.json``      test-split figures
``report.md``, PNGs   the human-readable report (``train.report``)
====================  ==========================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime.encoding.text import settings as tokenizer_settings
from runtime.atomic import staging_dir
from runtime.bundle.files import sha256_file
from runtime.encoding.features import NGRAM, NGRAM_SEQUENCE, SEQUENCE, Encoder, encoder_from_spec
from runtime.encoding.vocab import Vocabulary, VocabularyError

MODEL_FILE = "model.keras"
VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "config.json"
SPLITS_FILE = "splits.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"


class ModelDirError(Exception):
    """A model directory that cannot be used."""


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


class ModelDirWriter:
    """Writes the files of a model directory into its staging directory."""

    def __init__(self, path: Path):
        self.path = path

    def model(self, model) -> None:
        model.save(self.path / MODEL_FILE)

    def vocabulary(self, vocab: Vocabulary) -> None:
        vocab.save(self.path / VOCAB_FILE)

    def json(self, config: dict, splits: dict, history: dict, metrics: dict) -> None:
        for name, data in ((CONFIG_FILE, config), (SPLITS_FILE, splits), (HISTORY_FILE, history),
                           (METRICS_FILE, metrics)):
            write_json(self.path / name, data)


@contextmanager
def publish(out: Path) -> Iterator[ModelDirWriter]:
    """A writer whose directory replaces ``out`` in one rename when the block succeeds."""
    with staging_dir(out, "model directory") as stage:
        yield ModelDirWriter(stage)


class ModelDir:
    """A published model directory, checked for what its readers need."""

    def __init__(self, path: str | Path):
        self.path = path = Path(path)
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
        if self.config.get("tokenizer") != tokenizer_settings():
            raise ModelDirError(f"{path}: trained with tokenizer {self.config.get('tokenizer')}, "
                                f"this code has {tokenizer_settings()}")
        try:
            self.encoder: Encoder = encoder_from_spec(self.config.get("features", {}), self.vocab)
        except (ValueError, KeyError, TypeError) as e:
            raise ModelDirError(f"{path / CONFIG_FILE}: {e}") from e
        self.family = self.encoder.family
        # Models trained before labels were recorded are IMDB's two.
        self.labels: tuple[str, ...] = tuple(self.config.get("labels") or ("negative", "positive"))
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels) or not all(
                isinstance(label, str) and label for label in self.labels):
            raise ModelDirError(f"{path / CONFIG_FILE}: labels must be 2 or more distinct non-empty strings")

    @property
    def outputs(self) -> int:
        """The model's output width: 1 (P(second label)) for two labels, else one per label."""
        return 1 if len(self.labels) == 2 else len(self.labels)

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    def model_sha256(self) -> str:
        return sha256_file(self.model_file)

    def load_model(self):
        """The Keras model, checked to take what the encoder makes (needs TensorFlow)."""
        import keras

        from train.ngram_model import NgramBag

        if self.family == NGRAM_SEQUENCE:
            import train.order_model  # noqa: F401  (registers its layers for loading)

        try:
            model = keras.models.load_model(self.model_file, custom_objects={"NgramBag": NgramBag})
        except Exception as e:  # Keras raises many types for a bad file
            raise ModelDirError(f"{self.model_file}: cannot load the Keras model ({e})") from e
        shape = tuple(model.inputs[0].shape)
        if len(model.inputs) != 1 or len(shape) != 2 or tuple(model.outputs[0].shape)[1:] != (self.outputs,):
            raise ModelDirError(f"{self.path}: unsupported model: expected one (batch, N) input and a "
                                f"(batch, {self.outputs}) output for {len(self.labels)} labels, got inputs "
                                f"{[tuple(i.shape) for i in model.inputs]} and outputs "
                                f"{[tuple(o.shape) for o in model.outputs]}")
        if self.family in (NGRAM, NGRAM_SEQUENCE):  # the order-aware model holds the same bag
            return self._checked_ngram(model)
        width = self.encoder.length if self.family == SEQUENCE else self.encoder.vocab_size
        if shape[1] != width:
            what = "ids a sequence" if self.family == SEQUENCE else "tokens"
            raise ModelDirError(f"{self.path / VOCAB_FILE}: {width} {what} but the model takes {shape[1]} features")
        return model

    def _checked_ngram(self, model):
        from train.ngram_model import bag_of

        try:
            rows = bag_of(model).rows
        except ValueError as e:
            raise ModelDirError(f"{self.model_file}: {e}") from e
        if rows != self.encoder.table_rows:
            raise ModelDirError(f"{self.path / CONFIG_FILE}: the features make {self.encoder.table_rows} ids "
                                f"but the model's table has {rows} rows")
        if self.family == NGRAM_SEQUENCE:
            from train.order_model import parts_of

            widths = {int(b.inputs[0].shape[1]) for b in parts_of(model)[1]}
            if widths != {self.encoder.length}:
                raise ModelDirError(f"{self.model_file}: an ngram-sequence model needs convolution branches over "
                                    f"{self.encoder.length} token columns; it has "
                                    f"{', '.join(map(str, sorted(widths))) or 'none'}")
        return model

    def inference_model(self):
        """The model as export converts it: for a sequence model, rebuilt with dropout 0
        (identical at inference, without the dropout's random state, which would stay in the
        converted graph)."""
        from train.recipes import Recipe, build_model

        model = self.load_model()
        if self.family != SEQUENCE:
            return model
        recipe = Recipe.from_dict(self.config["recipe"])
        clean = build_model(recipe, self.encoder.length, len(self.vocab), dropout=0.0, labels=len(self.labels))
        clean.set_weights(model.get_weights())
        return clean


def data_files(model_dir: str | Path) -> list[str]:
    """The data files a model directory was trained on, as its config.json names them (none if
    unreadable): the inputs a command that writes beside it must not overwrite."""
    try:
        files = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))["data"]["files"]
        return [f["path"] for f in files.values() if isinstance(f, dict) and isinstance(f.get("path"), str)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return []
