"""Hostile records (--lines, --jsonl, --csv) and output values: every input record gives exactly
one output record, in order; standard output carries only those records, always strict UTF-8
(strict JSON with --json), whatever the file names, fields and bytes are."""

import codecs
import csv
import json
import os
import random
import subprocess
import sys

import pytest

from conftest import ROOT


def run(*args, timeout=300):
    """(exit status, stdout decoded as strict UTF-8, stderr lines) of the command."""
    proc = subprocess.run([sys.executable, "-m", "runtime.classify", *map(os.fsdecode, args)], cwd=ROOT,
                          capture_output=True, timeout=timeout)
    out = proc.stdout.decode("utf-8")  # strict: an undecodable byte fails the test
    return proc.returncode, out, proc.stderr.decode("utf-8", errors="replace").splitlines()


def _no_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def strict_json(line: str) -> dict:
    """One output line as strict JSON, which any JSON parser reads, and which Python writes back strictly."""
    obj = json.loads(line, parse_constant=_no_constant)
    json.dumps(obj, allow_nan=False)
    return obj


# -- CSV: a stray quote never swallows records ---------------------------------------------

def _csv(path, rows: list[str]):
    path.write_text("id,text,stars\n" + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("case", ["never closed", "closed by a later quoted field",
                                  "closed at a line's end, the record's fields miscounted"])
def test_a_stray_csv_quote_is_one_error_record_and_every_other_record_is_scored(tmp_path, case):
    texts = ["an awful film" if i % 2 else "a great film" for i in range(40)]
    quote = '"' if "quoted field" in case else ""
    rows = [f"{i},{quote}{t}{quote},{i % 10}" for i, t in enumerate(texts)]
    rows[5] = '5,"a great film,7'
    if "line's end" in case:
        rows[20] = '20,a great film"'  # from the stray quote, lines 7-22 would be one record of 2 fields
    path = _csv(tmp_path / "stray.csv", rows)
    code, out, err = run("--csv", "--json", path)
    records = [strict_json(line) for line in out.splitlines()]
    assert code == 2, case
    assert [r["source"] for r in records] == [f"{path}:{i}" for i in range(2, 42)], case
    bad = [r for r in records if "error" in r]
    assert [r["source"] for r in bad] == [f"{path}:7"] and bad[0]["error"].startswith("malformed CSV record ("), case
    assert err == [f"error: {path}:7: {bad[0]['error']}"], case
    assert [r.get("label") for i, r in enumerate(records) if i != 5] == [
        "negative" if i % 2 else "positive" for i in range(40) if i != 5], case


def test_a_stray_quote_in_a_long_csv_runs_on_at_most_max_record_lines(tmp_path):
    """The issue's case: 20,001 records with one stray quote gave 20,000 outputs and exit 0."""
    from runtime.cli.records import MAX_RECORD_LINES

    rows = [f"{i},a great film number {i},{i % 10}" for i in range(20_001)]
    rows[5] = '5,"a great film'
    path = _csv(tmp_path / "long.csv", rows)
    code, out, err = run("--csv", path)
    lines = out.splitlines()
    assert code == 2 and len(lines) == 20_001
    assert lines[5] == f"error\t-\t{path}:7"
    assert err == [f"error: {path}:7: malformed CSV record (a quoted field runs on over {MAX_RECORD_LINES} "
                   "lines: a stray quote?)"]
    assert all(line.startswith("positive\t") for line in lines[:5] + lines[6:])


def test_csv_records_are_one_per_line_whatever_the_stray_quotes(monkeypatch):
    """In-process, on random files of one-line records, some with stray or doubled quotes:
    every line is one record, in order, the ones with a stray quote errors, and legit
    multi-line quoted fields still work (bounds made small to reach them)."""
    import io

    from runtime.cli import records

    monkeypatch.setattr(records, "MAX_RECORD_LINES", 4)
    monkeypatch.setattr(records, "MAX_RECORD", 120)
    monkeypatch.setattr(records, "BLOCK", 16)  # a line is cut as too long when it spans reads
    rng = random.Random(7)
    # (Kinds whose quote could close a stray one's field validly, as ``1,x",2`` would, are left
    # out: such a file is valid CSV with one record spanning lines, ambiguous to any reader.)
    kinds = ["plain", "quoted", "doubled", "stray open", "quote then text", "long", "blank"]
    limit = csv.field_size_limit()
    monkeypatch.setattr(csv, "field_size_limit", lambda new=None: limit)  # no process-wide change
    for _ in range(2000):
        lines, want = [], []
        for n in range(2, 2 + rng.randrange(1, 30)):
            kind = rng.choice(kinds)
            lines.append({"plain": "1,good film,2", "quoted": '1,"good, film",2', "doubled": '1,"a ""good"" film",2',
                          "stray open": '1,"good film,2', "quote then text": '1,"good" film,2',
                          "long": "1," + "x" * 200 + ",2", "blank": ""}[kind])
            if kind != "blank":
                want.append((f"f:{n}", kind in ("plain", "quoted", "doubled")))
        data = ("id,text,stars\n" + "\n".join(lines) + "\n").encode()
        got = list(records.read_csv(io.BytesIO(data), "f", "utf-8", "text"))
        assert [(r.source, r.error is None) for r in got] == want, lines
        assert all(r.text in (None, "good film", "good, film", 'a "good" film') for r in got)
    spanning = b'id,text,stars\n1,"a good\nfilm\nindeed",2\n2,bad,3\n'
    got = list(records.read_csv(io.BytesIO(spanning), "f", "utf-8", "text"))
    assert [(r.source, r.text) for r in got] == [("f:2", "a good\nfilm\nindeed"), ("f:5", "bad")]


def test_an_over_long_csv_line_is_one_error_record(tmp_path):
    path = tmp_path / "long.csv"
    with open(path, "wb") as f:
        f.write(b"id,text\n1,a great film\n2," + b"x" * (6 << 20) + b"\n3,an awful film\n")
    code, out, err = run("--csv", path)
    assert code == 2
    assert [line.split("\t")[0] for line in out.splitlines()] == ["positive", "error", "negative"]
    assert err == [f"error: {path}:3: record longer than {4 << 20} characters"]


# -- binary and endless input ---------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["--lines", "--jsonl", "--csv"])
def test_dev_zero_is_refused_promptly_in_record_modes(fmt):
    code, out, err = run(fmt, "/dev/zero", timeout=120)
    assert code == 2
    assert out == "error\t-\t/dev/zero\n"
    assert err == ["error: /dev/zero: binary file (contains NUL bytes), not text"]


# -- every output value encodes as strict UTF-8 ---------------------------------------------

def test_lone_surrogates_in_jsonl_fields_give_strict_utf8_json(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "a great film \\udc80", "x": "\\udc80", "y": "caf\\u00e9"}\n'
                    '{"text": "an awful film", "x": "\\ud800 alone"}\n', encoding="ascii")
    out_file = tmp_path / "out.jsonl"
    for target in (None, out_file):
        code, out, err = run("--jsonl", "--json", path, *(["--out", target] if target else []))
        assert code == 0 and err == []
        if target:
            out = out_file.read_bytes().decode("utf-8")
        rows = [strict_json(line) for line in out.splitlines()]
        assert [(r["x"], r["label"]) for r in rows] == [("\udc80", "positive"), ("\ud800 alone", "negative")]
        assert rows[0]["y"] == "café"


def test_a_lone_surrogate_explained_in_text_is_written_as_its_escape(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "a great film \\udc80"}\n', encoding="ascii")
    code, out, err = run("--jsonl", "--explain", "3", path)
    assert code == 0, err
    assert out.splitlines()[0].startswith("positive\t")
    review = out.splitlines()[-1]
    assert review.startswith("  review: [") and review.endswith(" \\udc80")


def test_file_names_with_breaks_and_undecodable_bytes_stay_one_field_on_one_line(tmp_path):
    names = [b"new\nline.txt", b"tab\tbed.txt", b"caf\xe9.txt", b"esc\x1b[31m.txt"]
    paths = []
    for name in names:
        path = os.path.join(os.fsencode(tmp_path), name)
        with open(path, "wb") as f:
            f.write(b"a great film\nan awful film\n")
        paths.append(path)
    shown = [f"{tmp_path}/new\\nline.txt", f"{tmp_path}/tab\\tbed.txt", f"{tmp_path}/caf\\xe9.txt",
             f"{tmp_path}/esc\\x1b[31m.txt"]
    code, out, err = run("--lines", *paths)
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines()]
    assert [r[2] for r in rows] == [f"{s}:{n}" for s in shown for n in (1, 2)]
    assert [r[0] for r in rows] == ["positive", "negative"] * 4
    code, out, err = run("--json", *paths)
    assert code == 0, err
    assert [strict_json(line)["file"] for line in out.splitlines()] == shown
    code, out, err = run(*paths, os.path.join(os.fsencode(tmp_path), b"missing\n\xff"))
    assert code == 2 and len(out.splitlines()) == 4
    assert err == [f"error: {tmp_path}/missing\\n\\xff: no such file"]


# -- carried JSON fields --------------------------------------------------------------------

@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_carried_numbers_make_the_record_an_error_not_invalid_json(tmp_path, value):
    path = tmp_path / "n.jsonl"
    path.write_text(f'{{"text": "a great film", "rating": {value}}}\n{{"text": "an awful film", "rating": 2.5}}\n',
                    encoding="utf-8")
    code, out, err = run("--jsonl", "--json", path)
    rows = [strict_json(line) for line in out.splitlines()]
    assert code == 2
    assert rows[0] == {"source": f"{path}:1", "error": rows[0]["error"]} and value in rows[0]["error"]
    assert rows[0]["error"].startswith("malformed JSON (")
    assert rows[1]["rating"] == 2.5 and rows[1]["label"] == "negative"


def test_carried_fields_named_as_output_keys_are_renamed_never_posing_as_the_result(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": "a great film", "error": "old", "label": "negative", "source": "s",
                                "input_label": "kept", "id": 1}) + "\n"
                    + json.dumps({"text": "", "label": "positive", "probability": 0.9}) + "\n", encoding="utf-8")
    code, out, err = run("--jsonl", "--json", path)
    ok, bad = (strict_json(line) for line in out.splitlines())
    assert code == 2
    assert "error" not in ok and ok["label"] == "positive" and ok["source"] == f"{path}:1"
    assert (ok["input_error"], ok["input_label"], ok["input_source"], ok["input_input_label"], ok["id"]) == (
        "old", "kept", "s", "negative", 1)
    assert "label" not in bad and "probability" not in bad
    assert (bad["input_label"], bad["input_probability"], bad["error"]) == (
        "positive", 0.9, "empty or whitespace-only review")


# -- messages that named the wrong cause ----------------------------------------------------

def test_a_utf32_file_is_told_to_use_utf32(tmp_path):
    path = tmp_path / "u32.txt"
    path.write_bytes("a great film".encode("utf-32"))
    code, out, err = run(path)
    assert code == 2 and err == [f"error: {path}: looks like UTF-32 text (byte-order mark): use --encoding utf-32"]
    code, out, err = run("--encoding", "utf-16", path)
    assert code == 2 and err == [f"error: {path}: looks like UTF-32 text (byte-order mark): use --encoding utf-32"]


@pytest.mark.parametrize("encoding, wide", [("utf-16", "UTF-16"), ("utf-32", "UTF-32")])
@pytest.mark.parametrize("fmt", ["--lines", "--jsonl", "--csv"])
def test_wide_text_in_record_modes_is_one_line_that_says_so(tmp_path, encoding, wide, fmt):
    path = tmp_path / "wide"
    path.write_text("text,id\na great film,1\n", encoding=encoding)
    code, out, err = run(fmt, path)
    assert code == 2 and out == f"error\t-\t{path}\n"
    assert err == [f"error: {path}: looks like {wide} text (byte-order mark): --lines, --jsonl and --csv need an "
                   f"encoding in which a newline is one byte; convert it (iconv -f {wide} -t UTF-8)"]


def test_a_utf16_csv_without_byte_order_mark_gets_a_message_without_nul(tmp_path):
    path = tmp_path / "u16.csv"
    path.write_bytes("text,id\na great film,1\n".encode("utf-16-le"))
    code, out, err = run("--csv", path)
    assert code == 2 and "\0" not in "".join(err)
    assert err == [f"error: {path}: binary data or UTF-16/UTF-32 text (NUL bytes in the header row), not CSV text"]


@pytest.mark.parametrize("fmt, content", [
    ("--csv", "text,id\na great film,1\n"),
    ("--jsonl", '{"text": "a great film"}\n'),
])
def test_a_utf8_byte_order_mark_is_no_part_of_the_first_record(tmp_path, fmt, content):
    path = tmp_path / "bom"
    path.write_bytes(codecs.BOM_UTF8 + content.encode("utf-8"))
    plain = tmp_path / "plain"
    plain.write_bytes(content.encode("utf-8"))
    code, out, err = run(fmt, "--json", path)
    assert code == 0 and err == [], err
    _, want, _ = run(fmt, "--json", plain)
    assert out == want.replace(str(plain), str(path))


# -- a streamed review gives the tokens of the whole ----------------------------------------

def test_a_long_review_of_line_breaks_streamed_is_scored_as_whole(tmp_path):
    """Over 4 MiB of ``<br />`` only: no words at all, so the prior, streamed or not."""
    import runtime

    text = "<br />" * ((4 << 20) // 6 + 100)
    clf = runtime.load()
    whole = clf.predict(text)
    assert whole.known_words == 0
    pieces = [text[i:i + (1 << 20)] for i in range(0, len(text), 1 << 20)]
    assert clf.predict_stream(iter(pieces)) == whole
    path = tmp_path / "brs.txt"
    path.write_text(text, encoding="ascii")
    code, out, err = run(path)
    assert code == 0
    assert out == f"{whole.label}\t{whole.probability:.4f}\t{path}\n"
    assert err == [f"warning: {path}: no known words; the result is only the model's prior"]


# --- a second hostile probe (stop 38) ---------------------------------------------------------------


def test_blocks_of_tiny_records_stay_small():
    """A block is at most MAX_BLOCK_LINES lines: 8 MB of empty lines once took 900 MB."""
    import io

    from runtime.cli.records import MAX_BLOCK_LINES, line_blocks

    data = b"\n" * (3 * MAX_BLOCK_LINES + 5) + b"last"
    blocks = list(line_blocks(io.BytesIO(data), "x"))
    counts = [b.data.count(b"\n") + (not b.data.endswith(b"\n")) for b in blocks]
    assert max(counts) <= MAX_BLOCK_LINES and sum(counts) == 3 * MAX_BLOCK_LINES + 6
    assert [b.first for b in blocks] == [1 + sum(counts[:i]) for i in range(len(blocks))]
    assert blocks[-1].data.endswith(b"last")


def test_options_of_the_other_record_format_are_usage_errors(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("body,text\nawful,great\n", encoding="utf-8")
    for args in (("--csv", "--field", "body"), ("--jsonl", "--column", "body"), ("--lines", "--column", "x"),
                 ("--field", "body")):
        status, out, err = run(*args, path)
        assert status == 64 and out == "" and len(err) == 1 and args[-2] in err[0], (args, err)


def test_ambiguous_or_oversized_records_are_one_error_each(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("text,text\nawful,great\n", encoding="utf-8")
    status, out, err = run("--csv", dup)
    assert status == 2 and "names the column 'text' 2 times" in err[-1]
    big = tmp_path / "big.jsonl"
    big.write_text('{"text": "a fine film", "n": ' + "9" * 5000 + "}\n", encoding="utf-8")
    status, out, err = run("--jsonl", big)
    assert status == 2 and err[-1].endswith("malformed JSON (an integer of more than 4,300 digits)"), err


def test_a_name_too_long_is_one_line():
    status, out, err = run("--model", "/tmp/" + "a" * 5000, "-")
    assert status == 4 and len(err) == 1 and "File name too long" in err[0]
    proc = subprocess.run([sys.executable, "-m", "runtime.parity", "b" * 300], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 4 and "Traceback" not in proc.stderr and "too long" in proc.stderr


def test_importing_the_package_loads_nothing_heavy():
    """Commands take Ctrl-C from their first import: the package itself loads no numpy or engine."""
    code = "import sys, runtime, runtime.exitcodes; print(sorted(m for m in ('numpy', 'onnxruntime') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_blocks_keep_every_line_and_its_number_whatever_the_reads(monkeypatch):
    """Random files read in random short pieces, with a cap of 1 to 4 lines a block: the blocks
    hold every line once, in order, numbered from 1, none over the cap."""
    import io
    import random

    from runtime.cli import records

    def split(data: bytes) -> list[bytes]:
        parts = data.split(b"\n") if data else []
        return parts[:-1] if data.endswith(b"\n") else parts

    for trial in range(3000):
        rnd = random.Random(trial)
        monkeypatch.setattr(records, "MAX_BLOCK_LINES", rnd.randint(1, 4))
        data = bytes(rnd.choice(b"\nx\n") for _ in range(rnd.randint(0, 30)))

        class Short(io.BytesIO):
            def read(self, n=-1):
                return super().read(min(n, rnd.randint(1, 5)))

        blocks = list(records.line_blocks(Short(data), "x", size=rnd.choice([2, 4, 64])))
        assert [line for b in blocks for line in split(b.data)] == split(data), trial
        assert [b.first + i for b in blocks for i in range(len(split(b.data)))] == list(
            range(1, len(split(data)) + 1)), trial
        assert all(len(split(b.data)) <= records.MAX_BLOCK_LINES for b in blocks), trial
