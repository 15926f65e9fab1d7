"""Volume: reviews per second when one file holds them all, by number of workers, on each engine.

Every review of the archive (train, test and unsup: 100,000) is written as one lines file,
``copies`` times over (full mode: ``GOAL_COPIES``, the 1,000,000-review job the volume goals
are judged on), and classified by ``runtime.classify --lines`` as a user runs it: ``--jobs 1``,
``--jobs 2`` (the command and one worker process score) and ``--ray`` with two actors on a
cluster started with ``ray start`` just before the run and stopped just after it. Its start is
timed apart and not counted (a cluster outlives one job); it is stopped so that no idle
cluster shares the cores with the runs without Ray.

Each installed engine runs the job alone, on the bundle's artifact of its own format
(``--backend`` and ``--artifact``), as an install with only that engine would. The engine
packages each run's processes load are recorded (imported by the command, mapped by its
workers and actors), and a run that loads another engine fails a goal.

A run's memory is read for the command and each worker: the high-water mark of the resident
set (VmHWM), and the peak of the process's own memory (RssAnon: its anonymous pages, without
shared libraries and Ray's object-store pages). The CPU seconds of all its scoring processes
are reported beside its wall time, so that an engine that spins extra threads shows.

Goals that compare two measurements (a run with ``--jobs 1``, or ``--jobs 1`` with the
look-up floor) are judged on rounds taken in turns, each round in the opposite order to the
one before. When judging (full mode), a goal whose first round lies within ``NOISE_BAND`` of
its bar gets ``PAIRED_ROUNDS`` rounds and is judged on the median of the rounds' ratios; a
goal further from its bar is judged on its one round. Each run's figures are its median round
(its fastest and slowest shown beside it), and its highest memory over the rounds. In full
mode with more than one copy each run also runs once on one copy: figures, not judged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import probe
from benchmarks.peer_models import bulk_rate
from runtime.engines.base import ENGINES, installed_engines
from runtime.bundle.directory import Bundle
from runtime.cli.ray_workers import LOCAL_ONLY
from train.model_dir import VOCAB_FILE, ModelDir

ROOT = Path(__file__).resolve().parent.parent
RAY_WORKERS = 2
GOAL_COPIES = 10  # the volume goals are judged on the archive's reviews this many times over
GOAL_REVIEWS = 1_000_000
PAIRED_ROUNDS = 5  # rounds in turns for a goal near its bar; judged on their median ratio
NOISE_BAND = 0.10  # a first ratio within this fraction of its bar is too close to call from one round
MEMORY_GOAL_MIB = 150
MAPS_EVERY_S = 0.25  # how often a worker's mapped files are searched for engine libraries
FLOOR = "look-up floor"
RAY_RUN = f"--ray ({RAY_WORKERS} workers)"
RUN_ARGS = {"--jobs 1": ["--jobs", "1"], "--jobs 2": ["--jobs", "2"], RAY_RUN: ["--ray", "--jobs", str(RAY_WORKERS)]}
# engine package (what a process imports or maps) -> engine name
_ENGINE_OF_PACKAGE = {module.partition(".")[0]: name for name, (_, module, _) in ENGINES.items()}


@dataclass(frozen=True)
class PairedGoal:
    """``candidate``'s rate over ``reference``'s, judged on rounds taken in turns."""

    key: str
    what: str
    candidate: str
    reference: str
    bar: float  # the ratio must be at least this


PAIRED_GOALS = (
    PairedGoal("jobs2_over_jobs1", "`--jobs 2` / `--jobs 1` reviews/s", "--jobs 2", "--jobs 1", 1.7),
    PairedGoal("ray_over_jobs1", "Ray, 2 workers / `--jobs 1` reviews/s (cluster start excluded)", RAY_RUN,
               "--jobs 1", 1.5),
    PairedGoal("single_over_floor_target", "one process / (1 / (1.5 x look-up floor per review))", "--jobs 1",
               FLOOR, 1.0),
)


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


def _memory_kb(pid: int) -> tuple[int, int]:
    """(VmHWM, RssAnon) of a process in KiB: its resident high-water mark, and its own
    (anonymous) resident pages now; zeros once it is gone."""
    hwm = anon = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1])
    except OSError:
        pass
    return hwm, anon


def engines_mapped(pid: int) -> set[str]:
    """Engines whose package has a file mapped into a process (its native libraries)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    return {engine for package, engine in _ENGINE_OF_PACKAGE.items() if f"/{package}/" in maps}


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
    """One ``runtime.classify --lines`` run: seconds, rate, CPU seconds of all its scoring
    processes (Ray actors' as last seen every 50 ms; Ray's raylet and GCS not counted), peak
    memory (total and own) of the command and of each worker, and the engines its processes
    loaded (the command's imports, exactly; its workers' mapped libraries, every
    ``MAPS_EVERY_S``)."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "probe.py"), "runtime.classify", "--lines", *args, str(lines),
           "--out", str(out)]
    peaks: dict[int, tuple[int, int]] = {}
    mapped: set[str] = set()
    maps_read: dict[int, float] = {}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    actor_cpu: dict[int, float] = {}
    while proc.poll() is None:
        children, actors = _workers(proc.pid, "--ray" in args)
        now = time.perf_counter()
        for w in [proc.pid, *children, *actors]:
            hwm, anon = _memory_kb(w)
            old = peaks.get(w, (0, 0))
            peaks[w] = (max(old[0], hwm), max(old[1], anon))
            if w != proc.pid and now - maps_read.get(w, -MAPS_EVERY_S) >= MAPS_EVERY_S:
                maps_read[w] = now
                mapped |= engines_mapped(w)
        for a in actors:
            actor_cpu[a] = max(actor_cpu.get(a, 0.0), _cpu_s(a))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"runtime.classify {' '.join(args)} failed ({proc.returncode}): {err.strip()[-500:]}")
    own = probe.report(err)
    n = sum(1 for _ in open(out, "rb"))
    cpu = own["cpu_s"] + sum(actor_cpu.values())
    workers = sorted((v for w, v in peaks.items() if w != proc.pid and v[0]), reverse=True)
    return {"seconds": seconds, "reviews": n, "reviews_per_s": n / seconds, "cpu_s": cpu, "cpu_over_wall": cpu / seconds,
            "peak_rss_kb": own["peak_rss_kb"], "peak_private_kb": peaks.get(proc.pid, (0, 0))[1],
            "worker_peak_rss_kb": [w[0] for w in workers], "worker_peak_private_kb": [w[1] for w in workers],
            "engines_loaded": sorted(mapped | {_ENGINE_OF_PACKAGE[p] for p in own["engine_modules"]}),
            "output_sha256": hashlib.sha256(out.read_bytes()).hexdigest()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Ray's command line, run by this interpreter: its ``ray`` script is not always on PATH or
# beside the interpreter (a virtual environment that borrows another's packages has none).
_RAY_CLI = "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; sys.exit(main())"


class ClusterError(RuntimeError):
    """The local Ray cluster of the volume measurement did not start."""


class RayCluster:
    """A two-CPU Ray cluster started with ``ray start``, as one would start a real one, but on
    the loopback interface only, with a token of its own; ``env`` is what a client needs."""

    def __init__(self, cpus: int = RAY_WORKERS):
        self.port = _free_port()
        self.cpus = cpus
        self.start_seconds = 0.0
        self.env = {**LOCAL_ONLY, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
                    "RAY_ADDRESS": f"127.0.0.1:{self.port}"}

    def _ray(self, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in {**os.environ, **self.env}.items() if k != "RAY_ADDRESS"}
        return subprocess.run([sys.executable, "-c", _RAY_CLI, *args], env=env, capture_output=True, text=True,
                              timeout=300)

    def __enter__(self) -> RayCluster:
        t0 = time.perf_counter()
        for attempt in range(2):  # a loaded machine's GCS can miss its start-up deadline once
            if attempt:  # a GCS left over from the first try may still hold the port
                self.port = _free_port()
                self.env["RAY_ADDRESS"] = f"127.0.0.1:{self.port}"
            try:
                started = self._ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                                    f"--num-cpus={self.cpus}", "--include-dashboard=false", "--disable-usage-stats")
            except subprocess.TimeoutExpired as e:
                started = subprocess.CompletedProcess(e.cmd, -1, "", f"ray start did not finish in {e.timeout:g} s")
            if started.returncode == 0:
                self.start_seconds = time.perf_counter() - t0
                return self
            try:
                self._ray("stop", "--force")
            except subprocess.TimeoutExpired:
                pass  # the next try starts on a new port
        last = " | ".join(line.strip() for line in started.stderr.strip().splitlines()[-3:] if line.strip())
        raise ClusterError(f"ray start failed twice for the volume measurement ({last or 'no message'})")

    def __exit__(self, *exc) -> None:
        self._ray("stop", "--force")


def _ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


_FLOOR = """
import sys, time
from benchmarks.peers import LookupFloor
from runtime.encoding.vocab import Vocabulary
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
    corpus and the peers, it varied far more between full runs)."""
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


def engine_artifacts(bundle: Bundle) -> tuple[dict[str, str], dict[str, str]]:
    """The artifact each installed engine runs alone in the volume section: the bundle's
    default if the engine runs its format, else the artifact of the engine's format with the
    default's precision, else the first of that format; and why any engine is left out."""
    default = bundle.manifest.default_artifact
    precision = default.partition("-")[2]
    chosen, skipped = {}, {}
    for engine in installed_engines():
        fmt = ENGINES[engine][0]
        own = [name for name, info in bundle.artifacts.items() if info.format == fmt]
        if not own:
            skipped[engine] = f"the bundle has no {fmt} artifact"
        elif default in own:
            chosen[engine] = default
        else:
            chosen[engine] = f"{fmt}-{precision}" if f"{fmt}-{precision}" in own else own[0]
    return chosen, skipped


def _median(runs: list[dict]) -> dict:
    """One run's figures from its rounds: the median round's time, the highest memory, the
    engines any round loaded."""
    by_time = sorted(runs, key=lambda r: r["seconds"])
    middle = by_time[len(by_time) // 2]
    most = max(runs, key=lambda r: max(r["worker_peak_rss_kb"], default=0))  # its workers' figures, kept together
    return {**middle, "rounds": len(runs), "seconds_each": [r["seconds"] for r in runs],
            "peak_rss_kb": max(r["peak_rss_kb"] for r in runs),
            "peak_private_kb": max(r.get("peak_private_kb", 0) for r in runs),
            "worker_peak_rss_kb": most["worker_peak_rss_kb"],
            "worker_peak_private_kb": most.get("worker_peak_private_kb", []),
            "max_worker_private_kb": max((max(r.get("worker_peak_private_kb", []), default=0) for r in runs)),
            "engines_loaded": sorted({e for r in runs for e in r.get("engines_loaded", [])}),
            "output_sha256": sorted({r["output_sha256"] for r in runs})}


def paired_rounds(runner: Callable[[str], dict], floor: Callable[[], float], runs: list[str],
                  judged: bool) -> tuple[dict[str, list[dict]], list[float], dict]:
    """Every run and the floor once; then, when ``judged``, more rounds in turns (each in the
    opposite order to the one before) of what the goals within ``NOISE_BAND`` of their bar compare,
    up to ``PAIRED_ROUNDS`` in all. ``runner(run)``: one run's figures; ``floor()``: the look-up
    floor's reviews/s. Returns each run's rounds, the floor's, and each paired goal's verdict
    (``value``: the median of its rounds' ratios)."""
    rounds, band = PAIRED_ROUNDS, NOISE_BAND
    done: dict[str, list[dict]] = {name: [] for name in runs}
    floors: list[float] = []
    rates: list[dict[str, float]] = []
    order = [*runs, FLOOR]

    def one_round(names: list[str]) -> None:
        got = {}
        for name in names:
            if name == FLOOR:
                floors.append(floor())
                got[FLOOR] = floors[-1] / 1.5
            else:
                done[name].append(runner(name))
                got[name] = done[name][-1]["reviews_per_s"]
        rates.append(got)

    one_round(order)
    goals = [g for g in PAIRED_GOALS if g.candidate in order and g.reference in order]
    close = [g for g in goals if abs(rates[0][g.candidate] / rates[0][g.reference] / g.bar - 1) <= band]
    if judged and close:
        needed = {name for g in close for name in (g.candidate, g.reference)}
        for k in range(1, rounds):
            names = [n for n in order if n in needed]
            one_round(names[::-1] if k % 2 else names)
    verdicts = {}
    for g in goals:
        ratios = [r[g.candidate] / r[g.reference] for r in rates if g.candidate in r and g.reference in r]
        value = statistics.median(ratios)
        verdicts[g.key] = {"what": g.what, "goal": f">= {g.bar:g}", "value": value, "met": value >= g.bar,
                           "rounds": len(ratios), "ratios": ratios, "paired": len(ratios) >= rounds,
                           "near_bar": g in close}
    return done, floors, verdicts


def _engine_goals(e: dict, paired: dict) -> list[dict]:
    """Every volume goal of one engine's runs, in report order."""
    runs = e["runs"]
    out = [{"key": "jobs2_over_jobs1", **paired["jobs2_over_jobs1"]}]
    if "ray_over_jobs1" in paired:
        out.append({"key": "ray_over_jobs1", **paired["ray_over_jobs1"]})
    out.append({"key": "single_over_floor_target", **paired["single_over_floor_target"]})
    jobs2_mib = e["max_scoring_process_peak_rss_kb"] / 1024
    out.append({"key": "jobs2_peak_rss", "what": "peak RSS per scoring process of `--jobs 2` (the command and its "
                "worker), MiB", "goal": f"<= {MEMORY_GOAL_MIB}", "value": jobs2_mib, "met": jobs2_mib <= MEMORY_GOAL_MIB,
                "rounds": runs["--jobs 2"]["rounds"]})
    if RAY_RUN in runs:
        own = e["max_ray_worker_private_kb"] / 1024
        total = (f"total RSS with Ray's libraries and object store: {e['max_ray_worker_peak_rss_kb'] / 1024:.0f}"
                 if own else "no actor seen: the command scored every review")
        out.append({"key": "ray_worker_private", "what": f"peak own memory (RssAnon) per Ray worker, MiB ({total})",
                    "goal": f"<= {MEMORY_GOAL_MIB}", "value": own, "met": 0 < own <= MEMORY_GOAL_MIB,
                    "rounds": runs[RAY_RUN]["rounds"]})
    out.append({"key": "identical_outputs", "what": "outputs byte-identical across runs", "goal": "yes",
                "value": float(e["identical_outputs"]), "met": e["identical_outputs"]})
    only = e["engines_loaded"] == [e["backend"]]
    out.append({"key": "engine_alone", "what": "the runs' processes loaded no other engine",
                "goal": "yes", "value": float(only), "met": only, "loaded": e["engines_loaded"]})
    return out


def _derived(e: dict) -> None:
    """One engine's ratios and maxima from its runs' figures."""
    runs = e["runs"]
    single = runs["--jobs 1"]
    e["identical_outputs"] = len({h for r in runs.values() for h in r["output_sha256"]}) == 1
    e["max_scoring_process_peak_rss_kb"] = max([runs["--jobs 2"]["peak_rss_kb"], *runs["--jobs 2"]["worker_peak_rss_kb"]])
    e["engines_loaded"] = sorted({x for r in runs.values() for x in r["engines_loaded"]})
    if RAY_RUN in runs:
        ray = runs[RAY_RUN]
        e["cores"] = len(os.sched_getaffinity(0))
        e["ray_over_jobs1_cpu_bound"] = single["seconds"] / (ray["cpu_s"] / e["cores"])
        e["max_ray_worker_peak_rss_kb"] = max(ray["worker_peak_rss_kb"], default=0)
        e["max_ray_worker_private_kb"] = ray["max_worker_private_kb"]


def measure(texts: Iterable[str], bundle: Bundle, model_dir: ModelDir, work: Path, limit: int | None,
            keras_reviews: int, peers: dict | None = None, copies: int = 1, judged: bool = False,
            one_copy_figures: bool = False) -> dict:
    """The whole volume section: each installed engine alone on the job (``peers``: fitted
    desktop peers by name, whose own batch calls are timed over the same reviews; ``copies``:
    how many times the reviews are written into the lines file; ``judged``: take the paired
    rounds the goals near their bar need; ``one_copy_figures``: each run once more on one copy,
    when there are more; the floor, Keras and the peers take one copy)."""
    lines = work / "reviews.txt"
    once = write_lines_file(texts, lines, limit)
    corpus = lines.read_text(encoding="utf-8").splitlines()
    floor_lines = lines
    if copies > 1:
        floor_lines = work / "once.txt"
        shutil.copyfile(lines, floor_lines)
        repeat_file(lines, copies)
    file_bytes = lines.stat().st_size
    chosen, skipped = engine_artifacts(bundle)
    runs = ["--jobs 1", "--jobs 2", *([RAY_RUN] if _ray_installed() else [])]
    engines = {}
    for engine, artifact in chosen.items():
        common = ["--model", str(bundle.root), "--artifact", artifact, "--backend", engine]

        def runner(name: str, path: Path = lines) -> dict:
            if name != RAY_RUN:
                return classify_run(path, [*common, *RUN_ARGS[name]], work / "out.txt")
            with RayCluster() as cluster:
                done = classify_run(path, [*common, *RUN_ARGS[name]], work / "out.txt", cluster.env)
            return {**done, "cluster_start_s": cluster.start_seconds}

        done, floors, paired = paired_rounds(runner, lambda: floor_rate(floor_lines, model_dir), runs, judged)
        e = {"backend": engine, "artifact": artifact, "runs": {k: _median(v) for k, v in done.items()},
             "lookup_floor_reviews_per_s": statistics.median(floors), "lookup_floor_each": floors}
        _derived(e)
        e["goals"] = _engine_goals(e, paired)
        if one_copy_figures and copies > 1:
            figures = {name: _median([runner(name, floor_lines)]) for name in runs}
            e["one_copy"] = {"reviews": once, "runs": figures, **{
                g.key: figures[g.candidate]["reviews_per_s"] / figures[g.reference]["reviews_per_s"]
                for g in PAIRED_GOALS if g.candidate in figures and g.reference in figures}}
        engines[engine] = e
    for path in work.iterdir():
        path.unlink()
    return {
        "reviews": once * copies, "copies": copies, "file_bytes": file_bytes, "judged": judged, "engines": engines,
        "skipped_engines": skipped,
        "ray": "measured" if RAY_RUN in runs else "skipped: ray is not installed (pip install '.[ray]')",
        "paired_rounds": PAIRED_ROUNDS, "noise_band": NOISE_BAND,
        "keras_predict_256_reviews_per_s": keras_rate(corpus[:keras_reviews], model_dir), "keras_reviews": keras_reviews,
        "peers_reviews_per_s": {name: bulk_rate(peer, corpus) for name, peer in (peers or {}).items()},
    }


def cpu_note(e: dict) -> str:
    """What the CPU one engine's Ray run used allows on this machine's cores, as a sentence."""
    if "ray_over_jobs1_cpu_bound" not in e:
        return ""
    ray = e["runs"][RAY_RUN]
    return (f"The Ray run's scoring processes used {ray['cpu_s']:.1f} CPU s against "
            f"{e['runs']['--jobs 1']['cpu_s']:.1f} for `--jobs 1`: on {e['cores']} cores it cannot take "
            f"less than {ray['cpu_s'] / e['cores']:.1f} s, so its ratio to `--jobs 1` cannot exceed "
            f"{e['ray_over_jobs1_cpu_bound']:.2f} here (Ray's raylet and GCS not counted).")


def workers_of(run: str) -> int:
    """Processes that score: N for ``--jobs N`` (the command is one), the actors for Ray."""
    return int(run.split()[-1]) if run.startswith("--jobs") else RAY_WORKERS


def plot(volume: dict, path: Path) -> None:
    """Reviews per second against workers, one panel per engine, with the floor's target,
    Keras and the peers; hollow markers: the same runs on one copy of the reviews."""
    from train.plotting import pyplot

    plt = pyplot()
    engines = volume["engines"]
    fig, axes = plt.subplots(1, max(1, len(engines)), figsize=(6.5 * max(1, len(engines)), 6.2), sharey=True,
                             squeeze=False)
    for ax, (engine, e) in zip(axes[0], engines.items()):
        sets = [(e["runs"], "o-", "s", None, f"{volume['reviews']:,} reviews")]
        if "one_copy" in e:
            sets.append((e["one_copy"]["runs"], "o--", "s", "none", f"{e['one_copy']['reviews']:,} reviews (figures)"))
        for runs, line, square, fill, label in sets:
            procs = [(workers_of(k), r["reviews_per_s"]) for k, r in runs.items() if k.startswith("--jobs")]
            ax.plot(*zip(*procs), line, color="tab:blue", mfc=fill, label=f"--jobs N, {label}")
            if RAY_RUN in runs:
                ax.plot([RAY_WORKERS], [runs[RAY_RUN]["reviews_per_s"]], square, color="tab:green", mfc=fill,
                        markersize=9, label=f"--ray, {label}")
        single = e["runs"]["--jobs 1"]["reviews_per_s"]
        if "ray_over_jobs1_cpu_bound" in e:
            ax.plot([RAY_WORKERS], [single * e["ray_over_jobs1_cpu_bound"]], "x", color="tab:green", markersize=9,
                    label="Ray: the most its CPU time allows here")
        ax.plot([1, 2], [single, 2 * single], ":", color="grey", label="linear scaling")
        for g, color in ((PAIRED_GOALS[0], "tab:blue"), (PAIRED_GOALS[1], "tab:green")):
            ax.plot([workers_of(g.candidate)], [g.bar * single], "_", color=color, markersize=22, mew=2,
                    label=f"goal: {g.candidate.split(' (')[0]} at {g.bar:g}x --jobs 1")
        ax.axhline(e["lookup_floor_reviews_per_s"] / 1.5, color="tab:red", linestyle="--",
                   label="1 / (1.5 x look-up floor per review)")
        ax.axhline(volume["keras_predict_256_reviews_per_s"], color="tab:orange", linestyle="-.",
                   label="Keras predict, batch 256")
        for (name, rate), color in zip(volume.get("peers_reviews_per_s", {}).items(), ("tab:purple", "tab:brown", "tab:pink")):
            ax.axhline(rate, color=color, linestyle=":", label=name.split(",")[0])
        ax.set_xticks([1, 2])
        ax.set_xlim(0.7, 2.3)
        ax.set_xlabel("processes scoring (--jobs N; Ray: its actors)")
        ax.set_title(f"{engine}: {e['artifact']}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("reviews per second")
    axes[0][0].set_ylim(0, None)
    fig.suptitle(f"Volume: {volume['reviews']:,} reviews in one lines file, each engine alone")
    fig.tight_layout()
    # One legend for all panels, below them (no line hidden); the saved area grows to hold it.
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=8, ncol=3, loc="upper center",
               bbox_to_anchor=(0.5, 0.0))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _mib(kb: float) -> str:
    return f"{kb / 1024:.0f}"


def table(runs: dict, floor: float | None = None) -> str:
    """One engine's runs: rate, time (and the spread of its rounds), CPU seconds and their
    ratio to the wall time, memory (total, and own in brackets), the engines loaded."""
    rows = ["| run | reviews/s | seconds | CPU s (÷ wall) | peak RSS, command (own), MiB | peak RSS per worker (own), MiB "
            "| engines loaded |", "|---|---|---|---|---|---|---|"]
    for k, r in runs.items():
        own = r.get("worker_peak_private_kb") or [None] * len(r["worker_peak_rss_kb"])
        workers = ", ".join(_mib(w) + (f" ({_mib(p)})" if p is not None else "")
                            for w, p in zip(r["worker_peak_rss_kb"], own)) or "–"
        each = r.get("seconds_each", [r["seconds"]])
        spread = f" ({min(each):.1f}–{max(each):.1f}, {len(each)} rounds)" if len(each) > 1 else ""
        cpu = f"{r['cpu_s']:.1f} ({r['cpu_s'] / r['seconds']:.2f})" if "cpu_s" in r else ""
        command = _mib(r["peak_rss_kb"]) + (f" ({_mib(r['peak_private_kb'])})" if "peak_private_kb" in r else "")
        rows.append(f"| `{k}` | {r['reviews_per_s']:,.0f} | {r['seconds']:.1f}{spread} | {cpu} | {command} | {workers} | "
                    f"{', '.join(r.get('engines_loaded', []))} |")
    if floor is not None:
        rows.append(f"| look-up floor (no model, one process, one copy) | {floor:,.0f} | | | | | |")
    return "\n".join(rows)


def reference_table(volume: dict) -> str:
    """Keras and the desktop peers on one copy of the reviews, in one process."""
    rows = ["| reference (one process, one copy of the reviews) | reviews/s |", "|---|---|",
            f"| Keras `predict`, batch 256 ({volume['keras_reviews']:,} reviews) | "
            f"{volume['keras_predict_256_reviews_per_s']:,.0f} |"]
    for name, rate in volume.get("peers_reviews_per_s", {}).items():
        rows.append(f"| {name}: its batch call on the same reviews, in memory | {rate:,.0f} |")
    return "\n".join(rows)


def off_scope(volume: dict) -> str:
    """What to add to a goal's verdict when the job is not the goals' 1,000,000 reviews."""
    if volume["reviews"] == GOAL_REVIEWS:
        return ""
    return f" on {volume['reviews']:,} reviews, not the goals' {GOAL_REVIEWS:,}"


def goals(volume: dict) -> list[tuple[str, dict]]:
    """(engine, goal) for every engine's volume goals."""
    return [(engine, g) for engine, e in volume["engines"].items() for g in e["goals"]]


def verdict(goal: dict, volume: dict, markdown: bool = True) -> str:
    """Whether a volume goal is met, or why it is not judged."""
    if not volume["judged"]:
        return "judged in full mode only" + off_scope(volume)
    met = "yes" if goal["met"] else ("**no**" if markdown else "NOT met")
    return met + off_scope(volume)


def judged_on(goal: dict, volume: dict | None = None) -> str:
    """What a goal's verdict rests on: its rounds (and each round's ratio), or one run."""
    n = goal.get("rounds", 1)
    if "ratios" in goal:
        each = ", ".join(f"{r:.3g}" for r in goal["ratios"])
        if goal.get("paired"):
            return f"median of {n} paired rounds ({each})"
        if volume is not None and volume["judged"] and not goal.get("near_bar"):
            return f"one round, further than {volume['noise_band']:.0%} from its bar"
        return f"{n} round{'s' if n > 1 else ''} ({each})"
    if "loaded" in goal:
        return "loaded: " + (", ".join(goal["loaded"]) or "none seen")
    if "rounds" not in goal:
        return ""
    return f"highest of {n} rounds" if n > 1 else "one round"


def markdown(volume: dict) -> list[str]:
    """The report's volume section."""
    v = volume
    copies = f", the reviews {v['copies']} times over" if v["copies"] > 1 else ""
    lines = ["", f"## Volume: {v['reviews']:,} reviews in one lines file ({v['file_bytes'] / 2**20:.0f} MiB"
             f"{copies})", "",
             "`runtime.classify --lines` as a user runs it, output to a file, with each installed engine alone on an "
             "artifact of its own format (`--backend`, `--artifact`); each Ray run on a two-CPU cluster started just "
             "before it (its start not counted) and stopped after it. CPU s: user and system time of every scoring "
             "process (÷ wall: the cores kept busy). Own memory: a process's anonymous pages (RssAnon), without shared "
             "libraries and Ray's object-store pages.", ""]
    if v["judged"]:
        lines += [f"A goal comparing two measurements whose first round came within {v['noise_band']:.0%} of its bar "
                  f"is judged on the median ratio of {v['paired_rounds']} rounds taken in turns with its reference "
                  "(each round in the opposite order to the one before); the others on their one round.", ""]
    else:
        lines += [f"Quick mode: one round of each run; the volume goals are judged in full mode only, on "
                  f"{GOAL_REVIEWS:,} reviews.", ""]
    if v["ray"] != "measured":
        lines += [f"Ray {v['ray']}.", ""]
    for engine, e in v["engines"].items():
        identical = "yes" if e["identical_outputs"] else "**no**"
        start = ""
        if RAY_RUN in e["runs"]:
            start = f"; the Ray cluster took {e['runs'][RAY_RUN]['cluster_start_s']:.1f} s to start (not counted)"
        lines += [f"### `{engine}`: `{e['artifact']}`", "",
                  f"Outputs byte-identical across this engine's runs: {identical}{start}.", "",
                  table(e["runs"], e["lookup_floor_reviews_per_s"]), "", cpu_note(e), "",
                  "| goal | measured | bar | judged on | met |", "|---|---|---|---|---|"]
        for g in e["goals"]:
            lines.append(f"| {g['what']} | {g['value']:.3g} | {g['goal']} | {judged_on(g, v)} | {verdict(g, v)} |")
        if "one_copy" in e:
            o = e["one_copy"]
            ratio = "; ".join(f"{g.what}: {o[g.key]:.3g}" for g in PAIRED_GOALS if g.key in o and g.reference != FLOOR)
            lines += ["", f"The same runs on one copy ({o['reviews']:,} reviews), once each; figures, not judged "
                      f"({ratio}):", "", table(o["runs"])]
        lines.append("")
    lines += [reference_table(v)]
    if v["skipped_engines"]:
        lines += ["", "Engines not run: " + "; ".join(f"{k} ({r})" for k, r in v["skipped_engines"].items()) + "."]
    lines += ["", "![volume](volume.png)"]
    return lines
