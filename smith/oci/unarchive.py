"""Unpacking image archives (oci-archive, docker-archive; tar, optionally gzip) into a
directory, on the layer-reading stack. Only what an image archive holds is accepted:
directories, regular files and the relative symlinks `docker save` links shared layers
with; nothing can be written outside the directory.
"""

from __future__ import annotations

import os
import posixpath

from smith.diskspace import SpaceBudget, writing_in
from smith.errors import ImageFormatError, UnsafePathError
from smith.limits import expansion_bound
from smith.oci.layerread import DecompressError, open_blob
from smith.oci.tarstream import Member, TarFormatError, TarStream
from smith.paths import normalize_path


def unpack_archive(archive: str, dest: str) -> None:
    """Unpack an image archive (tar, optionally gzip) into `dest`, on the layer-reading
    stack (one compression check, bounded inflation, one tar parser).

    Image archives hold only directories and regular files, so anything else is refused
    (links, devices), as are absolute names and `..`: nothing can be written outside `dest`.
    Files are created with O_EXCL|O_NOFOLLOW, so not even a race can redirect them.
    """
    if os.path.getsize(archive) == 0:
        raise ImageFormatError(f"{archive}: not a readable image archive (it is empty)")
    links: list[tuple[str, str]] = []
    # Each file's size is in its header: checked against the free space before it is written.
    most = expansion_bound(os.path.getsize(archive))[0]
    space = SpaceBudget(dest, f"unpacking {archive}", most)
    with writing_in(dest), open_blob(archive, archive) as reader:
        stream = TarStream(reader.read_piece)
        try:
            for member in stream:
                link = unpack_member(archive, dest, stream, member, space)
                if link is not None:
                    links.append(link)
            reader.drain()
        except (DecompressError, TarFormatError) as err:
            raise ImageFormatError(f"{archive}: not a readable image archive ({err})") from None
    for rel, linkname in links:
        copy_link_target(archive, dest, rel, linkname)


def unpack_member(
    archive: str, dest: str, stream: TarStream, member: Member, space: SpaceBudget
) -> tuple[str, str] | None:
    """Write one archive entry under `dest`; a relative symlink is returned, to be resolved
    once everything is read."""
    name = member.name.rstrip("/") or member.name  # as tarfile shows names (a dir's no `/`)
    if name.startswith("/"):
        raise UnsafePathError(f"{archive}: entry has an absolute name: {name!r}")
    rel = normalize_path(name, what=f"{archive}: entry")
    if not rel:
        return None
    target = os.path.join(dest, rel)
    if member.isdir():
        make_dirs(archive, target, name)
    elif member.isreg():
        make_dirs(archive, os.path.dirname(target), name)
        space.claim(member.size)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        try:
            fd = os.open(target, flags, 0o644)
        except IsADirectoryError:
            raise ImageFormatError(f"{archive}: entry {name!r} is a file and a directory") from None
        with os.fdopen(fd, "wb") as out:
            for piece in stream.body():
                out.write(piece)
    elif member.issym() and not member.linkname.startswith("/"):
        # `docker save` and skopeo's docker-archive link a layer shared by two images
        # (`<id>/layer.tar -> ../<digest>.tar`): resolved once all is read.
        return rel, member.linkname
    else:
        raise UnsafePathError(
            f"{archive}: entry {name!r} is a link or special file, "
            "which an image archive never needs"
        )
    return None


def make_dirs(archive: str, path: str, name: str) -> None:
    """A directory of an unpacked archive, where an earlier entry may have put a file."""
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ImageFormatError(f"{archive}: entry {name!r} is a file and a directory") from None


def copy_link_target(archive: str, dest: str, rel: str, linkname: str) -> None:
    """Give the name `rel` the content of the archive file a relative symlink points to,
    as a hard link: no symlink is ever created, and nothing outside `dest` is reachable."""
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel), linkname))
    if joined.startswith("../") or joined == ".." or joined.startswith("/"):
        raise UnsafePathError(f"{archive}: link {rel!r} -> {linkname!r} leads out of the archive")
    source = os.path.join(dest, joined)
    if os.path.islink(source) or not os.path.isfile(source):
        raise ImageFormatError(f"{archive}: link {rel!r} -> {linkname!r} names no file of it")
    target = os.path.join(dest, rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.link(source, target)
