"""The bundle: a directory with ``manifest.json``, the vocabulary, model artifacts and a
golden set, which the runtime loads with nothing else. Verification checks every file the
caller will use against the manifest's sha256 before anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from runtime import text as _text
from runtime.features import Encoder, make_encoder
from runtime.vocab import Vocabulary, VocabularyError

FORMAT = "imdb-edge-bundle"
FORMAT_VERSION = 2  # 2: multi-hot models take word ids
MANIFEST = "manifest.json"


class BundleError(Exception):
    """A bundle that is missing, malformed, tampered with or inconsistent."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@dataclass
class Bundle:
    root: Path
    manifest: dict

    @property
    def artifacts(self) -> dict[str, dict]:
        return self.manifest["artifacts"]

    def artifact(self, name: str | None) -> tuple[str, dict]:
        """The named artifact (default: the manifest's ``default_artifact``)."""
        name = name or self.manifest["default_artifact"]
        if name not in self.artifacts:
            raise BundleError(f"{self.root}: no artifact {name!r}; the bundle has {', '.join(self.artifacts)}")
        return name, self.artifacts[name]

    def verify_file(self, rel: str, expected_sha: str) -> Path:
        path = self.root / rel
        if not path.is_file():
            raise BundleError(f"{path}: missing from the bundle")
        if sha256_file(path) != expected_sha:
            raise BundleError(f"{path}: sha256 does not match the manifest (modified or corrupt)")
        return path

    def vocabulary(self) -> Vocabulary:
        """The verified vocabulary."""
        info = self.manifest["vocabulary"]
        path = self.verify_file(info["file"], info["sha256"])
        try:
            return Vocabulary.load(path)
        except VocabularyError as e:
            raise BundleError(str(e)) from e

    def encoder(self) -> Encoder:
        """The manifest's feature encoder over the verified vocabulary, checked to fit each other."""
        vocab = self.vocabulary()
        try:
            return make_encoder(self.manifest["input"]["features"], vocab)
        except (ValueError, KeyError) as e:
            raise BundleError(f"{self.root / self.manifest['vocabulary']['file']}: {e}") from e

    def artifact_path(self, name: str | None) -> tuple[str, dict, Path]:
        """The verified file of an artifact."""
        name, info = self.artifact(name)
        return name, info, self.verify_file(info["file"], info["sha256"])

    def golden(self) -> list[dict]:
        info = self.manifest["golden"]
        path = self.verify_file(info["file"], info["sha256"])
        return json.loads(path.read_text(encoding="utf-8"))["reviews"]

    def verify_all(self) -> list[str]:
        """Check every file the manifest lists; return the problems (empty when sound)."""
        problems = []
        entries = [(self.manifest["vocabulary"]["file"], self.manifest["vocabulary"]["sha256"]),
                   (self.manifest["golden"]["file"], self.manifest["golden"]["sha256"])]
        entries += [(a["file"], a["sha256"]) for a in self.artifacts.values()]
        for rel, sha in entries:
            try:
                self.verify_file(rel, sha)
            except BundleError as e:
                problems.append(str(e))
        if not problems:
            try:
                self.encoder()
            except BundleError as e:
                problems.append(str(e))
        return problems


def open_bundle(root: str | Path) -> Bundle:
    """Read and check a bundle's manifest (files are verified when used)."""
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise BundleError(f"{path}: missing; {root} is not a bundle") from e
    except (OSError, ValueError) as e:
        raise BundleError(f"{path}: unreadable manifest ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not an {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: format version {manifest.get('format_version')} is not supported (expected {FORMAT_VERSION})")
    if manifest.get("tokenizer") != _text.settings():
        raise BundleError(
            f"{path}: tokenizer {manifest.get('tokenizer')} differs from this runtime's {_text.settings()}"
        )
    for key in ("vocabulary", "input", "artifacts", "default_artifact", "golden", "labels", "threshold"):
        if key not in manifest:
            raise BundleError(f"{path}: manifest lacks {key!r}")
    return Bundle(root, manifest)
