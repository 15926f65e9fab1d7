"""Hostile bundles and corpora: every file a bundle names (the manifest itself, the golden
set, the vocabulary, the artifacts) and every member of a ``--data`` corpus gets the same
rules: a regular file inside the bundle, read in bounded memory, every field checked. Each
case ends in one line naming the file or field, its documented exit status, never a
traceback; the API raises ``BundleError``."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

import runtime
from conftest import ROOT
from runtime.checks import parity
from runtime.bundle.directory import open_bundle
from runtime.bundle.files import BundleError, sha256_file
from runtime.classifier import DEFAULT_BUNDLE
from runtime.checks.reviews import read_reviews
from test_hostile import RSS_LIMIT_KB, _bundle_with, _set

# Runs a module in-process and reports the process's own peak memory (VmHWM), as
# test_hostile's probe does for runtime.classify.
_PROBE = (
    "import sys, runpy\n"
    "module = sys.argv[1]\n"
    "sys.argv = [module] + sys.argv[2:]\n"
    "code = 0\n"
    "try:\n    runpy.run_module(module, run_name='__main__')\n"
    "except SystemExit as e:\n    code = e.code\n"
    "sys.stdout.flush()\n"
    "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
    "print('RSS_KB', hwm, 'EXIT', code, file=sys.stderr)\n"
)


def run_measured(module: str, *args, timeout=120, env=None):
    """(exit status, stdout, stderr lines without the probe's, peak RSS in KB) of ``python -m module``."""
    cmd = [sys.executable, "-c", _PROBE, module, *map(os.fsencode, args)]
    proc = subprocess.run(cmd, cwd=ROOT, input=b"a fine film", capture_output=True, timeout=timeout, env=env)
    err = proc.stderr.decode(errors="replace").splitlines()
    probe = [line for line in err if line.startswith("RSS_KB ")]
    assert probe, f"{module} {args}: died ({proc.returncode}): {err[-5:]}"
    _, rss, _, code = probe[0].split()
    return int(code), proc.stdout.decode(errors="replace"), [line for line in err if line != probe[0]], int(rss)


def classify(bundle, artifact="tflite-int8", **kw):
    return run_measured("runtime.classify", "--model", bundle, "--artifact", artifact, "-", **kw)


def check_one_line(code, out, err, rss, status, message):
    assert code == status, err
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not any("Traceback" in line for line in err)
    assert rss < RSS_LIMIT_KB, f"peak RSS {rss} KB"


# -- the files themselves: not regular, outside the bundle, too large ---------------------------

def _copy(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    return bundle


def _symlink_to(target):
    def make(bundle, name):
        (bundle / name).unlink()
        (bundle / name).symlink_to(target)
    return make


def _fifo(bundle, name):
    (bundle / name).unlink()
    os.mkfifo(bundle / name)


def _symlink_outside(bundle, name):
    outside = bundle.parent / f"outside-{name}"
    shutil.copyfile(bundle / name, outside)
    (bundle / name).unlink()
    (bundle / name).symlink_to(outside)


def _directory(bundle, name):
    (bundle / name).unlink()
    (bundle / name).mkdir()


def _sparse(size):
    def make(bundle, name):
        with open(bundle / name, "r+b") as f:
            f.truncate(size)
    return make


FILES = ["manifest.json", "golden.json", "vocab.txt", "model_int8.tflite"]


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("make, message", [
    (_symlink_to("/dev/zero"), "points outside the bundle directory"),
    (_symlink_to("/dev/urandom"), "points outside the bundle directory"),
    (_symlink_outside, "points outside the bundle directory"),
    (_fifo, "not a regular file"),
    (_directory, "not a regular file"),
    (_sparse(3 << 30), "larger than"),
], ids=["dev-zero", "dev-urandom", "outside", "fifo", "directory", "sparse-3GiB"])
def test_every_bundle_file_is_a_regular_file_inside_the_bundle_read_in_bounded_memory(tmp_path, name, make, message):
    bundle = _copy(tmp_path)
    make(bundle, name)
    if name.startswith("model") and message == "larger than":  # an artifact's bound is its recorded size
        message = "3221225472 bytes, more than the 1031688 the manifest records"
    parity_code, _, parity_err, parity_rss = run_measured("runtime.parity", bundle, timeout=60)
    assert parity_rss < RSS_LIMIT_KB + 100_000, f"parity's peak RSS {parity_rss} KB"  # it loads both engines
    if name == "manifest.json":
        check_one_line(*classify(bundle, timeout=60), 4, message)
        check_one_line(parity_code, "", parity_err, parity_rss, 4, message)
        with pytest.raises(BundleError, match=message):
            parity.run(bundle)
    else:  # parity reports a bundle file that fails verification as a failed check
        assert parity_code == 3 and not any("Traceback" in line for line in parity_err), parity_err
        assert [line for line in parity_err if message in line and name in line], parity_err
        assert [c for c in parity.run(bundle) if c.passed is False and message in c.message]
    if name == "golden.json":  # only parity reads the golden set
        with pytest.raises(BundleError, match=message):
            open_bundle(bundle).golden()
    else:
        check_one_line(*classify(bundle, timeout=60), 4, message)
        with pytest.raises(BundleError, match=message):
            runtime.load(bundle)


def test_the_manifest_symlinked_inside_the_bundle_is_fine(tmp_path):
    bundle = _copy(tmp_path)
    (bundle / "manifest.json").rename(bundle / "real.json")
    (bundle / "manifest.json").symlink_to("real.json")
    assert runtime.load(bundle).predict("A wonderful film").label == "positive"


def test_a_manifest_over_the_cap_is_refused_without_reading_it(tmp_path):
    bundle = _copy(tmp_path)
    with open(bundle / "manifest.json", "ab") as f:
        f.write(b" " * (17 << 20))
    check_one_line(*classify(bundle), 4, "manifest.json: larger than 16 MiB")


# -- every numeric field of the manifest ------------------------------------------------------

BIG = 10 ** 400
INF = float("inf")


@pytest.mark.parametrize("change, message", [
    (_set("threshold", BIG), "field 'threshold' must be a number in [0, 1], got 1000000"),
    (_set("threshold", True), "field 'threshold' must be a number in [0, 1], got True"),
    (_set("threshold", float("nan")), "field 'threshold' must be a number in [0, 1], got nan"),
    (_set("calibration.temperature", BIG), "field 'calibration.temperature' must be a number"),
    (_set("calibration.temperature", -INF), "field 'calibration.temperature' must be a number"),
    (_set("artifacts.tflite-int8.golden_tolerance", BIG), "field 'artifacts.tflite-int8.golden_tolerance' must be a number"),
    (_set("artifacts.tflite-int8.golden_tolerance", INF), "field 'artifacts.tflite-int8.golden_tolerance' must be a number"),
    (_set("artifacts.tflite-int8.size_bytes", -1), "field 'artifacts.tflite-int8.size_bytes' must be a whole number"),
    (_set("artifacts.tflite-int8.size_bytes", BIG), "field 'artifacts.tflite-int8.size_bytes' must be a whole number"),
    (_set("artifacts.tflite-int8.size_bytes", 1e400), "field 'artifacts.tflite-int8.size_bytes' must be a whole number"),
    (_set("artifacts.tflite-int8.size_bytes", 10 ** 15), "field 'artifacts.tflite-int8.size_bytes' must be a whole number"),
    (_set("artifacts.tflite-int8.size_bytes", True), "field 'artifacts.tflite-int8.size_bytes' must be a whole number"),
    (_set("artifacts.tflite-int8.size_bytes", 1031687), "1031688 bytes, more than the 1031687 the manifest records"),
    (_set("artifacts.tflite-int8.size_bytes", 1031689), "1031688 bytes, but the manifest records 1031689"),
    (_set("vocabulary.size", 1e400), "field 'vocabulary.size' must be a whole number"),
    (_set("vocabulary.size", 29999), "field 'vocabulary.size' is 29999"),
    (_set("golden.reviews", -3), "field 'golden.reviews' must be a whole number"),
    (_set("input.features.buckets", 1e400), "field 'input.features.buckets' must be a whole number"),
    (_set("input.features.buckets", BIG), "field 'input.features.buckets' must be a whole number"),
    (_set("input.features.vocab_size", BIG), "field 'input.features.vocab_size' must be a whole number"),
    (_set("input.features.rows", True), "field 'input.features.rows' must be a whole number"),
    (_set("input.features", {"family": "sequence", "vocab_size": 30000, "length": 1e400}),
     "field 'input.features.length' must be a whole number"),
    (_set("input.features", {"family": "sequence", "vocab_size": 30000, "length": BIG}),
     "field 'input.features.length' must be a whole number"),
    (_set("input.features", {"family": "sequence", "vocab_size": 30000, "length": 10 ** 12}),
     "field 'input.features.length' must be a whole number"),
    (_set("input.features.family", 5), "field 'input.features.family' must be one of multi_hot, sequence, ngram"),
    (_set("format_version", 4.0), "format version 4.0 is not supported"),
    (_set("format_version", True), "format version True is not supported"),
    (_set("validation_criteria.min_label_agreement", BIG), "field 'validation_criteria.min_label_agreement' must be a number"),
    (_set("validation_criteria.float32_max_abs_diff", "x"), "field 'validation_criteria.float32_max_abs_diff' must be a number"),
], ids=lambda v: None if callable(v) else v[:60])
def test_every_number_of_the_manifest_is_checked(tmp_path, change, message):
    bundle = _bundle_with(tmp_path, change)
    with pytest.raises(BundleError) as e:
        runtime.load(bundle, artifact="tflite-int8")
    assert message in str(e.value) and "\n" not in str(e.value)
    check_one_line(*classify(bundle), 4, message)
    code, out, err, rss = run_measured("runtime.parity", bundle)
    assert code in (3, 4) and not any("Traceback" in line for line in err), err


def test_a_sound_copy_of_the_shipped_bundle_loads(tmp_path):
    """The checks above refuse nothing the exporter writes."""
    bundle = _bundle_with(tmp_path, lambda m, b: None)
    assert runtime.load(bundle, artifact="onnx-int8").predict("An awful film").label == "negative"
    assert [p for p in open_bundle(bundle).verify_all()] == []


# -- a malformed golden set whose sha256 matches the manifest -----------------------------------

def _golden_with(change):
    def edit(m, bundle):
        path = bundle / "golden.json"
        golden = json.loads(path.read_text())
        replaced = change(golden)
        path.write_text(json.dumps(golden if replaced is None else replaced))
        m["golden"]["sha256"] = sha256_file(path)
    return edit


def _raw_golden(data: bytes):
    def edit(m, bundle):
        (bundle / "golden.json").write_bytes(data)
        m["golden"]["sha256"] = sha256_file(bundle / "golden.json")
    return edit


def _review(i, key, value):
    def change(g):
        if value is KeyError:
            del g["reviews"][i][key]
        else:
            g["reviews"][i][key] = value
    return change


def _probability(i, artifact, value):
    def change(g):
        if value is KeyError:
            del g["reviews"][i]["probabilities"][artifact]
        else:
            g["reviews"][i]["probabilities"][artifact] = value
    return change


def _explanation(i, key, value):
    def change(g):
        g["reviews"][i]["explanation"][key] = value
    return change


@pytest.mark.parametrize("edit, message", [
    (_raw_golden(b"\xff\xfe not json"), "golden.json: not a golden set"),
    (_raw_golden(b"[1, 2]"), "golden.json: not a golden set"),
    (_golden_with(lambda g: {"source": "x"}), "field 'reviews' is missing"),
    (_golden_with(lambda g: {"reviews": {"a": 1}}), "field 'reviews' must be a non-empty list"),
    (_golden_with(lambda g: {"reviews": []}), "field 'reviews' must be a non-empty list"),
    (_golden_with(lambda g: {"reviews": g["reviews"][:5]}), "holds 5 reviews, the manifest says 40"),
    (_golden_with(lambda g: g["reviews"].__setitem__(3, "text")), "field 'reviews[3]' must be an object"),
    (_golden_with(lambda g: g["reviews"][0].__setitem__("text", "   ")),
     "field 'reviews[0].text' must be a review with a word in it"),
    (_golden_with(_review(0, "text", KeyError)), "field 'reviews[0].text' is missing"),
    (_golden_with(_review(0, "text", 5)), "field 'reviews[0].text' must be a non-empty string, got 5"),
    (_golden_with(_review(1, "id", None)), "field 'reviews[1].id' must be a non-empty string, got None"),
    (_golden_with(_review(2, "probabilities", [0.5])), "field 'reviews[2].probabilities' must be an object"),
    (_golden_with(_probability(0, "onnx-int8", KeyError)), "field 'reviews[0].probabilities.onnx-int8' is missing"),
    (_golden_with(_probability(0, "tflite-int8", "0.5")), "field 'reviews[0].probabilities.tflite-int8' must be a number in [0, 1]"),
    (_golden_with(_probability(0, "tflite-int8", float("nan"))), "field 'reviews[0].probabilities.tflite-int8' must be a number in [0, 1], got nan"),
    (_golden_with(_probability(0, "tflite-int8", BIG)), "field 'reviews[0].probabilities.tflite-int8' must be a number in [0, 1]"),
    (_golden_with(_probability(0, "tflite-int8", 1.5)), "field 'reviews[0].probabilities.tflite-int8' must be a number in [0, 1], got 1.5"),
    (_golden_with(_review(4, "explanation", "top")), "field 'reviews[4].explanation' must be an object"),
    (_golden_with(_explanation(0, "top", {"a": 1})), "field 'reviews[0].explanation.top' must be a non-empty list"),
    (_golden_with(_explanation(0, "top", [["read", 0.1, 7]])), "field 'reviews[0].explanation.top[0]' must be a [term, contribution] pair"),
    (_golden_with(_explanation(0, "top", [[5, 0.1]])), "field 'reviews[0].explanation.top[0]' must be a [term, contribution] pair"),
    (_golden_with(_explanation(0, "top", [["read", float("inf")]])), "field 'reviews[0].explanation.top[0]' must be a [term, contribution] pair"),
    (_golden_with(_explanation(0, "method", None)), "field 'reviews[0].explanation.method' must be a non-empty string"),
], ids=lambda v: None if callable(v) else v[:50])
def test_a_malformed_golden_set_is_one_line_exit_4(tmp_path, edit, message):
    """The golden set is a bundle file: a malformed one means the bundle cannot be checked
    (exit 4, as for a malformed manifest), not that an artifact failed its check."""
    bundle = _bundle_with(tmp_path, edit)
    with pytest.raises(BundleError) as e:
        parity.run(bundle)
    assert message in str(e.value) and "\n" not in str(e.value)
    code, out, err, rss = run_measured("runtime.parity", bundle)
    check_one_line(code, out, err, rss, 4, message)
    assert err == [f"error: {e.value}"]


# -- parity's arguments and its --data corpus ---------------------------------------------------

@pytest.mark.parametrize("value", ["-5", "0", "abc", "1e400", "9" * 5000])
def test_parity_limit_is_a_positive_integer(value):
    proc = subprocess.run([sys.executable, "-m", "runtime.parity", str(DEFAULT_BUNDLE), "--data", str(ROOT),
                           "--limit", value], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 64 and "Traceback" not in proc.stderr
    assert f"argument --limit: must be a positive whole number, got {value[:40]!r}" in proc.stderr


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, read in pieces (a member written without holding it)."""

    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


BIG_MEMBER = 600 << 20  # far over the per-file cap; reading it whole would show in the peak


def _corpus_archive(tmp_path):
    path = tmp_path / "data.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, text in (("test/pos/1_9.txt", b"A wonderful film, I loved it."),
                           ("test/neg/2_1.txt", b"An awful, boring film.")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
        info = tarfile.TarInfo("test/pos/3_8.txt")
        info.size = BIG_MEMBER
        tar.addfile(info, io.BufferedReader(_Zeros(BIG_MEMBER), 1 << 20))
    return path


def _corpus_folder(tmp_path):
    folder = tmp_path / "data"
    (folder / "pos").mkdir(parents=True)
    (folder / "neg").mkdir()
    (folder / "pos" / "1_9.txt").write_text("A wonderful film, I loved it.")
    (folder / "neg" / "2_1.txt").write_text("An awful, boring film.")
    with open(folder / "pos" / "3_8.txt", "wb") as f:
        f.truncate(BIG_MEMBER)
    os.mkfifo(folder / "neg" / "4_2.txt")  # never opened: not a regular file
    return folder


@pytest.mark.parametrize("make, name", [(_corpus_archive, "test/pos/3_8.txt"), (_corpus_folder, "pos/3_8.txt")],
                         ids=["archive", "folder"])
def test_parity_data_skips_a_member_over_the_cap_in_bounded_memory(tmp_path, make, name):
    data = make(tmp_path)
    code, out, err, rss = run_measured("runtime.parity", DEFAULT_BUNDLE, "--data", data, timeout=300)
    assert code == 0 and not any("Traceback" in line for line in err), err
    assert f"skipped (not a review): {name}: larger than 16 MiB" in out
    assert rss < RSS_LIMIT_KB + 100_000, f"peak RSS {rss} KB"  # parity loads both engines
    reviews = read_reviews(data)
    assert len(reviews.texts) == 2 and list(reviews.labels) in ([1, 0], [0, 1])
    assert [s.split(":")[0] for s in reviews.skipped] == [name]


def test_the_training_corpus_refuses_a_member_over_the_cap(tmp_path):
    from runtime.checks.reviews import CorpusError
    from train.corpus import read_corpus

    with pytest.raises(CorpusError, match=r"test/pos/3_8.txt: larger than 16 MiB"):
        read_corpus(_corpus_archive(tmp_path))


# -- a bundle path the engines cannot take as a string ------------------------------------------

@pytest.mark.parametrize("artifact", ["tflite-int8", "onnx-int8"])
def test_an_undecodable_bundle_path_loads(tmp_path, artifact):
    bundle = os.fsencode(tmp_path) + b"/b\xfcndle"  # latin-1: not UTF-8
    shutil.copytree(os.fsencode(DEFAULT_BUNDLE), bundle)
    code, out, err, rss = run_measured("runtime.classify", "--model", bundle, "--artifact", artifact, "-")
    assert code == 0 and out.startswith("positive\t"), err
    clf = runtime.load(os.fsdecode(bundle), artifact=artifact)
    assert clf.predict("A wonderful film").label == "positive"


@pytest.mark.parametrize("artifact", ["tflite-int8", "onnx-int8"])
def test_a_non_ascii_bundle_path_under_the_c_locale_loads(tmp_path, artifact):
    bundle = tmp_path / "bündle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONUTF8"))}
    env.update(LC_ALL="C", PYTHONCOERCECLOCALE="0", PYTHONUTF8="0")
    code, out, err, rss = run_measured("runtime.classify", "--model", bundle, "--artifact", artifact, "-", env=env)
    assert code == 0 and out.startswith("positive\t"), err


def test_parity_passes_on_an_undecodable_bundle_path(tmp_path):
    bundle = os.fsencode(tmp_path) + b"/b\xfcndle"
    shutil.copytree(os.fsencode(DEFAULT_BUNDLE), bundle)
    checks = parity.run(os.fsdecode(bundle))
    assert not [c for c in checks if c.passed is False], [c.message for c in checks if c.passed is False]
    assert math.isfinite(sum(c.figures.get("max_abs_diff", 0) for c in checks))
