"""Many reviews per file (--lines, --jsonl, --csv), worker processes (--jobs) and --out."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT


def classify(*args, stdin=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "runtime.classify", *map(str, args)], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_lines_give_one_output_per_line_in_order_as_single_files_do(lines_file, tmp_path):
    import runtime

    out = classify("--lines", lines_file)
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    texts = lines_file.read_text(encoding="utf-8").splitlines()
    assert len(rows) == len(texts) == 3000
    assert [r[2] for r in rows] == [f"{lines_file}:{i}" for i in range(1, 3001)]
    clf = runtime.load()
    for (label, probability, _), text in list(zip(rows, texts))[::97]:
        p = clf.predict(text)
        assert (label, probability) == (p.label, f"{p.probability:.4f}")


@pytest.mark.parametrize("fmt", ["--lines", "--jsonl"])
def test_two_jobs_give_byte_identical_output(lines_file, tmp_path, fmt):
    source = lines_file
    if fmt == "--jsonl":
        source = tmp_path / "reviews.jsonl"
        source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                                  for i, t in enumerate(lines_file.read_text(encoding="utf-8").splitlines())))
    one = classify(fmt, "--json", source)
    two = classify(fmt, "--json", "--jobs", "2", source, "--out", tmp_path / "two.jsonl")
    assert one.returncode == two.returncode == 0, two.stderr
    assert two.stdout == ""
    assert (tmp_path / "two.jsonl").read_text(encoding="utf-8") == one.stdout
    rows = [json.loads(line) for line in one.stdout.splitlines()]
    assert len(rows) == 3000 and all(0 <= r["probability"] <= 1 for r in rows)
    if fmt == "--jsonl":
        assert [r["id"] for r in rows] == list(range(3000))


def test_csv_with_quoted_newlines_and_a_chosen_column(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('id,review,stars\n1,"A wonderful film.\nI loved it, truly.",9\n2,"Awful, boring.",1\n3,,5\n',
                    encoding="utf-8")
    out = classify("--csv", "--column", "review", "--json", path)
    assert out.returncode == 2
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["source"] for r in rows] == [f"{path}:2", f"{path}:4", f"{path}:5"]
    assert [r.get("label") for r in rows] == ["positive", "negative", None]
    assert rows[2]["error"] == "empty or whitespace-only review"
    assert out.stderr.splitlines() == [f"error: {path}:5: empty or whitespace-only review"]


def test_bad_records_each_get_their_error_and_the_rest_is_scored(tmp_path):
    lines = tmp_path / "mixed.txt"
    with open(lines, "wb") as f:
        f.write(b"A wonderful film\n")
        f.write(b"bin\x00ary\x01\x02\n")
        f.write(b"x" * (50 << 20))  # 50 MB with no newline
        f.write(b"\nUn caf\xe9 superbe, great film\n")
        f.write("Caf\u00e9 awful film\n".encode("utf-8"))
        f.write(b"   \n")
        f.write(b"last one, no newline, great")
    out = classify("--lines", lines)
    assert out.returncode == 2
    assert [line.split("\t")[0] for line in out.stdout.splitlines()] == [
        "positive", "error", "error", "positive", "negative", "error", "positive"]
    err = out.stderr.splitlines()
    assert f"error: {lines}:2: binary data (contains NUL bytes), not text" in err
    assert f"error: {lines}:3: record longer than 4194304 bytes" in err
    assert any(e.startswith(f"warning: {lines}:4: invalid utf-8 bytes were replaced") for e in err)
    assert f"error: {lines}:6: empty or whitespace-only review" in err

    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"id": 1, "text": "great film"}\n{"id": 2, "text": 5}\n{not json\n["text"]\n{"id": 5}\n')
    rows = [json.loads(line) for line in classify("--jsonl", "--json", jsonl).stdout.splitlines()]
    assert [r.get("error") for r in rows] == [None, "field 'text' is not a string (int)",
                                              rows[2]["error"], "a JSON list, not an object",
                                              "field 'text' is missing"]
    assert rows[2]["error"].startswith("malformed JSON") and rows[4]["id"] == 5


def test_csv_without_the_column_is_one_line_and_other_files_go_on(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,body\n1,great\n")
    good = tmp_path / "good.csv"
    good.write_text("text\nA wonderful film\n")
    out = classify("--csv", bad, good)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"error: {bad}: no column 'text' in the CSV header (columns: id, body)"]
    assert out.stdout.splitlines() == [f"error\t-\t{bad}", f"positive\t{out.stdout.split()[4]}\t{good}:2"]


def test_usage_errors(tmp_path):
    review = tmp_path / "r.txt"
    review.write_text("fine\n")
    for args, message in ((["--jobs", "2", review], "--jobs and --ray go with --lines, --jsonl or --csv"),
                          (["--lines", "--csv", review], "not allowed with argument"),
                          (["--lines", "--encoding", "utf-16", review], "newline is one byte"),
                          (["--lines", "--jobs", "-1", review], "--jobs must be 0"),
                          (["--lines", "--out", tmp_path / "no" / "o.txt", review], "does not exist")):
        out = classify(*args)
        assert out.returncode == 64 and message in out.stderr, (args, out.stderr)


def _jobs() -> int:
    """--jobs for the worker tests: 3, or fewer where the command caps it at the cores (issue 31)."""
    from runtime.cli.bulk import jobs_count

    jobs = jobs_count(3)
    if jobs < 2:
        pytest.skip("one core: --jobs starts no worker")
    return jobs


def _workers(pid: int) -> list[int]:
    """The worker processes of ``pid`` (spawned children running multiprocessing's spawn_main)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found


def test_a_dying_worker_fails_the_run_in_one_line_and_writes_nothing(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("".join(f"A fine film number {i} with a plot I liked and actors I did not.\n"
                           for i in range(400_000)))
    out = tmp_path / "out.txt"
    proc = subprocess.Popen([sys.executable, "-m", "runtime.classify", "--lines", "--jobs", str(jobs := _jobs()), str(big),
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_workers(proc.pid)) < jobs - 1:
        time.sleep(0.01)
    os.kill(_workers(proc.pid)[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert err.strip().splitlines()[-1].startswith("error: a worker process died")
    assert f"{out} was not written" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]


def test_ctrl_c_stops_the_command_and_its_workers_in_one_line(tmp_path):
    """Ctrl-C at a terminal reaches every process of the group: the command says so in one
    line and exits 130, its workers print nothing and are gone, and no --out file is left."""
    big = tmp_path / "big.txt"
    big.write_text("".join(f"A fine film number {i} with a plot I liked and actors I did not.\n"
                           for i in range(1_500_000)))
    out = tmp_path / "out.txt"
    proc = subprocess.Popen([sys.executable, "-m", "runtime.classify", "--lines", "--jobs", str(jobs := _jobs()), str(big),
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_workers(proc.pid)) < jobs - 1:
        time.sleep(0.01)
    workers = _workers(proc.pid)
    for worker in workers:  # the workers first (a terminal signals all at once): they must ignore it
        os.kill(worker, signal.SIGINT)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [f"interrupted; {out} was not written"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]
    assert len(workers) == jobs - 1 and not any(Path(f"/proc/{w}").exists() for w in workers)


def test_a_long_lines_file_is_scored_in_bounded_memory(tmp_path):
    from test_hostile import classify_measured

    big = tmp_path / "many.txt"
    with open(big, "w") as f:
        for i in range(300_000):
            f.write(f"review {i % 997}: a good film, great acting, a dull plot\n")
    code, out, err, rss = classify_measured("--lines", big, "--jobs", "2", timeout=600)
    assert code == 0 and out.count("\n") == 300_000, err[-3:]
    assert rss < 200_000, f"peak RSS {rss} KB"


def test_ray_is_imported_only_when_asked_for(tmp_path):
    review = tmp_path / "r.txt"
    review.write_text("a fine film\nan awful film\n")
    code = ("import sys\nfrom runtime import classify\n"
            f"status = classify.main(['--lines', '--jobs', '1', {str(review)!r}])\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\nprint('status', status)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "status 0" in out.stdout, out.stderr


def test_ray_local_cluster_gives_byte_identical_output(lines_file, tmp_path):
    pytest.importorskip("ray")
    one = classify("--lines", "--json", lines_file)
    on_ray = classify("--lines", "--json", "--ray", "--jobs", "2", lines_file, "--out", tmp_path / "ray.jsonl")
    assert on_ray.returncode == 0, on_ray.stderr[-2000:]
    assert on_ray.stderr == "", "Ray's notices reached the command's standard error"
    assert (tmp_path / "ray.jsonl").read_text(encoding="utf-8") == one.stdout


def test_review_scorer_in_ray_data_and_as_a_batch_function(lines_file):
    ray = pytest.importorskip("ray")
    import pickle

    import numpy as np

    import runtime
    from runtime.scorer import ReviewScorer

    texts = lines_file.read_text(encoding="utf-8").splitlines()[:600]
    want = runtime.load().predict_proba(texts)
    scorer = pickle.loads(pickle.dumps(ReviewScorer()))
    np.testing.assert_array_equal(scorer(np.array(texts, dtype=object)), want)  # Spark's predict_batch_udf form
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
        rows = ds.map_batches(ReviewScorer, fn_constructor_kwargs={"bundle": str(runtime.DEFAULT_BUNDLE)},
                              batch_format="numpy", batch_size=128, concurrency=2).take_all()
    finally:
        ray.shutdown()
    got = dict((int(r["id"]), float(r["probability"])) for r in rows)
    assert len(got) == 600 and [got[i] for i in range(600)] == [float(p) for p in want]
    assert {r["label"] for r in rows} <= {"positive", "negative"}


def test_line_blocks_cut_any_file_into_the_lines_a_plain_split_gives(monkeypatch):
    """Blocks of whole lines, read a few bytes at a time, give every line once, numbered, with
    the lines over MAX_RECORD (skipped as they are read) marked, whatever the file's shape."""
    import io
    import random

    from runtime.cli import records

    monkeypatch.setattr(records, "BLOCK", 7)
    monkeypatch.setattr(records, "MAX_RECORD", 10)
    rng = random.Random(3)
    for _ in range(3000):
        lines = [bytes(rng.choice(b"ab \r") for _ in range(rng.choice([0, 1, 3, 6, 9, 10, 11, 15, 30])))
                 for _ in range(rng.randrange(0, 12))]
        data = b"\n".join(lines) + rng.choice([b"", b"\n"])
        want = data.split(b"\n")
        if data.endswith(b"\n") or not data:
            want.pop()
        want = [(i + 1, None if len(line) > 10 else line) for i, line in enumerate(want)]
        for size in (16, 7, 3):  # over a read, a read (as the command reads), under one
            blocks = list(records.line_blocks(io.BytesIO(data), "f", size=size))
            assert [line for b in blocks for line in records._lines(b)] == want, (data, size)
            assert all(b.data and len(b.data) <= size + 7 + 10 for b in blocks)


def test_line_blocks_are_of_even_size(monkeypatch):
    """A block is about one read (the line begun counts), not one or two reads by turns:
    the command and its workers share blocks by count, so they must weigh the same."""
    import io
    import random

    from runtime.cli import records

    monkeypatch.setattr(records, "BLOCK", 64)
    rng = random.Random(5)
    data = b"".join(b"x" * rng.randrange(4, 10) + b"\n" for _ in range(2000))
    blocks = list(records.line_blocks(io.BytesIO(data), "f", size=64))
    assert all(64 - 10 <= len(b.data) <= 64 + 10 for b in blocks[:-1]), sorted({len(b.data) for b in blocks})
    assert b"".join(b.data for b in blocks) == data


def test_workers_render_what_one_process_renders_with_a_band_and_csv(lines_file, tmp_path):
    """Workers parse, score and render their own records: the uncertainty band and CSV records
    (parsed by the reading process) come out byte for byte as in one process."""
    texts = lines_file.read_text(encoding="utf-8").splitlines()[:1500]
    source = tmp_path / "reviews.csv"
    source.write_text("id,text\n" + "".join(f'{i},"{t.replace(chr(34), chr(34) * 2)}"\n' for i, t in enumerate(texts)),
                      encoding="utf-8")
    one = classify("--csv", "--uncertain", "0.3:0.7", source)
    two = classify("--csv", "--uncertain", "0.3:0.7", "--jobs", "2", source)
    assert one.returncode == two.returncode == 0, two.stderr
    assert two.stdout == one.stdout and len(one.stdout.splitlines()) == 1500
    assert "uncertain\t" in one.stdout
