"""A test image of Debian's python3 (`mmdebstrap --variant=minbase` of the host's suite with
python3, see tests/debian_image.py) and a small app that imports json, sqlite3, ssl,
decimal and hashlib: everything it needs beyond the interpreter's ELF closure is loaded at
run time. Cached like the nginx images, keyed by what decides its bytes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from tests.debian_image import apt_mirror, host_suite, mmdebstrap
from tests.imagekit import M, compress, layer_tar, sha256, write_layout
from tests.tools import in_ci, require_root, require_tool

PACKAGES = ("python3",)
FIXTURE_VERSION = "1"  # bump when what this module writes changes
APP = b"""\
import decimal, hashlib, json, sqlite3, ssl

db = sqlite3.connect(":memory:")
db.execute("create table t (v text)")
value = json.dumps({"total": str(decimal.Decimal("1.10") * 3)})
db.execute("insert into t values (?)", (value,))
(row,) = db.execute("select v from t").fetchone()
print(row, hashlib.sha256(row.encode()).hexdigest()[:12], ssl.OPENSSL_VERSION.split()[0])
"""
# What the app prints: the same on every machine (only the OpenSSL name, not its version).
EXPECTED = '{"total": "3.30"} ' + hashlib.sha256(b'{"total": "3.30"}').hexdigest()[:12]
CONFIG = {
    "Entrypoint": ["python3", "/app/app.py"],
    "User": "65534:65534",
    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"],
    "WorkingDir": "/",
}


def python_image(cache_dir: Path, scratch: Path) -> Path:
    """The OCI layout (tag latest), from the cache when allowed and present."""
    require_root()
    suite = host_suite()
    mirror = apt_mirror(suite)
    doc = {"suite": suite, "mirror": mirror, "packages": PACKAGES, "v": FIXTURE_VERSION}
    doc["app"] = hashlib.sha256(APP).hexdigest()
    doc["config"] = CONFIG
    key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    base = scratch if in_ci() else cache_dir
    final = base / f"debian-python-{key}"
    if (final / "complete").exists():
        return final / "image"
    require_tool("mmdebstrap")
    work = base / f".building-python-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        rootfs = work / "rootfs.tar"
        mmdebstrap(rootfs, suite, mirror, PACKAGES)
        base_tar = rootfs.read_bytes()
        app = layer_tar([M("app", "dir"), M("app/app.py", data=APP)])
        write_layout(
            str(work / "image"),
            [],
            CONFIG,
            blobs=[compress(base_tar, "gzip"), compress(app, "gzip")],
            diff_ids=[sha256(base_tar), sha256(app)],
        )
        rootfs.unlink()
        (work / "complete").write_text("")
        shutil.rmtree(final, ignore_errors=True)
        os.rename(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final / "image"
