"""Model recipes: the architecture and training settings that define each named model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from runtime.encoding.features import MULTI_HOT, NGRAM, NGRAM_SEQUENCE, SEQUENCE


@dataclass(frozen=True)
class Recipe:
    name: str
    vocab_size: int
    hidden: tuple[int, ...]
    learning_rate: float
    batch_size: int
    max_epochs: int
    patience: int
    validation_size: int
    family: str = MULTI_HOT  # the feature family: runtime.encoding.features.MULTI_HOT, SEQUENCE or NGRAM
    sequence_length: int = 0
    embedding_dim: int = 0
    dropout: float = 0.0  # on the LSTM's inputs, or on an n-gram model's features
    buckets: int = 0  # n-gram family: rows shared by hashed bigrams
    l2: float = 0.0  # n-gram family: L2 penalty on the weights
    clipnorm: float | None = None  # gradient norm clipping
    ema_momentum: float | None = None  # validate and keep a moving average of the weights
    optimizer: str = "rmsprop"
    monitor: str = "val_loss"  # early stopping keeps the best epoch by this validation metric
    validation_by: str = "review"  # or "movie": hold out whole movies (see trainer.validation_split)
    refit: bool = False  # after early stopping, train again on all training reviews for the kept epochs
    calibration_logit_range: float | None = None  # int8 calibration: only reviews with |float logit| <= this
    # ngram-sequence family (train.order_model): the convolution branch beside the n-gram table;
    # ``hidden`` holds its filters per width, ``embedding_dim`` its word vectors' dimension.
    widths: tuple[int, ...] = ()  # window widths of the convolution
    branch_learning_rate: float = 0.0
    branch_batch_size: int = 0
    branch_max_epochs: int = 0
    branch_dropout: float = 0.0
    branch_seeds: int = 0  # the most branches averaged (more while the time budget allows)

    _BRANCH_FIELDS = ("widths", "branch_learning_rate", "branch_batch_size", "branch_max_epochs", "branch_dropout",
                      "branch_seeds")

    def to_dict(self) -> dict:
        """The recipe as config.json and manifests record it; the branch's fields only for the
        ngram-sequence family (so every other recipe's record stays as it always was)."""
        record = asdict(self)
        if self.family != NGRAM_SEQUENCE:
            for name in self._BRANCH_FIELDS:
                record.pop(name)
        return record

    @classmethod
    def from_dict(cls, record: dict) -> Recipe:
        """The recipe ``to_dict`` wrote (lists back to tuples)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        for name in ("hidden", "widths"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


# Chollet, Deep Learning with Python, ch. 3/4: multi-hot 10,000 -> 16 -> 16 -> 1.
SEED_MLP = Recipe(
    name="seed-mlp",
    vocab_size=10_000,
    hidden=(16, 16),
    learning_rate=1e-3,
    batch_size=512,
    max_epochs=20,
    patience=2,
    validation_size=10_000,
)

# Embedding + LSTM on front-padded word-id sequences (padding id 0 masked). Validation holds
# out whole movies; the configuration was chosen on that validation only (the trials are in
# docs/notes/seed-lstm.md, with its training times).
SEED_LSTM = Recipe(
    name="seed-lstm",
    vocab_size=20_000,
    hidden=(64,),
    learning_rate=5e-4,
    batch_size=128,
    max_epochs=4,
    patience=2,
    validation_size=5_000,
    family=SEQUENCE,
    sequence_length=400,
    embedding_dim=64,
    dropout=0.3,
    clipnorm=1.0,
    ema_momentum=0.99,
    optimizer="adam",
    monitor="val_accuracy",
    validation_by="movie",
)

# Naive-Bayes-scaled logistic regression over word unigrams and hashed bigrams (NBSVM's
# features, Wang & Manning 2012), trained as a Keras embedding bag. Validation holds out
# whole movies; buckets, L2, dropout and learning rate were chosen on it, and the int8
# calibration range on unlabelled reviews (docs/notes/ngram.md).
NGRAM_RECIPE = Recipe(
    name="ngram",
    vocab_size=30_000,
    hidden=(),
    learning_rate=1e-2,
    batch_size=256,
    max_epochs=12,
    patience=2,
    validation_size=5_000,
    family=NGRAM,
    buckets=1_000_000,
    dropout=0.3,
    l2=1e-4,
    optimizer="adam",
    monitor="val_loss",
    validation_by="movie",
    refit=True,
    calibration_logit_range=12.0,
)

# The order-aware model (train.order_model): the n-gram table above beside a convolution over
# word vectors learned from raw text (train.word_vectors), added at the logit with a weight
# chosen on validation. The default for a user's own data; its sizes are fitted to the data
# (train.tuning.adapt) and its settings come from docs/notes/order-aware-prototype.md.
NGRAM_CNN = Recipe(
    name="ngram-cnn",
    vocab_size=100_000,
    hidden=(100,),
    learning_rate=1e-2,
    batch_size=256,
    max_epochs=20,
    patience=3,
    validation_size=5_000,
    family=NGRAM_SEQUENCE,
    sequence_length=128,
    embedding_dim=64,
    dropout=0.3,
    buckets=1_000_000,
    l2=1e-5,
    optimizer="adam",
    monitor="val_loss",
    widths=(3,),
    branch_learning_rate=1e-3,
    branch_batch_size=32,
    branch_max_epochs=30,
    branch_dropout=0.5,
    branch_seeds=1,
    refit=True,
)

RECIPES = {r.name: r for r in (SEED_MLP, SEED_LSTM, NGRAM_RECIPE, NGRAM_CNN)}


LOGITS_LAYER = "logits"  # N > 2 labels, seed MLP and LSTM: the Dense layer of the N logits


def build_model(recipe: Recipe, input_size: int, vocab_size: int, dropout: float | None = None, labels: int = 2):
    """The compiled Keras model of ``recipe``. ``input_size``: the sequence length, the
    multi-hot width, or the n-gram table's rows.

    For 2 labels: one sigmoid output, binary cross-entropy (the models as they always were).
    For N > 2: N logits (the n-gram bag, or a Dense layer named ``LOGITS_LAYER``) and a softmax
    named ``probability``, sparse categorical cross-entropy on label indexes.

    ``dropout`` overrides the recipe's (export rebuilds the model with 0: dropout does nothing
    at inference, and its random state would otherwise stay in the converted graph).
    """
    import keras

    rate = recipe.dropout if dropout is None else dropout
    name = recipe.name.replace("-", "_")
    if recipe.family in (NGRAM, NGRAM_SEQUENCE):  # the order-aware model's n-gram part
        from train import ngram_model

        model = ngram_model.build(input_size, rate, recipe.l2, name, labels)
    else:
        model = _layered_model(keras, recipe, input_size, vocab_size, rate, name, labels)
    optimizer = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}[recipe.optimizer]
    averaging = {"use_ema": True, "ema_momentum": recipe.ema_momentum} if recipe.ema_momentum else {}
    model.compile(
        optimizer=optimizer(learning_rate=recipe.learning_rate, clipnorm=recipe.clipnorm, **averaging),
        loss="binary_crossentropy" if labels == 2 else "sparse_categorical_crossentropy",
        metrics=["accuracy"] if labels == 2 else [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def _layered_model(keras, recipe: Recipe, input_size: int, vocab_size: int, rate: float, name: str,
                   labels: int = 2):
    """The multi-hot MLP or the Embedding + LSTM model, uncompiled."""
    if recipe.family == SEQUENCE:
        inputs = keras.Input(shape=(input_size,), dtype="int32", name="features")
        x = keras.layers.Embedding(vocab_size, recipe.embedding_dim, mask_zero=True)(inputs)
        for i, units in enumerate(recipe.hidden):
            x = keras.layers.LSTM(units, dropout=rate, return_sequences=i < len(recipe.hidden) - 1)(x)
    else:
        inputs = keras.Input(shape=(input_size,), dtype="float32", name="features")
        x = inputs
        for units in recipe.hidden:
            x = keras.layers.Dense(units, activation="relu")(x)
    if labels == 2:
        outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    else:
        logits = keras.layers.Dense(labels, name=LOGITS_LAYER)(x)
        outputs = keras.layers.Activation("softmax", name="probability")(logits)
    return keras.Model(inputs, outputs, name=name)
