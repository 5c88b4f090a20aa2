"""Image signatures against a real docker-registry: `smith upload --sign-key` and `smith sign`
store a sigstore signature in the `sha256-<hex>.sig` tag; `smith verify-signature` accepts
it and refuses an unsigned, re-tagged, renamed or tampered image; openssl, on its own,
verifies the stored signature over the stored payload with the `smith keygen` public key.
SBOM referrers go up with `smith upload`, listed in the `sha256-<hex>` fallback tag.

Debian's skopeo 1.9.3 cannot take part: its sigstore code is patched out ("Debian-local
change: sigstore disabled") for signing and for policy checks alike."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smith.oci.image import canonical_json
from tests.registry_fixtures import make_image, make_multi_platform, run_smith
from tests.registry_servers import Registry, start_registry
from tests.rpm_universe import frozen_universe_dir
from tests.test_sbom import build
from tests.tools import require_tool

PASSPHRASE = "correct horse battery staple"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIGNATURE = "dev.cosignproject.cosign/signature"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SPDX = "application/spdx+json"
IN_TOTO = "application/vnd.in-toto+json"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("sign-registry"), require_tool("docker-registry"))
    yield reg
    reg.stop()


@dataclass(frozen=True)
class Keys:
    private: Path
    public: Path
    passphrase: Path


def keygen(directory: Path, name: str) -> Keys:
    directory.mkdir(parents=True, exist_ok=True)
    passphrase = directory / f"{name}.pass"
    passphrase.write_text(PASSPHRASE + "\n")
    prefix = directory / name
    run_smith("keygen", "-o", str(prefix), "--passphrase-file", str(passphrase), home=directory)
    return Keys(directory / f"{name}.key", directory / f"{name}.pub", passphrase)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return keygen(tmp_path_factory.mktemp("keys"), "smith")


def skopeo(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("skopeo"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )


def verify(ref: str, public: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return run_smith(
        "verify-signature", ref, "--key", str(public), "--insecure", home=home, check=False
    )


def test_smith_verifies_what_it_signed_and_refuses_the_rest(
    registry: Registry, keys: Keys, tmp_path: Path
) -> None:
    signed, digest = make_image(tmp_path, "signed", big=1 << 16, seed=3)
    unsigned, _ = make_image(tmp_path, "unsigned", big=1 << 16, seed=4)
    ref = f"docker://{registry.host}/sig/app:1"
    upload = run_smith(
        "upload", "-i", str(signed), "-r", ref, "--insecure",
        "--sign-key", str(keys.private), "--passphrase-file", str(keys.passphrase), home=tmp_path,
    )  # fmt: skip
    assert upload.stdout.strip() == f"{registry.host}/sig/app@{digest}"
    assert f"signed as {registry.host}/sig/app:1 in tag sha256-{digest[7:]}.sig" in upload.stderr
    ok = verify(ref, keys.public, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"{registry.host}/sig/app:1@{digest}: signature verified\n"
    by_digest = verify(f"docker://{registry.host}/sig/app@{digest}", keys.public, tmp_path)
    assert by_digest.returncode == 0, by_digest.stderr
    # Signing again with the same key adds nothing (RFC 6979: the same signature bytes).
    again = run_smith("sign", ref, "--key", str(keys.private), "--passphrase-file",
                      str(keys.passphrase), "--insecure", home=tmp_path)  # fmt: skip
    assert "(that signature was there already)" in again.stderr

    other = f"docker://{registry.host}/sig/other:1"
    run_smith("upload", "-i", str(unsigned), "-r", other, "--insecure", home=tmp_path)
    mine = verify(other, keys.public, tmp_path)
    assert mine.returncode == 1 and "has no signature" in mine.stderr, mine.stderr
    assert mine.stderr.count("\n") == 1

    # Signed for another name: the same image under sig/app:2 is not vouched for.
    run_smith("upload", "-i", str(signed), "-r", f"docker://{registry.host}/sig/app:2",
              "--insecure", home=tmp_path)  # fmt: skip
    mine = verify(f"docker://{registry.host}/sig/app:2", keys.public, tmp_path)
    assert mine.returncode == 1 and "signed for" in mine.stderr, mine.stderr

    # The tag moved to another image: the signature is for the old digest.
    run_smith("upload", "-i", str(unsigned), "-r", ref, "--insecure", home=tmp_path)
    mine = verify(ref, keys.public, tmp_path)
    assert mine.returncode == 1 and "has no signature" in mine.stderr, mine.stderr


def sig_manifest(registry: Registry, repo: str, digest: str) -> tuple[str, dict[str, Any]]:
    url = f"http://{registry.host}/v2/{repo}/manifests/sha256-{digest[7:]}.sig"
    got = subprocess.run(["curl", "-sf", "-H", f"Accept: {OCI_MANIFEST}", url],
                         capture_output=True, check=True)  # fmt: skip
    return url, json.loads(got.stdout)


def test_a_tampered_signature_is_refused(registry: Registry, keys: Keys, tmp_path: Path) -> None:
    image, digest = make_image(tmp_path, "tampered", big=1 << 16, seed=5)
    ref = f"docker://{registry.host}/sig/tampered:1"
    run_smith("upload", "-i", str(image), "-r", ref, "--insecure", home=tmp_path)
    run_smith("sign", ref, "--key", str(keys.private), "--passphrase-file", str(keys.passphrase),
              "--insecure", home=tmp_path)  # fmt: skip
    assert verify(ref, keys.public, tmp_path).returncode == 0
    url, manifest = sig_manifest(registry, "sig/tampered", digest)
    annotations = manifest["layers"][0]["annotations"]
    raw = bytearray(base64.b64decode(annotations[SIGNATURE]))
    raw[-1] ^= 1
    annotations[SIGNATURE] = base64.b64encode(bytes(raw)).decode()
    put = ["curl", "-sf", "-X", "PUT", "-H", f"Content-Type: {OCI_MANIFEST}", "--data-binary", "@-"]
    subprocess.run([*put, url], input=canonical_json(manifest), check=True)
    mine = verify(ref, keys.public, tmp_path)
    assert mine.returncode == 1 and "not signed by this key" in mine.stderr, mine.stderr
    other = keygen(tmp_path / "other", "other")
    run_smith("sign", ref, "--key", str(other.private), "--passphrase-file", str(other.passphrase),
              "--insecure", home=tmp_path)  # fmt: skip
    assert verify(ref, other.public, tmp_path).returncode == 0
    assert verify(ref, keys.public, tmp_path).returncode == 1


def test_openssl_verifies_the_stored_signature(
    registry: Registry, keys: Keys, tmp_path: Path
) -> None:
    """An independent check of the bytes: the layer blob is the simple-signing payload that
    containers/image reads, and the annotation is an ECDSA P-256 SHA-256 DER signature of
    it by the `smith keygen` key."""
    openssl = require_tool("openssl")
    image, digest = make_image(tmp_path, "openssl", big=1 << 16, seed=7)
    ref = f"docker://{registry.host}/sig/openssl:3"
    sign = ["--sign-key", str(keys.private), "--passphrase-file", str(keys.passphrase)]
    run_smith("upload", "-i", str(image), "-r", ref, "--insecure", *sign, home=tmp_path)
    _, manifest = sig_manifest(registry, "sig/openssl", digest)
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == SIMPLE_SIGNING
    payload = subprocess.run(
        ["curl", "-sf", f"http://{registry.host}/v2/sig/openssl/blobs/{layer['digest']}"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert json.loads(payload) == {
        "critical": {
            "identity": {"docker-reference": f"{registry.host}/sig/openssl:3"},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": {},
    }
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "sig.der").write_bytes(base64.b64decode(layer["annotations"][SIGNATURE]))
    checked = subprocess.run(
        [openssl, "dgst", "-sha256", "-verify", str(keys.public), "-signature",
         str(tmp_path / "sig.der"), str(tmp_path / "payload")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0 and "Verified OK" in checked.stdout, checked.stderr
    (tmp_path / "payload").write_bytes(payload.replace(b":3", b":4"))
    forged = subprocess.run(
        [openssl, "dgst", "-sha256", "-verify", str(keys.public), "-signature",
         str(tmp_path / "sig.der"), str(tmp_path / "payload")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert forged.returncode != 0


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("passphrase", "the passphrase does not open this key"),
        ("public-as-private", "not a ENCRYPTED COSIGN PRIVATE KEY PEM file"),
        ("missing", "cannot read the key"),
    ],
)
def test_bad_keys_are_one_line(case: str, message: str, keys: Keys, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not it\n")
    key = {"passphrase": keys.private, "public-as-private": keys.public}.get(
        case, tmp_path / "nope.key"
    )
    proc = run_smith("sign", "docker://127.0.0.1:1/x:1", "--key", str(key),
                     "--passphrase-file", str(wrong), home=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 1
    assert message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_upload_pushes_sbom_provenance_and_signature(
    registry: Registry, keys: Keys, tmp_path: Path
) -> None:
    """The three beside one image: SBOM and provenance as referrers listed in the
    `sha256-<hex>` fallback tag (docker-registry 2.8 has no referrers API), the signature in
    the `sha256-<hex>.sig` tag; skopeo sees all of them."""
    repo = str(frozen_universe_dir() / "repos" / "main")
    image = build("cat", repo, tmp_path, "--sbom", "--provenance")
    subject, *referrers = json.loads((image / "index.json").read_text())["manifests"]
    hexdigest = subject["digest"][7:]
    ref = f"{registry.host}/sbom/cat:1"
    sign = ["--sign-key", str(keys.private), "--passphrase-file", str(keys.passphrase)]
    up = run_smith("upload", "-i", str(image), "-r", f"docker://{ref}", "--insecure", *sign,
                   home=tmp_path)  # fmt: skip
    assert f"(application/spdx+json, tag sha256-{hexdigest})" in up.stderr
    assert f"(application/vnd.in-toto+json, tag sha256-{hexdigest})" in up.stderr
    tags = skopeo("list-tags", "--tls-verify=false", f"docker://{registry.host}/sbom/cat",
                  home=tmp_path)  # fmt: skip
    assert tags.returncode == 0, tags.stderr
    assert set(json.loads(tags.stdout)["Tags"]) == {"1", f"sha256-{hexdigest}",
                                                   f"sha256-{hexdigest}.sig"}  # fmt: skip
    fallback = f"docker://{registry.host}/sbom/cat:sha256-{hexdigest}"
    listing = skopeo("inspect", "--raw", "--tls-verify=false", fallback, home=tmp_path)
    assert listing.returncode == 0, listing.stderr
    entries = json.loads(listing.stdout)["manifests"]
    assert [(e["digest"], e["artifactType"]) for e in entries] == [
        (r["digest"], r["artifactType"]) for r in referrers
    ]
    assert {e["artifactType"] for e in entries} == {SPDX, IN_TOTO}
    sig = skopeo("inspect", "--raw", "--tls-verify=false", fallback + ".sig", home=tmp_path)
    assert json.loads(sig.stdout)["layers"][0]["mediaType"] == SIMPLE_SIGNING
    assert verify(f"docker://{ref}", keys.public, tmp_path).returncode == 0
    # `smith sbom` of the registry image finds both through the fallback tag.
    local = run_smith("sbom", str(image), home=tmp_path).stdout
    assert run_smith("sbom", f"docker://{ref}", "--insecure", home=tmp_path).stdout == local
    statement = run_smith("sbom", f"docker://{ref}", "--format", "provenance", "--insecure",
                          home=tmp_path).stdout  # fmt: skip
    assert json.loads(statement)["subject"][0]["digest"] == {"sha256": hexdigest}
    # A second upload lists each referrer once.
    run_smith("upload", "-i", str(image), "-r", f"docker://{ref}", "--insecure", home=tmp_path)
    again = skopeo("inspect", "--raw", "--tls-verify=false", fallback, home=tmp_path)
    assert len(json.loads(again.stdout)["manifests"]) == 2


def test_a_local_image_is_refused_with_the_way_to_sign_it(keys: Keys, tmp_path: Path) -> None:
    image, _ = make_image(tmp_path, "local", big=1 << 10, seed=8)
    proc = run_smith("sign", str(image), "--key", str(keys.private), home=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "is a local image" in proc.stderr and "--sign-key" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_upload_all_signs_the_index(registry: Registry, keys: Keys, tmp_path: Path) -> None:
    layout, digests = make_multi_platform(tmp_path)
    ref = f"docker://{registry.host}/sig/multi:1"
    sign = ["--sign-key", str(keys.private), "--passphrase-file", str(keys.passphrase)]
    up = run_smith("upload", "-i", str(layout), "-r", ref, "--all", "--insecure", *sign,
                   home=tmp_path)  # fmt: skip
    assert up.stdout.strip() == f"{registry.host}/sig/multi@{digests['index']}"
    ok = verify(ref, keys.public, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert digests["index"] in ok.stdout
