"""A test image of Debian's python3 (the Debian root of tests/debian_image.py, which holds
python3) and a small app that imports json, sqlite3, ssl, decimal and hashlib: everything it
needs beyond the interpreter's ELF closure is loaded at run time."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.imagekit import M, compress, layer_tar, sha256, write_layout

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


def python_app_key() -> str:
    """What of this module decides the bytes of the image (part of the root's cache key)."""
    doc = {"app": hashlib.sha256(APP).hexdigest(), "config": CONFIG}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def write_python_layout(where: Path, base_blob: bytes, base_diff_id: str) -> None:
    """The OCI layout (tag latest): the Debian root and a layer with the app."""
    app = layer_tar([M("app", "dir"), M("app/app.py", data=APP)])
    write_layout(
        str(where),
        [],
        CONFIG,
        blobs=[base_blob, compress(app, "gzip")],
        diff_ids=[base_diff_id, sha256(app)],
    )
