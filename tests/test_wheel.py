"""The wheel is the product: built as users get it, it holds the runtime only and, installed
where nothing of the checkout is on the path (a fresh venv; emulated arm64 Debian 12), it
classifies a review exactly as the checkout does."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from conftest import ROOT
from export import wheel as wheel_check

SAMPLE = ROOT / "samples" / "positive.txt"


def test_the_wheel_holds_the_runtime_only_and_the_sdist_no_checkout_folders(built_wheel):
    assert wheel_check.wheel_problems(built_wheel.wheel) == []
    assert wheel_check.sdist_problems(built_wheel.sdist) == []
    with zipfile.ZipFile(built_wheel.wheel) as z:
        names = z.namelist()
        dist_info = next(n.split("/")[0] for n in names if ".dist-info/" in n)
        meta = z.read(f"{dist_info}/METADATA").decode()
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
    assert {n.split("/")[0] for n in names} == {"runtime", dist_info}
    bundle = {p.name for p in (ROOT / "runtime" / "default_bundle").iterdir() if p.is_file()}
    assert {"manifest.json", "vocab.txt", "golden.json"} <= bundle
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("runtime/default_bundle/")} == bundle
    assert "runtime/cli/classify.py" in names and "runtime/classify.py" in names
    assert "imdb-classify = runtime.classify:entry" in entry_points
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    plain = [line for line in requires if "extra ==" not in line]
    assert plain == ["Requires-Dist: numpy>=1.26"]
    assert any("tensorflow" in line and 'extra == "train"' in line for line in requires)
    with tarfile.open(built_wheel.sdist) as tar:
        top = {n.split("/")[1] for n in tar.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "runtime"} <= top and not top & {"tests", "train", "export", "benchmarks"}


def test_the_contents_check_names_each_thing_a_wheel_must_not_be(built_wheel, tmp_path):
    bad = tmp_path / built_wheel.wheel.name
    with zipfile.ZipFile(built_wheel.wheel) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("default_bundle/vocab.txt"):
                continue
            if item.filename.endswith("entry_points.txt"):
                data = b"[console_scripts]\n"
            if item.filename.endswith("/METADATA"):
                data = data.replace(b"Requires-Dist: numpy>=1.26\n", b"Requires-Dist: numpy>=1.26\nRequires-Dist: tensorflow-cpu\n")
            dst.writestr(item, data)
        dst.writestr("train/trainer.py", "")
    problems = "\n".join(wheel_check.wheel_problems(bad))
    assert "holds more than the runtime: train" in problems
    assert "lacks 1 runtime files, e.g. runtime/default_bundle/vocab.txt" in problems
    assert "no console script 'imdb-classify" in problems
    assert "requires more than numpy outside the extras: numpy>=1.26, tensorflow-cpu" in problems
    sdist = tmp_path / built_wheel.sdist.name
    with tarfile.open(built_wheel.sdist) as src, tarfile.open(sdist, "w:gz") as dst:
        root = src.getnames()[0].split("/")[0]
        for member in src.getmembers():
            if member.name != f"{root}/pyproject.toml":
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        dst.add(ROOT / "tests" / "conftest.py", f"{root}/tests/conftest.py")
    assert wheel_check.sdist_problems(sdist) == [f"{sdist.name}: holds checkout-only folders: tests",
                                                 f"{sdist.name}: lacks pyproject.toml"]


def test_a_different_answer_or_the_checkout_runtime_is_a_failure():
    want = {"imdb-classify": "a\n", "python -m runtime.classify": "a\n", "runtime.load().predict": "p\n"}
    got = {"imdb-classify": "a\n", "python -m runtime.classify": "b\n",
           "runtime.load().predict": f"{ROOT}/runtime/__init__.py\np\n"}
    problems = wheel_check.compare(got, want, "here", "/venv")
    assert len(problems) == 2
    assert problems[0].startswith("here: python -m runtime.classify printed 'b', this checkout 'a'")
    assert "runtime.load() imported" in problems[1] and "not the installed wheel" in problems[1]


def test_the_installed_wheel_with_one_engine_classifies_as_the_checkout(built_wheel, tmp_path):
    """pip install the wheel plus ai-edge-litert, no TensorFlow, in a venv without system
    site-packages; the command, the module and the library answer from outside the checkout."""
    env_dir = tmp_path / "venv"
    py = wheel_check.install(built_wheel.wheel, env_dir)
    assert "include-system-site-packages = false" in (env_dir / "pyvenv.cfg").read_text()
    frozen = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True).stdout.lower()
    assert "imdb-edge" in frozen and "ai-edge-litert" in frozen
    assert "tensorflow" not in frozen and "keras" not in frozen and "onnxruntime" not in frozen
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    got = {what: wheel_check.answer(cmd, SAMPLE, elsewhere, what) for what, cmd in wheel_check.commands(py).items()}
    want = wheel_check.reference(SAMPLE)
    assert wheel_check.compare(got, want, "venv", str(env_dir)) == []
    row = json.loads(got["imdb-classify"])
    assert row["label"] == "positive" and row["engine"] == "litert" and row["file"] == str(SAMPLE)
    module = got["runtime.load().predict"].splitlines()[0]
    assert module.startswith(str(env_dir)) and not module.startswith(str(ROOT))
    assert os.path.exists(os.path.join(os.path.dirname(module), "default_bundle", "manifest.json"))
    # A review it cannot use is the command's one line and status 2, installed as in the checkout.
    bad = tmp_path / "bad.txt"
    bad.write_text("  \n")
    proc = subprocess.run([str(env_dir / "bin" / "imdb-classify"), str(bad)], cwd=elsewhere,
                          capture_output=True, text=True, env=wheel_check.clean_env())
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "bad.txt" in proc.stderr


def test_the_wheel_command_says_usage_and_a_missing_sample_by_status(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "export.wheel", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    usage = run("--no-such-option")
    assert usage.returncode == 64 and "unrecognized arguments" in usage.stderr
    missing = run("--sample", str(tmp_path / "none.txt"), "--out", str(tmp_path / "dist"))
    assert missing.returncode == 4 and missing.stderr.count("\n") == 1 and "none.txt" in missing.stderr
    assert not (tmp_path / "dist").exists()


def _cannot_emulate() -> str | None:
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (CI installs it: .ci/run)"
    if os.geteuid() != 0:
        return "debootstrap needs root"
    return None


@pytest.mark.skipif(_cannot_emulate() is not None, reason=_cannot_emulate() or "")
def test_the_wheel_classifies_on_emulated_arm64_debian_12(built_wheel):
    """The same wheel on Debian 12 under qemu (Pi 4 CPU) with ai-edge-litert's aarch64 wheels:
    imdb-classify, python -m runtime.classify and runtime.load() as on this machine."""

    lines = []
    problems = wheel_check.arm64_check(built_wheel.wheel, SAMPLE, wheel_check.reference(SAMPLE), log=lines.append)
    assert problems == []
    assert lines and "classifies as this machine does" in lines[0] and "bookworm" in lines[0]


def test_offline_names_what_this_environment_lacks_to_build(monkeypatch):
    versions = {"build": "1.6.1", "setuptools": "65.5.0"}
    monkeypatch.setattr(wheel_check.metadata, "version", lambda dist: versions[dist])
    assert "has setuptools 65.5.0: pip install 'setuptools>=77'" in wheel_check.offline_problem()
    versions["setuptools"] = "77.0.3"
    assert wheel_check.offline_problem() is None
    versions["build"] = "1.1"
    assert "has build 1.1: pip install 'build>=1.2'" in wheel_check.offline_problem()
