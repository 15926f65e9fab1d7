"""The compatibility matrix: which engines, at which versions, load each artifact of a
bundle and reproduce its golden set. Each engine runs in a virtual environment of its own
(tflite-runtime 2.14 and old onnxruntime need numpy<2) with only the runtime package
installed, and the results are written into the bundle's manifest.

``python -m export.compat BUNDLE [--engines SPEC ...]``; a SPEC is ENGINE[==VERSION].

exit status (as for every command, see runtime.exitcodes): 0 matrix recorded; 4 the bundle
is missing or unusable; 64 usage error; 1 an environment could not be built (pip failed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from runtime import exitcodes
from runtime.backends import ENGINES
from runtime.bundle import Bundle, BundleError, EngineRecord, version_key, open_bundle
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
            r.get("platform")))


def run(bundle_path: Path, specs: list[str]) -> Bundle:
    bundle = open_bundle(bundle_path)
    for spec in specs:
        py = prepare(spec)
        record(bundle, check(py, bundle_path, spec.split("==")[0]))
    bundle.write_manifest()
    return bundle


def matrix(bundle: Bundle) -> str:
    """A Markdown table: artifact x engine version on a platform -> loads and matches golden."""
    def where(e: EngineRecord) -> str:
        p = e.platform or {}
        return f"{p['machine']}, {p['os']}, Python {p['python']}" if p else "platform not recorded"

    columns = sorted({(e.engine, e.version, where(e)) for a in bundle.artifacts.values() for e in a.engines},
                     key=lambda c: (c[0], version_key(c[1]), c[2]))
    head = "| artifact | " + " | ".join(f"{e} {v} ({w})" for e, v, w in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for name, art in bundle.artifacts.items():
        cells = []
        for col in columns:
            rec = next((e for e in art.engines if (e.engine, e.version, where(e)) == col), None)
            cells.append("" if rec is None else ("**explanations differ**" if rec.explanations is False
                                                 else "yes" if rec.loads and rec.matches_golden
                                                 else "loads, **golden differs**" if rec.loads else "**no**"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = exitcodes.parser("python -m export.compat", __doc__)
    p.add_argument("bundle", type=Path)
    p.add_argument("--engines", nargs="+", default=DEFAULT_SPECS, metavar="SPEC")
    args = p.parse_args(argv)
    try:
        bundle = run(args.bundle, args.engines)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.UNUSABLE
    except CompatError as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.INTERNAL
    print(matrix(bundle))
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
