"""The wheel is the product: build it, check what it holds, install it where nothing of this
checkout is on the path, and classify a review there as a user would.

``python -m export.wheel [--out DIR] [--offline] [--sample FILE] [--arm64]``

1. ``python -m build`` makes the wheel and the sdist from a copy of this checkout, in a fresh
   temporary folder (the checkout gets no ``build/`` or ``*.egg-info``).
2. The wheel must hold the runtime only (``runtime/`` and its metadata: no ``train/``,
   ``export/``, ``benchmarks/`` or ``tests/``), every module and default-bundle file of this
   checkout's ``runtime/``, the ``imdb-classify`` entry point, and no dependency beyond
   numpy outside the extras; the sdist holds no ``tests/``, ``train/``, ``export/`` or
   ``benchmarks/``.
3. The wheel is installed with one engine (``ai-edge-litert``, the version this checkout runs
   when it has one) into a new virtual environment, and from a folder outside the checkout
   ``imdb-classify --json FILE``, ``python -m runtime.classify --json FILE`` and
   ``runtime.load().predict(...)`` must print exactly what this checkout prints.
4. With ``--arm64``, the same three on emulated arm64 Debian 12 (``export.arm64``; root and
   debootstrap).

``--out DIR``: where the checked wheel and sdist are copied (only when every check passed;
without it they are deleted with the temporary folder). ``--offline``: build in this
environment (``python -m build --no-isolation``: it needs ``build`` and ``setuptools>=77``,
as the dev extra installs) and install with ``pip --no-index`` (numpy and the engine must then
be in a ``--find-links`` folder, e.g. ``PIP_FIND_LINKS``).

exit status (as for every command, see runtime.exitcodes): 0 every check passed; 3 a check
failed (each failure is printed); 4 the sample file is missing or unreadable; 64 usage
error; 1 a tool failed (build, venv, pip, the emulated image); 130 interrupted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from export.arm64 import TARGETS, Arm64Error, Target, cache_dir, qemu, run_tool, userland, wheels
from export.arm64 import _run as _arm64_run
from runtime import exitcodes
from runtime.atomic import atomic_file
from runtime.engines.base import ENGINES

ROOT = Path(__file__).resolve().parent.parent
ENGINE, ENGINE_DIST = "litert", "ai-edge-litert"
ENTRY_POINT = "imdb-classify = runtime.classify:entry"
# Top-level folders of the checkout that only a checkout runs.
CHECKOUT_ONLY = ("train", "export", "benchmarks", "tests", "scripts", "samples", "docs")
# Not copied to the build folder: version control, environments and earlier build output.
_NOT_SOURCE = {".git", ".venv", "build", "dist", "out", ".pytest_cache", "__pycache__"}
# The library call, run the same way in the checkout and in the installed environment. The
# first line says which runtime answered.
LIBRARY_CALL = ("import sys, runtime; print(runtime.__file__); "
                "print(repr(runtime.load().predict(open(sys.argv[1], encoding='utf-8').read())))")


class WheelError(Exception):
    """A tool the check needs failed: build, venv or pip (the message says which and why)."""


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


def _run(cmd: list[str], what: str, timeout: float = 900, **kw) -> subprocess.CompletedProcess:
    return run_tool(cmd, what, WheelError, timeout, **kw)


def clean_env() -> dict[str, str]:
    """This process's environment without what would put the checkout on the path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}


def _ignore(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _NOT_SOURCE or n.endswith((".egg-info", ".pyc"))}


OFFLINE_NEEDS = {"build": (1, 2), "setuptools": (77,)}


def offline_problem() -> str | None:
    """Why this environment cannot build without an isolated one (None: it can)."""
    for dist, floor in OFFLINE_NEEDS.items():
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = None
        parts = tuple(int(p) for p in (version or "0").split(".")[:len(floor)] if p.isdigit())
        if version is None or parts < floor:
            want = f"{dist}>={'.'.join(map(str, floor))}"
            return (f"--offline builds in this environment, which has {dist} {version or 'not installed'}: "
                    f"pip install '{want}' (the dev extra has it)")
    return None


def build(dest: Path, offline: bool = False, source: Path = ROOT) -> Built:
    """The wheel and sdist of ``source``, built from a copy of it into ``dest/dist``."""
    if offline and (problem := offline_problem()):
        raise WheelError(problem)
    copy = dest / "source"
    shutil.copytree(source, copy, ignore=_ignore, symlinks=True)
    cmd = [sys.executable, "-m", "build", "--outdir", str(dest / "dist"), str(copy)]
    _run(cmd + (["--no-isolation"] if offline else []), "python -m build" + (" --no-isolation" if offline else ""),
         env=clean_env())
    wheels, sdists = sorted((dest / "dist").glob("*.whl")), sorted((dest / "dist").glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        raise WheelError(f"python -m build made {len(wheels)} wheels and {len(sdists)} sdists, not one of each")
    return Built(wheels[0], sdists[0])


def _runtime_files(source: Path) -> set[str]:
    """What the wheel must hold of the checkout's runtime/: its modules and bundle files."""
    base = source / "runtime"
    found = {p.relative_to(source).as_posix() for p in base.rglob("*.py") if "__pycache__" not in p.parts}
    return found | {p.relative_to(source).as_posix() for p in (base / "default_bundle").iterdir() if p.is_file()}


def wheel_problems(wheel: Path, source: Path = ROOT) -> list[str]:
    """What is wrong with the wheel's contents, one line each (empty: it is the runtime)."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = [n for n in names if n.split("/")[0].endswith(".dist-info")]
        dist_info = info[0].split("/")[0] if info else None
        read = (lambda name: z.read(f"{dist_info}/{name}").decode("utf-8")
                if f"{dist_info}/{name}" in names else "")
        entry_points, meta = read("entry_points.txt"), read("METADATA")
    problems = []
    if dist_info is None:
        return [f"{wheel.name}: no .dist-info folder"]
    foreign = sorted({n.split("/")[0] for n in names} - {"runtime", dist_info})
    if foreign:
        problems.append(f"{wheel.name}: holds more than the runtime: {', '.join(foreign)}")
    missing = sorted(_runtime_files(source) - set(names))
    if missing:
        problems.append(f"{wheel.name}: lacks {len(missing)} runtime files, e.g. {', '.join(missing[:3])}")
    if ENTRY_POINT not in [line.strip() for line in entry_points.splitlines()]:
        problems.append(f"{wheel.name}: no console script {ENTRY_POINT!r} in entry_points.txt")
    required = [line.split(":", 1)[1].strip() for line in meta.splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    if [r for r in required if not r.startswith("numpy")]:
        problems.append(f"{wheel.name}: requires more than numpy outside the extras: {', '.join(required)}")
    return problems


def sdist_problems(sdist: Path) -> list[str]:
    """What is wrong with the sdist's contents, one line each."""
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    top = {n.split("/")[1] for n in names if n.count("/") >= 1 and n.split("/")[1]}
    problems = []
    extra = sorted(top & set(CHECKOUT_ONLY))
    if extra:
        problems.append(f"{sdist.name}: holds checkout-only folders: {', '.join(extra)}")
    for needed in ("pyproject.toml", "runtime"):
        if needed not in top:
            problems.append(f"{sdist.name}: lacks {needed}")
    return problems


def engine_requirement(engine_dist: str = ENGINE_DIST) -> str:
    """The engine as this checkout runs it (same version, so the answers can be compared)."""
    try:
        return f"{engine_dist}=={metadata.version(engine_dist)}"
    except metadata.PackageNotFoundError:
        return engine_dist


def install(wheel: Path, env_dir: Path, offline: bool = False, extra: str = ENGINE) -> Path:
    """A new virtual environment (no system site-packages) with the wheel and its ``extra``
    (one engine); its python."""
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    except (OSError, subprocess.CalledProcessError) as e:
        raise WheelError(f"python -m venv {env_dir}: {e}") from None
    py = env_dir / "bin" / "python"
    extra_dist = {"litert": ENGINE_DIST, "onnx": "onnxruntime", "tflite": "tflite-runtime"}.get(extra)
    pins = [engine_requirement(extra_dist)] if extra_dist else []
    _run([str(py), "-m", "pip", "install", "-q", *(["--no-index"] if offline else []), f"{wheel}[{extra}]", *pins],
         f"pip install {wheel.name}[{extra}]", env=clean_env())
    return py


def commands(py: Path) -> dict[str, list[str]]:
    """The three ways a user classifies a review with the environment of ``py``; the sample's
    path is appended."""
    return {"imdb-classify": [str(py.parent / "imdb-classify"), "--json"],
            "python -m runtime.classify": [str(py), "-m", "runtime.classify", "--json"],
            "runtime.load().predict": [str(py), "-c", LIBRARY_CALL]}


def answer(cmd: list[str], sample: Path, cwd: Path, what: str, env: dict[str, str] | None = None,
           timeout: float = 300) -> str:
    """What ``cmd`` prints for the sample, run in ``cwd``; a failure is a WheelError."""
    try:
        proc = subprocess.run([*cmd, str(sample)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env=clean_env() if env is None else env)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise WheelError(f"{what}: {e}") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise WheelError(f"{what} exited {proc.returncode}: {tail[:300]}")
    return proc.stdout


def reference(sample: Path) -> dict[str, str]:
    """This checkout's answers (the library call's first line, the module's path, dropped)."""
    cli = answer([sys.executable, "-m", "runtime.classify", "--json"], sample, ROOT, "this checkout's runtime.classify")
    lib = answer([sys.executable, "-c", LIBRARY_CALL], sample, ROOT, "this checkout's runtime.load()")
    return {"imdb-classify": cli, "python -m runtime.classify": cli,
            "runtime.load().predict": lib.split("\n", 1)[1]}


def compare(got: dict[str, str], want: dict[str, str], where: str, home: str) -> list[str]:
    """Differences between installed answers and this checkout's, one line each; the library
    call's first line must name a runtime under ``home``."""
    problems = []
    for what, out in got.items():
        if what == "runtime.load().predict":
            module, _, out = out.partition("\n")
            if not module.startswith(home):
                problems.append(f"{where}: runtime.load() imported {module}, not the installed wheel")
        if out != want[what]:
            problems.append(f"{where}: {what} printed {out.strip()[:200]!r}, this checkout {want[what].strip()[:200]!r}")
    return problems


def check_installed(built: Built, work: Path, sample: Path, offline: bool = False) -> list[str]:
    """Install the wheel in a fresh environment under ``work`` and compare its answers."""
    env_dir = work / "venv"
    py = install(built.wheel, env_dir, offline)
    outside = work / "elsewhere"
    outside.mkdir()
    got = {what: answer(cmd, sample, outside, f"{what} (installed)") for what, cmd in commands(py).items()}
    return compare(got, reference(sample), "x86_64 venv" if os.uname().machine == "x86_64" else "venv",
                   str(env_dir.resolve()))


def copy_out(built: Built, out: Path) -> list[Path]:
    """The wheel and sdist copied into ``out`` (created if needed), each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in (built.wheel, built.sdist):
        with atomic_file(out / path.name) as f, open(path, "rb") as src:
            shutil.copyfileobj(src, f)
        written.append(out / path.name)
    return written


def main(argv: list[str] | None = None) -> int:
    p = exitcodes.parser("python -m export.wheel", __doc__)
    p.add_argument("--out", type=Path, help="copy the checked wheel and sdist into this folder")
    p.add_argument("--offline", action="store_true",
                   help="build without an isolated environment and install with pip --no-index")
    p.add_argument("--sample", type=Path, default=ROOT / "samples" / "positive.txt",
                   help="the review to classify (default: samples/positive.txt)")
    p.add_argument("--arm64", action="store_true",
                   help="also install the wheel on emulated arm64 Debian 12 (root, debootstrap; see export.arm64)")
    args = p.parse_args(argv)
    sample = args.sample.resolve()
    try:
        sample.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"error: sample {args.sample}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
        return exitcodes.UNUSABLE

    try:
        with exitcodes.stop_signals_interrupt(), tempfile.TemporaryDirectory(prefix="imdb-edge-wheel-") as tmp:
            work = Path(tmp)
            built = build(work, args.offline)
            problems = wheel_problems(built.wheel) + sdist_problems(built.sdist)
            if not problems:
                problems += check_installed(built, work, sample, args.offline)
            if not problems and args.arm64:
                problems += arm64_check(built.wheel, sample, reference(sample),
                                              log=lambda line: print(line, file=sys.stderr))
            for line in problems:
                print(f"wheel check: {line}", file=sys.stderr)
            size = built.wheel.stat().st_size
            with zipfile.ZipFile(built.wheel) as z:
                count = len(z.namelist())
            if problems:
                return exitcodes.CHECK_FAILED
            print(f"{built.wheel.name}: {count} files, {size / 1e6:.2f} MB; installed and classified "
                  f"{args.sample.name} as this checkout does" + (" (also on emulated arm64)" if args.arm64 else ""))
            if args.out is not None:
                for path in copy_out(built, args.out):
                    print(path)
            return exitcodes.OK
    except (WheelError, Arm64Error, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.INTERNAL
    except KeyboardInterrupt as e:
        print(f"wheel check {exitcodes.interrupt_name(e)}", file=sys.stderr)
        return exitcodes.status_of(e)


if __name__ == "__main__":
    sys.exit(main())


def arm64_check(wheel: Path, sample: Path, want: dict[str, str], target: Target = TARGETS[0],
                engine: str = "litert", log=print) -> list[str]:
    """The built wheel on emulated ``target`` (Debian 12 on a Pi 4's CPU unless told), with one
    engine's aarch64 wheels: ``imdb-classify``, ``python -m runtime.classify`` and
    ``runtime.load().predict`` classify ``sample``; how their output differs from ``want``
    (this machine's, see ``export.wheel.reference``), one line each."""
    cache = cache_dir() / "arm64"
    cache.mkdir(parents=True, exist_ok=True)
    qemu_binary, qemu_version = qemu(cache)
    tree = userland(target, cache)
    requirement = engine_requirement(ENGINES[engine][2])
    found = wheels(target, [requirement], cache)
    if found is None:
        raise Arm64Error(f"{target.label}: no aarch64 wheel of {requirement}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        site = work / "site"
        # A pure-Python wheel: this machine's pip unpacks it as the guest's would, with its
        # console script in site/bin (run below by the guest's python, not its #! line).
        _arm64_run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
             f"pip install --target {wheel.name}")
        (work / "elsewhere").mkdir()
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(map(str, (site, found))),
               "PYTHONNOUSERSITE": "1", "QEMU_CPU": target.cpu, "QEMU_LD_PREFIX": str(tree),
               "HOME": str(work), "LANG": "C.UTF-8"}
        guest = [str(qemu_binary), str(tree / "usr" / "bin" / f"python{target.python}")]
        installed = commands(site / "bin" / "python")  # the paths of the console script and python
        cmds = {"imdb-classify": [*guest, installed["imdb-classify"][0], *installed["imdb-classify"][1:]],
                **{what: [*guest, *cmd[1:]] for what, cmd in installed.items() if what != "imdb-classify"}}
        try:
            got = {what: answer(cmd, sample, work / "elsewhere", f"{what} on {target.name}", env, timeout=900)
                   for what, cmd in cmds.items()}
        except WheelError as e:
            raise Arm64Error(str(e)) from None
    problems = compare(got, want, f"{target.name} (qemu {qemu_version.split('+')[0].split(':')[-1]})", str(site))
    log(f"{target.label}: {wheel.name} with {requirement}: "
        + ("classifies as this machine does" if not problems else f"{len(problems)} differences"))
    return problems
