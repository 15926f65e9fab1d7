"""The benchmark's ratios, its Markdown report and its plots."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from benchmarks.measure import KERAS, KERAS_PREDICT, LOOKUP_FLOOR
from benchmarks import volume
from benchmarks.stats import ratio
from train.plotting import pyplot, save

EXPLAIN_GOALS = {"exact": 3.0, "occlusion": 20.0}  # explain p50 / classify p50, by method
GOALS = {
    "runtime_e2e_over_lookup_floor": ("runtime end-to-end p50 / look-up floor p50", "<=", 1.5),
    "cold_start_runtime_over_tf": ("cold start: runtime.classify / TensorFlow classify", "<=", 0.1),
    "peak_memory_runtime_over_tf": ("peak memory: runtime.classify / TensorFlow classify", "<=", 0.2),
}


MAX_ACCURACY_DROP = 0.005  # a recommended artifact keeps the float model's accuracy within this


def recommend(result: dict, max_drop: float = MAX_ACCURACY_DROP, min_agreement: float = 0.99) -> str | None:
    """The fastest runtime candidate (end-to-end p50) that keeps the float model's accuracy."""
    acc = result["accuracy"]
    float_acc = acc[KERAS]["accuracy"]
    best = None
    for name, a in acc.items():
        key = f"runtime {name}"
        if key not in result["latency_e2e"]:
            continue
        if a["accuracy"] >= float_acc - max_drop and a["agreement_with_float"] >= min_agreement:
            p50 = result["latency_e2e"][key]["p50_us"]
            if best is None or p50 < best[1]:
                best = (name, p50)
    return best[0] if best else None


def ratios(result: dict, default: str) -> dict:
    """The ratios the goals are stated in, for the bundle's default artifact."""
    e2e, floors, acc = result["latency_e2e"], result["floors"], result["accuracy"]
    rt = e2e[f"runtime {default}"]["p50_us"]
    cold = result["cold_start"]
    sizes = {n.split(" @ ")[0]: a["size_bytes"] for n, a in acc.items() if a["size_bytes"]}
    # The single review against the floor is judged on the median of its rounds' ratios (the
    # two are timed in turns, review by review, in every round).
    rounds = [ratio(a, b) for a, b in zip(e2e[f"runtime {default}"]["round_p50_us"], floors[LOOKUP_FLOOR]["round_p50_us"])]
    values = {
        "runtime_e2e_over_lookup_floor": statistics.median(rounds),
        "runtime_e2e_over_split": ratio(rt, floors["lower().split()"]["p50_us"]),
        "keras_over_runtime_e2e": ratio(e2e[KERAS]["p50_us"], rt),
        "keras_predict_over_runtime_e2e": ratio(e2e[KERAS_PREDICT]["p50_us"], rt),
        "cold_start_runtime_over_tf": ratio(cold["runtime.classify"]["median_s"], cold["tensorflow classify"]["median_s"]),
        "peak_memory_runtime_over_tf": ratio(cold["runtime.classify"]["median_peak_rss_kb"],
                                             cold["tensorflow classify"]["median_peak_rss_kb"]),
        "tokenize_encode_over_split": ratio(floors["tokenize + encode (runtime)"]["p50_us"],
                                            floors["lower().split()"]["p50_us"]),
        "lookup_floor_over_split": ratio(floors[LOOKUP_FLOOR]["p50_us"], floors["lower().split()"]["p50_us"]),
        "keras_over_lookup_floor": ratio(e2e[KERAS]["p50_us"], floors[LOOKUP_FLOOR]["p50_us"]),
    }
    goals = dict(GOALS)
    cost = result.get("explanation_cost")
    if cost:
        values["explain_over_classify"] = ratio(cost["explain"]["p50_us"], cost["classify"]["p50_us"])
        goals["explain_over_classify"] = (f"explain ({cost['method']}, k={cost['k']}) p50 / classify p50", "<=",
                                          EXPLAIN_GOALS[cost["method"]])
    for fmt in ("tflite", "onnx"):
        if f"{fmt}-int8" in sizes and f"{fmt}-float32" in sizes:
            values[f"{fmt}_int8_size_over_float32"] = ratio(sizes[f"{fmt}-int8"], sizes[f"{fmt}-float32"])
    out = {"artifact": default}
    for key, v in values.items():
        entry = {"value": v}
        if key in goals:
            text, op, goal = goals[key]
            entry.update(goal=f"{op} {goal:g}", met=bool(v <= goal if op == "<=" else v >= goal), meaning=text)
        out[key] = entry
    out["runtime_e2e_over_lookup_floor"].update(rounds=len(rounds), ratios=rounds, paired=len(rounds) >= volume.PAIRED_ROUNDS,
                                                 pooled=ratio(rt, floors[LOOKUP_FLOOR]["p50_us"]))
    return out


def _save(fig, ax, path: Path, **legend) -> None:
    """Legend, layout, PNG, and the figure closed."""
    ax.legend(**legend)
    save(fig, path)


def plot_latency(result: dict, path: Path) -> None:
    plt = pyplot()
    rows = [(k, v, "tab:grey") for k, v in result["floors"].items()]
    rows += [(k, v, "tab:orange" if k.startswith("keras") else "tab:blue") for k, v in result["latency_e2e"].items()]
    rows.sort(key=lambda r: r[1]["p50_us"])
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.6))
    y = np.arange(len(rows))
    p50 = [r[1]["p50_us"] for r in rows]
    p99 = [r[1]["p99_us"] for r in rows]
    ax.barh(y, p50, color=[r[2] for r in rows], alpha=0.85)
    ax.scatter(p99, y, marker="|", s=200, color="black", zorder=3, label="p99")
    for yi, v in zip(y, p50):
        ax.text(v * 1.08, yi, f"{v:,.0f} µs" if v >= 10 else f"{v:.1f} µs", va="center", fontsize=8)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("single review, raw text to probability: p50 (bar) and p99 (|), microseconds, log scale")
    ax.set_title("End-to-end latency: runtime (blue), Keras float (orange), floors and peers (grey)")
    ax.grid(axis="x", alpha=0.3, which="both")
    _save(fig, ax, path, loc="lower right")


def plot_accuracy_size(result: dict, path: Path) -> None:
    """One marker per artifact (legend, not labels: equal artifacts would overprint)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 5.5))
    markers = "osD^vP*Xh"
    seen = []
    for name, a in result["accuracy"].items():
        artifact = name.split(" @ ")[0]
        if not a["size_bytes"] or artifact in seen:
            continue
        seen.append(artifact)
        ax.scatter(a["size_bytes"] / 1024, a["accuracy"] * 100, s=90, marker=markers[(len(seen) - 1) % len(markers)],
                   alpha=0.8, zorder=3, label=f"{artifact}: {a['accuracy'] * 100:.2f}%, {a['size_bytes'] / 1024:,.0f} KiB")
    float_acc = result["accuracy"][KERAS]["accuracy"] * 100
    ax.axhline(float_acc, color="tab:orange", linestyle="--", linewidth=1)
    points = MAX_ACCURACY_DROP * 100
    ax.axhspan(float_acc - points, float_acc, color="tab:orange", alpha=0.08, label=f"within {points:g} points of float")
    ax.set_xscale("log")
    ax.set_xlabel("model file size, KiB (log scale)")
    ax.set_ylabel("test accuracy, %")
    ax.set_ylim(float_acc - 1.8 * points, float_acc + points)
    n = result["accuracy"][KERAS]["reviews"]
    ax.set_title(f"Accuracy against size ({n:,} test reviews)")
    ax.grid(alpha=0.3, which="both")
    _save(fig, ax, path, fontsize=8, loc="lower left")


def plot_throughput(result: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, by_batch in result["throughput"].items():
        sizes = [int(b) for b in by_batch]
        style = "--" if name.startswith("keras") else "-"
        ax.plot(sizes, list(by_batch.values()), style, marker="o", label=name.replace("runtime ", ""))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([1, 32, 256], ["1", "32", "256"])
    ax.set_xlabel("batch size (reviews per call)")
    ax.set_ylabel("reviews per second, raw text to probability (log scale)")
    ax.set_title("Batch throughput on one process")
    ax.grid(alpha=0.3, which="both")
    _save(fig, ax, path, fontsize=7, ncol=2)


def plot_reliability(result: dict, path: Path) -> None:
    """The float model and each artifact (first engine of each) on one reliability diagram."""
    from train.calibration import plot_reliability as plot

    curves, seen = {}, set()
    for name, a in result["accuracy"].items():
        artifact = name.split(" @ ")[0]
        if "reliability" in a and artifact not in seen:
            seen.add(artifact)
            curves[artifact] = a["reliability"]
    n = result["accuracy"][KERAS]["reviews"]
    plot(curves, path, f"Reliability on {n:,} test reviews")


def _fmt_us(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def speed_lines(result: dict, latency_title: str, throughput_title: str, cold_title: str) -> list[str]:
    """The markdown tables of single-text latency, throughput and (when measured) cold start.

    Args:
        result: a benchmark result with ``floors``, ``latency_e2e``, ``latency_model``,
            ``throughput`` and optionally ``cold_start``.
        latency_title: the latency section's heading.
        throughput_title: the throughput section's heading.
        cold_title: the cold-start section's heading.

    Returns:
        The lines, starting with a blank one.
    """
    lines = ["", f"## {latency_title}", "",
             "| candidate | p50 | p90 | p99 | model only p50 |", "|---|---|---|---|---|"]
    for name, s in sorted({**result["floors"], **result["latency_e2e"]}.items(), key=lambda kv: kv[1]["p50_us"]):
        m = result["latency_model"].get(name)
        lines.append(f"| {name} | {_fmt_us(s['p50_us'])} | {_fmt_us(s['p90_us'])} | {_fmt_us(s['p99_us'])} | "
                     f"{_fmt_us(m['p50_us']) if m else ''} |")
    lines += ["", f"## {throughput_title}", "",
              "| candidate | batch 1 | batch 32 | batch 256 |", "|---|---|---|---|"]
    for name, t in result["throughput"].items():
        lines.append(f"| {name} | {t['1']:,.0f} | {t['32']:,.0f} | {t['256']:,.0f} |")
    if "cold_start" in result:
        lines += ["", f"## {cold_title}", "",
                  "| command | median s | min s | median peak RSS MiB |", "|---|---|---|---|"]
        for name, c in result["cold_start"].items():
            lines.append(f"| {name} | {c['median_s']:.3f} | {c['min_s']:.3f} | "
                         f"{c['median_peak_rss_kb'] / 1024:.1f} |")
    return lines


def markdown(result: dict) -> str:
    meta, r = result["meta"], result["ratios"]
    lines = [
        "# Benchmark report", "",
        f"{meta['date']} · {meta['machine']['cpu']} · {meta['machine']['cores']} cores · Python {meta['python']} · "
        f"mode `{meta['mode']}` · bundle `{meta['bundle']}` (manifest sha256 `{meta['manifest_sha256'][:12]}`)", "",
        "## Goals (default artifact `" + r["artifact"] + "`; volume: each engine alone)", "",
        "| ratio | measured | goal | judged on | met |", "|---|---|---|---|---|",
    ]
    for key, e in r.items():
        if isinstance(e, dict) and "goal" in e:
            lines.append(f"| {e['meaning']} | {e['value']:.3g} | {e['goal']} | {volume.judged_on(e)} | "
                         f"{'yes' if e['met'] else '**no**'} |")
    if "volume" in result:
        v = result["volume"]
        for engine, g in volume.goals(v):
            lines.append(f"| {g['what']}, `{engine}` | {g['value']:.3g} | {g['goal']} | {volume.judged_on(g, v)} | "
                         f"{volume.verdict(g, v)} |")
    for key in ("runtime_e2e_over_split", "keras_over_runtime_e2e", "keras_predict_over_runtime_e2e",
                "tokenize_encode_over_split", "lookup_floor_over_split",
                "keras_over_lookup_floor", "tflite_int8_size_over_float32", "onnx_int8_size_over_float32"):
        if key in r:
            lines.append(f"| {key.replace('_', ' ')} | {r[key]['value']:.3g} | | | |")
    lines += ["", f"Recommended default artifact (fastest that keeps accuracy): `{result['recommended_default']}`", "",
              "## Accuracy and size", "",
              "| candidate | accuracy | ROC AUC | ECE | agreement with float | max abs diff | size KiB |",
              "|---|---|---|---|---|---|---|"]
    for name, a in result["accuracy"].items():
        size = f"{a['size_bytes'] / 1024:,.1f}" if a["size_bytes"] else ""
        lines.append(f"| {name} | {a['accuracy']:.4f} | {a['roc_auc']:.4f} | {a['ece']:.4f} | "
                     f"{a['agreement_with_float']:.4f} | {a['max_abs_diff_vs_float']:.2e} | {size} |")
    k = result["accuracy"][KERAS]
    lines += ["", f"ECE: expected calibration error over {k['reliability']['bins']} equal-width bins of P(positive) "
              "(see reliability.png)." + (f" Every row, Keras included, has the bundle's temperature T = "
              f"{k['temperature']:.3f} (fitted on validation); without it the float model's ECE is "
              f"{k['ece_without_temperature']:.4f}." if k.get("temperature", 1.0) != 1.0 else "")]
    lines += _rewritten_lines(result)
    lines += _peer_lines(result)
    lines += speed_lines(result, "Single-review latency, raw text to probability (µs)",
                         "Throughput (reviews per second, raw text to probability)",
                         "Cold start of one classification, whole process")
    if "volume" in result:
        lines += volume.markdown(result["volume"])
    if result["skipped"]:
        lines += ["", "## Not run", ""] + [f"- {k}: {v}" for k, v in result["skipped"].items()]
    if "explanation_cost" in result:
        c = result["explanation_cost"]
        lines += ["", f"## Explanations ({r['artifact']}, {c['method']}, top {c['k']} each way, {c['reviews']} reviews)", "",
                  "| call | p50 µs | p90 µs | p99 µs |", "|---|---|---|---|"]
        for call in ("classify", "explain"):
            lines.append(f"| {call} | {_fmt_us(c[call]['p50_us'])} | {_fmt_us(c[call]['p90_us'])} | "
                         f"{_fmt_us(c[call]['p99_us'])} |")
    lines += ["", "![latency](latency.png)", "", "![accuracy against size](accuracy_size.png)", "",
              "![throughput](throughput.png)", "", "![reliability](reliability.png)", "",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()), ""]
    return "\n".join(lines)


def _rewritten_lines(result: dict) -> list[str]:
    """Each candidate's accuracy on the same test reviews written differently."""
    if "rewritten_text" not in result:
        return []
    w = result["rewritten_text"]
    lines = ["", f"## Text written differently ({w['how']}; the same test reviews)", "",
             "| candidate | as written | rewritten | change, points |", "|---|---|---|---|"]
    for name, acc in w["accuracy"].items():
        before = result["accuracy"][name]["accuracy"]
        lines.append(f"| {name} | {before:.4f} | {acc:.4f} | {(acc - before) * 100:+.2f} |")
    return lines


def _peer_lines(result: dict) -> list[str]:
    """The desktop peers beside the default artifact: same split, same test reviews, same run."""
    if "peers" not in result:
        return []
    key = result["ratios"]["artifact"]
    acc, lat = result["accuracy"].get(key), result["latency_e2e"].get(f"runtime {key}")
    through = result["throughput"].get(f"runtime {key}", {})
    lines = ["", "## Peers, trained on the same split (settings chosen on validation, refitted on all training reviews)", "",
             "| model | test accuracy | ROC AUC | size KiB | single review p50 µs | batch reviews/s | settings |",
             "|---|---|---|---|---|---|---|"]
    if acc and lat:
        best = max(through.values(), default=0.0)
        lines.append(f"| **{key}** (this toolkit's default) | {acc['accuracy']:.4f} | {acc['roc_auc']:.4f} | "
                     f"{acc['size_bytes'] / 1024:,.0f} | {lat['p50_us']:.1f} | {best:,.0f} | |")
    for name, p in result["peers"].items():
        lines.append(f"| {name} | {p['accuracy']:.4f} | {p['roc_auc']:.4f} | {p['size_bytes'] / 1024:,.0f} | "
                     f"{p['latency_p50_us']:.1f} | {p['batch_reviews_per_s']:,.0f} | `{p['settings']}` |")
    return lines
