"""The benchmark: statistics helpers, and quick mode producing every section with sane values."""

import json

import numpy as np
import pytest

from benchmarks.stats import interleaved, ratio, summarize, throughput
from conftest import run_quick_benchmark


def test_summarize_percentiles_in_microseconds():
    s = summarize([i / 1e6 for i in range(1, 101)])  # 1..100 µs
    assert s["n"] == 100 and s["min_us"] == pytest.approx(1.0)
    assert s["p50_us"] == pytest.approx(50.5) and s["p90_us"] == pytest.approx(90.1)
    assert s["p99_us"] == pytest.approx(99.01) and s["mean_us"] == pytest.approx(50.5)
    with pytest.raises(ValueError):
        summarize([])


def test_ratio():
    assert ratio(6.0, 2.0) == 3.0 and ratio(1.0, 0.0) == float("inf")


def test_interleaved_rotates_order_and_counts_every_call():
    calls = []
    cands = {name: (lambda x, n=name: calls.append((n, x))) for name in "abc"}
    samples = interleaved(cands, [0, 1, 2, 3], repeats=2, warmup=0)
    assert {k: len(v) for k, v in samples.items()} == {"a": 8, "b": 8, "c": 8}
    firsts = [calls[i][0] for i in range(0, len(calls), 3)]
    assert firsts[:4] == ["a", "b", "c", "a"]  # each input starts with the next candidate


def test_throughput_counts_items_per_second():
    import time

    rate = throughput(lambda b: time.sleep(0.001 * len(b)), list(range(64)), 8, 0.05)
    assert 100 < rate < 1000  # 1 ms of sleep per item: never faster, slower only by overheads


@pytest.mark.corpus
def test_quick_mode_writes_every_section(small_bundle, small_model, tmp_path):
    out = tmp_path / "bench"
    r = run_quick_benchmark(small_bundle, small_model, out, "--volume-copies", "2")
    for section in ("meta", "accuracy", "latency_e2e", "floors", "latency_model", "throughput", "cold_start",
                    "ratios", "recommended_default"):
        assert section in r, section
    artifacts = json.loads((small_bundle / "manifest.json").read_text())["artifacts"]
    for name in artifacts:
        assert any(k.startswith(name + " @") for k in r["accuracy"]), name
        assert any(k.startswith(f"runtime {name} @") for k in r["latency_e2e"]), name
    for a in r["accuracy"].values():
        assert 0.5 < a["accuracy"] <= 1 and 0.5 < a["roc_auc"] <= 1 and 0 <= a["agreement_with_float"] <= 1
        assert 0 <= a["ece"] < 0.2 and sum(a["reliability"]["count"]) == a["reviews"]
    manifest = json.loads((small_bundle / "manifest.json").read_text())
    keras = r["accuracy"]["keras float32"]
    assert keras["temperature"] == manifest["calibration"]["temperature"]
    if keras["temperature"] != 1.0:  # the temperature was chosen on validation; here it shows on test
        assert keras["ece_without_temperature"] != keras["ece"]
    cost = r["explanation_cost"]
    assert cost["method"] == "occlusion" and cost["explain"]["p50_us"] > cost["classify"]["p50_us"] > 0
    assert r["ratios"]["explain_over_classify"]["goal"] == "<= 20"
    for stats in [*r["latency_e2e"].values(), *r["floors"].values(), *r["latency_model"].values()]:
        assert 0 < stats["min_us"] <= stats["p50_us"] <= stats["p90_us"] <= stats["p99_us"]
    for by_batch in r["throughput"].values():
        assert set(by_batch) == {"1", "32", "256"} and all(v > 0 for v in by_batch.values())
    for c in r["cold_start"].values():
        assert c["median_s"] > 0 and c["median_peak_rss_kb"] > 10_000
        assert c["output"].split("\t")[0] in ("positive", "negative")
    assert r["cold_start"]["runtime.classify"]["output"].split("\t")[0] in ("positive", "negative")
    for key in ("runtime_e2e_over_split", "keras_over_runtime_e2e", "cold_start_runtime_over_tf",
                "peak_memory_runtime_over_tf"):
        assert np.isfinite(r["ratios"][key]["value"]) and r["ratios"][key]["value"] > 0
    assert r["ratios"]["lookup_floor_over_split"]["value"] > 1  # split plus a look-up per word
    assert r["meta"]["machine"]["cores"] >= 1 and r["meta"]["manifest_sha256"]
    single = r["ratios"]["runtime_e2e_over_lookup_floor"]  # judged on paired rounds, in quick mode too
    assert single["paired"] and single["rounds"] == len(single["ratios"]) >= 5
    assert single["value"] == pytest.approx(float(np.median(single["ratios"])))
    v = r["volume"]
    assert v["reviews"] == 10_000 and v["copies"] == 2 and not v["judged"]
    assert set(v["engines"]) == {"litert", "onnxruntime"}  # each installed engine alone, on its own artifact
    assert {k: e["artifact"] for k, e in v["engines"].items()} == {"litert": "tflite-int8", "onnxruntime": "onnx-int8"}
    for engine, e in v["engines"].items():
        assert e["identical_outputs"] and "one_copy" not in e  # one-copy figures: full mode only
        assert set(e["runs"]) == {"--jobs 1", "--jobs 2", "--ray (2 workers)"}
        # an install with only this engine: no process of its runs imported or mapped another
        assert e["engines_loaded"] == [engine], e["engines_loaded"]
        assert next(g for g in e["goals"] if g["key"] == "engine_alone")["met"]
        for run in e["runs"].values():
            assert run["reviews"] == 10_000 and run["reviews_per_s"] > 0 and run["peak_rss_kb"] > 10_000
            assert 0 < run["cpu_s"] < 600 and run["cpu_over_wall"] == pytest.approx(run["cpu_s"] / run["seconds"])
            assert run["rounds"] == 1 and run["engines_loaded"] == [engine]
            assert 0 < run["peak_private_kb"] <= run["peak_rss_kb"]  # own memory is part of the total
            assert len(run["worker_peak_private_kb"]) == len(run["worker_peak_rss_kb"])
            assert all(0 < own <= total for own, total in zip(run["worker_peak_private_kb"], run["worker_peak_rss_kb"]))
        # the command scores too, beside one worker or two actors (which a file this short may be done without)
        assert len(e["runs"]["--jobs 1"]["worker_peak_rss_kb"]) == 0
        assert len(e["runs"]["--jobs 2"]["worker_peak_rss_kb"]) in (0, 1)
        assert len(e["runs"]["--ray (2 workers)"]["worker_peak_rss_kb"]) <= 2
        assert e["runs"]["--ray (2 workers)"]["cluster_start_s"] > 0
        assert e["cores"] >= 1 and 0 < e["ray_over_jobs1_cpu_bound"] < 100
        assert e["max_ray_worker_private_kb"] <= e["max_ray_worker_peak_rss_kb"]
        assert e["max_scoring_process_peak_rss_kb"] >= e["runs"]["--jobs 2"]["peak_rss_kb"]
        assert e["lookup_floor_reviews_per_s"] > e["runs"]["--jobs 1"]["reviews_per_s"]
        paired = [g for g in e["goals"] if "ratios" in g]
        assert {g["key"] for g in paired} == {"jobs2_over_jobs1", "ray_over_jobs1", "single_over_floor_target"}
        for g in paired:  # quick mode judges no volume goal, so takes one round of each
            assert g["rounds"] == len(g["ratios"]) == 1 and not g["paired"]
    md = (out / "benchmark.md").read_text()
    rewritten = r["rewritten_text"]  # the same test reviews, written as a tokenized corpus writes them
    assert set(rewritten["accuracy"]) == set(r["accuracy"]) - {"tutorial pipeline (lower().split())"}
    assert all(0.5 < acc <= 1 for acc in rewritten["accuracy"].values())
    assert "## Text written differently (lower-cased" in md
    assert "## Volume: 10,000 reviews" in md and "the reviews 2 times over" in md and "cannot exceed" in md
    assert "### `litert`: `tflite-int8`" in md and "### `onnxruntime`: `onnx-int8`" in md
    assert md.count("| run | reviews/s | seconds | CPU s (÷ wall) |") == 2  # one volume table per engine
    assert "judged in full mode only on 10,000 reviews, not the goals' 1,000,000" in md
    assert "median of 5 paired rounds (" in md
    assert "## Goals" in md and "## Cold start" in md
    assert "## Explanations" in md and "| ECE |" in md
    for png in ("latency.png", "accuracy_size.png", "throughput.png", "volume.png", "reliability.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_peers_bulk_rates_use_their_batch_call_in_bounded_chunks_and_show_in_the_volume_table():
    from benchmarks import peer_models, volume

    class Peer:
        def __init__(self):
            self.calls = []

        def probabilities(self, texts):
            self.calls.append(len(texts))
            return np.zeros(len(texts))

    peer = Peer()
    assert peer_models.bulk_rate(peer, ["a review"] * 25_000) > 0
    assert peer.calls == [10_000, 10_000, 5_000]
    v = {"keras_reviews": 256, "keras_predict_256_reviews_per_s": 4_000.0,
         "peers_reviews_per_s": {peer_models.FASTTEXT: 12_345.6}}
    assert f"| {peer_models.FASTTEXT}: its batch call on the same reviews, in memory | 12,346 |" \
        in volume.reference_table(v)


def test_volume_reports_the_median_round_and_the_highest_memory():
    from benchmarks import volume

    runs = [{"seconds": s, "reviews": 10, "reviews_per_s": 10 / s, "peak_rss_kb": m, "peak_private_kb": m // 2,
             "worker_peak_rss_kb": w, "worker_peak_private_kb": [x - 1024 for x in w], "cpu_s": s + 0.5,
             "engines_loaded": e, "output_sha256": "a"}
            for s, m, w, e in [(3.0, 100 << 10, [5 << 10, 9 << 10], ["litert"]), (1.0, 300 << 10, [7 << 10, 7 << 10], []),
                               (2.0, 200 << 10, [6 << 10, 6 << 10], ["litert"])]]
    r = volume._median(runs)
    assert r["seconds"] == 2.0 and r["reviews_per_s"] == 5.0 and r["peak_rss_kb"] == 300 << 10
    assert r["peak_private_kb"] == 150 << 10 and r["engines_loaded"] == ["litert"]
    assert r["worker_peak_rss_kb"] == [5 << 10, 9 << 10]  # the workers of one round, the highest
    assert r["worker_peak_private_kb"] == [4 << 10, 8 << 10] and r["max_worker_private_kb"] == 8 << 10
    assert r["seconds_each"] == [3.0, 1.0, 2.0] and r["output_sha256"] == ["a"]
    assert "| `--jobs 1` | 5 | 2.0 (1.0–3.0, 3 rounds) | 2.5 (1.25) | 300 (150) | 5 (4), 9 (8) | litert |" \
        in volume.table({"--jobs 1": r}, 40.0)


def _fake_runs(rates: dict[str, float], calls: list[str]):
    def runner(name):
        calls.append(name)
        return {"reviews_per_s": rates[name]}

    def floor():
        calls.append("floor")
        return rates["floor"]

    return runner, floor


def test_goals_near_their_bar_are_judged_on_the_median_of_five_rounds_in_turns():
    from benchmarks import volume

    runs = ["--jobs 1", "--jobs 2", volume.RAY_RUN]
    # --jobs 2 at 1.75x (within 10% of 1.7), Ray at 1.0x (far below 1.5), one process at 1.2 (far above 1)
    rates = {"--jobs 1": 100.0, "--jobs 2": 175.0, volume.RAY_RUN: 100.0, "floor": 125.0}
    calls: list[str] = []
    done, floors, goals = volume.paired_rounds(*_fake_runs(rates, calls), runs, judged=True)
    first = ["--jobs 1", "--jobs 2", volume.RAY_RUN, "floor"]
    assert calls == first + (["--jobs 2", "--jobs 1"] + ["--jobs 1", "--jobs 2"]) * 2  # in turns, each round reversed
    assert len(done["--jobs 1"]) == len(done["--jobs 2"]) == 5 and len(done[volume.RAY_RUN]) == 1 and len(floors) == 1
    j = goals["jobs2_over_jobs1"]
    assert j["near_bar"] and j["paired"] and j["rounds"] == 5 and j["ratios"] == [1.75] * 5 and j["met"]
    ray, single = goals["ray_over_jobs1"], goals["single_over_floor_target"]
    assert not ray["near_bar"] and ray["rounds"] == 1 and not ray["paired"] and not ray["met"]
    assert single["rounds"] == 1 and single["value"] == pytest.approx(1.2) and single["met"]


def test_the_paired_verdict_is_the_median_ratio_of_the_rounds():
    from benchmarks import volume

    seq = iter([100.0, 160.0, 100.0, 180.0, 90.0, 150.0, 100.0, 175.0, 100.0, 171.0])  # jobs1, jobs2 by turns
    order: list[str] = []

    def runner(name):
        order.append(name)
        return {"reviews_per_s": next(seq)}

    done, _, goals = volume.paired_rounds(runner, lambda: 1.0, ["--jobs 1", "--jobs 2"], judged=True)
    assert order == ["--jobs 1", "--jobs 2", "--jobs 2", "--jobs 1", "--jobs 1", "--jobs 2", "--jobs 2", "--jobs 1",
                     "--jobs 1", "--jobs 2"]
    g = goals["jobs2_over_jobs1"]  # rounds' ratios 1.6, 1/0.18*0.1=0.556.., 150/90, 100/175*... in run order
    assert g["rounds"] == 5 and g["paired"] and g["value"] == pytest.approx(sorted(g["ratios"])[2])
    assert "ray_over_jobs1" not in goals  # no Ray run, no Ray goal


def test_quick_mode_takes_one_round_even_near_the_bar():
    from benchmarks import volume

    rates = {"--jobs 1": 100.0, "--jobs 2": 171.0, "floor": 150.0}
    calls: list[str] = []
    _, _, goals = volume.paired_rounds(*_fake_runs(rates, calls), ["--jobs 1", "--jobs 2"], judged=False)
    assert calls == ["--jobs 1", "--jobs 2", "floor"]
    assert all(g["rounds"] == 1 and not g["paired"] for g in goals.values())
    v = {"judged": False, "reviews": 10_000}
    assert volume.verdict(goals["jobs2_over_jobs1"], v) == "judged in full mode only on 10,000 reviews, not the goals' 1,000,000"
    assert volume.judged_on(goals["jobs2_over_jobs1"], v) == "1 round (1.71)"


def test_each_engine_runs_an_artifact_of_its_own_format(monkeypatch):
    from types import SimpleNamespace

    from benchmarks import volume

    def bundle(default, names):
        arts = {n: SimpleNamespace(format=n.partition("-")[0]) for n in names}
        return SimpleNamespace(manifest=SimpleNamespace(default_artifact=default), artifacts=arts)

    monkeypatch.setattr(volume, "installed_engines", lambda: ["litert", "tflite-runtime", "onnxruntime"])
    chosen, skipped = volume.engine_artifacts(bundle("tflite-int8", ["tflite-float32", "tflite-int8", "onnx-float32",
                                                                     "onnx-int8"]))
    assert chosen == {"litert": "tflite-int8", "tflite-runtime": "tflite-int8", "onnxruntime": "onnx-int8"}
    chosen, _ = volume.engine_artifacts(bundle("tflite-float32", ["tflite-float32", "onnx-dynamic-int8", "onnx-float32"]))
    assert chosen["onnxruntime"] == "onnx-float32"  # the default's precision
    chosen, skipped = volume.engine_artifacts(bundle("tflite-int8", ["tflite-int8"]))
    assert "onnxruntime" not in chosen and skipped == {"onnxruntime": "the bundle has no onnx artifact"}


def test_probe_names_the_engines_the_runtime_knows_and_its_report_reads_back():
    from benchmarks import probe
    from runtime.engines.base import ENGINES

    assert set(probe.ENGINE_PACKAGES) == {module.partition(".")[0] for _, module, _ in ENGINES.values()}
    r = probe.report("warning: x\nENGINE_MODULES onnxruntime\nCPU_S 1.250\nPEAK_RSS_KB 2048\n")
    assert r == {"engine_modules": ["onnxruntime"], "cpu_s": 1.25, "peak_rss_kb": 2048}
    assert probe.report("ENGINE_MODULES -\nCPU_S 0.1\nPEAK_RSS_KB 1\n")["engine_modules"] == []


def test_a_process_memory_and_mapped_engines_are_read_from_proc():
    import os

    import onnxruntime  # noqa: F401  (maps its native library into this process)

    from benchmarks import volume

    hwm, own = volume._memory_kb(os.getpid())
    assert 0 < own <= hwm
    assert "onnxruntime" in volume.engines_mapped(os.getpid())
    assert volume._memory_kb(2**22 + 12345) == (0, 0) and volume.engines_mapped(2**22 + 12345) == set()


def test_round_p50s_splits_interleaved_timings_into_rounds():
    from benchmarks.stats import round_p50s

    assert round_p50s([1e-6, 3e-6, 10e-6, 30e-6], 2) == pytest.approx([2.0, 20.0])
    with pytest.raises(ValueError):
        round_p50s([1e-6] * 5, 2)


def test_repeat_file_writes_the_content_that_many_times_in_pieces(tmp_path):
    from benchmarks.volume import repeat_file, write_lines_file

    path = tmp_path / "reviews.txt"
    assert write_lines_file(["a  fine\nfilm", "awful", "meh"], path) == 3
    once = path.read_bytes()
    assert once == b"a fine film\nawful\nmeh\n"
    repeat_file(path, 3, piece=4)
    assert path.read_bytes() == once * 3
    repeat_file(path, 1)
    assert path.read_bytes() == once * 3


def test_a_ray_cluster_that_does_not_start_is_tried_twice_then_one_line(monkeypatch):
    import subprocess

    from benchmarks import volume

    calls = []

    def fake_ray(self, *args):
        calls.append(args[0])
        return subprocess.CompletedProcess(args, 1, "", "starting\nGCS did not come up\nbye\n")

    monkeypatch.setattr(volume.RayCluster, "_ray", fake_ray)
    with pytest.raises(volume.ClusterError) as caught:
        with volume.RayCluster():
            pass
    assert calls == ["start", "stop", "start", "stop"]
    message = str(caught.value)
    assert "\n" not in message and "GCS did not come up" in message and "twice" in message


def test_a_ray_start_that_hangs_is_retried_on_a_new_port_then_one_line(monkeypatch):
    import subprocess

    from benchmarks import volume

    ports = []

    def hanging(self, *args):
        if args[0] == "start":
            ports.append(self.port)
            raise subprocess.TimeoutExpired(["ray", *args], 300)
        return subprocess.CompletedProcess(args, 0, "", "")

    free = iter(range(5001, 5010))
    monkeypatch.setattr(volume, "_free_port", lambda: next(free))
    monkeypatch.setattr(volume.RayCluster, "_ray", hanging)
    cluster = volume.RayCluster()
    with pytest.raises(volume.ClusterError, match="did not finish in 300 s"):
        with cluster:
            pass
    assert ports == [5001, 5002] and cluster.env["RAY_ADDRESS"] == "127.0.0.1:5002"


def test_nb_weighted_peer_folds_its_ratio_into_the_weights_and_takes_two_labels_only():
    """The NB-LR anchor scores with ``x @ (coef * r) + b``: the same probabilities as the
    regression fitted on the ratio-scaled features."""
    from sklearn.linear_model import LogisticRegression

    from benchmarks.peer_models import NbLrPeer

    rng = np.random.default_rng(5)
    good, bad, shared = ["fine", "great", "loved it"], ["awful", "dull", "not good"], "the film was a plot i".split()
    texts, y = [], []
    for i in range(600):
        label = i % 2
        words = list(rng.choice(shared, 5)) + [str(rng.choice((bad, good)[label]))] * 2
        texts.append(" ".join(rng.permutation(words)))
        y.append(label)
    y = np.array(y)
    peer = NbLrPeer(1.0).fit(texts[:500], y[:500])
    probs = peer.label_probabilities(texts[500:])
    assert probs.shape == (100, 2) and np.allclose(probs.sum(axis=1), 1)
    assert np.mean(probs.argmax(axis=1) == y[500:]) > 0.9
    x = peer.vectorizer.transform(texts[:500]).tocsr()
    p = np.asarray(x[y[:500] == 1].sum(axis=0)).ravel() + 1
    q = np.asarray(x[y[:500] == 0].sum(axis=0)).ravel() + 1
    r = np.log((p / p.sum()) / (q / q.sum()))
    lr = LogisticRegression(C=1.0, solver="liblinear", dual=True, max_iter=1000).fit(x.multiply(r).tocsr(), y[:500])
    x_test = peer.vectorizer.transform(texts[500:]).multiply(r).tocsr()
    assert np.allclose(probs[:, 1], lr.predict_proba(x_test)[:, 1], atol=1e-5)
    assert peer.size_bytes() > 4 * (1 << 23)  # every hashed column's float32 weight
    with pytest.raises(ValueError, match="two labels"):
        NbLrPeer(1.0, n_labels=3)


def test_rewrite_writes_a_review_as_a_tokenized_corpus_would():
    from benchmarks.rewrite import rewrite

    assert rewrite("Costner's film didn't work.<br /><br />I can't say 'great' (at all)!") == \
        "costner 's film did n't work . i ca n't say ' great ' ( at all ) !"
    assert rewrite("It's the actors' fault") == "it 's the actors ' fault"
    assert rewrite("already lower-cased , split .") == "already lower-cased , split ."
    assert rewrite("the 'end'") == "the ' end '"


def test_rewritten_accuracy_scores_every_candidate_on_the_rewritten_reviews():
    from benchmarks import measure
    from benchmarks.rewrite import rewrite

    class Scorer:
        def __init__(self, words: set[str]):
            self.words, self.seen = words, []

        def predict_proba(self, texts):
            self.seen += list(texts)
            return np.array([float(bool(self.words & set(t.split()))) for t in texts])

    texts = ["It didn't work.", "Great<br />film", "GREAT fun"]
    labels = np.array([0, 1, 1])
    keras, clf = Scorer({"great"}), Scorer({"n't", "great"})
    acc = measure.rewritten_accuracy({"tflite-int8 @ litert": clf}, keras, texts, labels, 0.5)
    assert keras.seen == clf.seen == [rewrite(t) for t in texts]
    assert acc == {"keras float32": 1.0, "tflite-int8 @ litert": pytest.approx(2 / 3)}
