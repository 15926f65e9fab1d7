"""A user's labelled data as a training corpus: labels, the test split and validation.

``--data FILE`` is read by ``train.userdata``. The test split is ``--test FILE`` when given;
otherwise a seeded, stratified hold-out of ``test_fraction`` of each label (at least one
example of every label with two or more), which is used for nothing but the final figure.
Validation is ``--validation FILE`` when given; otherwise the trainer holds out a stratified
``VALIDATION_FRACTION`` of the training examples (``stratified_split``). How every split was
made (the ids, the files' sha256, the seed and fraction) goes into ``splits.json``.

Labels are sorted by name; ``Split.labels`` holds their indexes. For two labels, the second
in sorted order is the one the model's single sigmoid output gives the probability of.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from train import userdata
from train.corpus import Corpus, Split
from train.errors import DataError

VALIDATION_FRACTION = 0.1
WHOLE = 1 << 62  # ``max_bytes`` that never samples: data recorded before sampling existed was read whole


def recorded_max_bytes(reading: dict) -> int:
    """The ``max_bytes`` a model's data was read with (``config.json``'s ``data.reading``)."""
    return int(reading.get("max_bytes") or WHOLE)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(kept, held)`` sorted index arrays: ``held`` takes ``round(fraction * n)`` of
    each label's ``n`` examples, at least one when ``n >= 2``, never the last one.

    Args:
        labels: one label index per example.
        fraction: the share of each label to hold out, in (0, 1).
        seed: the random seed.

    Returns:
        The indexes kept and the indexes held out.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        if len(idx) < 2:
            continue
        take = min(max(int(round(fraction * len(idx))), 1), len(idx) - 1)
        held.append(rng.permutation(idx)[:take])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    mask = np.ones(len(labels), bool)
    mask[held_idx] = False
    return np.flatnonzero(mask), held_idx


def _split(records: userdata.Records, index: dict[str, int], keep: np.ndarray | None = None,
           prefix: str = "") -> Split:
    rows = range(len(records)) if keep is None else keep
    return Split([records.texts[i] for i in rows], [index[records.labels[i]] for i in rows],
                 [prefix + records.ids[i] for i in rows], [])


def _read(path: str | Path, options: dict) -> userdata.Records:
    records = userdata.read(path, **options)
    for line in [*records.warnings(), records.note()]:
        if line:
            print(line, file=sys.stderr)
    return records


def _file_record(path: str | Path, records: userdata.Records) -> dict:
    record = {"path": str(Path(path).resolve()), "sha256": records.sha256, "examples": len(records),
              "skipped": records.skipped}
    if records.sample:
        record["sampled"] = records.sample
    return record


def load(data: str | Path, test: str | Path | None = None, validation: str | Path | None = None,
         fmt: str | None = None, text_column: str = "text", label_column: str = "label",
         test_fraction: float = 0.1, seed: int = 1337, max_bytes: int = userdata.MAX_BYTES) -> Corpus:
    """The user's data as a ``Corpus`` with sorted label names.

    Args:
        data: the training file or folder (``train.userdata`` formats).
        test: a test file in the same format, or None to hold out ``test_fraction``.
        validation: a validation file in the same format, or None (the trainer splits one off).
        fmt: the format, or None to tell it from the extension or layout.
        text_column: the text's column or field.
        label_column: the label's column or field.
        test_fraction: the stratified share held out for testing when ``test`` is None.
        seed: the seed of the hold-out (and of the sample of a file over ``max_bytes``).
        max_bytes: the text each file may hold in memory (``userdata.read``); a larger file
            is sampled.

    Returns:
        The corpus: ``splits["train"]``, ``splits["test"]``, maybe ``validation``.

    Raises:
        DataError: unreadable data, one distinct label, or labels in the test or validation
            file that the training data does not have.
        UsageError: options that do not fit the format.
    """
    options = {"fmt": fmt, "text_column": text_column, "label_column": label_column, "max_bytes": max_bytes,
               "seed": seed}
    train = _read(data, options)
    names = sorted(set(train.labels))
    if len(names) < 2:
        raise DataError(f"{data}: every example has the label {names[0]!r}; a classifier needs 2 or more labels")
    index = {name: i for i, name in enumerate(names)}
    files = {"train": _file_record(data, train)}
    # how to read the files again (export draws goldens and int8 calibration from them)
    reading = {"format": userdata.detect_format(Path(data), fmt), "text_column": text_column,
               "label_column": label_column, "max_bytes": max_bytes}
    record: dict = {"labels": names, "seed": seed, "reading": reading, "files": files}
    for option, other in (("--test", test), ("--validation", validation)):
        # export reads every file again with the training file's format
        if other is not None and fmt is None and userdata.detect_format(Path(other)) != reading["format"]:
            raise DataError(f"{other}: a {userdata.detect_format(Path(other))} file, but --data {data} is "
                            f"{reading['format']}; {option} takes the same format")
    options["fmt"] = reading["format"]

    y = np.asarray([index[label] for label in train.labels])
    once = [names[v] for v, n in enumerate(np.bincount(y, minlength=len(names))) if n == 1]
    if once:
        print(f"warning: {data}: {len(once)} label{'s have' if len(once) > 1 else ' has'} a single example "
              f"({', '.join(repr(n) for n in once[:5])}{', ...' if len(once) > 5 else ''}): it cannot be stratified "
              f"and stays in training, so it is never validated or tested", file=sys.stderr)

    if test is None:
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"--test-fraction {test_fraction}: expected a number between 0 and 1")
        kept, held = stratified_split(y, test_fraction, seed)
        if len(held) == 0:
            raise DataError(f"{data}: too few examples to hold out a test split (no label has 2); pass --test FILE")
        train_split, test_split = _split(train, index, kept), _split(train, index, held)
        record["test"] = {"source": "hold-out", "fraction": test_fraction, "of": "train"}
    else:
        test_records = _read(test, options)
        files["test"] = _file_record(test, test_records)
        _check_known(test, test_records, index)
        train_split, test_split = _split(train, index), _split(test_records, index, prefix="test:")
        record["test"] = {"source": "file"}
    val_split = None
    if validation is not None:
        val_records = _read(validation, options)
        files["validation"] = _file_record(validation, val_records)
        _check_known(validation, val_records, index)
        val_split = _split(val_records, index, prefix="validation:")
        if "test" in files and files["test"]["sha256"] == files["validation"]["sha256"]:
            raise DataError(f"{validation}: the same data as --test {test}; settings are chosen on validation and "
                            f"the model is refitted on it, so the test figure would not be of unseen text: pass "
                            f"another file, or leave --validation out to hold out part of --data")
    record["test_ids"] = list(test_split.ids)
    _warn_shared(train_split, test_split, "test", "training")
    if val_split is not None:
        _warn_shared(train_split, val_split, "validation", "training")
        _warn_shared(val_split, test_split, "test", "validation", " (the refit trains on them)")

    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{files[name]['sha256']}\0".encode())
    return Corpus(str(data), {"train": train_split, "test": test_split}, None, digest.hexdigest(),
                  labels=tuple(names), validation=val_split, split_record=record, user_data=True)


def _check_known(path, records: userdata.Records, index: dict[str, int]) -> None:
    for label, where in zip(records.labels, records.ids):
        if label not in index:
            raise DataError(f"{path}: {where}: label {label!r} is not in the training data")


def _key(text: str) -> bytes:
    """A text's digest up to whitespace (16 bytes: the set of them stays small beside the texts)."""
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _warn_shared(seen_split: Split, other: Split, name: str, seen_name: str, why: str = "") -> None:
    """Warn with a count when texts of ``other`` (``name``) are also in ``seen_split``
    (``seen_name``, ``why`` it matters), up to whitespace."""
    seen = {_key(t) for t in seen_split.texts}
    shared = sum(_key(t) in seen for t in other.texts)
    if shared:
        print(f"warning: {shared:,} of the {len(other):,} {name} texts are also {seen_name} texts{why}: the {name} "
              f"figure will be higher than on unseen text", file=sys.stderr)


def is_imdb(path: str | Path) -> bool:
    """Whether ``path`` is the aclImdb corpus (a .tar.gz, or a folder with train/ or aclImdb/train/)."""
    path = Path(path)
    if path.is_file():
        return path.name.endswith((".tar.gz", ".tgz"))
    for root in (path, path / "aclImdb"):
        if (root / "train" / "pos").is_dir() or (root / "test" / "pos").is_dir():
            return True
    return False
