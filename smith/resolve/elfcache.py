"""Parse each file once per run: ELF facts keyed by path and content.

A closure over a whole /usr/bin reads libc thousands of times by name; the cache makes that
one parse. The key comes from the Root (a FileTree entry's content, or a host file's
device, inode, size and mtime), so the same cache may safely serve several roots and runs.
A file that is not ELF is remembered as such; a malformed one raises the same error again.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import BinaryIO

from smith.errors import ElfError
from smith.resolve.elf import PREFIX_BYTES, ElfInfo, is_elf, parse_elf
from smith.resolve.roots import Root

# Linux reads the first 256 bytes of a file to decide how to execute it (BINPRM_BUF_SIZE):
# enough for the ELF magic and a #! line.
HEAD_BYTES = 256


class ElfCache:
    def __init__(self) -> None:
        self._infos: dict[Hashable, ElfInfo | ElfError | None] = {}
        self._heads: dict[Hashable, bytes] = {}

    def head(self, root: Root, path: str) -> bytes:
        """The first bytes of a regular file (to tell ELF, script and data apart).

        An ELF file is parsed in the same open (a start is nearly always one): info() of
        it then costs a lookup.
        """
        key = root.content_key(path)
        head = self._heads.get(key)
        if head is None:
            try:
                with root.open(path) as stream:
                    first = stream.read(PREFIX_BYTES)
                    if is_elf(first) and key not in self._infos:
                        self._infos[key] = self._parse_open(stream, path, first)
                head = first[:HEAD_BYTES]
            except OSError as err:
                raise ElfError(f"cannot read /{path}: {err.strerror or err}") from None
            self._heads[key] = head
        return head

    def info(self, root: Root, path: str) -> ElfInfo | None:
        """The ELF facts of a regular file, or None when it is not an ELF file."""
        key = root.content_key(path)
        try:
            known = self._infos[key]
        except KeyError:
            known = self._parse(root, path)
            self._infos[key] = known
        if isinstance(known, ElfError):
            raise known
        return known

    def _parse(self, root: Root, path: str) -> ElfInfo | ElfError | None:
        try:
            with root.open(path) as stream:
                # The page the parse starts from, read once (not the magic, then again).
                first = stream.read(PREFIX_BYTES)
                if not is_elf(first):
                    return None
                return self._parse_open(stream, path, first)
        except OSError as err:
            return ElfError(f"cannot read /{path}: {err.strerror or err}")

    @staticmethod
    def _parse_open(stream: BinaryIO, path: str, first: bytes) -> ElfInfo | ElfError:
        try:
            return parse_elf(stream, "/" + path, first)
        except ElfError as err:
            return err
