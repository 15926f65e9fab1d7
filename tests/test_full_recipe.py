"""Every recipe on the full corpus, against its bar on the real test split."""

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


def test_ngram_reaches_its_bar_and_its_int8_forms_fit_in_one_mebibyte(corpus, tmp_path):
    from export.exporter import export_bundle
    from train import trainer
    from train.recipes import NGRAM_RECIPE

    metrics = trainer.run(corpus, NGRAM_RECIPE, seed=1337, out=tmp_path / "ngram", verbose=0)
    print(f"ngram full corpus: test accuracy {metrics['test_accuracy']:.4f}, ROC AUC {metrics['roc_auc']:.4f}, "
          f"validation {metrics['best_val_accuracy']:.4f}, epochs {metrics['epochs_trained']} (kept {metrics['best_epoch']})")
    # 91.51% on AMD EPYC; the bar leaves 0.1 point for other CPUs' float summation order.
    assert metrics["test_accuracy"] >= 0.914
    config = json.loads((tmp_path / "ngram" / "config.json").read_text())
    assert config["data"]["validation_holds_out"] == "movies" and config["recipe"]["refit"] is True
    manifest = export_bundle(tmp_path / "ngram", tmp_path / "bundle", corpus, artifacts=["tflite-int8", "onnx-int8"])
    for name, a in manifest.artifacts.items():
        print(f"  {name}: {a.size_bytes:,} bytes, test accuracy {a.validation['test_accuracy']:.4f}, "
              f"test agreement {a.validation['test_label_agreement']:.4f}")
        assert a.size_bytes <= 1 << 20, name
        assert a.validation["test_accuracy"] >= 0.913, name
        assert a.validation["test_label_agreement"] >= 0.995, name
