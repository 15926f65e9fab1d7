"""Shared fixtures: the real corpus (read once), a small trained model and its bundle."""

from __future__ import annotations

import io
import os
import signal
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Ray clusters the tests start listen on the loopback interface only (Ray's own switch).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
SHARED_ARCHIVE = ROOT.parent / "shared" / "data" / "aclImdb_v1.tar.gz"


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def default_signals() -> None:
    """A child's ``preexec_fn``: the stop signals' default actions, as from a shell (a job
    started in the background, or under ``nohup``, inherits them ignored)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


@pytest.fixture
def stop_handlers():
    """This process's stop signals as in a terminal (Ctrl-C raises KeyboardInterrupt), whatever
    the test run inherited; restored afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in STOP_SIGNALS[1:]:
        signal.signal(signum, signal.SIG_DFL)
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def corpus_path() -> Path | None:
    env = os.environ.get("IMDB_DATA")
    if env:
        return Path(env)
    return SHARED_ARCHIVE if SHARED_ARCHIVE.exists() else None


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory):
    """The wheel and sdist of this checkout, built once (``python -m build``, as users get them)."""
    from export.wheel import build

    return build(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def corpus():
    """The real IMDB corpus; required in CI (IMDB_DATA), skipped elsewhere if absent."""
    path = corpus_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("IMDB_DATA is not set and ../shared/data/aclImdb_v1.tar.gz is missing")
        pytest.skip("no IMDB corpus: set IMDB_DATA")
    from train.corpus import read_corpus

    return read_corpus(path)


@pytest.fixture(scope="session")
def lines_file(corpus, tmp_path_factory) -> Path:
    """3,000 real test reviews, one per line (their own newlines become spaces)."""
    path = tmp_path_factory.mktemp("records") / "reviews.txt"
    texts = corpus.splits["test"].sample(3000, 5).texts
    path.write_text("".join(" ".join(t.split()) + "\n" for t in texts), encoding="utf-8")
    return path


def make_archive(path: Path, reviews: dict[str, str], prefix: str = "aclImdb/") -> Path:
    """A .tar.gz in the aclImdb layout from {"train/pos/1_9.txt": text, ...}."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in reviews.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


TICKET_WORDS = "please help me with my order today the a it is was i".split()


def ticket_rows(rng, n: int, labels: list[str], variants: int) -> list[tuple[str, str]]:
    """Support-ticket-like ``(text, label)`` rows for N-label tests: 2-4 words of their own label
    (``label`` + a number below ``variants``), one word of another label, shared words."""
    rows = []
    for i in range(n):
        label = i % len(labels)
        other = (label + 1 + rng.integers(len(labels) - 1)) % len(labels)
        own = [f"{labels[label]}{rng.integers(variants)}" for _ in range(rng.integers(2, 5))]
        words = own + [f"{labels[other]}{rng.integers(variants)}"] + list(rng.choice(TICKET_WORDS, rng.integers(2, 6)))
        rows.append((" ".join(rng.permutation(words)), labels[label]))
    return rows


def write_csv(path, rows, header=("text", "label")) -> None:
    """``rows`` as a CSV file with ``header``."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def tiny_reviews() -> dict[str, str]:
    out = {}
    for split in ("train", "test"):
        for i in range(6):
            out[f"{split}/pos/{i}_9.txt"] = f"A great, wonderful film number {i}. Loved it!"
            out[f"{split}/neg/{i}_2.txt"] = f"An awful, boring film number {i}. Hated it."
        for label in ("pos", "neg"):  # three movies, two reviews each, per label
            out[f"{split}/urls_{label}.txt"] = "".join(
                f"http://www.imdb.com/title/tt{i // 2 + (0 if split == 'train' else 10):07d}/usercomments\n"
                for i in range(6))
    return out


@pytest.fixture
def tiny_archive(tmp_path: Path) -> Path:
    return make_archive(tmp_path / "tiny.tar.gz", tiny_reviews())


def assert_single_batch_and_stream_agree_with_golden(bundle: Path, artifact: str) -> None:
    """One review at a time, in batches and streamed in 40-character pieces, the artifact
    reproduces its golden probabilities (a tenth of the gate's tolerance), identically."""
    import numpy as np

    import runtime
    from runtime.checks import parity

    clf = runtime.load(bundle, artifact=artifact)
    run = parity.golden_run(clf, clf.bundle.golden(), piece=40)
    assert np.abs(run.single - run.want).max() <= clf.bundle.artifacts[artifact].golden_tolerance / 10
    assert np.abs(run.batch - run.single).max() <= 1e-6
    np.testing.assert_array_equal(run.single, run.stream)


def train_small(corpus, out: Path, recipe, n_train: int, n_test: int, seed: int, **changes) -> Path:
    """Train ``recipe`` (with ``changes``) on seeded samples of the corpus into ``out``."""
    import dataclasses

    from train import trainer
    from train.corpus import Corpus

    sub = Corpus(corpus.source, {"train": corpus.splits["train"].sample(n_train, 1),
                                 "test": corpus.splits["test"].sample(n_test, 2)},
                 corpus.archive_sha256, corpus.content_sha256)
    trainer.run(sub, dataclasses.replace(recipe, **changes), seed=seed, out=out, verbose=0)
    return out


def export_small(model_dir: Path, corpus, out: Path, reviews: int) -> Path:
    """Every artifact of a small model, validated on ``reviews`` held-out and test reviews."""
    from export.exporter import export_bundle

    export_bundle(model_dir, out, corpus, validation_size=reviews, test_limit=reviews)
    return out


def run_quick_benchmark(bundle: Path, model_dir: Path, out: Path, *options: str) -> dict:
    """``python -m benchmarks --quick`` as a user runs it; the parsed benchmark.json."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--bundle", str(bundle), "--model-dir",
                           str(model_dir), "--data", str(corpus_path()), "--out", str(out), "--quick", *options],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "benchmark.json").read_text())


@pytest.fixture(scope="session")
def small_model(corpus, tmp_path_factory) -> Path:
    """seed-mlp trained on 5,000 train reviews with a 2,000-word vocabulary."""
    from train.recipes import SEED_MLP

    return train_small(corpus, tmp_path_factory.mktemp("models") / "small", SEED_MLP, 5000, 2000, seed=7,
                       vocab_size=2000, validation_size=2000, max_epochs=8)


@pytest.fixture(scope="session")
def small_bundle(small_model, corpus, tmp_path_factory) -> Path:
    """Every artifact of the small model, validated on 2,000 held-out and 2,000 test reviews."""
    return export_small(small_model, corpus, tmp_path_factory.mktemp("bundles") / "small", 2000)


@pytest.fixture(scope="session")
def small_lstm_model(corpus, tmp_path_factory) -> Path:
    """A tiny seed-lstm (64 ids, 16 units) trained on 3,000 reviews. Its ~30 steps an epoch
    need a shorter weight average than the full recipe's (momentum 0.99 keeps ~100 steps)."""
    from train.recipes import SEED_LSTM

    return train_small(corpus, tmp_path_factory.mktemp("models") / "lstm", SEED_LSTM, 3000, 1000, seed=5,
                       vocab_size=2000, sequence_length=64, embedding_dim=16, hidden=(16,),
                       validation_size=1000, max_epochs=3, batch_size=64, ema_momentum=0.9)


@pytest.fixture(scope="session")
def small_lstm_bundle(small_lstm_model, corpus, tmp_path_factory) -> Path:
    """Every sequence artifact of the tiny seed-lstm, validated."""
    return export_small(small_lstm_model, corpus, tmp_path_factory.mktemp("bundles") / "lstm", 1000)


@pytest.fixture(scope="session")
def small_ngram_model(corpus, tmp_path_factory) -> Path:
    """The n-gram recipe on 4,000 train reviews: 3,000 words and 2^16 bigram buckets."""
    from train.recipes import NGRAM_RECIPE

    return train_small(corpus, tmp_path_factory.mktemp("models") / "ngram", NGRAM_RECIPE, 4000, 1500, seed=3,
                       vocab_size=3000, buckets=1 << 16, validation_size=1000, max_epochs=4)


@pytest.fixture(scope="session")
def small_ngram_bundle(small_ngram_model, corpus, tmp_path_factory) -> Path:
    """Every n-gram artifact of the small model, validated on 1,500 held-out and test reviews."""
    return export_small(small_ngram_model, corpus, tmp_path_factory.mktemp("bundles") / "ngram", 1500)
