"""A bundle on arm64 Debian, the base of 64-bit Raspberry Pi OS, checked from an x86_64
machine under qemu user-mode emulation.

For each target (Debian 12 "Bookworm" with Python 3.11 and Debian 13 "Trixie" with Python
3.13, each on a Pi 4's Cortex-A72 and a Pi 5's Cortex-A76) this builds an arm64 userland without
running arm64 code (``debootstrap --foreign``, then every downloaded package unpacked with
``dpkg-deb -x``), installs the engine's aarch64 wheels with pip's ``--platform --target``,
and runs ``runtime.parity`` on the bundle in it under ``qemu-aarch64``. The results are
compared with the same engine version's on this machine: equal output digests mean
bit-identical answers, anything else is a failure.

What makes the emulation faithful (each found by a crash or a wrong answer):
- qemu 10, taken from Debian 13's ``qemu-user`` package (statically linked, so it runs on any
  x86_64 Linux). Debian 12's qemu 7.2 hands the host's x86 ``/proc/cpuinfo`` to the guest, and
  ai-edge-litert and onnxruntime both crash reading it.
- an explicit CPU: qemu's default ``max`` CPU has SME, where ai-edge-litert's XNNPACK path
  gives wrong answers; no Raspberry Pi has SME.
Needs root (debootstrap) and Debian's package registry and PyPI; everything downloaded is
kept under the cache directory (about 600 MB) and reused.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from runtime.engines.base import ENGINES
from train.data import cache_dir

ROOT = Path(__file__).resolve().parent.parent
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
QEMU_SUITE = "trixie"  # its qemu-user is qemu 10, statically linked


class Arm64Error(Exception):
    """The emulated environment could not be built (tools, permissions, downloads)."""


@dataclass(frozen=True)
class Target:
    name: str
    suite: str  # Debian's code name
    python: str  # the suite's python3
    glibc: int  # the suite's glibc 2.N: the newest manylinux wheels it runs
    cpu: str  # qemu -cpu
    board: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.suite}, Python {self.python}, {self.cpu} as on a {self.board})"


_PI4, _PI5 = ("cortex-a72", "Raspberry Pi 4"), ("cortex-a76", "Raspberry Pi 5")
TARGETS = tuple(Target(f"debian{n}-{cpu.split('-')[1]}", suite, python, glibc, cpu, board)
                for n, suite, python, glibc in ((12, "bookworm", "3.11", 36), (13, "trixie", "3.13", 41))
                for cpu, board in (_PI4, _PI5))


def run_tool(cmd: list[str], what: str, error: type[Exception], timeout: float, **kw) -> subprocess.CompletedProcess:
    """``cmd``'s completed process; a tool that cannot start, times out or fails raises
    ``error`` with one line: ``what`` and the cause (the last line of its output)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise error(f"{what}: {e}") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise error(f"{what} failed (exit {proc.returncode}): {tail[0][:300]}")
    return proc


def _run(cmd: list[str], what: str, timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    return run_tool(cmd, what, Arm64Error, timeout, **kw)


def package_entry(index: str, name: str) -> dict[str, str]:
    """One package's fields from a Debian ``Packages`` index."""
    for stanza in index.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if fields.get("Package") == name:
            return fields
    raise Arm64Error(f"package {name!r} is not in the index")


def _download(url: str, dest: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=120) as r, open(dest, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        raise Arm64Error(f"download of {url} failed: {e}") from None


def qemu(cache: Path) -> tuple[Path, str]:
    """Path and version of a static ``qemu-aarch64`` from Debian 13's ``qemu-user`` package."""
    home = cache / "qemu"
    binary = home / "usr" / "bin" / "qemu-aarch64"
    version_file = home / "VERSION"
    if not binary.exists() or not version_file.exists():
        if platform.machine() != "x86_64":
            raise Arm64Error(f"the arm64 check runs on x86_64 (this is {platform.machine()}); "
                             "on an arm64 machine run `python -m runtime.parity BUNDLE` directly")
        url = f"{MIRROR}/dists/{QEMU_SUITE}/main/binary-amd64/Packages.xz"
        try:
            with urllib.request.urlopen(url, timeout=120) as r:
                index = lzma.decompress(r.read()).decode("utf-8")
        except (OSError, lzma.LZMAError) as e:
            raise Arm64Error(f"download of {url} failed: {e}") from None
        entry = package_entry(index, "qemu-user")
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            deb = Path(tmp) / "qemu-user.deb"
            _download(f"{MIRROR}/{entry['Filename']}", deb)
            if hashlib.sha256(deb.read_bytes()).hexdigest() != entry["SHA256"]:
                raise Arm64Error(f"{entry['Filename']}: sha256 differs from the {QEMU_SUITE} index")
            unpacked = Path(tmp) / "qemu"
            _run(["dpkg-deb", "-x", str(deb), str(unpacked)], "dpkg-deb -x qemu-user")
            (unpacked / "VERSION").write_text(entry["Version"] + "\n")
            shutil.rmtree(home, ignore_errors=True)
            unpacked.rename(home)
    return binary, version_file.read_text().strip()


def userland(target: Target, cache: Path) -> Path:
    """An arm64 Debian tree with python3, unpacked on this machine (kept once complete)."""
    tree = cache / target.suite
    if (tree / ".complete").exists():
        return tree
    if shutil.which("debootstrap") is None:
        raise Arm64Error("debootstrap is not installed (Debian/Ubuntu: apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise Arm64Error("debootstrap needs root: run the arm64 check as root (or in a container)")
    work = cache / f"{target.suite}.partial"
    shutil.rmtree(work, ignore_errors=True)
    _run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", "--include=python3",
          target.suite, str(work), MIRROR], f"debootstrap {target.suite} arm64")
    # The first stage unpacks only the essential packages; python3 and its libraries are
    # downloaded beside them: unpack everything (dpkg-deb runs no package scripts).
    for deb in sorted((work / "var" / "cache" / "apt" / "archives").glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(work)], f"dpkg-deb -x {deb.name}")
    if not (work / "usr" / "bin" / f"python{target.python}").exists():
        raise Arm64Error(f"{target.suite}: python{target.python} is not in the unpacked tree")
    (work / ".complete").write_text(target.suite + "\n")
    shutil.rmtree(tree, ignore_errors=True)
    work.rename(tree)
    return tree


def wheels(target: Target, requirements: list[str], cache: Path) -> Path | None:
    """A folder with the aarch64 wheels of ``requirements`` for the target's Python and glibc
    (None: no such wheel exists, as for tflite-runtime on Python 3.12+)."""
    key = hashlib.sha256(" ".join(requirements).encode()).hexdigest()[:12]
    folder = cache / "wheels" / f"{target.suite}-{key}"
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    platforms = [f"manylinux_2_{v}_aarch64" for v in range(17, target.glibc + 1)] + ["manylinux2014_aarch64"]
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--target", str(folder), "--only-binary=:all:",
           "--python-version", target.python, "--implementation", "cp",
           *[a for p in platforms for a in ("--platform", p)], *requirements]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        if "No matching distribution" in proc.stderr:
            return None
        raise Arm64Error(f"pip install {' '.join(requirements)} for {target.name} failed: "
                         f"{proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else proc.returncode}")
    (folder / ".complete").write_text(" ".join(requirements) + "\n")
    return folder


def project(dest: Path) -> Path:
    """This checkout's runtime package, installed (pure Python) into ``dest``."""
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest / "dist"), str(ROOT)],
         "pip wheel (this project)")
    wheel = next((dest / "dist").glob("*.whl"))
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(dest / "site"), str(wheel)],
         "pip install --target (this project)")
    return dest / "site"


def parity(tree: Path, target: Target, qemu_binary: Path, qemu_version: str, paths: list[Path],
           bundle: Path, engine: str, work: Path) -> list[dict]:
    """``runtime.parity`` results for ``engine`` in the emulated target, each with its platform
    (machine, OS and Python as the guest sees them, and the emulator)."""
    out = work / f"parity-{target.name}-{engine}.json"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(map(str, paths)), "PYTHONNOUSERSITE": "1",
           "QEMU_CPU": target.cpu, "QEMU_LD_PREFIX": str(tree), "HOME": str(work), "LANG": "C.UTF-8"}
    cmd = [str(qemu_binary), str(tree / "usr" / "bin" / f"python{target.python}"), "-m", "runtime.parity",
           str(bundle.resolve()), "--engines", engine, "--json", str(out)]
    try:
        proc = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, timeout=3600)
    except subprocess.TimeoutExpired:
        raise Arm64Error(f"{target.name}: runtime.parity on {engine} did not finish in an hour") from None
    if not out.exists():
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}, no output"])[-1]
        raise Arm64Error(f"{target.name}: runtime.parity on {engine} did not run: {tail[:300]}")
    results = json.loads(out.read_text())
    for r in results:
        r["platform"] = {**r.get("platform", {}), "emulated": f"qemu {qemu_version.split('+')[0].split(':')[-1]} -cpu {target.cpu}"}
    return results


def compare(results: list[dict], reference: list[dict]) -> list[str]:
    """Mark each golden result ``bit_identical`` against the reference machine's result for
    the same artifact and engine version; the differences, one line each."""
    ref = {(r["artifact"], r["engine"], r["version"]): r for r in reference if r["kind"] in ("golden", "load")}
    problems = []
    for r in results:
        if r["kind"] not in ("golden", "load"):
            continue
        where = f"{r['artifact']} on {r['engine']} {r['version']} ({r['platform'].get('os')}, {r['platform'].get('emulated')})"
        base = ref.get((r["artifact"], r["engine"], r["version"]))
        if base is None:
            problems.append(f"{where}: no result on the reference machine to compare with")
            continue
        if r["kind"] != base["kind"] or r["passed"] != base["passed"]:
            problems.append(f"{where}: {r['kind']} {'passes' if r['passed'] else 'fails'} here but "
                            f"{base['kind']} {'passes' if base['passed'] else 'fails'} on {base['platform']['machine']}"
                            f" ({r['message']})")
            r["bit_identical"] = False
            continue
        if r["kind"] == "golden":
            same = r["figures"].get("outputs_sha256") == base["figures"].get("outputs_sha256")
            r["bit_identical"] = same
            if not same:
                problems.append(f"{where}: outputs differ from {base['platform']['machine']}'s "
                                f"(max |diff| to golden {r['figures']['max_abs_diff']:.3g} here, "
                                f"{base['figures']['max_abs_diff']:.3g} there)")
    return problems


def check(bundle: Path, host_results: dict[str, list[dict]], numpy_1: set[str],
          targets: tuple[Target, ...] = TARGETS, log=print) -> tuple[list[dict], list[str]]:
    """Every engine version of ``host_results`` (engine spec -> this machine's parity results)
    on every target that has its wheels; (all emulated results, problems)."""
    cache = cache_dir() / "arm64"
    cache.mkdir(parents=True, exist_ok=True)
    qemu_binary, qemu_version = qemu(cache)
    everything, problems = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        site = project(work)
        for target in targets:
            tree = userland(target, cache)
            for spec, reference in host_results.items():
                engine = spec.split("==")[0]
                versions = {r["version"] for r in reference if r["engine"] == engine and r["version"]}
                if len(versions) != 1:
                    problems.append(f"{spec}: no engine version on this machine to compare with")
                    continue
                version = versions.pop()
                requirement = [f"{ENGINES[engine][2]}=={version}"] + (["numpy<2"] if spec in numpy_1 else [])
                found = wheels(target, requirement, cache)
                if found is None:
                    log(f"{target.label}: no aarch64 wheel of {' '.join(requirement)}: not checked")
                    continue
                results = parity(tree, target, qemu_binary, qemu_version, [site, found], bundle, engine, work)
                found_problems = compare(results, reference)
                log(f"{target.label}: {engine} {version}: "
                    + ("bit-identical to this machine" if not found_problems else f"{len(found_problems)} differences"))
                problems += found_problems
                everything += results
    return everything, problems
