"""The corpus loader: archives and folders, every expected failure, and the download."""

import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import ROOT, make_archive, tiny_reviews
from runtime.checks.reviews import CorpusError
from train.corpus import read_corpus


def test_reads_archive_in_fixed_order(tiny_archive):
    c = read_corpus(tiny_archive)
    train = c.splits["train"]
    assert len(train) == 12 and train.labels == [0] * 6 + [1] * 6
    assert train.ids[0] == "train/neg/0_2.txt".replace(".txt", "")
    assert c.counts() == {"train": {"neg": 6, "pos": 6}, "test": {"neg": 6, "pos": 6}}
    assert len(c.archive_sha256) == 64


def test_each_review_knows_its_movie(tiny_archive, tmp_path):
    train = read_corpus(tiny_archive).splits["train"]
    assert train.movies == ["tt0000000", "tt0000000", "tt0000001", "tt0000001", "tt0000002", "tt0000002"] * 2
    import tarfile

    with tarfile.open(tiny_archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    assert read_corpus(tmp_path / "x").splits["train"].movies == train.movies
    for urls in (tmp_path / "x" / "aclImdb" / "train").glob("urls_*.txt"):
        urls.unlink()
    assert read_corpus(tmp_path / "x").splits["train"].movies == [""] * 12


def test_real_corpus_movies_are_known_and_train_test_movies_apart(corpus):
    train, test = corpus.splits["train"], corpus.splits["test"]
    assert all(train.movies) and all(test.movies)
    assert len(set(train.movies)) > 3000
    assert len(set(train.movies) & set(test.movies)) <= 1  # the official split holds out movies


def test_directory_and_archive_have_the_same_content(tiny_archive, tmp_path):
    import tarfile

    with tarfile.open(tiny_archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    a = read_corpus(tiny_archive)
    for root in (tmp_path / "x", tmp_path / "x" / "aclImdb"):
        d = read_corpus(root)
        assert d.content_sha256 == a.content_sha256
        assert d.splits["test"].texts == a.splits["test"].texts


def test_real_corpus_counts(corpus):
    assert corpus.counts() == {"train": {"neg": 12500, "pos": 12500}, "test": {"neg": 12500, "pos": 12500}}


def _truncated(tmp_path, tiny_archive):
    data = tiny_archive.read_bytes()
    p = tmp_path / "truncated.tar.gz"
    p.write_bytes(data[: len(data) // 2])
    return p


def _not_archive(tmp_path, _):
    p = tmp_path / "notes.tar.gz"
    p.write_text("just some text, not gzip")
    return p


def _wrong_layout(tmp_path, _):
    return make_archive(tmp_path / "other.tar.gz", {"data/reviews/1.txt": "hello"})


def _empty_split(tmp_path, _):
    reviews = {k: v for k, v in tiny_reviews().items() if not k.startswith("test/neg")}
    return make_archive(tmp_path / "partial.tar.gz", reviews)


def _empty_dir(tmp_path, _):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp, _: tmp / "nope.tar.gz", "no such file"),
        (_not_archive, "not a .tar.gz archive"),
        (_truncated, "truncated or corrupt"),
        (_wrong_layout, "no reviews found"),
        (_empty_split, "empty split, no reviews in test/neg"),
        (_empty_dir, "no reviews found"),
    ],
)
def test_bad_sources_name_the_path_and_the_cause(tmp_path, tiny_archive, make, message):
    path = make(tmp_path, tiny_archive)
    with pytest.raises(CorpusError, match=message) as e:
        read_corpus(path)
    assert str(path) in str(e.value)


def test_train_cli_reports_bad_data_in_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "train", "--data", str(tmp_path / "missing.tar.gz"), "--out", str(tmp_path / "m")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 4
    lines = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert lines == [f"error: {tmp_path / 'missing.tar.gz'}: no such file or directory"]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "m").exists()


def test_download_once_into_the_cache(tmp_path, tiny_archive, monkeypatch):
    from train import data

    served = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tiny_archive.parent), **k)

        def log_message(self, *a):
            served.append(a)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{tiny_archive.name}"
        cache = tmp_path / "cache"
        first = data.download(url, cache)
        second = data.download(url, cache)
        assert first == second == cache / data.ARCHIVE_NAME
        assert first.read_bytes() == tiny_archive.read_bytes()
        assert len(served) == 1
        assert not list(cache.glob("*.part"))
        with pytest.raises(CorpusError, match="download failed"):
            data.download(f"http://127.0.0.1:{server.server_port}/missing.tar.gz", tmp_path / "c2")
        assert not list((tmp_path / "c2").glob("*"))
    finally:
        server.shutdown()


def test_resolve_prefers_argument_then_environment(monkeypatch, tmp_path):
    from train import data

    monkeypatch.setenv("IMDB_DATA", str(tmp_path / "env.tar.gz"))
    assert data.resolve("arg.tar.gz") == Path("arg.tar.gz")
    assert data.resolve(None) == tmp_path / "env.tar.gz"
