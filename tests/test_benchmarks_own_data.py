"""``python -m benchmarks`` on a model trained on a user's own data (``python -m train --data``):
every artifact, the float model and the peers on the model's own split, with per-label
figures and a confusion matrix plot each.

A small four-label CSV is trained, exported and benchmarked as a user would (quick mode); the
pure functions are checked on their own.
"""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, ticket_rows, write_csv

LABELS = ["billing", "delivery", "login", "refund"]


def _rows(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    return ticket_rows(rng, n, LABELS, 10)


def _write(path, rows) -> None:
    write_csv(path, rows)


def _run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A four-label model trained from a CSV with a test CSV, and its bundle."""
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(11)
    _write(root / "train.csv", _rows(rng, 1200))
    _write(root / "test.csv", _rows(rng, 240))
    model, bundle = root / "model", root / "bundle"
    done = _run("train", "--data", str(root / "train.csv"), "--test", str(root / "test.csv"), "--out", str(model),
                "--time-budget", "5", "--max-epochs", "6", "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    done = _run("export", str(model), "--out", str(bundle))
    assert done.returncode == 0, done.stderr[-3000:]
    return root, model, bundle


def test_every_artifact_and_peer_gets_per_label_figures_and_a_confusion_plot(trained, tmp_path, monkeypatch):
    root, model, bundle = trained
    out = tmp_path / "bench"
    done = _run("benchmarks", "--bundle", str(bundle), "--model-dir", str(model), "--out", str(out), "--quick")
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads((out / "benchmark.json").read_text())
    splits = json.loads((model / "splits.json").read_text())
    test_ids = splits["test_ids"]
    assert r["data"]["labels"] == LABELS and r["data"]["test_examples"] == len(test_ids) == 240
    assert r["data"]["test_ids_sha256"] == hashlib.sha256("\n".join(test_ids).encode()).hexdigest()
    artifacts = json.loads((bundle / "manifest.json").read_text())["artifacts"]
    for name in artifacts:
        assert any(k.startswith(name + " @") for k in r["accuracy"]), name
    rows = {**r["accuracy"], **{f"peer: {k}": v for k, v in r["peers"].items()}}
    assert len(r["peers"]) == 2
    for name, a in rows.items():
        assert a["examples"] == 240, name
        assert set(a["per_label"]) == set(LABELS), name
        assert sum(p["support"] for p in a["per_label"].values()) == 240, name
        cm = np.array(a["confusion_matrix"]["rows_true_cols_predicted"])
        assert cm.shape == (4, 4) and cm.sum() == 240, name
        assert a["accuracy"] == pytest.approx(np.trace(cm) / 240), name
        assert a["macro_f1"] == pytest.approx(np.mean([p["f1"] for p in a["per_label"].values()])), name
        png = out / r["confusion_plots"][name]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.name in (out / "benchmark.md").read_text(), name
    for name, p in r["peers"].items():  # trained on the model's own split
        assert p["test_examples"] == len(test_ids), name
        assert p["training_examples"] == len(splits["train_ids"]) + len(splits["validation_ids"]), name
        assert p["validation_examples"] == len(splits["validation_ids"]), name
        assert p["accuracy"] > 1 / len(LABELS), name
    float_acc = r["accuracy"]["keras float32"]["accuracy"]
    assert float_acc > 0.5
    md = (out / "benchmark.md").read_text()
    assert "## Not run" in md and "volume" in r["not_run"]
    assert "volume" not in r
    for lab in LABELS:  # few labels: a column each
        assert f"| {lab} |" in md.splitlines()[md.splitlines().index("## Per label (precision / recall / F1; "
                                                                     "support = test examples)") + 2]
    from benchmarks import own_data

    monkeypatch.setattr(own_data, "WIDE_TABLE_LABELS", 2)
    many = own_data.markdown(r).splitlines()  # many labels: a row each, with its support and F1s
    for lab in LABELS:
        row = next(x for x in many if x.startswith(f"| {lab} | "))
        f1 = r["accuracy"]["keras float32"]["per_label"][lab]["f1"]
        assert row.split(" | ")[1] == str(r["data"]["test_examples"] // 4) and f"{f1:.3f}" in row


def test_a_changed_data_file_is_refused_in_one_line(trained, tmp_path):
    root, model, bundle = trained
    changed = tmp_path / "model"
    import shutil

    shutil.copytree(model, changed)
    config = json.loads((changed / "config.json").read_text())
    config["data"]["files"]["test"]["sha256"] = "0" * 64
    (changed / "config.json").write_text(json.dumps(config))
    done = _run("benchmarks", "--bundle", str(bundle), "--model-dir", str(changed), "--out", str(tmp_path / "o"),
                "--quick")
    assert done.returncode == 4, done.stderr[-2000:]
    lines = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "changed since" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_figures_of_two_labels_use_the_threshold_and_of_more_the_top_label():
    from benchmarks.own_data import as_columns, figures

    p = np.array([0.2, 0.6, 0.7])
    cols = as_columns(p, 2)
    assert cols.shape == (3, 2) and np.allclose(cols.sum(axis=1), 1)
    f = figures(cols, np.array([0, 0, 1]), ("no", "yes"), threshold=0.65)
    assert f["accuracy"] == 1.0 and f["confusion_matrix"]["rows_true_cols_predicted"] == [[2, 0], [0, 1]]
    f = figures(cols, np.array([0, 0, 1]), ("no", "yes"), threshold=0.5)
    assert f["accuracy"] == pytest.approx(2 / 3) and f["per_label"]["no"]["recall"] == 0.5
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    f = figures(probs, np.array([1, 0, 1]), ("a", "b", "c"), None, np.array([1, 0, 2]), probs)
    assert f["accuracy"] == pytest.approx(2 / 3) and f["agreement_with_float"] == 1.0
    assert f["per_label"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_peers_give_one_column_per_label_in_label_order():
    from benchmarks.peer_models import FastTextPeer, SklearnPeer

    rng = np.random.default_rng(3)
    rows = _rows(rng, 400)
    texts = [t for t, _ in rows]
    y = np.array([LABELS.index(lab) for _, lab in rows])
    for peer in (SklearnPeer(4.0, len(LABELS)), FastTextPeer(0.5, 5, n_labels=len(LABELS))):
        probs = peer.fit(texts, y).label_probabilities(texts[:50])
        assert probs.shape == (50, 4) and np.allclose(probs.sum(axis=1), 1, atol=1e-3), type(peer).__name__
        assert np.mean(probs.argmax(axis=1) == y[:50]) > 0.8, type(peer).__name__
