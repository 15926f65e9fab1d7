"""A bundle directory opened and verified: its manifest read once, every file it names
checked (inside the bundle, regular, sized, sha256) before the runtime uses it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from runtime.bundle.files import BundleError, _check_size, _sha256_of, open_inside, read_inside
from runtime.bundle.manifest import (FORMAT, MANIFEST, MAX_ARTIFACT_BYTES, MAX_GOLDEN_BYTES, MAX_MANIFEST_BYTES,
                                     MAX_VOCABULARY_BYTES, Artifact, Manifest, _check_golden)
from runtime.encoding.features import Encoder, encoder_from_spec
from runtime.encoding.vocab import Vocabulary, VocabularyError

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
        """The file ``rel`` of the bundle, refused as ``open_inside`` refuses it (outside the
        bundle directory, missing, not a regular file)."""
        with open_inside(self.root, rel, MAX_ARTIFACT_BYTES, "bundle file"):
            return self.root / rel

    def _limits(self, rel: str) -> tuple[int, str, int | None]:
        """The cap, the kind and the exact size (artifacts) of the file ``rel``."""
        m = self.manifest
        if rel == m.vocabulary["file"]:
            return MAX_VOCABULARY_BYTES, "vocabulary", None
        if rel == m.golden["file"]:
            return MAX_GOLDEN_BYTES, "golden set", None
        sizes = [a.size_bytes for a in self.artifacts.values() if a.file == rel]
        return MAX_ARTIFACT_BYTES, "model", sizes[0] if sizes else None

    def verify_file(self, rel: str, expected_sha: str) -> Path:
        """The path of the bundle file ``rel`` after checking it (``open_inside``) and its sha256."""
        limits = self._limits(rel)
        with open_inside(self.root, rel, *limits) as f:
            try:
                digest = _sha256_of(f)
                real = f.tell()
            except OSError as e:
                raise BundleError(f"{self.root / rel}: cannot read ({e.strerror})") from e
        if digest != expected_sha:
            raise BundleError(f"{self.root / rel}: sha256 does not match the manifest (modified or corrupt)")
        _check_size(self.root / rel, real, limits[2])
        return self.root / rel

    def read_verified(self, rel: str, expected_sha: str) -> bytes:
        """The bytes of the bundle file ``rel``, checked (``open_inside``) and matching its sha256:
        what is used is what was verified."""
        limits = self._limits(rel)
        data = read_inside(self.root, rel, *limits)
        if hashlib.sha256(data).hexdigest() != expected_sha:
            raise BundleError(f"{self.root / rel}: sha256 does not match the manifest (modified or corrupt)")
        _check_size(self.root / rel, len(data), limits[2])
        return data

    def vocabulary(self) -> Vocabulary:
        """The verified vocabulary."""
        info = self.manifest.vocabulary
        path = self.verify_file(info["file"], info["sha256"])
        try:
            vocab = Vocabulary.load(path)
        except VocabularyError as e:
            raise BundleError(str(e)) from e
        if info.get("size") is not None and info["size"] != len(vocab):
            raise BundleError(f"{self.manifest_path}: field 'vocabulary.size' is {info['size']}, but {path} holds "
                              f"{len(vocab)} tokens")
        return vocab

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

    def artifact_content(self, name: str | None) -> tuple[Artifact, Path, bytes]:
        """An artifact, its path and its verified bytes, which the engines load: they need not
        open the path (one an engine cannot take, such as a non-UTF-8 name, still loads), and
        what runs is what was verified."""
        artifact = self.artifact(name)
        return artifact, self.root / artifact.file, self.read_verified(artifact.file, artifact.sha256)

    def golden(self) -> list[dict]:
        """The verified golden reviews, every field parity uses checked."""
        info = self.manifest.golden
        path = self.root / info["file"]
        data = self.read_verified(info["file"], info["sha256"])
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise BundleError(f"{path}: not a golden set ({e})") from e
        return _check_golden(parsed, str(path), list(self.artifacts), info.get("reviews"), self.manifest.labels)

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
    try:
        is_dir, has_manifest = root.is_dir(), os.path.lexists(path)
    except OSError as e:  # a name too long, a loop of symbolic links
        raise BundleError(f"{str(root)[:200]}: {e.strerror or e}") from None
    if not is_dir:
        raise BundleError(f"{root}: not a bundle directory")
    if not has_manifest:
        raise BundleError(f"{path}: missing; {root} is not a bundle")
    try:
        data = json.loads(read_inside(root, MANIFEST, MAX_MANIFEST_BYTES, "manifest").decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise BundleError(f"{path}: unreadable manifest ({e})") from e
    if not isinstance(data, dict):
        raise BundleError(f"{path}: not an {FORMAT} manifest")
    return Bundle(root, Manifest.from_dict(data, str(path)))
