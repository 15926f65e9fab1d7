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
    from runtime.bundle.manifest import DEFAULT_THRESHOLD
    from train.model_dir import ModelDir

    model_dir, path = ModelDir(argv[0]), argv[1]
    model = model_dir.load_model()
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    probs = model(model_dir.encoder.keras_inputs([text]), training=False).numpy()[0]
    if len(probs) == 1:
        p = float(probs[0])
        print(f"{model_dir.labels[p >= DEFAULT_THRESHOLD]}\t{p:.4f}\t{path}")
    else:  # N labels: the most probable one, as runtime.classify prints it
        top = int(probs.argmax())
        print(f"{model_dir.labels[top]}\t{float(probs[top]):.4f}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
