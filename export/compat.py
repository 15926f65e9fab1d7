"""The compatibility matrix: which engines, at which versions, load each artifact of a
bundle and reproduce its golden set. Each engine runs in a virtual environment of its own
(tflite-runtime 2.14 and old onnxruntime need numpy<2) with only the runtime package
installed, and the results are written into the bundle's manifest.

``python -m export.compat BUNDLE [--engines SPEC ...]``; a SPEC is ENGINE[==VERSION].
Exit codes: 0 matrix recorded; 2 bad input; 1 an environment could not be built.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from runtime.backends import ENGINES
from runtime.bundle import MANIFEST, BundleError, open_bundle

ROOT = Path(__file__).resolve().parent.parent
# The engines our users have: the current ones, and the oldest releases we still claim.
DEFAULT_SPECS = ["litert", "tflite-runtime==2.14.0", "onnxruntime", "onnxruntime==1.17.0"]
NEEDS_NUMPY_1 = {"tflite-runtime==2.14.0", "onnxruntime==1.17.0"}


class CompatError(Exception):
    """An engine environment that could not be built."""


def env_dir(spec: str) -> Path:
    base = Path(os.environ.get("IMDB_CACHE") or Path.home() / ".cache" / "imdb-edge")
    return base / "compat-envs" / spec.replace("==", "-")


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


def record(manifest: dict, results: list[dict]) -> None:
    """Upsert (engine, version) records per artifact, and the smallest versions known to work."""
    for r in results:
        if r["kind"] not in ("load", "golden") or r["artifact"] not in manifest["artifacts"]:
            continue
        art = manifest["artifacts"][r["artifact"]]
        loads = r["kind"] == "golden"
        entry = {"engine": r["engine"], "version": r["version"], "loads": loads,
                 "matches_golden": bool(r["passed"]) if loads else None, "checked_by": "compat"}
        if not loads:
            entry["error"] = r["message"]
        art["engines"] = [e for e in art["engines"] if (e["engine"], e["version"]) != (r["engine"], r["version"])]
        art["engines"].append(entry)
    for art in manifest["artifacts"].values():
        art["engines"].sort(key=lambda e: (e["engine"], _version_key(e["version"])))
        art["min_versions"] = min_versions(art["engines"])


def min_versions(engines: list[dict]) -> dict[str, str]:
    """Per engine, the smallest version recorded as loading the artifact and matching its golden set."""
    good: dict[str, str] = {}
    for e in sorted(engines, key=lambda e: (e["engine"], _version_key(e["version"]))):
        if e["loads"] and e["matches_golden"]:
            good.setdefault(e["engine"], e["version"])
    return good


def _version_key(version: str | None) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in (version or "0").split("."))


def run(bundle_path: Path, specs: list[str]) -> dict:
    bundle = open_bundle(bundle_path)
    manifest = bundle.manifest
    for spec in specs:
        py = prepare(spec)
        record(manifest, check(py, bundle_path, spec.split("==")[0]))
    tmp = bundle_path / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, bundle_path / MANIFEST)
    return manifest


def matrix(manifest: dict) -> str:
    """A Markdown table: artifact x engine version -> loads and matches golden."""
    columns = sorted({(e["engine"], e["version"]) for a in manifest["artifacts"].values() for e in a["engines"]},
                     key=lambda c: (c[0], _version_key(c[1])))
    head = "| artifact | " + " | ".join(f"{e} {v}" for e, v in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for name, art in manifest["artifacts"].items():
        cells = []
        for col in columns:
            rec = next((e for e in art["engines"] if (e["engine"], e["version"]) == col), None)
            cells.append("" if rec is None else ("yes" if rec["loads"] and rec["matches_golden"]
                                                 else "loads, **golden differs**" if rec["loads"] else "**no**"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.compat", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--engines", nargs="+", default=DEFAULT_SPECS, metavar="SPEC")
    args = p.parse_args(argv)
    try:
        manifest = run(args.bundle, args.engines)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except CompatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(matrix(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
