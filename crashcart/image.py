"""Toolboxes as images: `--toolbox IMAGE` and `crashcart toolbox build --image`.

An image toolbox (an OCI layout, oci-archive or docker-archive, e.g. one written by
`smith build`) is flattened once with smith's own layer applier into a directory under
IMAGE_CACHE named by its manifest digest; attach then mounts that directory like any other
toolbox. Ownership is dropped (everything belongs to root) and so are setuid/setgid bits:
the mount is nosuid anyway, and nothing in a toolbox needs them.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile

from crashcart.prefix import MANIFEST
from smith.diskspace import check_space, writing_in
from smith.errors import UnsafePathError
from smith.tree import Entry, FileTree, HostFile, Kind

IMAGE_CACHE = os.environ.get("CRASHCART_IMAGES", "/var/lib/crashcart/images")


def _inside(root: str, path: str) -> str:
    """root/path, refusing a parent directory that resolves outside root (via a symlink)."""
    full = os.path.join(root, path)
    parent = os.path.realpath(os.path.dirname(full))
    if parent != root and not parent.startswith(root + os.sep):
        raise UnsafePathError(f"toolbox image entry {path!r} would land outside the toolbox")
    return full


def _write_entry(root: str, entry: Entry) -> None:
    full = _inside(root, entry.path)
    mode = stat.S_IMODE(entry.mode) & ~(stat.S_ISUID | stat.S_ISGID)
    if entry.kind is Kind.DIR:
        os.makedirs(full, exist_ok=True)
        os.chmod(full, mode | 0o700)
    elif entry.kind is Kind.SYMLINK:
        os.symlink(entry.target, full)
    elif entry.kind is Kind.HARDLINK:
        os.link(_inside(root, entry.target), full)
    else:
        content = entry.content
        if isinstance(content, HostFile):
            shutil.copyfile(content.path, full, follow_symlinks=False)
        else:
            # Any other content (inline bytes, a slice of an unpacked layer) by its reader.
            with open(full, "xb") as f:
                if content is not None:
                    with content.open() as source:
                        shutil.copyfileobj(source, f, 1 << 20)
        os.chmod(full, mode)


def materialize(tree: FileTree, root: str) -> None:
    """Write a tree's entries as files under root (parents first: sorted paths)."""
    root = os.path.realpath(root)
    # Every file's size is known: a tree that cannot fit fails before the first file.
    check_space(root, sum(e.size for e in tree if e.kind is Kind.FILE), "the toolbox's files")
    with writing_in(root):
        _write_tree(tree, root)


def _write_tree(tree: FileTree, root: str) -> None:
    hardlinks = []
    for path in sorted(tree.paths()):
        entry = tree.get(path)
        if entry is None:
            continue
        if entry.kind is Kind.HARDLINK:
            hardlinks.append(entry)  # after every file, whatever the sort order says
            continue
        os.makedirs(os.path.dirname(_inside(root, path)), exist_ok=True)
        _write_entry(root, entry)
    for entry in hardlinks:
        _write_entry(root, entry)


def _flatten_image(source: str, suffix: str, toolbox: bool) -> tuple[str, tuple[str, ...]]:
    """The directory holding the flattened image `source` (unpacked on first use, into
    IMAGE_CACHE by manifest digest and `suffix`), and the image's entrypoint + cmd."""
    from smith.oci.reading import open_image
    from smith.oci.unpack import apply_layers

    os.makedirs(IMAGE_CACHE, mode=0o755, exist_ok=True)
    with open_image(source) as image:
        config = image.image_config()
        argv = (*(config.entrypoint or ()), *(config.cmd or ()))
        name = image.manifest_descriptor.digest.replace(":", "-") + suffix
        dest = os.path.join(IMAGE_CACHE, name)
        if os.path.isdir(dest):
            return dest, argv
        work = tempfile.mkdtemp(prefix=f".{name}.", dir=IMAGE_CACHE)
        try:
            tree, _ = apply_layers(image, os.path.join(work, "store"))
            root = os.path.join(work, "root")
            os.mkdir(root)
            materialize(tree, root)
            if toolbox and not os.path.exists(os.path.join(root, MANIFEST)):
                # Any image of programs (not one `toolbox build --image` wrote): made a
                # toolbox the way `crashcart toolbox build` makes one, relocated to run
                # with its own loader and libraries, never the target's.
                from pathlib import Path

                from crashcart.toolbox import finish_toolbox

                finish_toolbox(Path(root), source)
            os.chmod(root, 0o755)  # noqa: S103 - any user of any target reads the toolbox
            try:
                os.rename(root, dest)
            except OSError:
                if not os.path.isdir(dest):  # another attach unpacked it meanwhile: fine
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest, argv


def toolbox_from_image(source: str) -> str:
    """The directory holding the flattened image `source`, unpacking it on first use."""
    return _flatten_image(source, "", toolbox=True)[0]


def root_from_image(source: str) -> tuple[str, str]:
    """An image's root filesystem for `crashcart debug --image` (unpacked on first use, as
    is, not made a toolbox) and its program (the entrypoint's or cmd's first word, or "")."""
    root, argv = _flatten_image(source, "-root", toolbox=False)
    return root, argv[0] if argv else ""


def write_toolbox_image(toolbox: str, output: str) -> str:
    """Write a toolbox directory as a one-layer image (format from the output's name)."""
    from smith.oci.image import ImageConfig
    from smith.oci.output import write_image

    result = write_image(FileTree.from_directory(toolbox), ImageConfig(), output)
    return result.manifest.digest
