"""Issue 31, sections 1-4 (the command's side): --out never destroys what was not named as
output, signals leave nothing behind, --jobs cannot exhaust the machine, a stuck worker is
named and fails the run, standard output carries only the results (as UTF-8), closed
standard streams and ``python -OO`` are handled, and a lack of file descriptors is named."""

import glob
import json
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, default_signals

REVIEW = "A wonderful, moving film. Superb acting, I loved every minute of it!\n"


def classify(*args, stdin=None, env=None, timeout=300, python=(), **kw):
    return subprocess.run([sys.executable, *python, "-m", "runtime.classify", *map(str, args)], cwd=ROOT,
                          input=stdin, capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kw)


def shell(command: str, timeout=300) -> subprocess.CompletedProcess:
    """``command`` in sh, with ``PY`` the test's Python (for redirections such as ``>&-``)."""
    return subprocess.run(["sh", "-c", command], cwd=ROOT, capture_output=True, timeout=timeout,
                          env={**os.environ, "PY": sys.executable})


@pytest.fixture
def review(tmp_path) -> Path:
    path = tmp_path / "review.txt"
    path.write_text(REVIEW)
    return path


def _expected(review: Path) -> bytes:
    out = classify(review)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _one_line(err: bytes) -> str:
    text = err.decode()
    assert text.count("\n") == 1 and "Traceback" not in text, text
    return text


# --- 1. --out: what is written, and what is never replaced ---------------------------------------


def test_out_onto_a_character_device_writes_through_it(tmp_path, review):
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a copy of /dev/null
    except PermissionError:
        pytest.skip("mknod needs privileges here")
    out = classify(review, "--out", node)
    assert out.returncode == 0, out.stderr
    assert stat.S_ISCHR(os.lstat(node).st_mode), "the device node was replaced by a file"


def test_out_onto_a_fifo_writes_through_it(tmp_path, review):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    out = classify(review, "--out", fifo)
    reader.join(timeout=60)
    assert out.returncode == 0, out.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced by a file"
    assert got == [_expected(review)]


def test_out_to_proc_self_fd_1_writes_to_standard_output(review):
    if not os.path.exists("/proc/self/fd/1"):
        pytest.skip("no /proc")
    out = classify(review, "--out", "/proc/self/fd/1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == _expected(review)


def test_out_through_a_symlink_replaces_the_file_it_leads_to(tmp_path, review):
    target = tmp_path / "results.txt"
    target.write_text("old\n")
    target.chmod(0o600)
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    out = classify(review, "--out", link)
    assert out.returncode == 0, out.stderr
    assert link.is_symlink() and link.resolve() == target, "the link was replaced by a file"
    assert target.read_bytes() == _expected(review)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600, "the replaced file lost its permissions"


def test_out_through_a_dangling_symlink_makes_its_file(tmp_path, review):
    link = tmp_path / "link.txt"
    link.symlink_to(tmp_path / "new.txt")
    assert classify(review, "--out", link).returncode == 0
    assert link.is_symlink() and (tmp_path / "new.txt").read_bytes() == _expected(review)


def test_out_onto_a_directory_or_a_socket_is_refused_in_one_line(tmp_path, review):
    sock_path = tmp_path / "s"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        for target in (tmp_path, sock_path):
            out = classify(review, "--out", target)
            assert out.returncode == 64 and str(target) in _one_line(out.stderr)
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    finally:
        sock.close()


def test_out_naming_an_input_is_refused_before_anything_is_read(tmp_path, review):
    other = tmp_path / "other.txt"
    other.write_text("An awful film.\n")
    (tmp_path / "link").symlink_to(review)
    os.link(review, tmp_path / "hard")
    for out_path in (review, tmp_path / "link", tmp_path / "hard"):
        out = classify(other, review, "--out", out_path)
        assert out.returncode == 64, out.stderr
        assert "input" in _one_line(out.stderr) and out.stdout == b""
        assert review.read_text() == REVIEW
    for fmt in ("--lines", "--jsonl", "--csv"):
        assert classify(fmt, review, "--out", review).returncode == 64
    with open(review, "rb") as f:  # standard input is the output file
        out = subprocess.run([sys.executable, "-m", "runtime.classify", "-", "--out", str(review)], cwd=ROOT,
                             stdin=f, capture_output=True, timeout=120)
    assert out.returncode == 64 and "standard input" in _one_line(out.stderr)
    assert review.read_text() == REVIEW


# --- directories the commands publish whole (model directory, bundle, benchmark report) ----------


def test_an_output_directory_is_replaced_only_if_it_holds_nothing_but_its_last_output(tmp_path):
    from runtime.atomic import UnsafeOutput, check_output_dir, staging_dir

    def check(out):
        check_output_dir(out, [], "config.json", "model directory", "recipe")

    out = tmp_path / "model"
    check(out)  # a new path
    with staging_dir(out, "model directory") as stage:
        (stage / "config.json").write_text('{"recipe": {}}')
        (stage / "plots").mkdir()
        (stage / "plots" / "loss.png").write_bytes(b"png")
    check(out)  # what the last run published, and nothing else
    (out / "plots" / ".loss.png.123.abcdefgh.tmp").write_bytes(b"")  # a killed run's temporary file
    check(out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UnsafeOutput, match=r"holds notes.txt, which the model directory there did not write"):
        check(out)
    (out / "notes.txt").unlink()
    with pytest.raises(UnsafeOutput, match="holds a model directory, not a bundle"):
        check_output_dir(out, [], "manifest.json", "bundle", "format")
    other = tmp_path / "project"  # any folder with a file of the marker's name is not one
    other.mkdir()
    (other / "config.json").write_text("{}")
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UnsafeOutput, match="not a model directory"):
        check(other)
    old = tmp_path / "old-model"  # published before the record existed: its marker says so
    old.mkdir()
    (old / "config.json").write_text('{"recipe": {"name": "ngram"}}')
    check(old)
    (tmp_path / "file").write_text("x")
    for unmakeable, phrase in ((tmp_path / "file" / "model", "not a directory"),
                               (Path("/proc/model-here"), "cannot write")):
        with pytest.raises(UnsafeOutput, match=phrase):
            check(unmakeable)


def test_what_cannot_be_told_from_the_users_files_is_refused(tmp_path, monkeypatch):
    from runtime.atomic import UnsafeOutput, check_output_dir, staging_dir

    def check(out):
        check_output_dir(out, [], "config.json", "model directory", "recipe")

    out = tmp_path / "model"
    with staging_dir(out, "model directory") as stage:
        (stage / "config.json").write_text('{"recipe": {}}')
    (out / ".DS_Store").write_bytes(b"")  # a file manager's
    check(out)
    (out / ".thesis.abcdefgh.tmp").write_text("mine")  # looks temporary, but no run of ours wrote it
    with pytest.raises(UnsafeOutput, match=r"holds .thesis.abcdefgh.tmp"):
        check(out)
    (out / ".thesis.abcdefgh.tmp").unlink()
    (out / ".written.json").write_text("[" * 100_000 + "]" * 100_000)  # unreadable: not ours
    with pytest.raises(UnsafeOutput, match="unreadable"):
        check(out)
    for bad, phrase in (("", "empty path"), (tmp_path, "working directory or one holding it")):
        monkeypatch.chdir(out)
        with pytest.raises(UnsafeOutput, match=phrase):
            check(bad)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(UnsafeOutput, match="loop"):
        check(loop)


def test_a_stop_swallowed_by_native_code_publishes_nothing(tmp_path, capsys, stop_handlers):
    from runtime import exitcodes
    from runtime.atomic import staging_dir

    out = tmp_path / "out"

    def swallowed():
        try:
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # what SIGTERM runs
        except KeyboardInterrupt:
            pass  # as TensorFlow's C++ code or a finalizer may do
        with staging_dir(out, "model directory") as stage:
            (stage / "config.json").write_text("{}")
        return 0

    assert exitcodes.StopRequests().run(swallowed, f"nothing was written to {out}") == 143
    assert capsys.readouterr().err.strip() == f"stopped by SIGTERM; nothing was written to {out}"
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    def stopped_after_publishing():
        with staging_dir(out, "model directory") as stage:
            (stage / "config.json").write_text("{}")
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)

    assert exitcodes.StopRequests().run(stopped_after_publishing, f"nothing was written to {out}") == 130
    assert capsys.readouterr().err.strip() == f"interrupted after {out} was written"
    assert (out / "config.json").exists() and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_output_that_cannot_replace_the_old_one_keeps_both(tmp_path, monkeypatch):
    import errno

    from runtime import atomic

    out = tmp_path / "out"
    with atomic.staging_dir(out, "bundle") as stage:
        (stage / "manifest.json").write_text("old")
    real = os.replace

    def busy(src, dst):
        if Path(src).name.startswith(".out.staging-"):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", busy)
    with pytest.raises(atomic.PublishFailed, match="cannot be replaced .* the new output is in") as e:
        with atomic.staging_dir(out, "bundle") as stage:
            (stage / "manifest.json").write_text("new")
    assert (out / "manifest.json").read_text() == "old"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".out.staging-")]
    assert len(kept) == 1 and str(kept[0]) in str(e.value) and (kept[0] / "manifest.json").read_text() == "new"
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name]


def test_benchmarks_out_is_checked_before_anything_runs(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "runtime" / "default_bundle", bundle)
    before = sorted(p.name for p in bundle.iterdir())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    for out_dir, phrase in ((bundle, "holds the input"), (bundle / "report", "inside the input"),
                            (mine, "not a benchmark report")):
        out = subprocess.run([sys.executable, "-m", "benchmarks", "--bundle", str(bundle), "--model-dir",
                              str(tmp_path / "model"), "--out", str(out_dir), "--quick"],
                             cwd=ROOT, capture_output=True, timeout=300)
        assert out.returncode == 64 and phrase in _one_line(out.stderr), out.stderr
    assert sorted(p.name for p in bundle.iterdir()) == before and (mine / "notes.txt").read_text() == "mine"


def test_train_stopped_by_sigterm_leaves_nothing_and_says_so(tmp_path):
    trec = ROOT.parent / "shared" / "data" / "textsets" / "trec" / "train.csv"
    if not trec.exists():
        pytest.skip(f"{trec} is missing")
    out = tmp_path / "model"
    proc = subprocess.Popen([sys.executable, "-m", "train", "--data", str(trec), "--out", str(out), "--quiet"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals)
    time.sleep(8)  # reading, the vocabulary, the first fits: well before it publishes (about a minute)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-800:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == f"stopped by SIGTERM; nothing was written to {out}"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_parity_reports_are_never_written_over_the_bundle(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "runtime" / "default_bundle", bundle)
    manifest = (bundle / "manifest.json").read_bytes()
    for option in ("--json", "--junit"):
        out = subprocess.run([sys.executable, "-m", "runtime.parity", str(bundle), option, str(bundle / "manifest.json")],
                             cwd=ROOT, capture_output=True, timeout=300)
        assert out.returncode == 64, out.stderr[-500:]
        assert b"bundle" in out.stderr and (bundle / "manifest.json").read_bytes() == manifest


def _temporaries(directory: Path, name: str) -> list[str]:
    return glob.glob(str(directory / f".{name}.*.tmp"))


def _start_writing(tmp_path: Path) -> subprocess.Popen:
    """The command reading reviews from a pipe into --out, once its temporary file exists."""
    proc = subprocess.Popen([sys.executable, "-m", "runtime.classify", "--lines", "-", "--out", str(tmp_path / "out.txt")],
                            cwd=ROOT, stdin=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_signals)
    proc.stdin.write(REVIEW.encode() * 100)
    proc.stdin.flush()
    deadline = time.monotonic() + 120
    while not _temporaries(tmp_path, "out.txt"):
        assert proc.poll() is None and time.monotonic() < deadline, "the command did not start writing"
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_sigterm_and_sighup_stop_the_command_as_ctrl_c_does(tmp_path, signum, status):
    proc = _start_writing(tmp_path)
    proc.send_signal(signum)
    err = proc.stderr.read()
    proc.stdin.close()
    assert proc.wait(timeout=60) == status
    assert "was not written" in _one_line(err)
    assert not _temporaries(tmp_path, "out.txt") and not (tmp_path / "out.txt").exists()


def test_a_killed_runs_temporary_file_is_removed_by_the_next_run(tmp_path, review):
    proc = _start_writing(tmp_path)
    proc.kill()
    proc.wait(timeout=60)
    proc.stdin.close()
    proc.stderr.close()
    left = _temporaries(tmp_path, "out.txt")
    assert left, "SIGKILL left nothing to clean up"
    old = tmp_path / ".out.txt.abcdefgh.tmp"  # an older version's name, without a pid
    old.write_text("x")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    unrelated = tmp_path / ".other.txt.1.abcdefgh.tmp"
    unrelated.write_text("x")
    assert classify(review, "--out", tmp_path / "out.txt").returncode == 0
    assert not _temporaries(tmp_path, "out.txt")
    assert unrelated.exists()


def test_a_temporary_file_being_written_is_kept():
    import tempfile

    from runtime.atomic import atomic_file, write_atomic

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out.txt"
        with atomic_file(out) as f:  # this process's writer: alive and locked
            f.write(b"first")
            write_atomic(out, "second")
            assert len(_temporaries(Path(d), "out.txt")) == 1
        assert out.read_text() == "first"


# --- 3. what --jobs may start, and a worker that does not answer --------------------------------


def test_absurd_jobs_are_capped_at_the_cores_with_a_note(tmp_path):
    from runtime.cli.bulk import jobs_count
    from runtime.cli.workers import available_cores

    assert jobs_count(1000) == jobs_count(99999999999999999999) == jobs_count(0) == available_cores()
    lines = tmp_path / "lines.txt"
    lines.write_text(REVIEW * 50)
    one = classify("--lines", lines)
    out = classify("--lines", "--jobs", "99999999999999999999", lines)
    assert out.returncode == 0 and out.stdout == one.stdout
    assert "capped at" in _one_line(out.stderr)


def _stops_on(word):
    """A worker's scorer that stops its own process (SIGSTOP) when it is given ``word``."""
    def score(item):
        if item == word:
            os.kill(os.getpid(), signal.SIGSTOP)
        return item

    return score


def test_a_stopped_worker_is_named_and_fails_the_run_after_the_timeout():
    from functools import partial

    from runtime.cli.workers import WorkerError, WorkerPool

    notes = []
    pool = WorkerPool(partial(_stops_on, "stop"), 1, timeout=2.0, note=notes.append)
    try:
        deadline = time.monotonic() + 120
        while not pool.room():
            assert time.monotonic() < deadline, "the worker did not start"
            pool.collect()
            time.sleep(0.01)
        assert pool.wait(pool.submit("go")) == "go"
        pid = pool._members[0].process.pid
        with pytest.raises(WorkerError, match=f"worker process {pid} has not answered for 2 s"):
            pool.wait(pool.submit("stop"))
        assert len(notes) == 1 and f"worker process {pid}" in notes[0]
    finally:
        pool.close(kill=True)


def test_worker_timeout_option():
    assert classify("--lines", "--worker-timeout", "-1", "x").returncode == 64
    assert classify("--lines", "--worker-timeout", "nan", "x").returncode == 64
    from runtime.cli.classify import parse_args

    assert parse_args(["--lines", "--worker-timeout", "0", "x"]).worker_timeout is None
    assert parse_args(["--lines", "x"]).worker_timeout == 300.0


# --- 2. standard output carries only the results, as UTF-8 --------------------------------------

_NOISY = """
import os, sys
from runtime.cli import bulk, classify
score = bulk.score
def noisy(*args, **kwargs):
    print("stray print")
    sys.stdout.flush()
    os.write(1, b"stray write\\n")
    yield from score(*args, **kwargs)
bulk.score = noisy
sys.exit(classify.main(sys.argv[1:]))
"""


def test_anything_else_printed_during_a_run_goes_to_stderr(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text(REVIEW * 3)
    out = subprocess.run([sys.executable, "-c", _NOISY, "--lines", "--json", str(lines)], cwd=ROOT,
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["label"] for line in out.stdout.decode().splitlines()] == ["positive"] * 3
    assert b"stray print" in out.stderr and b"stray write" in out.stderr


_RAYLET = """
import sys
from ray._private.worker import print_to_stdstream  # what Ray's error listener prints with
from runtime.cli import bulk, classify
score = bulk.score
def noisy(*args, **kwargs):
    for i, rendered in enumerate(score(*args, **kwargs)):
        if i == 0:
            print_to_stdstream({"lines": ["A worker died or was killed"], "pid": "raylet", "is_err": False},
                               ignore_prefix=False)
        yield rendered
bulk.score = noisy
sys.exit(classify.main(sys.argv[1:]))
"""


def test_ray_lines_never_reach_stdout_and_ray_actors_are_capped(tmp_path):
    pytest.importorskip("ray")
    lines = tmp_path / "lines.txt"
    lines.write_text(REVIEW * 600)
    out = subprocess.run([sys.executable, "-c", _RAYLET, "--lines", "--json", "--ray", "--jobs", "1000", str(lines)],
                         cwd=ROOT, capture_output=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len([json.loads(line) for line in out.stdout.decode().splitlines()]) == 600
    assert b"A worker died" in out.stderr
    assert b"1000 Ray workers asked for" in out.stderr


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_results_are_utf8_whatever_the_locale(tmp_path, encoding):
    text = "Café au lait ☃, a superb film, I loved it\n"
    review = tmp_path / "r.txt"
    review.write_text(text, encoding="utf-8")
    env = {"PYTHONIOENCODING": encoding, "LC_ALL": "C", "LANG": "C"}
    for args in (["--lines", "--json"], ["--explain", "3"]):
        out = classify(*args, review, env=env)
        assert out.returncode == 0, out.stderr
        out_file = tmp_path / "out.txt"
        written = classify(*args, review, "--out", out_file, env=env)
        assert written.returncode == 0, written.stderr
        assert out_file.read_bytes() == out.stdout
    assert "☃" in classify("--explain", "3", review, env=env).stdout.decode("utf-8")


# --- 4. closed standard streams, python -OO, too many open files --------------------------------


def test_closed_standard_streams(review):
    want = _expected(review)
    out = shell(f'"$PY" -m runtime.classify {review} 2>&-')
    assert out.returncode == 0 and out.stdout == want
    out = shell(f'"$PY" -m runtime.classify {review} 2>&- /no/such/file')
    assert out.returncode == 2 and out.stdout.startswith(want)
    out = shell(f'"$PY" -m runtime.classify {review} <&-')
    assert out.returncode == 0 and out.stdout == want and out.stderr == b""
    out = shell(f'"$PY" -m runtime.classify {review} - <&-')
    assert out.returncode == 2 and out.stdout.startswith(want)
    assert "standard input is closed" in _one_line(out.stderr)
    out = shell('"$PY" -m runtime.classify --lines - <&-')
    assert out.returncode == 2 and "standard input is closed" in _one_line(out.stderr)
    out = shell(f'"$PY" -m runtime.classify {review} >&-')
    assert out.returncode == 1 and "standard output is closed" in _one_line(out.stderr)
    out = shell(f'"$PY" -m runtime.classify --lines {review} >&-')
    assert out.returncode == 1 and "standard output is closed" in _one_line(out.stderr)


def test_closed_stdout_with_out_file(review, tmp_path):
    out = shell(f'"$PY" -m runtime.classify {review} --out {tmp_path / "o.txt"} >&-')
    assert out.returncode == 0 and out.stderr == b""
    assert (tmp_path / "o.txt").read_bytes() == _expected(review)


def test_commands_run_under_python_OO(review):
    out = classify(review, python=("-OO",))
    assert out.returncode == 0 and out.stdout == _expected(review), out.stderr
    assert classify("--help", python=("-OO",)).returncode == 0
    parity = subprocess.run([sys.executable, "-OO", "-m", "runtime.parity", "--help"], cwd=ROOT,
                            capture_output=True, timeout=120)
    assert parity.returncode == 0, parity.stderr


def test_too_many_open_files_is_named_as_such(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text(REVIEW * 10)

    def few_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (12, 12))

    out = subprocess.run([sys.executable, "-m", "runtime.classify", "--lines", "--jobs", "2", str(lines)], cwd=ROOT,
                         capture_output=True, timeout=120, preexec_fn=few_files)
    assert out.returncode == 1, out.stderr
    line = _one_line(out.stderr)
    assert "Too many open files" in line and "cannot write the output" not in line
