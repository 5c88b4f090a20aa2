"""The one JSON form of what `smith build` and `smith minimize` made (`--json`).

Both commands shrink a tree (packages + rootfs/, or an image's layers) to a program and
its closure, so both report the same things under the same keys, validated by one JSON
schema (smith/schemas/result.schema.json): where the tree came from and how big it was
(`before`), what the output holds (`after`, `paths`), its digests (index, manifest, config,
layers) and, with --explain, why each path is kept.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from smith.tree import FileTree, Kind

if TYPE_CHECKING:  # a build taken from the cache reports without the image writer
    from smith.oci.image import Platform
    from smith.oci.writer import ImageResult

SCHEMA = Path(__file__).parent / "schemas" / "result.schema.json"


@dataclass(frozen=True)
class TreeSize:
    files: int
    bytes: int

    @classmethod
    def of(cls, tree: FileTree) -> TreeSize:
        # One pass, no list: a tree's entries are made one at a time (smith.entrytable).
        files = size = 0
        for entry in tree.unordered():
            if entry.kind is Kind.FILE:
                files += 1
                size += entry.size
        return cls(files, size)


@dataclass(frozen=True)
class Source:
    """Where the tree came from: a recipe's packages, or an image (and its manifest)."""

    name: str
    manifest: str = ""  # the image's manifest digest; "" for packages
    compressed_bytes: int | None = None  # the image's layers as stored; None for packages
    layers: int | None = None  # the image's layer count; None for packages
    packages_resolved: int = 0
    packages_kept: tuple[str, ...] = ()


def output_size(output: str) -> int:
    """Bytes of the output on disk: the archive, or every file of the layout directory."""
    if os.path.isdir(output):
        return sum(f.stat().st_size for f in Path(output).rglob("*") if f.is_file())
    return os.path.getsize(output)


class Shrunk(Protocol):
    """What a build or a minimize made, as the JSON form reads it."""

    @property
    def output(self) -> str: ...
    @property
    def image(self) -> ImageResult: ...
    @property
    def platform(self) -> Platform: ...
    @property
    def program(self) -> str: ...
    @property
    def before(self) -> TreeSize: ...
    @property
    def after(self) -> TreeSize: ...
    @property
    def source_info(self) -> Source: ...

    def explained(self) -> Mapping[str, str]: ...


def result_document(result: Shrunk, explain: bool = False) -> dict[str, Any]:
    source, image = result.source_info, result.image
    doc: dict[str, Any] = {
        "source": source.name,
        "source_manifest": source.manifest or None,
        "output": result.output,
        "index": image.index,
        "manifest": image.manifest.digest,
        "config": image.config.digest,
        "layers": [
            {
                "digest": layer.descriptor.digest,
                "diff_id": layer.diff_id,
                "size": layer.descriptor.size,
            }
            for layer in image.layers
        ],
        "platform": str(result.platform),
        "program": "/" + result.program,
        "size": output_size(result.output),
        "before": {
            "files": result.before.files,
            "bytes": result.before.bytes,
            "compressed_bytes": source.compressed_bytes,
            "layers": source.layers,
        },
        "after": {
            "files": result.after.files,
            "bytes": result.after.bytes,
            "compressed_bytes": sum(layer.descriptor.size for layer in image.layers),
        },
        "packages_resolved": source.packages_resolved,
        "packages_kept": list(source.packages_kept),
    }
    kept = result.explained()
    doc["paths"] = len(kept)
    if explain:
        doc["kept"] = {"/" + path: why for path, why in kept.items()}
    return doc
