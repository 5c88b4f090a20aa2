"""Where images live on disk: OCI layout directories, oci-archives and docker-archives.

Writing: an image is always assembled as an OCI layout in a temporary directory beside the
output, then either renamed into place (layout) or packed into a tar with the same
deterministic tar writer as the layers (archives). Reading all three forms is
smith.oci.reading's, into the image object of smith.oci.loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from smith.atomic import atomic_path, check_output, temp_beside
from smith.diskspace import check_space
from smith.errors import UsageError
from smith.oci.blobs import BlobStore
from smith.oci.compress import CompressedWriter, Compression

# The output's format, chosen from its name: in formats.py, which a warm build imports alone.
from smith.oci.formats import NOT_WRITTEN as NOT_WRITTEN
from smith.oci.formats import OutputFormat as OutputFormat
from smith.oci.formats import choose_format as choose_format
from smith.oci.image import canonical_json
from smith.oci.tarball import stream_layer
from smith.oci.writer import ImageResult
from smith.tree import FileTree, Kind


@contextmanager
def staging_layout(output: str) -> Iterator[BlobStore]:
    """A temporary OCI layout beside `output`; removed afterwards whatever happens."""
    check_output(output)  # before the work, not only when the output is moved into place
    with temp_beside(output, directory=True) as root:
        yield BlobStore(root)


def save_layout(
    store: BlobStore,
    result: ImageResult,
    output: str,
    fmt: OutputFormat,
    *,
    gz: bool = False,
    tag: str = "",
    epoch: int = 0,
) -> None:
    """Move or pack the complete layout in `store` to `output`, atomically."""
    if fmt is OutputFormat.OCI:
        with atomic_path(output, directory=True) as tmp:
            os.rmdir(tmp)
            os.rename(store.root, tmp)
            os.makedirs(store.root)  # staging_layout removes it again
        return
    if fmt is OutputFormat.DOCKER_ARCHIVE:
        refuse_zstd_docker_archive(fmt, [layer.descriptor.media_type for layer in result.layers])
        write_docker_manifest(store, result, tag)
    tree = layout_tree(store.root)
    # The archive holds the layout's files (plus headers; gzip only shrinks it): refused
    # before it is written when it cannot fit beside the layout it is packed from.
    need = sum(entry.size for entry in tree if entry.kind is Kind.FILE)
    check_space(os.path.dirname(os.path.abspath(output)), need, f"the output {output!r}")
    with atomic_path(output) as tmp, open(tmp, "wb") as out:
        writer = CompressedWriter(out, Compression.GZIP if gz else Compression.NONE, lambda _: None)
        for chunk in stream_layer(tree, epoch):
            writer.write(chunk)
        writer.close()


def refuse_zstd_docker_archive(fmt: OutputFormat, media_types: Iterable[str]) -> None:
    """Docker's archive format has no zstd: `docker load` (20.10) fails on such a layer
    with `archive/tar: invalid tar header`. Refused before anything is written."""
    if fmt is OutputFormat.DOCKER_ARCHIVE and any(m.endswith("zstd") for m in media_types):
        raise UsageError(
            "a docker-archive cannot hold zstd layers (docker load reads only gzip or plain "
            "tar): use --compression gzip, or write an OCI archive (--format oci-archive)"
        )


def layout_tree(root: str) -> FileTree:
    """The layout directory as a tree with fixed owners and modes: the archive must not
    carry the build host's uid or umask."""
    tree = FileTree()
    for entry in FileTree.from_directory(root):
        if entry.kind is Kind.DIR:
            tree.add_dir(entry.path, 0o755)
        elif entry.kind is Kind.FILE and entry.content is not None:
            tree.add_file(entry.path, entry.content, 0o644, size=entry.size)
    return tree


def write_docker_manifest(store: BlobStore, result: ImageResult, tag: str) -> None:
    """docker-archive: `manifest.json` as `docker load` reads it, beside the OCI layout (as
    Docker 25+ itself writes). `docker load` decompresses gzip and zstd layers itself."""
    repo_tag = tag if ":" in tag.rsplit("/", 1)[-1] else (f"{tag}:latest" if tag else "")
    manifest = [
        {
            "Config": "blobs/sha256/" + result.config.digest.removeprefix("sha256:"),
            "RepoTags": [repo_tag] if repo_tag else None,
            "Layers": [
                "blobs/sha256/" + layer.descriptor.digest.removeprefix("sha256:")
                for layer in result.layers
            ],
        }
    ]
    with open(os.path.join(store.root, "manifest.json"), "wb") as f:
        f.write(canonical_json(manifest))
