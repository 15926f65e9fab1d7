"""The deliberately naive pipelines the benchmark compares with (never used for features).

``split_floor`` is the cheapest conceivable tokenization. ``TutorialPipeline`` is what a
typical tutorial app does at serving time: ``lower().split()``, a fresh vocabulary-sized
array (here of word ids, as the exported models take) and an interpreter call. Its features
differ from training's, which the accuracy section shows; it is here as a speed peer and as
the cautionary tale.
"""

from __future__ import annotations

import numpy as np

from runtime.probability import sigmoid32
from runtime.encoding.vocab import Vocabulary


def split_floor(text: str) -> list[str]:
    return text.lower().split()


class LookupFloor:
    """``lower().split()`` and one dictionary look-up per word: the least any Python
    bag-of-words encoder does (no punctuation handling, no model). Its ratio to
    ``split_floor`` bounds from below what an exact runtime can reach in CPython."""

    def __init__(self, vocab: Vocabulary):
        self._get = vocab.index.get

    def __call__(self, text: str) -> set:
        return set(map(self._get, text.lower().split()))


class TutorialPipeline:
    """lower().split() + a fresh vocabulary-sized array of word ids + TFLite float32 interpreter
    (whose output is the logit when ``logit_output``: the sigmoid is then applied as the runtime does)."""

    def __init__(self, tflite_path: str, vocab: Vocabulary, logit_output: bool = False):
        from ai_edge_litert.interpreter import Interpreter

        self.word_index = vocab.index
        self.size = len(vocab)
        self.interpreter = Interpreter(model_path=tflite_path)
        self.inp = self.interpreter.get_input_details()[0]["index"]
        self.interpreter.resize_tensor_input(self.inp, (1, self.size))
        self.interpreter.allocate_tensors()
        self.out = self.interpreter.get_output_details()[0]["index"]
        self.logit_output = logit_output

    def features(self, text: str) -> np.ndarray:
        ids = sorted({self.word_index[w] for w in text.lower().split() if w in self.word_index})
        x = np.zeros((1, self.size), dtype=np.int32)
        x[0, : len(ids)] = ids
        return x

    def __call__(self, text: str) -> float:
        self.interpreter.set_tensor(self.inp, self.features(text))
        self.interpreter.invoke()
        out = float(self.interpreter.get_tensor(self.out)[0, 0])
        return sigmoid32(out) if self.logit_output else out
