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
    v = r["volume"]
    assert v["reviews"] == 10_000 and v["copies"] == 2 and v["identical_outputs"]
    assert set(v["runs"]) == {"--jobs 1", "--jobs 2", "--ray (2 workers)"}
    for run in v["runs"].values():
        assert run["reviews"] == 10_000 and run["reviews_per_s"] > 0 and run["peak_rss_kb"] > 10_000
        assert 0 < run["cpu_s"] < 600
    # the command scores too, beside one worker or two actors (which a file this short may be done without)
    assert len(v["runs"]["--jobs 1"]["worker_peak_rss_kb"]) == 0
    assert len(v["runs"]["--jobs 2"]["worker_peak_rss_kb"]) in (0, 1)
    assert len(v["runs"]["--ray (2 workers)"]["worker_peak_rss_kb"]) <= 2
    assert v["cores"] >= 1 and 0 < v["ray_over_jobs1_cpu_bound"] < 100
    assert v["max_scoring_process_peak_rss_kb"] >= v["runs"]["--jobs 2"]["peak_rss_kb"]
    assert v["ray_cluster_start_s"] > 0 and v["lookup_floor_reviews_per_s"] > v["runs"]["--jobs 1"]["reviews_per_s"]
    md = (out / "benchmark.md").read_text()
    assert "## Volume: 10,000 reviews" in md and "the reviews 2 times over" in md and "cannot exceed" in md
    assert "judged in full mode only on 10,000 reviews, not the goals' 100,000" in md
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
    v = {"runs": {}, "lookup_floor_reviews_per_s": 40_000.0, "keras_reviews": 256,
         "keras_predict_256_reviews_per_s": 4_000.0, "peers_reviews_per_s": {peer_models.FASTTEXT: 12_345.6}}
    assert f"| {peer_models.FASTTEXT}: its batch call on the same reviews, in memory (one process) | 12,346 |" \
        in volume.table(v)


def test_volume_reports_the_median_round_and_the_highest_memory():
    from benchmarks import volume

    runs = [{"seconds": s, "reviews": 10, "reviews_per_s": 10 / s, "peak_rss_kb": m, "worker_peak_rss_kb": w,
             "cpu_s": s + 0.5, "output_sha256": "a"} for s, m, w in [(3.0, 100 << 10, [5, 9]), (1.0, 300 << 10, [7, 7]), (2.0, 200 << 10, [6, 6])]]
    r = volume._median(runs)
    assert r["seconds"] == 2.0 and r["reviews_per_s"] == 5.0 and r["peak_rss_kb"] == 300 << 10
    assert r["worker_peak_rss_kb"] == [5, 9] and r["seconds_each"] == [3.0, 1.0, 2.0] and r["output_sha256"] == ["a"]
    v = {"runs": {"--jobs 1": r}, "lookup_floor_reviews_per_s": 1.0, "keras_reviews": 1,
         "keras_predict_256_reviews_per_s": 1.0}
    assert "| `--jobs 1` | 5 | 2.0 (1.0–3.0, 3 rounds) | 2.5 | 300 MiB |" in volume.table(v)


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
