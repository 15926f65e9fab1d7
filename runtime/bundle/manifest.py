"""The bundle: a directory with ``manifest.json``, the vocabulary, model artifacts and a
golden set, which the runtime loads with nothing else.

This module owns the manifest in both directions: ``Manifest.from_dict`` checks every
field once, at load (a wrong type or range is a one-line error naming the field), and
``Manifest.to_dict`` is the only writer's format. Every file the manifest names must stay
inside the bundle directory; verification checks a file's sha256 before it is used.

Every file of a bundle, the manifest included, is opened by one helper (``open_inside``):
it must resolve inside the bundle directory, be a regular file (a FIFO never blocks, a
device is never read) and be no larger than its kind's cap, or the size the manifest
records for an artifact. Every number of the manifest and of the golden set is checked
for its type (``true`` is not a number), finiteness and range when the file is read.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from runtime import probability as _temperature
from runtime.encoding import text as _text
from runtime.atomic import write_atomic
from runtime.engines.base import LOGIT, PROBABILITY
from runtime.bundle.files import BundleError
from runtime.encoding.features import FAMILIES, MAX_LENGTH, NGRAM, NGRAM_SEQUENCE, SEQUENCE

FORMAT = "imdb-edge-bundle"
FORMAT_VERSION = 5  # 2: multi-hot models take word ids; 3: every artifact records its vocabulary size;
# 4: a TFLite artifact may output its logit (``Artifact.output``), which format-3 runtimes would
# misread; 5: an ONNX artifact may too, which format-4 runtimes refuse field by field
FORMAT_VERSION_LABELS = 6  # 6: more than two labels (N probabilities a text); two-label bundles stay 5
FORMAT_VERSION_ORDER = 7  # 7: the ngram-sequence feature family (token ids then n-gram ids in one row)
READABLE_VERSIONS = (3, 4, 5, 6, 7)  # each is the next one with fewer artifacts outputting a logit
MANIFEST = "manifest.json"
LABELS = ("negative", "positive")
MAX_LABELS = 1000
DEFAULT_THRESHOLD = 0.5  # P(positive) at or above which a review is positive, unless a manifest says otherwise
FORMATS = ("tflite", "onnx")
MAX_MANIFEST_BYTES = 16 << 20
MAX_GOLDEN_BYTES = 16 << 20  # a golden set holds a few dozen reviews
MAX_VOCABULARY_BYTES = 64 << 20  # one token a line: millions of tokens
MAX_ARTIFACT_BYTES = 2 << 30  # neither a FlatBuffer (TFLite) nor a protobuf (ONNX) file can be larger
MAX_IDS = 2**31 - 1  # vocabulary sizes, buckets and table rows are int32 ids
MAX_SEQUENCE_LENGTH = 1 << 20  # ids per review of a sequence model (a row is allocated per review)
MAX_GOLDEN_REVIEWS = 1 << 20
CRITERIA = ("float32_max_abs_diff", "min_label_agreement", "max_test_accuracy_drop")  # parity --data's


class _Fields:
    """Typed reads of one JSON object of the manifest, each failure naming its field."""

    def __init__(self, data: object, where: str, name: str):
        if not isinstance(data, dict):
            raise BundleError(f"{where}: field {name!r} must be an object, got {type(data).__name__}")
        self.data, self.where, self.name = data, where, name

    def _fail(self, key: str, expected: str, value: object) -> BundleError:
        try:
            shown = repr(value)
        except ValueError:  # an integer too long to print
            shown = f"a {value.bit_length()}-bit integer"
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return BundleError(f"{self.where}: field {self._path(key)!r} must be {expected}, got {shown}")

    def _path(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def get(self, key: str, kind: type | tuple[type, ...], expected: str, optional: bool = False):
        if key not in self.data:
            if optional:
                return None
            raise BundleError(f"{self.where}: field {self._path(key)!r} is missing")
        value = self.data[key]
        if optional and value is None:
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
            raise self._fail(key, expected, value)
        return value

    def text(self, key: str, optional: bool = False) -> str | None:
        value = self.get(key, str, "a non-empty string", optional)
        if value == "":
            raise self._fail(key, "a non-empty string", value)
        return value

    def number(self, key: str, low: float = -sys.float_info.max, high: float = sys.float_info.max,
               optional: bool = False) -> float | None:
        """A finite number in [low, high] (NaN and infinities fail the comparison; an integer of
        any size is compared exactly, before it is turned into a float)."""
        expected = f"a number in [{low:g}, {high:g}]" if high < sys.float_info.max else "a finite number"
        value = self.get(key, (int, float), expected, optional)
        if value is None:
            return None
        if not low <= value <= high:
            raise self._fail(key, expected, value)
        return float(value)

    def whole(self, key: str, low: int, high: int, optional: bool = False) -> int | None:
        """A whole number in [low, high] (``1e3``, a float, is not one)."""
        expected = f"a whole number in [{low}, {high}]"
        value = self.get(key, int, expected, optional)
        if value is not None and not low <= value <= high:
            raise self._fail(key, expected, value)
        return value

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        value = self.data.get(key)
        if key not in self.data:
            raise BundleError(f"{self.where}: field {self._path(key)!r} is missing")
        if not isinstance(value, str) or value not in options:
            raise self._fail(key, f"one of {', '.join(options)}", value)
        return value

    def sub(self, key: str) -> _Fields:
        return _Fields(self.get(key, dict, "an object"), self.where, self._path(key))

    def file(self, key: str = "file") -> str:
        """A bundle-relative file name that cannot point outside the bundle."""
        rel = self.text(key)
        parts = PurePosixPath(rel).parts
        if rel.startswith(("/", "\\")) or "\\" in rel or ".." in parts or ":" in rel or "\0" in rel:
            raise self._fail(key, "a file name inside the bundle (no absolute path, no '..')", rel)
        return rel

    def sha256(self, key: str = "sha256") -> str:
        value = self.text(key)
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise self._fail(key, "64 lowercase hex digits", value)
        return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _check_features(f: _Fields) -> None:
    """The types and ranges of the feature spec's numbers; ``encoder_from_spec`` then checks
    that they fit the vocabulary and this runtime's encoders."""
    family = f.choice("family", FAMILIES)
    f.whole("vocab_size", 1, MAX_IDS)
    if family == SEQUENCE:
        f.whole("length", 1, MAX_SEQUENCE_LENGTH)
    elif family in (NGRAM, NGRAM_SEQUENCE):
        f.whole("buckets", 1, MAX_IDS)
        f.whole("rows", 1, MAX_IDS)
        f.whole("order", 1, 8)
        if family == NGRAM_SEQUENCE:
            f.whole("length", 1, MAX_LENGTH)


def _check_probabilities(f: _Fields, key: str, n: int, optional: bool = False) -> None:
    """``f[key]``: a list of ``n`` probabilities, each a number in [0, 1]."""
    expected = f"a list of {n} probabilities in [0, 1]"
    values = f.get(key, list, expected, optional)
    if values is None:
        return
    if len(values) != n or not all(type(v) in (int, float) and 0.0 <= v <= 1.0 for v in values):
        raise f._fail(key, expected, values)


def _check_golden(data: object, where: str, artifacts: list[str], expected: int | None,
                  labels: tuple[str, ...] = LABELS) -> list[dict]:
    """The golden set's reviews, every field parity uses checked: an id and a text, a
    probability in [0, 1] for every artifact, and an explanation's top terms when recorded.

    For N > 2 ``labels``: a list of N probabilities (``float_probabilities`` and one per
    artifact), the review's ``label`` and the explanation's ``label`` among ``labels``."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: not a golden set (a JSON object with 'reviews' expected, got "
                          f"{type(data).__name__})")
    many = len(labels) > 2
    f = _Fields(data, where, "")
    reviews = f.get("reviews", list, "a non-empty list of reviews")
    if not reviews:
        raise f._fail("reviews", "a non-empty list of reviews", reviews)
    if expected is not None and len(reviews) != expected:
        raise BundleError(f"{where}: holds {len(reviews)} reviews, the manifest says {expected}")
    for i, item in enumerate(reviews):
        r = _Fields(item, where, f"reviews[{i}]")
        r.text("id")
        if not r.text("text").strip():  # a review parity can classify: not whitespace alone
            raise r._fail("text", "a review with a word in it", item["text"])
        if many:
            label = r.get("label", str, f"one of the {len(labels)} labels", optional=True)
            if label is not None and label not in labels:
                raise r._fail("label", f"one of the {len(labels)} labels", label)
            _check_probabilities(r, "float_probabilities", len(labels), optional=True)
            probabilities = r.sub("probabilities")
            for name in artifacts:
                _check_probabilities(probabilities, name, len(labels))
        else:
            r.number("float_probability", 0.0, 1.0, optional=True)
            probabilities = r.sub("probabilities")
            for name in artifacts:
                probabilities.number(name, 0.0, 1.0)
        if item.get("explanation") is None:
            continue
        e = r.sub("explanation")
        e.text("method")
        e.number("logit", optional=True)
        if many:
            explained = e.get("label", str, f"one of the {len(labels)} labels")
            if explained not in labels:
                raise e._fail("label", f"one of the {len(labels)} labels", explained)
        top = e.get("top", list, "a non-empty list of [term, contribution] pairs")
        if not top:
            raise e._fail("top", "a non-empty list of [term, contribution] pairs", top)
        for j, pair in enumerate(top):
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and pair[0]
                    and type(pair[1]) in (int, float) and -sys.float_info.max <= pair[1] <= sys.float_info.max):
                raise e._fail(f"top[{j}]", "a [term, contribution] pair", pair)
    return reviews


MAX_LABEL_CHARS = 200
RESERVED_LABELS = ("uncertain", "error")  # what the command prints in a label's place


# the line and paragraph separators (str.splitlines breaks on them) and the bidirectional controls
_BREAKING = frozenset(map(chr, [0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]))


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot be a label name (None if it can): the command prints labels in
    tab-separated lines, so no control characters, no surrounding whitespace, at most
    ``MAX_LABEL_CHARS`` characters, and not a word the command prints in a label's place."""
    if not label or label != label.strip():
        return f"label {label[:40]!r} is empty or has surrounding whitespace"
    if len(label) > MAX_LABEL_CHARS:
        return f"label {label[:40]!r}... is longer than {MAX_LABEL_CHARS} characters"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in label):
        return f"label {label[:40]!r} holds a control character (a tab or line break would break the output lines)"
    if any(c in _BREAKING or "\ud800" <= c <= "\udfff" for c in label):
        return (f"label {label[:40]!r} holds a line separator, a lone surrogate or a bidirectional control "
                f"(it would break or reorder the output lines)")
    if label in RESERVED_LABELS:
        return f"label {label!r} is a word the command prints in a label's place ({', '.join(RESERVED_LABELS)})"
    return None


def _check_labels(f: _Fields, version: int) -> tuple[str, ...]:
    """The manifest's ``labels``: 2 to ``MAX_LABELS`` distinct non-empty strings, more than two
    only from format version ``FORMAT_VERSION_LABELS`` on."""
    expected = f"a list of 2 to {MAX_LABELS} distinct non-empty strings"
    labels = f.get("labels", list, expected)
    if not 2 <= len(labels) <= MAX_LABELS or not all(isinstance(x, str) and x for x in labels) or len(
            set(labels)) != len(labels):
        raise f._fail("labels", expected, labels)
    for label in labels:
        problem = label_problem(label)
        if problem:
            raise BundleError(f"{f.where}: field 'labels': {problem}")
    if len(labels) > 2 and version < FORMAT_VERSION_LABELS:
        raise f._fail("labels", f"two labels in a format version {version} manifest", labels)
    return tuple(labels)


def _threshold_of(f: _Fields, labels: tuple[str, ...]) -> float | None:
    """The manifest's ``threshold``: required for two labels, absent (or null) for more."""
    if len(labels) > 2:
        if f.data.get("threshold") is not None:
            raise BundleError(f"{f.where}: field 'threshold' must be absent or null for a bundle of "
                              f"{len(labels)} labels, got {f.data['threshold']!r}")
        return None
    return f.number("threshold", 0.0, 1.0)


def _check_output(f: _Fields, labels: int) -> dict:
    """The manifest's ``output`` (optional); for N > 2 labels, its shape must be ``[null, N]``."""
    output = f.get("output", dict, "an object", optional=True) or {}
    if labels > 2 and "shape" in output and output["shape"] != [None, labels]:
        raise _Fields(output, f.where, "output")._fail("shape", f"[null, {labels}]", output["shape"])
    return output


@dataclass
class EngineRecord:
    """What one engine version did with an artifact (export and ``export.compat`` write these)."""

    engine: str
    version: str | None
    loads: bool
    matches_golden: bool | None
    checked_by: str
    error: str | None = None
    explanations: bool | None = None  # top terms agree with float's (None: not checked or not judged)
    platform: dict | None = None  # where it ran: machine, os, python (see ``platform_info``), emulator
    outputs_sha256: str | None = None  # the golden answers' digest (``runtime.parity.outputs_digest``)
    bit_identical: bool | None = None  # same digest as this engine version on the reference machine

    @classmethod
    def read(cls, f: _Fields) -> EngineRecord:
        return cls(f.text("engine"), f.get("version", str, "a string", optional=True),
                   f.get("loads", bool, "true or false"),
                   f.get("matches_golden", bool, "true, false or null", optional=True),
                   f.get("checked_by", str, "a string"), f.get("error", str, "a string", optional=True),
                   f.get("explanations", bool, "true, false or null", optional=True),
                   f.get("platform", dict, "an object", optional=True),
                   f.get("outputs_sha256", str, "a string", optional=True),
                   f.get("bit_identical", bool, "true, false or null", optional=True))

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("error", "explanations", "platform", "outputs_sha256", "bit_identical"):
            if d[key] is None:
                del d[key]
        return d


def platform_info() -> dict:
    """Where this process runs: CPU architecture, OS release and Python version."""
    import platform

    os_name = f"{platform.system()} {platform.release()}"
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        os_name = fields.get("PRETTY_NAME", os_name).strip('"')
    except OSError:
        pass
    return {"machine": platform.machine(), "os": os_name, "python": platform.python_version()}


def _place(rec: EngineRecord) -> tuple | None:
    """The machine, OS and emulated CPU a record was made on (None: not recorded)."""
    p = rec.platform
    return None if not p else (p.get("machine"), p.get("os"), p.get("emulated"))


def version_key(version: str | None) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in (version or "0").split("."))


@dataclass
class Artifact:
    """One model file of a bundle and what is known of it."""

    name: str
    file: str
    format: str
    precision: str
    description: str
    size_bytes: int
    sha256: str
    golden_tolerance: float
    batch_invariant: bool
    validation: dict
    engines: list[EngineRecord] = field(default_factory=list)
    min_versions: dict[str, str] = field(default_factory=dict)
    output: str = PROBABILITY  # or LOGIT: the runtime applies the sigmoid (see engines.base.sigmoid32)

    @property
    def is_float32(self) -> bool:
        return self.precision == "float32"

    @classmethod
    def read(cls, name: str, f: _Fields) -> Artifact:
        fmt = f.text("format")
        if fmt not in FORMATS:
            raise f._fail("format", f"one of {', '.join(FORMATS)}", fmt)
        engines = f.get("engines", list, "a list", optional=True) or []
        output = f.get("output", str, "a string", optional=True) or PROBABILITY
        if output not in (PROBABILITY, LOGIT):
            raise f._fail("output", "'probability' or 'logit'", output)
        return cls(
            name=name, file=f.file(), format=fmt, precision=f.text("precision"),
            description=f.get("description", str, "a string", optional=True) or "",
            size_bytes=f.whole("size_bytes", 0, MAX_ARTIFACT_BYTES), sha256=f.sha256(),
            golden_tolerance=f.number("golden_tolerance", 0.0, 1.0),
            batch_invariant=f.get("batch_invariant", bool, "true or false"),
            validation=f.get("validation", dict, "an object", optional=True) or {},
            engines=[EngineRecord.read(_Fields(e, f.where, f"{f.name}.engines[{i}]")) for i, e in enumerate(engines)],
            min_versions=f.get("min_versions", dict, "an object", optional=True) or {},
            output=output,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["name"]
        d["engines"] = [e.to_dict() for e in self.engines]
        return d

    def refuses(self, engine: str, version: str | None) -> bool:
        """Whether the manifest records that this engine version cannot load the artifact."""
        return any(r.engine == engine and r.version == version and r.loads is False for r in self.engines)

    def record(self, rec: EngineRecord) -> None:
        """Add or replace the record of ``rec``'s engine version on its machine and OS (a record
        that names no platform is replaced by any), and update ``min_versions``."""
        self.engines = [e for e in self.engines
                        if (e.engine, e.version) != (rec.engine, rec.version)
                        or _place(e) not in (None, _place(rec))]
        self.engines.append(rec)
        self.engines.sort(key=lambda e: (e.engine, version_key(e.version)))
        good: dict[str, str] = {}
        for e in self.engines:
            if e.loads and e.matches_golden and e.version:
                good.setdefault(e.engine, e.version)
        self.min_versions = good


@dataclass
class Manifest:
    """Everything ``manifest.json`` says. Unknown top-level fields are kept as they are."""

    vocabulary: dict  # file, size, sha256
    features: dict  # the encoder's spec
    input: dict  # the exported models' input: name, dtype, shape, meaning
    output: dict
    labels: tuple[str, ...]  # column order of an N-label artifact's output; two: P(labels[1])
    threshold: float | None  # two labels: P(labels[1]) at or above it; None (absent) for N > 2
    default_artifact: str
    validation_criteria: dict
    golden: dict  # file, sha256, reviews
    artifacts: dict[str, Artifact]
    tokenizer: dict = field(default_factory=_text.settings)
    recipe: str = ""
    model: dict = field(default_factory=dict)
    producer: dict = field(default_factory=dict)
    created: str = ""
    calibration: dict = field(default_factory=dict)  # temperature (1: none) and the figures behind it
    extra: dict = field(default_factory=dict)

    _KNOWN = ("format", "format_version", "created", "recipe", "model", "producer", "tokenizer", "vocabulary",
              "input", "output", "labels", "threshold", "default_artifact", "validation_criteria", "golden",
              "artifacts", "calibration")

    @property
    def temperature(self) -> float:
        return float(self.calibration.get("temperature", 1.0))

    @classmethod
    def from_dict(cls, data: object, where: str) -> Manifest:
        """Check every field this runtime uses; raise ``BundleError`` naming the first bad one."""
        f = _Fields(data, where, "")
        if data.get("format") != FORMAT:
            raise BundleError(f"{where}: not an {FORMAT} manifest")
        version = data.get("format_version")
        if type(version) is not int or version not in READABLE_VERSIONS:
            raise BundleError(f"{where}: format version {data.get('format_version')!r} is not supported "
                              f"(expected {' or '.join(map(str, READABLE_VERSIONS))}); export the bundle again "
                              f"with this version")
        if data.get("tokenizer") != _text.settings():
            raise BundleError(f"{where}: tokenizer {data.get('tokenizer')} differs from this runtime's "
                              f"{_text.settings()}")
        vocab, golden, inp = f.sub("vocabulary"), f.sub("golden"), f.sub("input")
        vocab.file(), vocab.sha256(), golden.file(), golden.sha256()
        vocab.whole("size", 1, MAX_IDS, optional=True)
        golden.whole("reviews", 1, MAX_GOLDEN_REVIEWS, optional=True)
        _check_features(inp.sub("features"))
        if inp.sub("features").data.get("family") == NGRAM_SEQUENCE and version < FORMAT_VERSION_ORDER:
            raise BundleError(f"{where}: field 'input.features.family': ngram-sequence in a format version "
                              f"{version} manifest")
        labels = _check_labels(f, version)
        entries = f.get("artifacts", dict, "a non-empty object of artifacts")
        if not entries:
            raise f._fail("artifacts", "a non-empty object of artifacts", entries)
        artifacts = {name: Artifact.read(name, _Fields(a, where, f"artifacts.{name}")) for name, a in entries.items()}
        default = f.text("default_artifact")
        if default not in artifacts:
            raise f._fail("default_artifact", f"one of {', '.join(artifacts)}", default)
        criteria = f.get("validation_criteria", dict, "an object", optional=True) or {}
        for key in CRITERIA:
            _Fields(criteria, where, "validation_criteria").number(key, 0.0, 1.0, optional=True)
        calibration = f.get("calibration", dict, "an object", optional=True) or {}
        if "temperature" in calibration:
            _Fields(calibration, where, "calibration").number("temperature", _temperature.LOW, _temperature.HIGH)
        return cls(
            vocabulary=data["vocabulary"], features=data["input"]["features"], input=data["input"],
            output=_check_output(f, len(labels)), labels=labels,
            threshold=_threshold_of(f, labels), default_artifact=default,
            validation_criteria=criteria,
            golden=data["golden"], artifacts=artifacts, tokenizer=data["tokenizer"],
            recipe=f.get("recipe", str, "a string", optional=True) or "",
            model=f.get("model", dict, "an object", optional=True) or {},
            producer=f.get("producer", dict, "an object", optional=True) or {},
            created=f.get("created", str, "a string", optional=True) or "",
            calibration=calibration,
            extra={k: v for k, v in data.items() if k not in cls._KNOWN},
        )

    @property
    def format_version(self) -> int:
        """The version this manifest is written with: 7 for the ngram-sequence family, 6 for more
        than two labels, else 5 (so an older runtime refuses what it cannot read by its version)."""
        if self.features.get("family") == NGRAM_SEQUENCE:
            return FORMAT_VERSION_ORDER
        return FORMAT_VERSION_LABELS if len(self.labels) > 2 else FORMAT_VERSION

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "format_version": self.format_version, "created": self.created, "recipe": self.recipe,
            "model": self.model, "producer": self.producer, "tokenizer": self.tokenizer,
            "vocabulary": self.vocabulary, "input": {**self.input, "features": self.features},
            "output": self.output, "labels": list(self.labels),
            **({} if self.threshold is None and len(self.labels) > 2 else {"threshold": self.threshold}),
            "default_artifact": self.default_artifact, "validation_criteria": self.validation_criteria,
            "golden": self.golden, "artifacts": {n: a.to_dict() for n, a in self.artifacts.items()},
            **({"calibration": self.calibration} if self.calibration else {}), **self.extra,
        }

    def write(self, path: Path) -> None:
        """Write the manifest atomically."""
        write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
