"""Hostile input, as a hostile user would try it: every case ends in its documented exit
status and a one-line message naming the file or field, in bounded memory, never a traceback."""

import json
import pickle
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

import runtime
from conftest import ROOT
from runtime.bundle.files import BundleError, sha256_file
from runtime.classifier import DEFAULT_BUNDLE
from runtime.encoding.text import EMPTY_REVIEW

# Runs runtime.classify in-process and reports the process's own peak memory (VmHWM belongs
# to the new address space; ru_maxrss would inherit pytest's across exec).
_PROBE = (
    "import sys, runpy\n"
    "sys.argv = ['classify'] + sys.argv[1:]\n"
    "code = 0\n"
    "try:\n    runpy.run_module('runtime.classify', run_name='__main__')\n"
    "except SystemExit as e:\n    code = e.code\n"
    "sys.stdout.flush()\n"
    "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
    "print('RSS_KB', hwm, 'EXIT', code, file=sys.stderr)\n"
)
RSS_LIMIT_KB = 200_000  # generous: the runtime with one engine loaded takes about 50 MB, and 110 MB at most here


def classify_measured(*args, stdin=None, shell_input: str | None = None, timeout=300):
    """(exit status, stdout, stderr lines without the probe's, peak RSS in KB)."""
    cmd = [sys.executable, "-c", _PROBE, *map(str, args)]
    if shell_input is not None:
        quoted = " ".join(map(shlex.quote, cmd))
        proc = subprocess.run(f"{shell_input} | {quoted}", shell=True, cwd=ROOT, capture_output=True, timeout=timeout)
    else:
        proc = subprocess.run(cmd, cwd=ROOT, stdin=stdin, capture_output=True, timeout=timeout)
    err = proc.stderr.decode(errors="replace").splitlines()
    probe = next(line for line in err if line.startswith("RSS_KB "))
    _, rss, _, code = probe.split()
    return int(code), proc.stdout.decode(errors="replace"), [line for line in err if line != probe], int(rss)


def write_repeated(path, unit: bytes, size: int):
    with open(path, "wb") as f:
        f.write(unit * (size // len(unit)))
    return path


def write_comma_words(path, size: int):
    """Known words joined by commas, no whitespace, never repeating with a period that a
    memo could exploit: each megabyte is the same random block rotated by another offset."""
    import random

    rng = random.Random(3)
    block = ",".join(rng.choice(["good", "bad", "great", "film", "awful", "plot", "acting"])
                     for _ in range(200_000)).encode()
    with open(path, "wb") as f:
        for i in range(size // len(block)):
            k = (i * 7919) % len(block)
            f.write(block[k:] + b"," + block[:k])
    return path


@pytest.mark.parametrize("case, make, status, message", [
    ("no whitespace, 100 MB", lambda p: write_comma_words(p / "commas.txt", 100 << 20), 0, None),
    ("every space after <br, 10 MB", lambda p: write_repeated(p / "br.txt", b"good<br ", 10 << 20), 0, None),
    ("<br /> only, 10 MB", lambda p: write_repeated(p / "brs.txt", b"fine<br />", 10 << 20), 0, None),
    ("NUL bytes after the first 8 KiB", lambda p: write_repeated(p / "late.bin", b"good film " * 2000 + b"\0", 20_010),
     2, "binary file (contains NUL bytes), not text"),
    ("UTF-16 with a byte-order mark", lambda p: (p / "u16.txt").write_bytes("A great film".encode("utf-16")) and p / "u16.txt",
     2, "looks like UTF-16 text (byte-order mark): use --encoding utf-16"),
])
def test_hostile_files(tmp_path, case, make, status, message):
    """The time limit is no benchmark: linear work takes seconds, the quadratic cutting this
    replaced took minutes on the 10 MB cases."""
    path = make(tmp_path)
    code, out, err, rss = classify_measured(path, timeout=90)
    assert code == status, (case, err)
    if message is None:
        assert out.split("\t")[0] in ("positive", "negative") and not [e for e in err if e.startswith("error")]
    else:
        assert err == [f"error: {path}: {message}"], case
    assert rss < RSS_LIMIT_KB, f"{case}: peak RSS {rss} KB"
    print(f"{case}: peak RSS {rss} KB")


@pytest.mark.parametrize("encoding, message", [
    ("utf-16", "not utf-16 text (UTF-16 stream does not start with BOM)"),
    ("utf-16-le", "binary file (contains NUL characters), not text"),
    ("utf-8", "binary file (contains NUL bytes), not text"),
])
def test_a_device_of_zeros_is_refused_at_once(encoding, message):
    code, out, err, rss = classify_measured("--encoding", encoding, "/dev/zero", timeout=60)
    assert code == 2 and err == [f"error: /dev/zero: {message}"]
    assert rss < RSS_LIMIT_KB


def test_200_mb_on_standard_input_is_streamed(tmp_path):
    code, out, err, rss = classify_measured("-", shell_input="yes 'great movie' | head -c 209715200", timeout=600)
    assert code == 0 and out.startswith("positive\t") and out.rstrip().endswith("\t-"), err
    assert rss < RSS_LIMIT_KB, f"peak RSS {rss} KB for 200 MB on standard input"


def test_a_full_disk_on_standard_output_is_one_line(tmp_path):
    review = tmp_path / "r.txt"
    review.write_text("a fine film")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "runtime.classify", str(review)], cwd=ROOT, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: cannot write the output: No space left on device"]


def _bundle_with(tmp_path, change):
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest, bundle)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


def _set(path, value):
    def change(m, bundle):
        *parents, last = path.split(".")
        target = m
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return change


def _outside_file(m, bundle):
    secret = bundle.parent / "secret.txt"
    secret.write_text("not a model")
    m["artifacts"]["tflite-int8"].update(file="../secret.txt", sha256=sha256_file(secret))


def _symlink_out(m, bundle):
    secret = bundle.parent / "secret.tflite"
    shutil.copyfile(bundle / "model_int8.tflite", secret)
    (bundle / "model_int8.tflite").unlink()
    (bundle / "model_int8.tflite").symlink_to(secret)


@pytest.mark.parametrize("change, message", [
    (_set("artifacts", []), "field 'artifacts' must be a non-empty object of artifacts, got []"),
    (_set("artifacts", {}), "field 'artifacts' must be a non-empty object of artifacts, got {}"),
    (_set("artifacts.tflite-int8.file", KeyError), "field 'artifacts.tflite-int8.file' is missing"),
    (_set("artifacts.tflite-int8.sha256", KeyError), "field 'artifacts.tflite-int8.sha256' is missing"),
    (_set("artifacts.tflite-int8.format", "tensorrt"), "field 'artifacts.tflite-int8.format' must be one of tflite, onnx"),
    (_set("labels", ["negative"]), "field 'labels' must be a list of 2 to 1000 distinct non-empty strings"),
    (_set("labels", "xy"), "field 'labels' must be a list of 2 to 1000 distinct non-empty strings, got 'xy'"),
    (_set("threshold", "abc"), "field 'threshold' must be a number in [0, 1], got 'abc'"),
    (_set("threshold", None), "field 'threshold' must be a number in [0, 1], got None"),
    (_set("threshold", 1e308), "field 'threshold' must be a number in [0, 1], got 1e+308"),
    (_set("threshold", -1), "field 'threshold' must be a number in [0, 1], got -1"),
    (_set("default_artifact", 123), "field 'default_artifact' must be a non-empty string, got 123"),
    (_set("default_artifact", "nope"), "field 'default_artifact' must be one of tflite-int8, onnx-int8"),
    (_set("artifacts.tflite-int8.file", "../../etc/passwd"), "field 'artifacts.tflite-int8.file' must be a file name inside the bundle"),
    (_set("artifacts.tflite-int8.file", "/etc/passwd"), "field 'artifacts.tflite-int8.file' must be a file name inside the bundle"),
    (_set("vocabulary.file", "sub/../../x"), "field 'vocabulary.file' must be a file name inside the bundle"),
    (_set("artifacts.tflite-int8.golden_tolerance", "big"), "field 'artifacts.tflite-int8.golden_tolerance' must be a number"),
    (_outside_file, "field 'artifacts.tflite-int8.file' must be a file name inside the bundle"),
    (_symlink_out, "model_int8.tflite: points outside the bundle directory"),
])
def test_bad_manifests_are_one_line_errors_naming_the_field(tmp_path, change, message):
    bundle = _bundle_with(tmp_path, change)
    with pytest.raises(BundleError) as e:
        runtime.load(bundle, artifact="tflite-int8")
    assert message in str(e.value) and "\n" not in str(e.value)
    proc = subprocess.run([sys.executable, "-m", "runtime.classify", "--model", str(bundle), "--artifact", "tflite-int8",
                           "-"], cwd=ROOT, input="a fine film", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: {e.value}"]
    parity = subprocess.run([sys.executable, "-m", "runtime.parity", str(bundle)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert parity.returncode in (3, 4) and "Traceback" not in parity.stderr


def test_a_file_outside_the_bundle_is_never_opened(tmp_path, monkeypatch):
    """The path is refused when the manifest is read, before any file is hashed."""
    from runtime.bundle import directory

    opened = []
    real_open, real_read = directory.open_inside, directory.read_inside
    monkeypatch.setattr(directory, "_sha256_of", lambda f: opened.append(f) or "0" * 64)
    monkeypatch.setattr(directory, "open_inside", lambda root, rel, *a, **k: opened.append(rel) or real_open(root, rel, *a, **k))
    monkeypatch.setattr(directory, "read_inside", lambda root, rel, *a, **k: real_read(root, rel, *a, **k)
                        if rel == "manifest.json" else opened.append(rel))
    bad = _bundle_with(tmp_path, _set("artifacts.tflite-int8.file", "../../etc/passwd"))
    with pytest.raises(BundleError):
        runtime.load(bad)
    assert opened == []


@pytest.mark.parametrize("call, error, message", [
    (lambda c: c.predict(None), TypeError, "a review must be a str, got NoneType"),
    (lambda c: c.predict(123), TypeError, "a review must be a str, got int"),
    (lambda c: c.predict(b"great film"), TypeError, "decode bytes first"),
    (lambda c: c.predict(["great"]), TypeError, "a review must be a str, got list"),
    (lambda c: c.predict_proba(["ok", None]), TypeError, "review 1 must be a str, got NoneType"),
    (lambda c: c.predict_proba("great film"), TypeError, "for one review use predict)"),
    (lambda c: c.predict_proba(np.array(["a", "b"])), TypeError, "reviews must be a list or other sequence of str"),
    (lambda c: c.predict_proba(5), TypeError, "reviews must be a list or other sequence of str, got int"),
    (lambda c: c.predict("good", threshold=5), ValueError, "threshold must be a number between 0 and 1, got 5"),
    (lambda c: runtime.load(threshold=5), ValueError, "threshold must be a number between 0 and 1, got 5"),
    (lambda c: runtime.load(threshold=float("nan")), ValueError, "threshold must be a number between 0 and 1"),
    (lambda c: runtime.load(""), ValueError, "bundle is an empty path"),
])
def test_api_arguments_are_checked_at_the_door(call, error, message):
    clf = runtime.load()
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(clf)


def test_a_classifier_pickles_by_reloading_its_bundle():
    clf = runtime.load(artifact="onnx-int8", threshold=0.7)
    again = pickle.loads(pickle.dumps(clf))
    assert (again.artifact, again.engine, again.threshold) == ("onnx-int8", "onnxruntime", 0.7)
    assert again.predict("A wonderful film") == clf.predict("A wonderful film")


def test_the_memo_is_bounded_in_bytes():
    """Distinct whitespace-free megabyte texts must not stay in memory through the memo."""
    clf = runtime.load()
    for i in range(40):
        clf.predict(f"{i}," + "good," * 200_000).probability
    memo = clf.encoder._memo
    assert sum(map(len, memo)) <= memo.char_limit


def test_parity_skips_empty_and_binary_data_files(tmp_path):
    folder = tmp_path / "reviews"
    (folder / "pos").mkdir(parents=True)
    (folder / "pos" / "1.txt").write_text("A wonderful film, I loved it.")
    (folder / "pos" / "2.txt").write_text("   \n")
    (folder / "pos" / "3.txt").write_bytes(b"\0\1\2binary")
    from runtime.checks import parity

    checks = parity.run(DEFAULT_BUNDLE, data=folder)
    skipped = sorted(c.message for c in checks if c.kind == "corpus" and c.passed is None)
    assert skipped == ["not compared: the bundle has no float32 artifact that runs here to compare "
                       f"{folder} against",  # the shipped bundle holds int8 artifacts only: said, not dropped
                       f"skipped (not a review): pos/2.txt: {EMPTY_REVIEW}",
                       "skipped (not a review): pos/3.txt: binary file (contains NUL bytes), not text"]


def test_a_killed_runs_staging_folders_are_removed_by_the_next(tmp_path):
    from runtime.atomic import staging_dir

    out = tmp_path / "bundle"
    stale = tmp_path / ".bundle.staging-abc123"
    stale.mkdir()
    (stale / "half.tflite").write_bytes(b"half")
    with staging_dir(out) as stage:
        (stage / "manifest.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
