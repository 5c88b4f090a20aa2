"""An unchanged package is extracted once: later trees are replayed from its payload record
and are the same tree; a damaged store file or record costs an extraction, never a wrong
tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from smith.resolve import rpm
from smith.resolve.rpm import PAYLOADDIGEST, add_rpm_to_tree, read_rpm
from smith.resolve.store import ContentStore
from smith.resolve.unpacked import record_path
from smith.tree import FileTree, HostFile
from tests.tools import SHARED, require_shared

# Real packages with hard links, symlinks, directories and empty files among them; only
# those with a payload digest are recorded (an md5-only package is extracted every time).
CORPUS = [
    p.name
    for p in sorted((SHARED / "rpm-corpus").glob("*.x86_64.rpm"))
    if read_rpm(p).header.strings(PAYLOADDIGEST)
][:12]


def tree_of(path: Path, store: ContentStore) -> list[tuple[object, ...]]:
    tree = FileTree()
    add_rpm_to_tree(tree, path, store)
    return [(e.path, e.kind, e.mode, e.uid, e.gid, e.size, e.target, e.content) for e in tree]


def forbid_extraction(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("the payload was decompressed again")

    monkeypatch.setattr(rpm, "PayloadStream", refuse)


@pytest.mark.parametrize("name", CORPUS or ["(corpus missing)"])
def test_second_tree_is_replayed_and_equal(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = require_shared("rpm-corpus", name)
    store = ContentStore(tmp_path / "store")
    first = tree_of(path, store)
    with monkeypatch.context() as patch:
        forbid_extraction(patch)
        assert tree_of(path, store) == first


def test_damaged_store_file_is_extracted_again(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    for name in CORPUS:
        path = require_shared("rpm-corpus", name)
        first = tree_of(path, store)
        stored = [c for *_, c in first if isinstance(c, HostFile) and os.path.getsize(c.path)]
        if stored:
            break
    else:
        pytest.fail("no corpus package with a non-empty file")
    victim = stored[0].path
    os.chmod(victim, 0o644)
    with open(victim, "r+b") as f:
        byte = f.read(1)
        f.seek(0)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert tree_of(path, store) == first  # the same contents, by the same digests...
    with open(victim, "rb") as f:
        assert f.read(1) == byte  # ...and the store file repaired by the extraction


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"version": 1, "entries": [[1]]}'])
def test_damaged_record_is_extracted_again(damage: bytes, tmp_path: Path) -> None:
    path = require_shared("rpm-corpus", CORPUS[0])
    store = ContentStore(tmp_path / "store")
    first = tree_of(path, store)
    records = list((tmp_path / "store" / "payloads").iterdir())
    assert len(records) == 1
    records[0].write_bytes(damage)
    assert tree_of(path, store) == first
    assert os.path.getsize(records[0]) > len(damage)  # written afresh


def test_corpus_has_recorded_packages() -> None:
    assert len(CORPUS) >= 3


def test_unverified_packages_are_not_recorded(tmp_path: Path) -> None:
    path = require_shared("rpm-corpus", CORPUS[0])
    store = ContentStore(tmp_path / "store")
    add_rpm_to_tree(FileTree(), path, store, verify=False)
    assert not (tmp_path / "store" / "payloads").exists()
    assert record_path(store, "x").endswith("payloads/x.json")
