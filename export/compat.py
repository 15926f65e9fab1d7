"""The compatibility matrix: which engines, at which versions, load each artifact of a
bundle and reproduce its golden set. Each engine runs in a virtual environment of its own
(tflite-runtime 2.14 and old onnxruntime need numpy<2) with only the runtime package
installed, and the results are written into the bundle's manifest.

``python -m export.compat BUNDLE [--engines SPEC ...] [--arm64]``; a SPEC is ENGINE[==VERSION].
``--arm64`` runs the same engine versions on emulated arm64 Debian 12 and 13 too
(``export.arm64``; needs root and debootstrap) and records those rows beside this machine's.

``python -m export.compat --arm64 --wheel WHEEL [--sample FILE]`` installs a built wheel
(``python -m export.wheel --out DIR`` makes one) on emulated arm64 Debian 12 with
ai-edge-litert instead, and checks that ``imdb-classify``, ``python -m runtime.classify`` and
``runtime.load()`` there print what this checkout prints for the sample review.

exit status (as for every command, see runtime.exitcodes): 0 matrix recorded (or the wheel
classifies as here); 3 an arm64 result differs from this machine's (each difference is
printed); 4 the bundle, wheel or sample is missing or unusable; 64 usage error; 1 an environment could not be built (pip, debootstrap, a download).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from export.arm64 import Arm64Error
from runtime import exitcodes
from runtime.engines.base import ENGINES
from runtime.bundle.directory import Bundle, open_bundle
from runtime.bundle.files import BundleError
from runtime.bundle.manifest import EngineRecord, version_key
from train.data import cache_dir

ROOT = Path(__file__).resolve().parent.parent
# The engines our users have: the current ones, and the oldest releases we still claim.
DEFAULT_SPECS = ["litert", "tflite-runtime==2.14.0", "onnxruntime", "onnxruntime==1.17.0"]
NEEDS_NUMPY_1 = {"tflite-runtime==2.14.0", "onnxruntime==1.17.0"}


class CompatError(Exception):
    """An engine environment that could not be built."""


def env_dir(spec: str) -> Path:
    return cache_dir() / "compat-envs" / spec.replace("==", "-")


def prepare(spec: str) -> Path:
    """A venv with the runtime package and one engine (reused; the project is reinstalled)."""
    engine = spec.split("==")[0]
    if engine not in ENGINES:
        raise CompatError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    path = env_dir(spec)
    py = path / "bin" / "python"
    if not py.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    requirement = ENGINES[engine][2] + spec[len(engine):]
    extra = ["numpy<2"] if spec in NEEDS_NUMPY_1 else []
    for args in ([requirement, *extra], ["--force-reinstall", "--no-deps", str(ROOT)]):
        proc = subprocess.run([str(py), "-m", "pip", "install", "-q", *args], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise CompatError(f"{spec}: pip install {' '.join(args)} failed: {proc.stderr.strip()[-400:]}")
    return py


def check(py: Path, bundle: Path, engine: str) -> list[dict]:
    """runtime.parity in that environment (outside the source tree, so the installed runtime runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "parity.json"
        proc = subprocess.run([str(py), "-m", "runtime.parity", str(bundle.resolve()), "--engines", engine,
                               "--json", str(out)], cwd=tmp, capture_output=True, text=True, timeout=600)
        if not out.exists():
            raise CompatError(f"{engine}: parity did not run: {proc.stderr.strip()[-400:]}")
        return json.loads(out.read_text())


def record(bundle: Bundle, results: list[dict]) -> None:
    """Record each (engine, version) parity result on its artifact: load failures, golden checks
    and, beside them, whether its explanations agree with the float model's."""
    explained = {(r["artifact"], r["engine"]): r["passed"] for r in results if r["kind"] == "explanation"}
    for r in results:
        if r["kind"] not in ("load", "golden") or r["artifact"] not in bundle.artifacts:
            continue
        loads = r["kind"] == "golden"
        bundle.artifacts[r["artifact"]].record(EngineRecord(
            r["engine"], r["version"], loads, bool(r["passed"]) if loads else None, "compat",
            None if loads else r["message"], explained.get((r["artifact"], r["engine"])) if loads else None,
            r.get("platform"), r.get("figures", {}).get("outputs_sha256"), r.get("bit_identical")))


def run(bundle_path: Path, specs: list[str], arm64: bool = False) -> tuple[Bundle, list[str]]:
    """Each engine spec's parity results recorded in the manifest; with ``arm64``, the same
    engine versions on emulated arm64 Debian too (see ``export.arm64``). Returns the bundle
    and the arm64 results that differ from this machine's, one line each."""
    bundle = open_bundle(bundle_path)
    here = {}
    for spec in specs:
        py = prepare(spec)
        here[spec] = check(py, bundle_path, spec.split("==")[0])
        record(bundle, here[spec])
    problems: list[str] = []
    if arm64:
        from export import arm64 as emulated

        results, problems = emulated.check(bundle_path, here, NEEDS_NUMPY_1,
                                           log=lambda line: print(line, file=sys.stderr))
        record(bundle, results)
    bundle.write_manifest()
    return bundle, problems


def matrix(bundle: Bundle) -> str:
    """A Markdown table: one row per engine version and platform, one column per artifact;
    a cell says whether it loads, reproduces the golden set (bit for bit as on the reference
    machine, for emulated rows) and shares the float model's explanations."""
    def where(e: EngineRecord) -> str:
        p = e.platform
        if not p:
            return "not recorded"
        emulated = f", {p['emulated']}" if p.get("emulated") else ""
        return f"{p.get('machine', '?')}, {p.get('os', '?')}, Python {p.get('python', '?')}{emulated}"

    def cell(rec: EngineRecord | None) -> str:
        if rec is None:
            return ""
        if rec.bit_identical is False:
            return "**differs from x86_64**"
        if rec.explanations is False:
            return "**explanations differ**"
        return "yes" if rec.loads and rec.matches_golden else "loads, **golden differs**" if rec.loads else "**no**"

    rows = sorted({(e.engine, e.version, where(e)) for a in bundle.artifacts.values() for e in a.engines},
                  key=lambda r: (r[0], version_key(r[1]), r[2]))
    names = list(bundle.artifacts)
    lines = ["| engine | platform | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for engine, version, place in rows:
        cells = [cell(next((e for e in bundle.artifacts[n].engines if (e.engine, e.version, where(e)) == (engine, version, place)), None))
                 for n in names]
        lines.append(f"| {engine} {version} | {place} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wheel_main(wheel: Path, sample: Path) -> int:
    """``--arm64 --wheel``: the wheel on emulated Debian 12 against this checkout's answers."""
    from export.wheel import WheelError, arm64_check, reference

    for path, what in ((wheel, "wheel"), (sample, "sample")):
        if not path.is_file():
            print(f"error: {what} {path}: no such file", file=sys.stderr)
            return exitcodes.UNUSABLE
    try:
        with exitcodes.stop_signals_interrupt():
            problems = arm64_check(wheel.resolve(), sample.resolve(), reference(sample.resolve()),
                                         log=lambda line: print(line, file=sys.stderr))
    except (WheelError, Arm64Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.INTERNAL
    except KeyboardInterrupt as e:
        print(f"arm64 wheel check {exitcodes.interrupt_name(e)}", file=sys.stderr)
        return exitcodes.status_of(e)
    for line in problems:
        print(f"arm64: {line}", file=sys.stderr)
    return exitcodes.CHECK_FAILED if problems else exitcodes.OK


def main(argv: list[str] | None = None) -> int:
    p = exitcodes.parser("python -m export.compat", __doc__)
    p.add_argument("bundle", type=Path, nargs="?")
    p.add_argument("--engines", nargs="+", default=DEFAULT_SPECS, metavar="SPEC")
    p.add_argument("--arm64", action="store_true",
                   help="also run each engine version on emulated arm64 Debian 12 and 13 (root, slow; see export.arm64)")
    p.add_argument("--wheel", type=Path, help="with --arm64: install this wheel on emulated Debian 12 and classify")
    p.add_argument("--sample", type=Path, default=ROOT / "samples" / "positive.txt",
                   help="with --wheel: the review to classify (default: samples/positive.txt)")
    args = p.parse_args(argv)
    if args.wheel is not None:
        if not args.arm64 or args.bundle is not None:
            p.error("--wheel goes with --arm64 and no BUNDLE (on this machine: python -m export.wheel)")
        return wheel_main(args.wheel, args.sample)
    if args.bundle is None:
        p.error("the following arguments are required: bundle")
    try:
        bundle, problems = run(args.bundle, args.engines, args.arm64)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    except (CompatError, Arm64Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.INTERNAL
    print(matrix(bundle))
    for line in problems:
        print(f"arm64: {line}", file=sys.stderr)
    return exitcodes.CHECK_FAILED if problems else exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
