"""Engines never take stderr away: the one start-up line ai-edge-litert prints is hidden only
while a process has one thread, a crash while loading still shows, and a load failure is
one line naming the artifact, the engine and the cause."""

import subprocess
import sys
import venv

import pytest

from conftest import ROOT

THREADS_SCRIPT = r"""
import os, sys, threading
import runtime

clf = runtime.load(artifact="tflite-int8", backend="litert")
barrier = threading.Barrier(16)
def work(i):
    barrier.wait()
    for _ in range(20):
        clf.predict(f"A fine film number {i}, well acted.").probability  # each thread creates its interpreters
        os.write(2, b"")
threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
for t in threads: t.start()
for t in threads: t.join()
os.write(2, b"fd-2 still reaches the terminal\n")
print("sys.stderr too", file=sys.stderr)
"""


@pytest.mark.parametrize("run", range(3))
def test_stderr_survives_16_threads_creating_interpreters(run):
    proc = subprocess.run([sys.executable, "-c", THREADS_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["fd-2 still reaches the terminal", "sys.stderr too"]


CRASH_SCRIPT = r"""
import faulthandler, threading
import ai_edge_litert.interpreter as engine
import runtime

def crashing(*args, **kwargs):
    import os
    os.write(2, b"engine says: about to crash\n")
    faulthandler._sigsegv()  # a native crash inside the engine, while its first interpreter loads

engine.Interpreter = crashing
if {threads}:
    threading.Thread(target=threading.Event().wait, daemon=True).start()
runtime.load(artifact="tflite-int8", backend="litert")
"""


@pytest.mark.parametrize("threads", [False, True])
def test_a_crash_while_loading_still_shows(threads):
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT.format(threads=threads)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode < 0  # killed by SIGSEGV
    if threads:  # fd 2 untouched: the engine's own words show
        assert "engine says: about to crash" in proc.stderr, proc.stderr
    else:  # the first interpreter, alone in the process: muted, but the crash still shows where
        assert "Segmentation fault" in proc.stderr and "crashing" in proc.stderr, proc.stderr


def test_no_engine_noise_on_stderr(tmp_path):
    review = tmp_path / "r.txt"
    review.write_text("A wonderful, moving film.")
    for backend in ("litert", "onnxruntime"):
        proc = subprocess.run([sys.executable, "-m", "runtime.classify", "--backend", backend, str(review)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stderr == "", (backend, proc.stderr)


def test_tflite_runtime_with_numpy_2_is_one_line(tmp_path):
    """tflite-runtime 2.14 is built against numpy 1; with numpy 2 its interpreter raises a
    SystemError deep inside. The runtime says what to do instead, in one line, exit 4."""
    from train.data import cache_dir

    env = cache_dir() / "test-envs" / "tflite-runtime-numpy2"
    py = env / "bin" / "python"
    if not py.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(env)
    for args in (["numpy>=2"], ["--no-deps", "tflite-runtime==2.14.0"], ["--force-reinstall", "--no-deps", str(ROOT)]):
        pip = subprocess.run([str(py), "-m", "pip", "install", "-q", *args], capture_output=True, text=True, timeout=600)
        assert pip.returncode == 0, pip.stderr[-500:]
    review = tmp_path / "r.txt"
    review.write_text("A wonderful, moving film.")
    proc = subprocess.run([str(py), "-m", "runtime.classify", str(review)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "tflite-runtime 2.14.0 needs numpy<2; numpy 2." in proc.stderr and "ai-edge-litert" in proc.stderr


NO_FILENO_SCRIPT = r"""
import faulthandler, io, sys
if {enabled}:
    faulthandler.enable()
sys.stderr = io.StringIO()  # as under pytest's capsys: no file descriptor
import runtime
print(runtime.load(artifact="tflite-int8", backend="litert").predict("A wonderful, moving film.").probability)
print(faulthandler.is_enabled())
"""


@pytest.mark.parametrize("enabled", [True, False])
def test_loads_when_sys_stderr_has_no_file_descriptor(enabled):
    """It raised "cannot load model_int8.tflite: fileno", blaming the model."""
    proc = subprocess.run([sys.executable, "-c", NO_FILENO_SCRIPT.format(enabled=enabled)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    probability, still_enabled = proc.stdout.split()
    assert 0.0 < float(probability) < 1.0 and still_enabled == str(enabled)


USER_FAULTHANDLER_SCRIPT = r"""
import faulthandler, sys
log = open(sys.argv[1], "w")
faulthandler.enable(file=log)
import runtime
runtime.load(artifact="tflite-int8", backend="litert").predict("A wonderful, moving film.").probability
assert faulthandler.is_enabled()
faulthandler._sigsegv()
"""


def test_a_users_faulthandler_file_is_kept(tmp_path):
    """After load() a crash still goes to the file the program chose, not to stderr."""
    log = tmp_path / "crash.log"
    proc = subprocess.run([sys.executable, "-c", USER_FAULTHANDLER_SCRIPT, str(log)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode < 0
    assert "Segmentation fault" in log.read_text(), (log.read_text(), proc.stderr)
    assert "Segmentation fault" not in proc.stderr


@pytest.mark.parametrize("option", ["", "-X faulthandler"])
def test_loads_with_fd_2_closed(option):
    script = ("import runtime; print(runtime.load(artifact='tflite-int8', backend='litert')"
              ".predict('A wonderful, moving film.').probability)")
    proc = subprocess.run(["sh", "-c", f'"{sys.executable}" {option} -c "{script}" 2>&-'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and 0.0 < float(proc.stdout) < 1.0, proc.stdout
