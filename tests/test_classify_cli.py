"""``python -m runtime.classify``: output, batching, exit codes and every kind of bad input."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT


def classify(*args, stdin=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "runtime.classify", *map(str, args)], cwd=ROOT,
                          input=stdin, capture_output=True, timeout=timeout)


@pytest.fixture
def reviews(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("A wonderful, moving film. Superb acting, I loved every minute of it!")
    bad = tmp_path / "bad.txt"
    bad.write_text("Dreadful and boring. Awful acting, the worst film I have seen this year.")
    return good, bad


def test_one_line_per_file_in_order(reviews):
    good, bad = reviews
    out = classify(good, bad)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert [l.split("\t")[0] for l in lines] == ["positive", "negative"]
    assert [l.split("\t")[2] for l in lines] == [str(good), str(bad)]
    assert out.stderr == b""


def test_json_and_stdin(reviews, small_bundle):
    good, _ = reviews
    out = classify("--json", "--model", small_bundle, "--artifact", "onnx-float32", good, "-",
                   stdin=b"Terrible, boring, awful.")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(l) for l in out.stdout.decode().splitlines()]
    assert [r["file"] for r in rows] == [str(good), "-"]
    assert rows[0]["label"] == "positive" and rows[1]["label"] == "negative"
    assert rows[0]["artifact"] == "onnx-float32" and rows[0]["engine"] == "onnxruntime"
    assert rows[0]["model"] == "seed-mlp" and 0 <= rows[0]["probability"] <= 1


def test_threshold_backend_and_help(reviews):
    good, _ = reviews
    assert classify("--threshold", "1.0", good).stdout.startswith(b"negative")
    assert classify("--backend", "onnxruntime", "--artifact", "onnx-int8", good).returncode == 0
    out = classify("--backend", "onnxruntime", "--artifact", "tflite-int8", good)
    assert out.returncode == 4 and b"cannot run tflite artifacts" in out.stderr
    usage = classify("--threshold", "2", good)
    assert usage.returncode == 64 and b"--threshold must be between 0 and 1" in usage.stderr
    for encoding in ("rot13", "base64"):
        refused = classify("--encoding", encoding, good)
        assert refused.returncode == 64 and b"is not a text encoding" in refused.stderr and b"Traceback" not in refused.stderr
    help_text = classify("--help").stdout.decode()
    for word in ("--json", "--model", "--artifact", "--backend", "--threshold", "--encoding", "exit status"):
        assert word in help_text


def test_many_files_are_batched_and_match_single_runs(tmp_path, corpus):
    from runtime.cli.classify import BATCH

    texts = corpus.splits["test"].texts[: BATCH + 30]
    files = []
    for i, t in enumerate(texts):
        files.append(tmp_path / f"r{i}.txt")
        files[-1].write_text(t, encoding="utf-8")
    many = classify(*files).stdout.decode().splitlines()
    assert len(many) == len(texts)
    import runtime

    clf = runtime.load()
    for line, t in zip(many[::50], texts[::50]):
        assert line.split("\t")[1] == f"{clf.predict(t).probability:.4f}"


def test_bad_inputs_are_reported_and_the_rest_still_classified(tmp_path, reviews, monkeypatch):
    good, _ = reviews
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("  \n\t \n")
    (tmp_path / "binary.bin").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    (tmp_path / "folder").mkdir()
    (tmp_path / "unknown.txt").write_text("zzxq qqwv vvbnm")
    (tmp_path / "latin1.txt").write_bytes("Un caf\xe9 superbe, great film!".encode("latin-1"))
    locked = tmp_path / "locked.txt"
    locked.write_text("good film")
    locked.chmod(0)
    out = classify(tmp_path / "missing.txt", tmp_path / "empty.txt", tmp_path / "blank.txt",
                   tmp_path / "binary.bin", tmp_path / "folder", tmp_path / "unknown.txt",
                   tmp_path / "latin1.txt", good)
    assert out.returncode == 2
    err = out.stderr.decode().splitlines()
    assert f"error: {tmp_path / 'missing.txt'}: no such file" in err
    assert f"error: {tmp_path / 'empty.txt'}: empty or whitespace-only review" in err
    assert f"error: {tmp_path / 'blank.txt'}: empty or whitespace-only review" in err
    assert f"error: {tmp_path / 'binary.bin'}: binary file (contains NUL bytes), not text" in err
    assert f"error: {tmp_path / 'folder'}: is a directory" in err
    assert f"warning: {tmp_path / 'unknown.txt'}: no known words; the result is only the model's prior" in err
    assert any(l.startswith(f"warning: {tmp_path / 'latin1.txt'}: invalid utf-8 bytes were replaced") for l in err)
    printed = [l.split("\t")[2] for l in out.stdout.decode().splitlines()]
    assert printed == [str(tmp_path / "unknown.txt"), str(tmp_path / "latin1.txt"), str(good)]
    fixed = classify("--encoding", "latin-1", tmp_path / "latin1.txt")
    assert fixed.returncode == 0 and fixed.stderr == b""


def test_permission_denied(tmp_path, reviews, monkeypatch, capsys):
    """Root can read mode-000 files, so the denial is simulated at open()."""
    import builtins

    from runtime.cli import classify as cli

    good, _ = reviews
    locked = tmp_path / "locked.txt"
    locked.write_text("good film")
    real_open = builtins.open

    def guarded(path, *a, **k):
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", guarded)
    assert cli.main([str(locked), str(good)]) == 2
    captured = capsys.readouterr()
    assert f"error: {locked}: permission denied" in captured.err
    assert captured.out.strip().endswith(str(good))


@pytest.mark.parametrize("damage, message", [
    (lambda b: (b / "manifest.json").unlink(), "manifest.json: missing"),
    (lambda b: (b / "model_int8.tflite").write_bytes(b"tampered"), "model_int8.tflite: sha256 does not match"),
])
def test_missing_or_tampered_bundle_exits_4(tmp_path, reviews, damage, message):
    import shutil

    from runtime.classifier import DEFAULT_BUNDLE

    good, _ = reviews
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    damage(bundle)
    out = classify("--model", bundle, good)
    assert out.returncode == 4 and out.stdout == b""
    err = out.stderr.decode().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_200_mb_file_is_streamed_in_bounded_memory(tmp_path, corpus):
    big = tmp_path / "big.txt"
    block = "\n".join(corpus.splits["test"].texts[:400]).encode("utf-8")
    with open(big, "wb") as f:
        written = 0
        while written < 200 << 20:
            f.write(block)
            written += len(block)
    # VmHWM belongs to the new address space; ru_maxrss would inherit pytest's across exec.
    code = (
        "import sys, runpy\n"
        "sys.argv = ['classify', sys.argv[1]]\n"
        "try:\n    runpy.run_module('runtime.classify', run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code\n"
        "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print('RSS_KB', hwm, 'EXIT', code, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(big)], cwd=ROOT, capture_output=True, timeout=600)
    err = out.stderr.decode()
    rss_kb = int(err.split("RSS_KB ")[1].split()[0])
    assert "EXIT 0" in err, err
    assert out.stdout.decode().split("\t")[0] in ("positive", "negative")
    assert rss_kb < 250_000, f"peak RSS {rss_kb} KB for a {written >> 20} MB file"
