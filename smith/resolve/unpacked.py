"""What each package's payload put into the content store, so that an unchanged package is
never extracted twice.

After a package is extracted, its cpio entries are recorded in payload order, each regular
file with the sha256 its bytes are stored under. The record is named by the sha256 of the
package's header, which covers the payload digest (checked before extraction), so the same
name always means the same payload. A later build replays the record instead of
decompressing the payload. Each stored file is hashed again before it is used: a store file
damaged since it was written is never trusted by its name; the package is then extracted
again, which also repairs the store.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

from smith.leftovers import sweep, tagged
from smith.resolve.payload import CpioEntry
from smith.resolve.store import ContentStore
from smith.tree import HostFile

# Bump when what a record holds changes meaning.
FORMAT_VERSION = 1

Row = tuple[CpioEntry, str]  # the entry, and the sha256 of a regular file's bytes ("" else)


def record_path(store: ContentStore, key: str) -> str:
    return os.path.join(store.root, "payloads", f"{key}.json")


def load_record(store: ContentStore, key: str) -> list[tuple[CpioEntry, HostFile | None]] | None:
    """The recorded entries with their stored contents, or None when the record is missing,
    unreadable or names a store file that is gone or no longer holds its bytes."""
    try:
        with open(record_path(store, key), "rb") as f:
            doc = json.loads(f.read())
        if doc.get("version") != FORMAT_VERSION:
            return None
        out: list[tuple[CpioEntry, HostFile | None]] = []
        for name, mode, uid, gid, nlink, ino, size, digest in doc["entries"]:
            entry = CpioEntry(
                str(name), int(mode), int(uid), int(gid), int(nlink), int(ino), int(size)
            )
            content = _stored(store, str(digest), entry.size) if digest else None
            if digest and content is None:
                return None
            out.append((entry, content))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return out


def save_record(store: ContentStore, key: str, rows: Sequence[Row]) -> None:
    """Record a package's entries (atomically; a store that cannot be written only costs
    speed)."""
    doc = {
        "version": FORMAT_VERSION,
        "entries": [
            [e.name, e.mode, e.uid, e.gid, e.nlink, e.ino, e.size, digest] for e, digest in rows
        ],
    }
    path = record_path(store, key)
    tmp = tagged(f"{path}.tmp-")  # named by the run: a killed run's is swept below
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sweep(os.path.dirname(path))
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            json.dump(doc, f, ensure_ascii=False)
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _stored(store: ContentStore, digest: str, size: int) -> HostFile | None:
    path = store.path_for(digest)
    hasher = hashlib.sha256()
    length = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
            length += len(chunk)
    if length != size or hasher.hexdigest() != digest:
        return None
    return HostFile(str(path), sha256=digest)
