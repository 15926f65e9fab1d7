"""The textbook recipe on the full corpus: the 88% bar on the real test split."""

import json

import pytest

pytestmark = [pytest.mark.corpus, pytest.mark.slow]


def test_seed_mlp_reaches_88_percent(corpus, tmp_path):
    from train import trainer
    from train.recipes import SEED_MLP

    metrics = trainer.run(corpus, SEED_MLP, seed=1337, out=tmp_path / "seed-mlp", verbose=0)
    print(f"seed-mlp full corpus: test accuracy {metrics['test_accuracy']:.4f}, "
          f"ROC AUC {metrics['roc_auc']:.4f}, epochs {metrics['epochs_trained']} (kept {metrics['best_epoch']})")
    assert metrics["test_accuracy"] >= 0.880
    config = json.loads((tmp_path / "seed-mlp" / "config.json").read_text())
    assert config["data"]["train_reviews"] == 15000 and config["data"]["validation_reviews"] == 10000
    assert config["data"]["test_reviews"] == 25000


def test_seed_lstm_reaches_87_percent(corpus, tmp_path):
    from train import trainer
    from train.recipes import SEED_LSTM

    metrics = trainer.run(corpus, SEED_LSTM, seed=1337, out=tmp_path / "seed-lstm", verbose=0)
    print(f"seed-lstm full corpus: test accuracy {metrics['test_accuracy']:.4f}, "
          f"validation {metrics['best_val_accuracy']:.4f}, epochs {metrics['epochs_trained']} "
          f"(kept {metrics['best_epoch']})")
    assert metrics["test_accuracy"] >= 0.870
    config = json.loads((tmp_path / "seed-lstm" / "config.json").read_text())
    assert config["features"]["family"] == "sequence" and config["features"]["length"] == 400
    data = config["data"]
    assert data["validation_holds_out"] == "movies" and 5000 <= data["validation_reviews"] < 5100
    assert data["train_reviews"] + data["validation_reviews"] == 25000
