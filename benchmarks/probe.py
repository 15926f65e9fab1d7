"""Run a module as ``python -m`` does, then report the process's own peak memory and CPU time.

``python benchmarks/probe.py MODULE ARGS...`` behaves like ``python -m MODULE ARGS...`` and
prints, as the last three lines on stderr, ``ENGINE_MODULES <names>`` (the inference
engines' top-level packages the process imported, comma-separated, or ``-``),
``CPU_S <seconds>`` (its own and its waited children's user and system time) and
``PEAK_RSS_KB <n>``. VmHWM is read from /proc because ``ru_maxrss`` carries the parent's
high-water mark across exec. ``report`` reads them back.
"""

import os
import runpy
import sys

# The engines' top-level packages (runtime.engines.base.ENGINES), spelled out: the probe must
# not import the runtime before the module it runs does.
ENGINE_PACKAGES = ("ai_edge_litert", "tflite_runtime", "onnxruntime")


def _peak_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.partition(":")[2].strip().partition(" ")[0])
    return -1


def report(stderr: str) -> dict:
    """The probe's last lines of ``stderr``: {"engine_modules": [...], "cpu_s": float, "peak_rss_kb": int}."""
    tail = dict(line.partition(" ")[::2] for line in stderr.strip().splitlines()[-3:])
    modules = tail.get("ENGINE_MODULES", "-")
    return {"engine_modules": [] if modules == "-" else modules.split(","), "cpu_s": float(tail["CPU_S"]),
            "peak_rss_kb": int(tail["PEAK_RSS_KB"])}


if __name__ == "__main__":
    module = sys.argv[1]
    sys.argv = [module] + sys.argv[2:]
    sys.path[0] = os.getcwd()  # as `python -m` does, instead of this script's folder
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    sys.stdout.flush()
    times = os.times()
    print(f"ENGINE_MODULES {','.join(p for p in ENGINE_PACKAGES if p in sys.modules) or '-'}", file=sys.stderr)
    print(f"CPU_S {times.user + times.system + times.children_user + times.children_system:.3f}", file=sys.stderr)
    print(f"PEAK_RSS_KB {_peak_kb()}", file=sys.stderr)
    sys.exit(code)
