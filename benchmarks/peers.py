"""The deliberately naive pipelines the benchmark compares with (never used for features).

``split_floor`` is the cheapest conceivable tokenization. ``TutorialPipeline`` is what a
typical tutorial app does at serving time: ``lower().split()``, a fresh 10,000-float array
and an interpreter call. Its features differ from training's, which the accuracy section
shows; it is here as a speed peer and as the cautionary tale.
"""

from __future__ import annotations

import numpy as np

from runtime.vocab import Vocabulary


def split_floor(text: str) -> list[str]:
    return text.lower().split()


class TutorialPipeline:
    """lower().split() + fresh multi-hot array + TFLite float32 interpreter."""

    def __init__(self, tflite_path: str, vocab: Vocabulary):
        from ai_edge_litert.interpreter import Interpreter

        self.word_index = vocab.index
        self.size = len(vocab)
        self.interpreter = Interpreter(model_path=tflite_path)
        self.interpreter.allocate_tensors()
        self.inp = self.interpreter.get_input_details()[0]["index"]
        self.out = self.interpreter.get_output_details()[0]["index"]

    def features(self, text: str) -> np.ndarray:
        x = np.zeros((1, self.size), dtype=np.float32)
        for word in text.lower().split():
            i = self.word_index.get(word)
            if i is not None:
                x[0, i] = 1.0
        return x

    def __call__(self, text: str) -> float:
        self.interpreter.set_tensor(self.inp, self.features(text))
        self.interpreter.invoke()
        return float(self.interpreter.get_tensor(self.out)[0, 0])
