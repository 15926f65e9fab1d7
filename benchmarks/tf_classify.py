"""A TensorFlow-based classify of one file: the peer for cold start and memory.

``python -m benchmarks.tf_classify MODEL_DIR FILE`` loads the Keras model with TensorFlow and
prints the same line as ``runtime.classify``, using the project's encoder, as an app that
ships TensorFlow would.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str]) -> int:
    import json

    import keras

    from runtime.features import make_encoder
    from runtime.vocab import Vocabulary

    model_dir, path = Path(argv[0]), argv[1]
    model = keras.models.load_model(model_dir / "model.keras")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    encoder = make_encoder(config["features"], Vocabulary.load(model_dir / "vocab.txt"))
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    p = float(model(encoder.encode([text]), training=False).numpy()[0, 0])
    print(f"{'positive' if p >= 0.5 else 'negative'}\t{p:.4f}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
