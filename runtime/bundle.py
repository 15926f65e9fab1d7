"""The bundle: a directory with ``manifest.json``, the vocabulary, model artifacts and a
golden set, which the runtime loads with nothing else.

This module owns the manifest in both directions: ``Manifest.from_dict`` checks every
field once, at load (a wrong type or range is a one-line error naming the field), and
``Manifest.to_dict`` is the only writer's format. Every file the manifest names must stay
inside the bundle directory; verification checks a file's sha256 before it is used.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from runtime import temperature as _temperature
from runtime import text as _text
from runtime.atomic import write_atomic
from runtime.backends import LOGIT, PROBABILITY
from runtime.features import Encoder, encoder_from_spec
from runtime.vocab import Vocabulary, VocabularyError

FORMAT = "imdb-edge-bundle"
FORMAT_VERSION = 4  # 2: multi-hot models take word ids; 3: every artifact records its vocabulary size;
# 4: an artifact may output its logit (``Artifact.output``), which format-3 runtimes would misread
READABLE_VERSIONS = (3, 4)  # format 3 is format 4 with every output a probability
MANIFEST = "manifest.json"
LABELS = ("negative", "positive")
DEFAULT_THRESHOLD = 0.5  # P(positive) at or above which a review is positive, unless a manifest says otherwise
FORMATS = ("tflite", "onnx")
MAX_MANIFEST_BYTES = 16 << 20


class BundleError(Exception):
    """A bundle that is missing, malformed, tampered with or inconsistent."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class _Fields:
    """Typed reads of one JSON object of the manifest, each failure naming its field."""

    def __init__(self, data: object, where: str, name: str):
        if not isinstance(data, dict):
            raise BundleError(f"{where}: field {name!r} must be an object, got {type(data).__name__}")
        self.data, self.where, self.name = data, where, name

    def _fail(self, key: str, expected: str, value: object) -> BundleError:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
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

    def number(self, key: str, low: float, high: float) -> float:
        value = self.get(key, (int, float), f"a number in [{low:g}, {high:g}]")
        if not (math.isfinite(value) and low <= value <= high):
            raise self._fail(key, f"a number in [{low:g}, {high:g}]", value)
        return float(value)

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
    output: str = PROBABILITY  # or LOGIT: the runtime applies the sigmoid (see backends.sigmoid32)

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
            size_bytes=f.get("size_bytes", int, "a whole number"), sha256=f.sha256(),
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
    labels: tuple[str, str]
    threshold: float
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
        if data.get("format_version") not in READABLE_VERSIONS:
            raise BundleError(f"{where}: format version {data.get('format_version')!r} is not supported "
                              f"(expected {' or '.join(map(str, READABLE_VERSIONS))}); export the bundle again "
                              f"with this version")
        if data.get("tokenizer") != _text.settings():
            raise BundleError(f"{where}: tokenizer {data.get('tokenizer')} differs from this runtime's "
                              f"{_text.settings()}")
        vocab, golden, inp = f.sub("vocabulary"), f.sub("golden"), f.sub("input")
        vocab.file(), vocab.sha256(), golden.file(), golden.sha256()
        inp.sub("features")
        labels = f.get("labels", list, "a list of two different strings")
        if len(labels) != 2 or not all(isinstance(x, str) and x for x in labels) or labels[0] == labels[1]:
            raise f._fail("labels", "a list of two different strings", labels)
        entries = f.get("artifacts", dict, "a non-empty object of artifacts")
        if not entries:
            raise f._fail("artifacts", "a non-empty object of artifacts", entries)
        artifacts = {name: Artifact.read(name, _Fields(a, where, f"artifacts.{name}")) for name, a in entries.items()}
        default = f.text("default_artifact")
        if default not in artifacts:
            raise f._fail("default_artifact", f"one of {', '.join(artifacts)}", default)
        calibration = f.get("calibration", dict, "an object", optional=True) or {}
        if "temperature" in calibration:
            _Fields(calibration, where, "calibration").number("temperature", _temperature.LOW, _temperature.HIGH)
        return cls(
            vocabulary=data["vocabulary"], features=data["input"]["features"], input=data["input"],
            output=f.get("output", dict, "an object", optional=True) or {}, labels=(labels[0], labels[1]),
            threshold=f.number("threshold", 0.0, 1.0), default_artifact=default,
            validation_criteria=f.get("validation_criteria", dict, "an object", optional=True) or {},
            golden=data["golden"], artifacts=artifacts, tokenizer=data["tokenizer"],
            recipe=f.get("recipe", str, "a string", optional=True) or "",
            model=f.get("model", dict, "an object", optional=True) or {},
            producer=f.get("producer", dict, "an object", optional=True) or {},
            created=f.get("created", str, "a string", optional=True) or "",
            calibration=calibration,
            extra={k: v for k, v in data.items() if k not in cls._KNOWN},
        )

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "created": self.created, "recipe": self.recipe,
            "model": self.model, "producer": self.producer, "tokenizer": self.tokenizer,
            "vocabulary": self.vocabulary, "input": {**self.input, "features": self.features},
            "output": self.output, "labels": list(self.labels), "threshold": self.threshold,
            "default_artifact": self.default_artifact, "validation_criteria": self.validation_criteria,
            "golden": self.golden, "artifacts": {n: a.to_dict() for n, a in self.artifacts.items()},
            **({"calibration": self.calibration} if self.calibration else {}), **self.extra,
        }

    def write(self, path: Path) -> None:
        """Write the manifest atomically."""
        write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")


@dataclass(frozen=True)
class Problem:
    """A file that failed verification: ``artifact`` names the artifact, or is None for the
    bundle's own files (vocabulary, golden set)."""

    artifact: str | None
    message: str


@dataclass
class Bundle:
    root: Path
    manifest: Manifest

    @property
    def artifacts(self) -> dict[str, Artifact]:
        return self.manifest.artifacts

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def artifact(self, name: str | None) -> Artifact:
        """The named artifact (default: the manifest's ``default_artifact``)."""
        name = name or self.manifest.default_artifact
        if name not in self.artifacts:
            raise BundleError(f"{self.root}: no artifact {name!r}; the bundle has {', '.join(self.artifacts)}")
        return self.artifacts[name]

    def path(self, rel: str) -> Path:
        """The file ``rel`` of the bundle, refused if it resolves outside the bundle directory."""
        path = self.root / rel
        try:
            inside = path.resolve().is_relative_to(self.root.resolve())
        except (OSError, RuntimeError) as e:  # a symlink loop
            raise BundleError(f"{path}: cannot resolve ({e})") from e
        if not inside:
            raise BundleError(f"{path}: points outside the bundle directory {self.root}")
        return path

    def verify_file(self, rel: str, expected_sha: str) -> Path:
        path = self.path(rel)
        if not path.is_file():
            raise BundleError(f"{path}: missing from the bundle")
        if sha256_file(path) != expected_sha:
            raise BundleError(f"{path}: sha256 does not match the manifest (modified or corrupt)")
        return path

    def vocabulary(self) -> Vocabulary:
        """The verified vocabulary."""
        info = self.manifest.vocabulary
        path = self.verify_file(info["file"], info["sha256"])
        try:
            return Vocabulary.load(path)
        except VocabularyError as e:
            raise BundleError(str(e)) from e

    def encoder(self) -> Encoder:
        """The manifest's feature encoder over the verified vocabulary, checked to fit each other."""
        vocab = self.vocabulary()
        try:
            return encoder_from_spec(self.manifest.features, vocab)
        except (ValueError, KeyError, TypeError) as e:
            raise BundleError(f"{self.root / self.manifest.vocabulary['file']}: {e}") from e

    def artifact_path(self, name: str | None) -> tuple[Artifact, Path]:
        """An artifact and its verified file."""
        artifact = self.artifact(name)
        return artifact, self.verify_file(artifact.file, artifact.sha256)

    def golden(self) -> list[dict]:
        info = self.manifest.golden
        path = self.verify_file(info["file"], info["sha256"])
        try:
            reviews = json.loads(path.read_text(encoding="utf-8"))["reviews"]
        except (ValueError, KeyError, TypeError) as e:
            raise BundleError(f"{path}: not a golden set ({e})") from e
        return reviews

    def verify_all(self) -> list[Problem]:
        """Check every file the manifest lists; the problems, each with its artifact (empty when sound)."""
        m = self.manifest
        entries = [(None, m.vocabulary["file"], m.vocabulary["sha256"]), (None, m.golden["file"], m.golden["sha256"])]
        entries += [(name, a.file, a.sha256) for name, a in self.artifacts.items()]
        problems = []
        for artifact, rel, sha in entries:
            try:
                self.verify_file(rel, sha)
            except BundleError as e:
                problems.append(Problem(artifact, str(e)))
        if not problems:
            try:
                self.encoder()
            except BundleError as e:
                problems.append(Problem(None, str(e)))
        return problems

    def write_manifest(self) -> None:
        self.manifest.write(self.manifest_path)


def open_bundle(root: str | Path) -> Bundle:
    """Read and check a bundle's manifest (files are verified when used)."""
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{path}: larger than {MAX_MANIFEST_BYTES >> 20} MiB, not a manifest")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise BundleError(f"{path}: missing; {root} is not a bundle") from e
    except (OSError, ValueError, RecursionError) as e:
        raise BundleError(f"{path}: unreadable manifest ({e})") from e
    if not isinstance(data, dict):
        raise BundleError(f"{path}: not an {FORMAT} manifest")
    return Bundle(root, Manifest.from_dict(data, str(path)))
