"""Shared fixtures: the real corpus (read once), a small trained model and its bundle."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_ARCHIVE = ROOT.parent / "shared" / "data" / "aclImdb_v1.tar.gz"


def corpus_path() -> Path | None:
    env = os.environ.get("IMDB_DATA")
    if env:
        return Path(env)
    return SHARED_ARCHIVE if SHARED_ARCHIVE.exists() else None


@pytest.fixture(scope="session")
def corpus():
    """The real IMDB corpus; required in CI (IMDB_DATA), skipped elsewhere if absent."""
    path = corpus_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("IMDB_DATA is not set and ../shared/data/aclImdb_v1.tar.gz is missing")
        pytest.skip("no IMDB corpus: set IMDB_DATA")
    from runtime.corpus import read_corpus

    return read_corpus(path)


def make_archive(path: Path, reviews: dict[str, str], prefix: str = "aclImdb/") -> Path:
    """A .tar.gz in the aclImdb layout from {"train/pos/1_9.txt": text, ...}."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in reviews.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def tiny_reviews() -> dict[str, str]:
    out = {}
    for split in ("train", "test"):
        for i in range(6):
            out[f"{split}/pos/{i}_9.txt"] = f"A great, wonderful film number {i}. Loved it!"
            out[f"{split}/neg/{i}_2.txt"] = f"An awful, boring film number {i}. Hated it."
    return out


@pytest.fixture
def tiny_archive(tmp_path: Path) -> Path:
    return make_archive(tmp_path / "tiny.tar.gz", tiny_reviews())


@pytest.fixture(scope="session")
def small_model(corpus, tmp_path_factory) -> Path:
    """seed-mlp trained on 5,000 train reviews with a 2,000-word vocabulary."""
    import dataclasses

    from runtime.corpus import Corpus
    from train import trainer
    from train.recipes import SEED_MLP

    sub = Corpus(corpus.source, {
        "train": trainer.subset(corpus.splits["train"], 5000, 1),
        "test": trainer.subset(corpus.splits["test"], 2000, 2),
    }, corpus.archive_sha256, corpus.content_sha256)
    recipe = dataclasses.replace(SEED_MLP, vocab_size=2000, validation_size=2000, max_epochs=8)
    out = tmp_path_factory.mktemp("models") / "small"
    trainer.run(sub, recipe, seed=7, out=out, verbose=0)
    return out


@pytest.fixture(scope="session")
def small_bundle(small_model, corpus, tmp_path_factory) -> Path:
    """Every artifact of the small model, validated on 2,000 reviews and 2,000 test reviews."""
    from export.exporter import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "small"
    export_bundle(small_model, out, corpus, validation_size=2000, test_limit=2000)
    return out


@pytest.fixture(scope="session")
def small_lstm_bundle(corpus, tmp_path_factory) -> Path:
    """A tiny seed-lstm (64 ids, 16 units) trained on 3,000 reviews and exported."""
    import dataclasses

    from export.exporter import export_bundle
    from runtime.corpus import Corpus
    from train import trainer
    from train.recipes import SEED_LSTM

    sub = Corpus(corpus.source, {"train": trainer.subset(corpus.splits["train"], 3000, 1),
                                 "test": trainer.subset(corpus.splits["test"], 1000, 2)}, None, "")
    recipe = dataclasses.replace(SEED_LSTM, vocab_size=2000, sequence_length=64, embedding_dim=16, hidden=(16,),
                                 validation_size=1000, max_epochs=3, batch_size=64)
    model_dir = tmp_path_factory.mktemp("models") / "lstm"
    trainer.run(sub, recipe, seed=5, out=model_dir, verbose=0)
    out = tmp_path_factory.mktemp("bundles") / "lstm"
    export_bundle(model_dir, out, corpus, validation_size=1000, test_limit=1000)
    return out
