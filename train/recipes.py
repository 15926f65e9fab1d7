"""Model recipes: the architecture and training settings that define each named model."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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

    def to_dict(self) -> dict:
        return asdict(self)


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

RECIPES = {r.name: r for r in (SEED_MLP,)}


def build_model(recipe: Recipe, input_size: int):
    """The compiled Keras model of ``recipe`` (rmsprop, binary cross-entropy)."""
    import keras

    inputs = keras.Input(shape=(input_size,), dtype="float32", name="features")
    x = inputs
    for units in recipe.hidden:
        x = keras.layers.Dense(units, activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    model = keras.Model(inputs, outputs, name=recipe.name.replace("-", "_"))
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=recipe.learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model
