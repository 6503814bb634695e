"""A buyer proves offline that a download is the published version (issue #16): verify_offline.py
--archive checks manifest -> content hash -> version_published event -> inclusion proof -> signature.

The archives are made by the real export; the checks run in a separate Python process on the file
alone (standard library + cryptography), as an auditor would run them.
"""

import hashlib
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from governance import ledger
from marketplace.exports import packaging, service

from .test_published_evidence import guideline_version, version  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db
VERIFIER = Path(__file__).resolve().parents[2] / "governance" / "verify_offline.py"


@pytest.fixture
def archive(version, tmp_path):  # noqa: F811
    options = service.normalise_options(version=version, format="coco", options={"include_images": False})
    path = tmp_path / "export.zip"
    with open(path, "wb") as fh:
        packaging.build_archive(version=version, format="coco", options=options, fileobj=fh)
    return path


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "key.pem"
    path.write_text(ledger.public_key_pem())
    return path


def run_verifier(archive, key_file):
    done = subprocess.run(
        [sys.executable, "-I", str(VERIFIER), "--key", str(key_file), "--archive", str(archive)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=archive.parent,
    )
    return done.returncode, done.stdout + done.stderr


def rewrite(archive, change, *, fix_manifest, drop=()):
    """Copy the archive with ``change(name, data) -> data`` applied and the files named in ``drop``
    left out; re-list the manifest if asked."""
    with zipfile.ZipFile(archive) as zf:
        files = {name: zf.read(name) for name in zf.namelist() if name not in drop}
    files = {name: change(name, data) for name, data in files.items()}
    if fix_manifest:
        files["MANIFEST.sha256"] = "".join(
            f"{hashlib.sha256(data).hexdigest()}  {name}\n"
            for name, data in files.items()
            if name != "MANIFEST.sha256"
        ).encode()
    out = archive.with_name("altered.zip")
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out


def load_verifier(name="verify_offline_under_test"):
    """verify_offline.py imported as a module of its own, for tests of its helpers."""
    spec = importlib.util.spec_from_file_location(name, VERIFIER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_the_published_export_verifies(archive, key_file):
    code, out = run_verifier(archive, key_file)
    assert code == 0, out
    assert out.strip() == "VALID"


def test_the_archive_carries_the_content_and_the_evidence(archive, version):  # noqa: F811
    with zipfile.ZipFile(archive) as zf:
        bundle = json.loads(zf.read("evidence/version_published.json"))
        labels = zf.read("content/labels.jsonl").decode().splitlines()
    assert bundle["event"]["payload"]["content_hash"] == version.content_hash
    assert len(labels) == 6 and all(json.loads(line)["key"] for line in labels)


def test_one_byte_altered_fails(archive, key_file):
    def flip(name, data):
        return data[:10] + bytes([data[10] ^ 1]) + data[11:] if name == "datasheet.md" else data

    code, out = run_verifier(rewrite(archive, flip, fix_manifest=False), key_file)
    assert code == 1 and "datasheet.md does not match its manifest sha256" in out


def test_one_label_altered_fails_even_with_a_rewritten_manifest(archive, key_file):
    def relabel(name, data):
        if name != "content/labels.jsonl":
            return data
        lines = data.decode().splitlines()
        row = json.loads(lines[0])
        row["category"] = "person" if row["category"] == "car" else "car"
        lines[0] = json.dumps(row, sort_keys=True, separators=(",", ":"))
        return ("\n".join(lines) + "\n").encode()

    code, out = run_verifier(rewrite(archive, relabel, fix_manifest=True), key_file)
    assert code == 1 and "content/labels.jsonl is not the published labels" in out
    assert "not the published content hash" in out


@pytest.mark.parametrize("where", ["coco", "content"])
def test_one_class_name_altered_fails(archive, key_file, where):
    def rename(name, data):
        if where == "coco" and name.startswith("annotations/") and name.endswith(".json"):
            return data.replace(b'"name":"car"', b'"name":"vehicle"').replace(
                b'"name": "car"', b'"name": "vehicle"'
            )
        if where == "content" and name == "content/categories.jsonl":
            return data.replace(b'"key":"car"', b'"key":"vehicle"')
        return data

    altered = rewrite(archive, rename, fix_manifest=True)
    code, out = run_verifier(altered, key_file)
    assert code == 1, out
    expected = (
        "'vehicle' is not a published class" if where == "coco" else "categories.jsonl is not the published"
    )
    assert expected in out


def test_another_key_fails(archive, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    code, out = run_verifier(archive, other)
    assert code == 1 and "signature does not match key" in out
