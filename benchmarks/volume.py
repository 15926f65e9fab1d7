"""Volume: reviews per second when one file holds them all, by number of workers.

Every review of the archive (train, test and unsup: 100,000) is written as one lines file
and classified by ``runtime.classify --lines`` as a user runs it: ``--jobs 1``, ``--jobs 2``
(the command and one worker process score) and ``--ray`` with two actors on a cluster
started beforehand (its start is timed separately, as a cluster outlives one job; the command
scores what the actors have no room for). Each run's peak memory and CPU time are reported by
the command itself and read from /proc for each of its workers; the outputs must be
byte-identical. Beside them, the look-up floor's rate over the same reviews (in a process of
its own) and Keras ``predict`` at batch 256.

With ``--volume-copies N`` the file holds the reviews N times over: a longer job, in which
starting the workers and Ray's actors counts for less (the goals are stated for one copy).

On a shared machine one run can be slowed by a neighbour, so in full mode every run is
repeated (``rounds``: the process runs and the floor in turn, then the Ray runs); a run
reports its median round, its fastest and slowest, and the highest peak memory of its rounds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from benchmarks.peer_models import bulk_rate
from runtime.ray_workers import LOCAL_ONLY
from train.model_dir import VOCAB_FILE, ModelDir

ROOT = Path(__file__).resolve().parent.parent
RAY_WORKERS = 2


def write_lines_file(texts: Iterable[str], path: Path, limit: int | None = None) -> int:
    """One review per line (runs of whitespace, newlines included, become one space)."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for text in texts:
            if limit is not None and n >= limit:
                break
            f.write(" ".join(text.split()) + "\n")
            n += 1
    return n


def repeat_file(path: Path, copies: int, piece: int = 1 << 20) -> None:
    """Make ``path`` hold its own content ``copies`` times over (read a piece at a time)."""
    with open(path, "rb") as once, open(path, "ab") as f:
        size = os.fstat(once.fileno()).st_size
        for _ in range(copies - 1):
            once.seek(0)
            left = size
            while left:
                data = once.read(min(piece, left))
                f.write(data)
                left -= len(data)


def _peak_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _workers(pid: int, ray: bool) -> tuple[list[int], list[int]]:
    """Worker processes of a classify run: its spawned children, and (if ``ray``) Ray's scorer
    actors, found by reading every process's command line (the benchmark's own CPU time comes
    out of the cores the run uses, so a run without Ray is spared the search)."""
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    actors = [int(p.name) for p in Path("/proc").iterdir()
              if p.name.isdigit() and _cmdline(int(p.name)).startswith(b"ray::BlockScorer")] if ray else []
    return [c for c in found if b"spawn_main" in _cmdline(c)], actors


def _cpu_s(pid: int) -> float:
    """User and system seconds a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def classify_run(lines: Path, args: list[str], out: Path, env: dict | None = None) -> dict:
    """One ``runtime.classify --lines`` run: seconds, rate, peak memory of it and of each
    worker, and the CPU seconds of all its scoring processes (Ray actors' as last seen every
    50 ms; Ray's raylet and GCS not counted)."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "probe.py"), "runtime.classify", "--lines", *args, str(lines),
           "--out", str(out)]
    peaks: dict[int, int] = {}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    actor_cpu: dict[int, float] = {}
    while proc.poll() is None:
        children, actors = _workers(proc.pid, "--ray" in args)
        for w in children + actors:
            peaks[w] = max(peaks.get(w, 0), _peak_kb(w))
        for a in actors:
            actor_cpu[a] = max(actor_cpu.get(a, 0.0), _cpu_s(a))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"runtime.classify {' '.join(args)} failed ({proc.returncode}): {err.strip()[-500:]}")
    n = sum(1 for _ in open(out, "rb"))
    return {"seconds": seconds, "reviews": n, "reviews_per_s": n / seconds,
            "peak_rss_kb": int(err.strip().splitlines()[-1].rpartition(" ")[2]),
            "cpu_s": float(err.strip().splitlines()[-2].rpartition(" ")[2]) + sum(actor_cpu.values()),
            "worker_peak_rss_kb": sorted(v for v in peaks.values() if v),
            "output_sha256": hashlib.sha256(out.read_bytes()).hexdigest()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    """A two-CPU Ray cluster started with ``ray start``, as one would start a real one, but on
    the loopback interface only, with a token of its own; ``env`` is what a client needs."""

    def __init__(self, cpus: int = RAY_WORKERS):
        self.ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
        self.port = _free_port()
        self.cpus = cpus
        self.start_seconds = 0.0
        self.env = {**LOCAL_ONLY, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
                    "RAY_ADDRESS": f"127.0.0.1:{self.port}"}

    def _ray(self, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in {**os.environ, **self.env}.items() if k != "RAY_ADDRESS"}
        return subprocess.run([self.ray, *args], env=env, capture_output=True, text=True, timeout=300)

    def __enter__(self) -> RayCluster:
        t0 = time.perf_counter()
        started = self._ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                            f"--num-cpus={self.cpus}", "--include-dashboard=false", "--disable-usage-stats")
        if started.returncode != 0:
            raise RuntimeError(f"ray start failed: {started.stderr.strip()[-500:]}")
        self.start_seconds = time.perf_counter() - t0
        return self

    def __exit__(self, *exc) -> None:
        self._ray("stop", "--force")


def _ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


_FLOOR = """
import sys, time
from benchmarks.peers import LookupFloor
from runtime.vocab import Vocabulary
floor = LookupFloor(Vocabulary.load(sys.argv[2]))
texts = open(sys.argv[1], encoding="utf-8").read().splitlines()
t0 = time.perf_counter()
for t in texts:
    floor(t)
print(len(texts) / (time.perf_counter() - t0))
"""


def floor_rate(lines: Path, model_dir: ModelDir) -> float:
    """Reviews per second of the look-up floor over the lines file, in a fresh process as the
    runs it is compared with are (in the benchmark's own process, which holds TensorFlow, the
    corpus and the peers, it ranged from 26,577 to 41,574 reviews/s across full runs)."""
    done = subprocess.run([sys.executable, "-c", _FLOOR, str(lines), str(model_dir.path / VOCAB_FILE)], cwd=ROOT,
                          capture_output=True, text=True, check=True, timeout=600)
    return float(done.stdout.strip().splitlines()[-1])


def keras_rate(texts: list[str], model_dir: ModelDir, batch: int = 256) -> float:
    """Reviews per second of Keras ``predict`` at batch 256, encoding included."""
    model = model_dir.load_model()
    encoder = model_dir.encoder
    model.predict(encoder.keras_inputs(texts[:batch]), batch_size=batch, verbose=0)
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        model.predict(encoder.keras_inputs(texts[i : i + batch]), batch_size=batch, verbose=0)
    return len(texts) / (time.perf_counter() - t0)


def _median(runs: list[dict]) -> dict:
    """One run's figures from its rounds: the median round's time, the highest peak memory."""
    by_time = sorted(runs, key=lambda r: r["seconds"])
    middle = by_time[len(by_time) // 2]
    return {**middle, "rounds": len(runs), "seconds_each": [r["seconds"] for r in runs],
            "peak_rss_kb": max(r["peak_rss_kb"] for r in runs),
            "worker_peak_rss_kb": max((r["worker_peak_rss_kb"] for r in runs), key=lambda w: max(w, default=0)),
            "output_sha256": sorted({r["output_sha256"] for r in runs})}


def measure(texts: Iterable[str], bundle: Path, model_dir: ModelDir, work: Path, limit: int | None,
            keras_reviews: int, peers: dict | None = None, rounds: int = 1, copies: int = 1) -> dict:
    """The whole volume section (``peers``: fitted desktop peers by name, whose own batch calls
    are timed over the same reviews; ``rounds``: how many times each run is repeated;
    ``copies``: how many times the reviews are written into the lines file, for a longer job
    in which starting workers counts for less; the floor, Keras and the peers take one copy)."""
    lines = work / "reviews.txt"
    n = write_lines_file(texts, lines, limit) * copies
    corpus = lines.read_text(encoding="utf-8").splitlines()
    floor_lines = lines
    if copies > 1:
        floor_lines = work / "once.txt"
        shutil.copyfile(lines, floor_lines)
        repeat_file(lines, copies)
    common = ["--model", str(bundle)]
    jobs = {"--jobs 1": [*common, "--jobs", "1"], "--jobs 2": [*common, "--jobs", "2"]}
    done: dict[str, list[dict]] = {k: [] for k in jobs}
    floors = []
    for _ in range(rounds):
        for name, args in jobs.items():
            done[name].append(classify_run(lines, args, work / "out.txt"))
        floors.append(floor_rate(floor_lines, model_dir))
    cluster_start = None
    if _ray_installed():
        ray_run = f"--ray ({RAY_WORKERS} workers)"
        done[ray_run] = []
        with RayCluster() as cluster:
            cluster_start = cluster.start_seconds
            for _ in range(rounds):
                done[ray_run].append(classify_run(lines, [*common, "--ray", "--jobs", str(RAY_WORKERS)],
                                                  work / "out.txt", cluster.env))
    runs = {k: _median(v) for k, v in done.items()}
    floor = sorted(floors)[len(floors) // 2]
    keras = keras_rate(corpus[:keras_reviews], model_dir)
    peer_rates = {name: bulk_rate(peer, corpus) for name, peer in (peers or {}).items()}
    single = runs["--jobs 1"]["reviews_per_s"]
    result = {
        "reviews": n, "copies": copies, "file_bytes": lines.stat().st_size, "runs": runs, "rounds": rounds,
        "ray_cluster_start_s": cluster_start,
        "ray": "measured" if cluster_start is not None else "skipped: ray is not installed (pip install '.[ray]')",
        "lookup_floor_reviews_per_s": floor, "lookup_floor_each": floors,
        "keras_predict_256_reviews_per_s": keras, "keras_reviews": keras_reviews,
        "peers_reviews_per_s": peer_rates,
        "identical_outputs": len({h for r in runs.values() for h in r["output_sha256"]}) == 1,
        "jobs2_over_jobs1": runs["--jobs 2"]["reviews_per_s"] / single,
        "single_over_floor_target": single / (floor / 1.5),
        "max_scoring_process_peak_rss_kb": max([runs["--jobs 2"]["peak_rss_kb"], *runs["--jobs 2"]["worker_peak_rss_kb"]]),
    }
    if cluster_start is not None:
        result["ray_over_jobs1"] = runs[ray_run]["reviews_per_s"] / single
        result["cores"] = len(os.sched_getaffinity(0))
        result["ray_over_jobs1_cpu_bound"] = runs["--jobs 1"]["seconds"] / (runs[ray_run]["cpu_s"] / result["cores"])
        result["max_ray_worker_peak_rss_kb"] = max(runs[ray_run]["worker_peak_rss_kb"], default=0)
    for path in work.iterdir():
        path.unlink()
    return result


def cpu_note(volume: dict) -> str:
    """What the CPU the Ray run used allows on this machine's cores, as a sentence."""
    if "ray_over_jobs1_cpu_bound" not in volume:
        return ""
    ray = next(r for k, r in volume["runs"].items() if k.startswith("--ray"))
    return (f"The Ray run's scoring processes used {ray['cpu_s']:.1f} CPU s against "
            f"{volume['runs']['--jobs 1']['cpu_s']:.1f} for `--jobs 1`: on {volume['cores']} cores it cannot take "
            f"less than {ray['cpu_s'] / volume['cores']:.1f} s, so its ratio to `--jobs 1` cannot exceed "
            f"{volume['ray_over_jobs1_cpu_bound']:.2f} here (Ray's raylet and GCS not counted).")


def workers_of(run: str) -> int:
    """Processes that score: N for ``--jobs N`` (the command is one), the actors for Ray."""
    return int(run.split()[-1]) if run.startswith("--jobs") else RAY_WORKERS


def plot(volume: dict, path: Path) -> None:
    """Reviews per second against workers, with the floor's target and Keras."""
    from train.plotting import pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 6))
    procs = [(workers_of(k), r["reviews_per_s"]) for k, r in volume["runs"].items() if k.startswith("--jobs")]
    ax.plot(*zip(*procs), "o-", color="tab:blue", label="runtime.classify --jobs N (the command and N - 1 workers)")
    for k, r in volume["runs"].items():
        if k.startswith("--ray"):
            ax.plot([workers_of(k)], [r["reviews_per_s"]], "s", color="tab:green", markersize=9,
                    label=f"{k}, cluster start {volume['ray_cluster_start_s']:.1f} s excluded")
    if "ray_over_jobs1_cpu_bound" in volume:
        ax.plot([RAY_WORKERS], [procs[0][1] * volume["ray_over_jobs1_cpu_bound"]], "s", mfc="none", color="tab:green",
                markersize=9, label="Ray: the most its CPU time allows on this machine's cores")
    ideal = procs[0][1]
    ax.plot([1, 2], [ideal, 2 * ideal], ":", color="grey", label="linear scaling")
    ax.axhline(volume["lookup_floor_reviews_per_s"] / 1.5, color="tab:red", linestyle="--",
               label="goal for one process: 1 / (1.5 x look-up floor)")
    ax.axhline(volume["keras_predict_256_reviews_per_s"], color="tab:orange", linestyle="-.",
               label="Keras predict, batch 256 (one process)")
    for (name, rate), color in zip(volume.get("peers_reviews_per_s", {}).items(), ("tab:purple", "tab:brown")):
        ax.axhline(rate, color=color, linestyle=":", label=f"{name} (one process, in memory)")
    ax.set_xticks([1, 2])
    ax.set_xlabel("workers (--jobs: processes scoring; Ray: actors, and the command scores what they have no room for)")
    ax.set_ylabel("reviews per second")
    ax.set_ylim(0, None)
    ax.set_title(f"Volume: {volume['reviews']:,} reviews in one lines file")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # below: no line hidden
    save(fig, path)


def table(volume: dict) -> str:
    rows = ["| run | reviews/s | seconds | CPU s, scoring processes | peak RSS, command | peak RSS per worker |",
            "|---|---|---|---|---|---|"]
    for k, r in volume["runs"].items():
        workers = ", ".join(f"{w / 1024:.0f} MiB" for w in r["worker_peak_rss_kb"]) or "–"
        each = r.get("seconds_each", [r["seconds"]])
        spread = f" ({min(each):.1f}–{max(each):.1f}, {len(each)} rounds)" if len(each) > 1 else ""
        cpu = f"{r['cpu_s']:.1f}" if "cpu_s" in r else ""
        rows.append(f"| `{k}` | {r['reviews_per_s']:,.0f} | {r['seconds']:.1f}{spread} | {cpu} | "
                    f"{r['peak_rss_kb'] / 1024:.0f} MiB | {workers} |")
    rows.append(f"| look-up floor (no model, one process) | {volume['lookup_floor_reviews_per_s']:,.0f} | | | | |")
    rows.append(f"| Keras `predict`, batch 256 ({volume['keras_reviews']:,} reviews) | "
                f"{volume['keras_predict_256_reviews_per_s']:,.0f} | | | | |")
    for name, rate in volume.get("peers_reviews_per_s", {}).items():
        rows.append(f"| {name}: its batch call on the same reviews, in memory (one process) | {rate:,.0f} | | | | |")
    return "\n".join(rows)


def off_scope(volume: dict) -> str:
    """What to add to a goal's verdict when the run was not on the goals' 100,000 reviews
    (``--volume-copies``), else nothing."""
    if volume.get("copies", 1) == 1:
        return ""
    return f" on {volume['reviews']:,} reviews, not the goals' 100,000"


def goals(volume: dict) -> list[tuple[str, str, float, bool]]:
    """(what, goal, measured, met) for the volume goals."""
    out = [("`--jobs 2` / `--jobs 1` reviews/s", ">= 1.7", volume["jobs2_over_jobs1"], volume["jobs2_over_jobs1"] >= 1.7),
           ("one process / (1 / (1.5 x look-up floor per review))", ">= 1", volume["single_over_floor_target"],
            volume["single_over_floor_target"] >= 1),
           ("peak RSS per scoring process of `--jobs 2` (the command and its worker), MiB", "<= 150",
            volume["max_scoring_process_peak_rss_kb"] / 1024, volume["max_scoring_process_peak_rss_kb"] / 1024 <= 150),
           ("outputs byte-identical across runs", "yes", float(volume["identical_outputs"]), volume["identical_outputs"])]
    if "ray_over_jobs1" in volume:
        out.insert(1, ("Ray, 2 workers / `--jobs 1` reviews/s (cluster start excluded)", ">= 1.5",
                       volume["ray_over_jobs1"], volume["ray_over_jobs1"] >= 1.5))
        ray_mib = volume["max_ray_worker_peak_rss_kb"] / 1024
        out.append(("peak RSS per Ray worker (Ray's own runtime included), MiB", "<= 150", ray_mib, ray_mib <= 150))
    return out

