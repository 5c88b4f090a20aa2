"""Planted non-determinism: with SMITH_PLANT=<item> set, smith's writer gets one bug from
docs/ARCHITECTURE.md's determinism checklist, of the kind the checklist exists to prevent.

This directory goes first on PYTHONPATH of a `smith verify` run, so every build process
verify starts imports this file at startup (Python imports `sitecustomize` by itself) and
patches smith before it builds. Each bug depends on something verify varies between builds
(time, working directory, USER, PYTHONHASHSEED, umask, TZ, directory read order), as the
real bugs do.
"""

from __future__ import annotations

import os

PLANT = os.environ.get("SMITH_PLANT", "")


def _install() -> None:
    import getpass
    import json
    import time
    from collections.abc import Iterator
    from typing import Any

    import smith.build
    import smith.oci.compress
    import smith.oci.writer
    from smith.oci import tarball
    from smith.tree import FileTree

    def set_field(header: bytes, offset: int, width: int, value: bytes) -> bytes:
        block = bytearray(header[-512:])
        block[offset : offset + width] = value.ljust(width, b"\x00")[:width]
        block[148:156] = b" " * 8
        block[148:156] = b"%06o\x00 " % sum(block)
        return header[:-512] + bytes(block)

    def stream_layer(tree: FileTree, epoch: int) -> Iterator[bytes]:
        members = tarball.plan_members(tree)
        if PLANT == "reordered-entries":
            # Entries in the order a set of names iterates: PYTHONHASHSEED decides it.
            members.sort(key=lambda m: hash(m.name))
        mask = os.umask(0)
        os.umask(mask)
        for m in members:
            mode = m.mode
            if PLANT == "leaked-umask" and m.typeflag == tarball.TYPE_DIR:
                mode = 0o777 & ~mask  # what os.makedirs + stat would give
            header = tarball.header_block(
                m.name, m.typeflag, mode, m.uid, m.gid, m.size, m.linkname, epoch
            )
            if PLANT == "host-user-names":
                user = getpass.getuser().encode()  # what tarfile.gettarinfo writes
                header = set_field(set_field(header, 265, 32, user), 297, 32, user)
            if PLANT == "float-mtime" and m.typeflag == tarball.TYPE_FILE:
                # os.stat's float st_mtime: tarfile writes it as a PAX record.
                record = tarball.pax_record("mtime", b"%d.%06d" % (epoch, time.time_ns() % 10**6))
                pax = tarball.raw_header(
                    tarball.PAX_HEADER_NAME, b"", tarball.TYPE_PAX, 0o644, 0, 0, len(record),
                    b"", epoch,
                )  # fmt: skip
                header = pax + record + tarball.padding(len(record)) + header
            yield header
            if m.entry is not None and m.size:
                yield from tarball.stream_content(m.entry)
                yield tarball.padding(m.size)
        yield b"\x00" * 1024

    if PLANT in ("reordered-entries", "leaked-umask", "host-user-names", "float-mtime"):
        smith.oci.writer.stream_layer = stream_layer  # type: ignore[assignment]

    if PLANT == "gzip-name":
        original_member = smith.oci.compress.gzip_member

        def gzip_member(data: bytes) -> bytes:
            # gzip.GzipFile(filename=...) records the file's name: here the build's cwd.
            member = original_member(data)
            name = os.path.basename(os.getcwd()).encode() + b"/layer.tar\x00"
            return member[:3] + b"\x08" + member[4:10] + name + member[10:]

        smith.oci.compress.gzip_member = gzip_member

    if PLANT == "unsorted-json-keys":
        original_json = smith.oci.writer.canonical_json

        def canonical_json(doc: Any) -> bytes:
            if isinstance(doc, dict) and "rootfs" in doc:  # the config
                # Keys in the order a set of them iterates, not sorted.
                doc = {k: doc[k] for k in sorted(doc, key=hash)}
                return json.dumps(doc, separators=(",", ":")).encode()
            return original_json(doc)

        smith.oci.writer.canonical_json = canonical_json

    if PLANT == "set-iteration":

        def package_files_json(owners: dict[str, str]) -> str:
            by_origin: dict[str, set[str]] = {}
            for path, origin in owners.items():
                by_origin.setdefault(origin or "smith", set()).add("/" + path)
            lists = {k: list(v) for k, v in by_origin.items()}  # a set, iterated
            return json.dumps(lists, sort_keys=True, separators=(",", ":"))

        smith.build.package_files_json = package_files_json

    if PLANT == "timestamp-in-config":
        original_config = smith.oci.writer.config_document

        def config_document(*args: Any, **kwargs: Any) -> dict[str, Any]:
            doc = original_config(*args, **kwargs)
            # Local time with its offset, not UTC: TZ reaches the hashed config.
            doc["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(0))
            return doc

        smith.oci.writer.config_document = config_document

    if PLANT == "directory-order":
        original_overlay = smith.build.overlay_rootfs
        original_files = smith.build.package_files_json
        walked: list[str] = []

        def overlay_rootfs(tree: FileTree, rootfs: str) -> None:
            # os.walk lists names in readdir order, which the filesystem decides.
            for dirpath, _dirs, files in os.walk(rootfs):
                walked.extend(os.path.relpath(os.path.join(dirpath, f), rootfs) for f in files)
            original_overlay(tree, rootfs)

        def files_in_walk_order(owners: dict[str, str]) -> str:
            doc = json.loads(original_files(owners))
            doc["rootfs/"] = ["/" + p for p in walked]
            return json.dumps(doc, sort_keys=True, separators=(",", ":"))

        smith.build.overlay_rootfs = overlay_rootfs
        smith.build.package_files_json = files_in_walk_order


if PLANT:
    _install()
