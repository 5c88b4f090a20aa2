"""`package_db: true` / `smith build --package-db`: an rpmdb.sqlite of exactly the kept
packages that Debian's own rpm reads back, the same bytes on every build; and `smith
minimize --sbom` of such an image names its packages from that database."""

from __future__ import annotations

import json
import shutil
import sqlite3
import struct
import subprocess
from pathlib import Path

from smith.oci.reading import open_image
from smith.oci.unpack import apply_layers
from tests.rpm_universe import frozen_universe_dir
from tests.test_sbom import build, sbom_of, smith, validated
from tests.tools import require_tool

DB = "var/lib/rpm/rpmdb.sqlite"


def database_of(image: Path, tmp_path: Path) -> Path:
    """The image's rpmdb.sqlite, copied into a directory of its own for `rpm --dbpath`."""
    store = tmp_path / f"store-{len(list(tmp_path.iterdir()))}"
    store.mkdir()
    with open_image(str(image)) as loaded:
        tree, _ = apply_layers(loaded, str(store))
        entry = tree.get(DB)
        assert entry is not None and entry.content is not None, sorted(tree.paths())
        dbpath = store / "db"
        dbpath.mkdir()
        with entry.content.open() as src, open(dbpath / "rpmdb.sqlite", "wb") as out:
            shutil.copyfileobj(src, out)
    return dbpath


def rpm(*args: str) -> str:
    proc = subprocess.run([require_tool("rpm"), *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_rpm_reads_exactly_the_kept_packages(tmp_path: Path) -> None:
    repo = str(frozen_universe_dir() / "repos" / "main")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    image = build("cat", repo, tmp_path / "a", "--package-db")
    again = build("cat", repo, tmp_path / "b", "--package-db", env={"TZ": "Asia/Tokyo"})
    first, second = database_of(image, tmp_path), database_of(again, tmp_path)
    data = (first / "rpmdb.sqlite").read_bytes()
    assert data == (second / "rpmdb.sqlite").read_bytes()
    assert not list(first.glob("*-wal")) and data[18:20] == b"\x01\x01"  # rollback journal mode
    # Exactly the packages that gave the image a file: 5 were resolved, 3 kept one.
    annotation = json.loads(
        json.loads((image / "blobs/sha256" / manifest_hex(image)).read_bytes())["annotations"][
            "org.smith.package-files"
        ]
    )
    # Package origins are NEVRAs; smith's own ("microcontainer conventions", ...) have spaces.
    kept = sorted(o for o in annotation if " " not in o and o not in ("smith", "rootfs/"))
    assert rpm("--dbpath", str(first), "-qa", "--qf", "%{NEVRA}\\n").split() == kept
    assert kept == ["coreutils-1.0-1.x86_64", "filesystem-1.0-1.noarch", "glibc-1.0-1.x86_64"]
    info = rpm("--dbpath", str(first), "-qi", "coreutils")
    assert "Name        : coreutils" in info and "License     : MIT" in info
    # The stored headers are the packages' own main headers, byte for byte (without the
    # 8 bytes of magic, as rpm stores them), read here straight from the RPM files.
    con = sqlite3.connect(f"file:{first / 'rpmdb.sqlite'}?mode=ro", uri=True)
    blobs = [row[0] for row in con.execute("SELECT blob FROM Packages ORDER BY hnum")]
    con.close()
    assert blobs == [main_header(Path(repo), nevra) for nevra in kept]


def main_header(repo: Path, nevra: str) -> bytes:
    name, arch = nevra.rsplit(".", 1)
    data = (repo / f"{name}.{arch}.rpm").read_bytes()
    nindex, hsize = struct.unpack(">II", data[96 + 8 : 96 + 16])  # the signature header
    start = 96 + 16 + 16 * nindex + hsize
    start += -start % 8  # padded to 8 bytes
    nindex, hsize = struct.unpack(">II", data[start + 8 : start + 16])
    return data[start + 8 : start + 16 + 16 * nindex + hsize]


def manifest_hex(layout: Path) -> str:
    index = json.loads((layout / "index.json").read_text())
    digest: str = index["manifests"][0]["digest"]
    return digest[7:]


def test_minimize_names_packages_from_the_image_database(tmp_path: Path) -> None:
    image = build("cat", str(frozen_universe_dir() / "repos" / "main"), tmp_path, "--package-db")
    small = tmp_path / "small"
    proc = smith("minimize", str(image), "-o", str(small), "--sbom")
    assert proc.returncode == 0, proc.stderr.decode()
    doc = validated(sbom_of(small), tmp_path)
    packages = {p["name"]: p for p in doc["packages"] if p["SPDXID"] != "SPDXRef-Image"}
    assert set(packages) == {"coreutils", "filesystem", "glibc"}
    refs = [r["referenceLocator"] for r in packages["coreutils"]["externalRefs"]]
    assert refs == ["pkg:rpm/coreutils@1.0-1?arch=x86_64"]
    left_out = json.loads(
        packages["coreutils"]["annotations"][0]["comment"].removeprefix("smith:left-out ")
    )
    assert left_out == ["/usr/bin/echo", "/usr/bin/ls", "/usr/bin/true"]
    files = {f["fileName"]: f["SPDXID"] for f in doc["files"]}
    ids = {p["SPDXID"]: p["name"] for p in doc["packages"]}
    owner = {
        r["relatedSpdxElement"]: ids[r["spdxElementId"]]
        for r in doc["relationships"]
        if r["relationshipType"] == "CONTAINS" and r["relatedSpdxElement"] in files.values()
    }
    assert owner[files["./usr/bin/cat"]] == "coreutils"
    assert owner[files["./read/data"]] == "image"
