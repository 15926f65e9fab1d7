"""The arm64 check: emulated Debian 12 and 13 (Raspberry Pi OS Bookworm and Trixie) must give
bit for bit the answers of this machine, and say so in the compatibility matrix."""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, corpus_path
from export import arm64, compat
from runtime.bundle.directory import open_bundle
from runtime.bundle.manifest import EngineRecord

X86 = {"machine": "x86_64", "os": "Debian GNU/Linux 12 (bookworm)", "python": "3.11.7"}
ARM = {"machine": "aarch64", "os": "Debian GNU/Linux 13 (trixie)", "python": "3.13.5",
       "emulated": "qemu 10.0.13 -cpu cortex-a76"}


def result(kind: str, passed: bool, digest: str | None, where: dict, artifact: str = "tflite-int8") -> dict:
    figures = {"max_abs_diff": 0.0} | ({"outputs_sha256": digest} if digest else {})
    return {"artifact": artifact, "engine": "litert", "version": "2.3.0", "kind": kind, "passed": passed,
            "message": "m", "figures": figures, "platform": where}


def test_package_entry_reads_a_debian_index():
    index = ("Package: qemu-system\nVersion: 1\nFilename: pool/a.deb\n\n"
             "Package: qemu-user\nVersion: 1:10.0.13+ds-0+deb13u1\nDescription: user mode\n multi-line text: here\n"
             "Filename: pool/main/q/qemu/qemu-user_10.0.13_amd64.deb\nSHA256: ab\n")
    entry = arm64.package_entry(index, "qemu-user")
    assert entry["Filename"] == "pool/main/q/qemu/qemu-user_10.0.13_amd64.deb" and entry["SHA256"] == "ab"
    with pytest.raises(arm64.Arm64Error, match="'qemu' is not in the index"):
        arm64.package_entry(index, "qemu")


def test_equal_digests_are_bit_identical_and_anything_else_is_a_difference():
    here = [result("golden", True, "d1", X86), result("golden", True, "d2", X86, "onnx-int8"),
            result("load", False, None, X86, "tflite-dynamic-int8")]
    there = [result("golden", True, "d1", ARM), result("golden", True, "d3", ARM, "onnx-int8"),
             result("load", False, None, ARM, "tflite-dynamic-int8")]
    problems = arm64.compare(there, here)
    assert [r.get("bit_identical") for r in there] == [True, False, None]
    assert len(problems) == 1 and problems[0].startswith("onnx-int8 on litert 2.3.0 (Debian GNU/Linux 13")
    assert "outputs differ from x86_64's" in problems[0]
    fails = [result("load", False, None, ARM)]
    assert "load fails here but golden passes on x86_64" in arm64.compare(fails, here)[0]
    assert "no result on the reference machine" in arm64.compare([result("golden", True, "d1", ARM, "x")], here)[0]


def test_the_matrix_keeps_one_row_per_platform_and_shows_differences(tmp_path):
    bundle_dir = tmp_path / "b"
    shutil.copytree(ROOT / "runtime" / "default_bundle", bundle_dir)
    bundle = open_bundle(bundle_dir)
    art = bundle.artifacts[bundle.manifest.default_artifact]
    art.engines = []
    art.record(EngineRecord("litert", "2.3.0", True, True, "compat", platform=X86, outputs_sha256="d1"))
    art.record(EngineRecord("litert", "2.3.0", True, True, "compat", platform=ARM, outputs_sha256="d1", bit_identical=True))
    other_cpu = copy.deepcopy(ARM) | {"emulated": "qemu 10.0.13 -cpu cortex-a72"}
    art.record(EngineRecord("litert", "2.3.0", True, True, "compat", platform=other_cpu, bit_identical=False))
    art.record(EngineRecord("litert", "2.3.0", True, True, "compat", platform=ARM, bit_identical=True))  # replaces
    art.record(EngineRecord("litert", "2.2.0", True, True, "compat", platform={"machine": "riscv64"}))  # hand-edited
    assert len(art.engines) == 4
    bundle.write_manifest()
    table = compat.matrix(open_bundle(bundle_dir))
    assert "| litert 2.3.0 | aarch64, Debian GNU/Linux 13 (trixie), Python 3.13.5, qemu 10.0.13 -cpu cortex-a76 | yes |" in table
    assert "-cpu cortex-a72 | **differs from x86_64** |" in table
    assert "| litert 2.2.0 | riscv64, ?, Python ? | yes |" in table
    saved = json.loads((bundle_dir / "manifest.json").read_text())["artifacts"][art.name]["engines"]
    assert [e.get("bit_identical") for e in saved].count(None) == 2 and {True, False} <= {e.get("bit_identical") for e in saved}


def _cannot_emulate() -> str | None:
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (CI installs it: .ci/run)"
    if os.geteuid() != 0:
        return "debootstrap needs root"
    if corpus_path() is None:
        return "no corpus"
    return None


@pytest.mark.skipif(_cannot_emulate() is not None, reason=_cannot_emulate() or "")
def test_a_fresh_ngram_bundle_is_bit_identical_on_emulated_arm64(small_ngram_bundle, tmp_path):
    """Every artifact of a freshly exported n-gram bundle on Debian 12 and 13, Pi 4 and Pi 5
    CPUs, every engine version that has aarch64 wheels there (about 5 minutes; downloads kept)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(small_ngram_bundle, bundle)
    proc = subprocess.run([sys.executable, "-m", "export.compat", str(bundle), "--arm64"],
                          cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name, art in manifest["artifacts"].items():
        rows = {(e["engine"], e["version"], e["platform"]["os"], e["platform"].get("emulated", "")): e
                for e in art["engines"] if e.get("platform", {}).get("machine") == "aarch64"}
        engines = {"tflite": ["litert", "tflite-runtime"], "onnx": ["onnxruntime"]}[art["format"]]
        for engine in engines:
            for target in arm64.TARGETS:
                found = [e for (eng, _, os_name, emulated), e in rows.items()
                         if eng == engine and target.suite in os_name and target.cpu in emulated]
                if engine == "tflite-runtime" and target.python != "3.11":
                    assert not found, "tflite-runtime 2.14 has no wheel for Python 3.12+"
                    continue
                assert found, (name, engine, target.name)
                assert all(e["loads"] and e["matches_golden"] and e["bit_identical"] for e in found), (name, engine, target.name)
    assert re.search(r"qemu 10\.[0-9.]+ -cpu cortex-a72", proc.stdout)


def test_sigmoid32_is_the_float64_sigmoid_rounded_and_never_overflows():
    import math

    import numpy as np

    from runtime.probability import sigmoid32

    for z in (-30.0, -2.5, -1e-9, 0.0, 0.1, 3.7, 30.0):
        assert sigmoid32(z) == float(np.float32(1.0 / (1.0 + math.exp(-z))))
    assert sigmoid32(-1000.0) == 0.0 and sigmoid32(1000.0) == 1.0


def test_bundle_formats_3_and_4_load_and_an_output_must_be_known(tmp_path):
    from runtime import load
    from runtime.bundle.files import BundleError

    def variant(name: str, edit) -> Path:
        path = tmp_path / name
        shutil.copytree(ROOT / "runtime" / "default_bundle", path)
        m = json.loads((path / "manifest.json").read_text())
        edit(m)
        (path / "manifest.json").write_text(json.dumps(m))
        return path

    review = "A wonderful, moving film."
    want = load().predict(review).probability
    old = variant("v3", lambda m: m.update(format_version=3))
    assert load(old).predict(review).probability == want
    with pytest.raises(BundleError, match="format version 2 is not supported"):
        load(variant("v2", lambda m: m.update(format_version=2)))
    # Any artifact may end at its logit (export.convert.output_of): read as one, this one's
    # 8-bit probability becomes another answer.
    assert load(variant("onnx-logit", lambda m: m["artifacts"]["onnx-int8"].update(output="logit")),
                artifact="onnx-int8").backend.logit_output
    with pytest.raises(BundleError, match=r"field 'artifacts.tflite-int8.output' must be 'probability' or 'logit'"):
        load(variant("banana", lambda m: m["artifacts"]["tflite-int8"].update(output="banana")))
