"""SBOMs: `smith build --sbom` and `smith minimize --sbom` attach an SPDX 2.3 document as an
OCI 1.1 referrer of the image; the SPDX project's own validator (spdx-tools) accepts it, it
names every package, file and left-out file, and it is the same bytes on every build."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from tests.golden_recipes import recipe_names
from tests.golden_sbom import GOLDEN, sbom_digests
from tests.imagekit import write_layout
from tests.rpm_universe import Universe, frozen_universe_dir
from tests.test_minimize_cli import CONFIG, busybox_layers
from tests.tools import PROJECT, require_tool

RECIPES = PROJECT / "recipes"
SPDX = "application/spdx+json"
CYCLONEDX = "application/vnd.cyclonedx+json"


def smith(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "smith", *args],
        capture_output=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def build(
    recipe_name: str, baseurl: str, tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> Path:
    dest = tmp_path / recipe_name
    shutil.copytree(RECIPES / recipe_name, dest, dirs_exist_ok=True)
    recipe = yaml.safe_load((dest / "smith.yaml").read_text())
    recipe["repos"] = [{"name": "universe", "baseurl": baseurl}]
    (dest / "smith.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
    proc = smith(
        "build", str(dest), "-o", str(out), "--tag", recipe_name,
        "--cache-dir", str(tmp_path / "cache"), *extra, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    return out


def sbom_of(image: Path, fmt: str = "spdx") -> bytes:
    proc = smith("sbom", str(image), "--format", fmt)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def validated(data: bytes, tmp_path: Path) -> dict[str, Any]:
    """The document, after spdx-tools parsed it and found nothing wrong."""
    path = tmp_path / "doc.spdx.json"
    path.write_bytes(data)
    messages = validate_full_spdx_document(parse_file(str(path)))
    assert not messages, [m.validation_message for m in messages]
    doc: dict[str, Any] = json.loads(data)
    return doc


def index_of(layout: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((layout / "index.json").read_bytes())
    return doc


def test_build_sbom_names_packages_files_and_what_was_left_out(
    rpm_universe: Universe, tmp_path: Path
) -> None:
    url = rpm_universe.repo_url("main")
    plain = build("cat", url, tmp_path)
    out = build("cat", url, tmp_path, "--sbom")
    # The image is byte for byte the one built without --sbom; only the index lists more.
    image, referrer = index_of(out)["manifests"]
    assert image == index_of(plain)["manifests"][0]
    assert referrer["artifactType"] == SPDX
    manifest = json.loads((out / "blobs/sha256" / referrer["digest"][7:]).read_bytes())
    assert manifest["subject"]["digest"] == image["digest"]
    assert manifest["layers"][0]["mediaType"] == SPDX

    data = sbom_of(out)
    assert hashlib.sha256(data).hexdigest() == manifest["layers"][0]["digest"][7:]
    doc = validated(data, tmp_path)
    assert doc["spdxVersion"] == "SPDX-2.3"
    assert doc["creationInfo"]["created"] == "1970-01-01T00:00:00Z"
    packages = {p["name"]: p for p in doc["packages"]}
    assert packages["cat"]["versionInfo"] == image["digest"]
    assert packages["cat"]["primaryPackagePurpose"] == "CONTAINER"
    core = packages["coreutils"]
    rpm = next(p for p in rpm_universe.packages() if p.name.startswith("coreutils-"))
    assert core["checksums"] == [
        {"algorithm": "SHA256", "checksumValue": hashlib.sha256(rpm.read_bytes()).hexdigest()}
    ]
    # SPDX's download location needs a DNS name: 127.0.0.1 is none (see the unit test).
    assert core["downloadLocation"] == "NOASSERTION"
    refs = {r["referenceType"]: r["referenceLocator"] for r in core["externalRefs"]}
    assert refs["purl"] == "pkg:rpm/coreutils@1.0-1?arch=x86_64"
    assert refs["repository"] == url
    assert core["versionInfo"] == "1.0-1" and core["licenseDeclared"] == "MIT"
    assert core["comment"] == "NEVRA coreutils-1.0-1.x86_64"
    assert "universe-1.0-1.src.rpm" in core["sourceInfo"]
    left_out = json.loads(core["annotations"][0]["comment"].removeprefix("smith:left-out "))
    assert "/usr/bin/ls" in left_out and "/usr/bin/cat" not in left_out

    files = {f["fileName"]: f for f in doc["files"]}
    cat = files["./usr/bin/cat"]
    ids = {p["SPDXID"]: p["name"] for p in doc["packages"]}
    contains = {
        (ids[r["spdxElementId"]], r["relatedSpdxElement"])
        for r in doc["relationships"]
        if r["relationshipType"] == "CONTAINS" and r["spdxElementId"] in ids
    }
    assert ("coreutils", cat["SPDXID"]) in contains
    # rootfs/read/data beside the recipe belongs to no package: the image holds it itself.
    assert ("cat", files["./read/data"]["SPDXID"]) in contains
    data_sha256 = hashlib.sha256((RECIPES / "cat/rootfs/read/data").read_bytes()).hexdigest()
    assert {"algorithm": "SHA256", "checksumValue": data_sha256} in files["./read/data"][
        "checksums"
    ]
    # Every package of the image is named; none that gave nothing to it.
    assert set(packages) == {"cat", "coreutils", "glibc", "filesystem"}


@pytest.mark.parametrize("name", recipe_names())
def test_sboms_of_the_examples_are_golden_and_valid(name: str, tmp_path: Path) -> None:
    """Each example recipe, built from the frozen universe by path (no URL, so no port or
    host in the documents) in two environments: the bytes tests/golden/sbom.json records
    (`python -m tests.golden_sbom --update` rewrites it), and valid documents."""
    frozen_universe_dir()
    env = {**os.environ, "TZ": "Asia/Kathmandu", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "7"}
    first = sbom_digests(name, tmp_path / "a")
    assert first == json.loads(GOLDEN.read_text())[name]
    assert sbom_digests(name, tmp_path / "b", env=env) == first
    image = tmp_path / "a" / f"{name}-image"
    validated(sbom_of(image), tmp_path)
    cyclonedx = sbom_of(image, "cyclonedx").decode()
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(cyclonedx) is None


def test_cyclonedx_validates_and_nests_files_in_their_packages(tmp_path: Path) -> None:
    out = build(
        "cat", str(frozen_universe_dir() / "repos" / "main"), tmp_path, "--sbom-format", "cyclonedx"
    )
    assert [m.get("artifactType") for m in index_of(out)["manifests"]] == [None, CYCLONEDX]
    data = sbom_of(out, "cyclonedx")
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(data.decode()) is None
    doc = json.loads(data)
    assert doc["specVersion"] == "1.5" and doc["metadata"]["timestamp"] == "1970-01-01T00:00:00Z"
    assert doc["metadata"]["component"]["type"] == "container"
    core = next(c for c in doc["components"] if c.get("name") == "coreutils")
    assert core["purl"] == "pkg:rpm/coreutils@1.0-1?arch=x86_64"
    assert [f["name"] for f in core["components"]] == ["/usr/bin/cat"]
    left_out = [p["value"] for p in core["properties"] if p["name"] == "smith:left-out"]
    assert "/usr/bin/ls" in left_out
    unowned = [c["name"] for c in doc["components"] if c["type"] == "file"]
    assert unowned == ["/read/data"]
    # Asking for the format that is not attached says which one to build.
    proc = smith("sbom", str(out))
    assert proc.returncode == 1 and b"--sbom-format spdx" in proc.stderr


def test_skopeo_reads_the_image_of_a_layout_with_a_referrer(
    rpm_universe: Universe, tmp_path: Path
) -> None:
    require_tool("skopeo")
    out = build("cat", rpm_universe.repo_url("main"), tmp_path, "--sbom")
    proc = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{out}:cat"], capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "sha256:" + hashlib.sha256(proc.stdout).hexdigest()
        == index_of(out)["manifests"][0]["digest"]
    )


def test_minimize_sbom_lists_files_without_a_package(tmp_path: Path) -> None:
    layout = tmp_path / "in"
    write_layout(str(layout), busybox_layers(), CONFIG)
    out = tmp_path / "small"
    proc = smith("minimize", str(layout), "-o", str(out), "--sbom")
    assert proc.returncode == 0, proc.stderr.decode()
    doc = validated(sbom_of(out), tmp_path)
    assert [p["SPDXID"] for p in doc["packages"]] == ["SPDXRef-Image"]
    names = {f["fileName"] for f in doc["files"]}
    assert "./bin/busybox" in names and "./usr/share/big" not in names
    contained = {
        r["relatedSpdxElement"]
        for r in doc["relationships"]
        if r["spdxElementId"] == "SPDXRef-Image" and r["relationshipType"] == "CONTAINS"
    }
    assert contained == {f["SPDXID"] for f in doc["files"]}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("plain", "has no spdx SBOM attached (build it with `smith build --sbom-format spdx`)"),
        ("missing", "no image at"),
    ],
)
def test_sbom_of_an_image_without_one_is_one_line(make: str, message: str, tmp_path: Path) -> None:
    layout = tmp_path / "in"
    if make == "plain":
        write_layout(str(layout), busybox_layers(), CONFIG)
    proc = smith("sbom", str(layout))
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert message in err and err.count("\n") == 1, err
    assert proc.stdout == b""


def test_spdx_of_a_vendor_package_with_epoch_and_an_rpm_license(tmp_path: Path) -> None:
    """What the example universe lacks: a vendor (supplier, purl namespace), an epoch, a
    license tag that is no SPDX expression (kept verbatim as a LicenseRef), a real URL."""
    from smith.oci.image import Platform
    from smith.sbom.inventory import FileInfo, ImageInfo, Inventory, PackageInfo
    from smith.sbom.spdx import spdx_document

    url = "https://mirror.example.org/fedora/x86_64/"
    pkg = PackageInfo(
        "rpm", "openssl-libs", "3.1.1", "4.fc39", epoch=1, arch="x86_64",
        vendor="Fedora Project", license="OpenSSL and ASL 2.0", source_package="openssl.src.rpm",
        sha256="ab" * 32, download_url=url + "o.rpm", repository_url=url,
    )  # fmt: skip
    files = (FileInfo("usr/lib64/libssl.so.3", "1" * 40, "2" * 64, 3, pkg.key),)
    inventory = Inventory((pkg,), files, ((pkg.key, ("usr/share/doc/x",)),), epoch=86400)
    image = ImageInfo("sha256:" + "c" * 64, 10, "application/vnd.oci.image.manifest.v1+json",
                      Platform("amd64", "linux"), "registry.example.org/team/app:1")  # fmt: skip
    doc = validated(spdx_document(inventory, image), tmp_path)
    assert doc["creationInfo"]["created"] == "1970-01-02T00:00:00Z"
    element = next(p for p in doc["packages"] if p["name"] == "openssl-libs")
    refs = {r["referenceType"]: r["referenceLocator"] for r in element["externalRefs"]}
    assert refs["purl"] == "pkg:rpm/fedora/openssl-libs@3.1.1-4.fc39?arch=x86_64&epoch=1"
    assert element["versionInfo"] == "1:3.1.1-4.fc39"
    assert element["comment"] == "NEVRA openssl-libs-1:3.1.1-4.fc39.x86_64"
    assert element["supplier"] == "Organization: Fedora Project"
    assert element["downloadLocation"] == url + "o.rpm"
    (extracted,) = doc["hasExtractedLicensingInfos"]
    assert element["licenseDeclared"] == extracted["licenseId"]
    assert extracted["extractedText"] == "OpenSSL and ASL 2.0"
    image_refs = next(p for p in doc["packages"] if p["SPDXID"] == "SPDXRef-Image")["externalRefs"]
    # packageurl-python's canonical form (the digest's ":" as it is).
    assert image_refs[0]["referenceLocator"] == (
        "pkg:oci/app@sha256:"
        + "c" * 64
        + "?arch=amd64&repository_url=registry.example.org/team/app"
    )


def test_a_corrupt_sbom_is_one_line_and_the_others_still_print(tmp_path: Path) -> None:
    layout = tmp_path / "in"
    write_layout(str(layout), busybox_layers(), CONFIG)
    out = tmp_path / "small"
    both = ("--sbom-format", "spdx", "--sbom-format", "cyclonedx")
    assert smith("minimize", str(layout), "-o", str(out), *both).returncode == 0
    cyclonedx = next(m for m in index_of(out)["manifests"] if m.get("artifactType") == CYCLONEDX)
    with open(out / "blobs/sha256" / cyclonedx["digest"][7:], "ab") as f:
        f.write(b" ")
    proc = smith("sbom", str(out), "--format", "cyclonedx")
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("\n") == 1, err
    assert cyclonedx["digest"] in err and proc.stdout == b""
    validated(sbom_of(out), tmp_path)
