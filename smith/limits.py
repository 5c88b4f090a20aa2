"""Every bound smith puts on what it reads, in one place (the README's "Limits" lists them).

Inputs come from repositories, registries, recipes and packages that smith does not trust:
a server may stall or never stop, a compressed file may expand a thousandfold, a document
may nest until the parser's stack ends. Each bound below has a default that no real input
comes near and an environment variable, SMITH_LIMIT_<NAME>, that raises it (or lowers it:
the hostile-input tests run with small ones so that each case ends in seconds). A bound
that trips is one line naming the input, the bound and the variable.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from smith.errors import LimitError, PackageError, SmithError, UsageError

MIB = 1 << 20

# The largest uid or gid (recipes, layers): 2^32-1 is (uid_t)-1, which chown and setuid take
# as "no change". A fixed bound of the kernel's, not a limit to raise.
MAX_ID = (1 << 32) - 2


@dataclass(frozen=True)
class Limit:
    name: str
    default: float
    unit: str  # "bytes", "seconds", "levels", ...: how the limit is shown in a message

    @property
    def variable(self) -> str:
        return f"SMITH_LIMIT_{self.name}"

    def value(self) -> float:
        """The limit now: read on each use, so a test (or a wrapper) may set it at any time.
        A --set-limit flag of this run wins over the environment."""
        if self.name in FLAGS:
            where, raw = f"--set-limit {self.name}", FLAGS[self.name]
        else:
            where, raw = self.variable, os.environ.get(self.variable, "")
        if not raw:
            return self.default
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        # NaN and infinity are not limits: `inf` would switch a bound off without a word.
        if not (0 < value < float("inf")):
            raise UsageError(f"{where}={raw[:40]!r} is not a positive number")
        return value

    def count(self) -> int:
        return int(self.value())

    def error(self, what: str) -> LimitError:
        """`what` went past this limit: the message names both and how to raise it."""
        value = self.value()
        shown = f"{int(value) if value == int(value) else value} {self.unit}"
        return LimitError(
            f"{what}: over the limit of {shown}",
            hint=f"raise it with --set-limit {self.name}=N or {self.variable}",
        )


# -- the network: every read from a repository or a registry ------------------------------
CONNECT_TIMEOUT = Limit("CONNECT_TIMEOUT", 30, "seconds")  # to open a connection
IDLE_TIMEOUT = Limit("IDLE_TIMEOUT", 60, "seconds")  # without a single byte arriving
# One download, its retries included: an hour, enough for a few GB over a slow link.
DEADLINE = Limit("DEADLINE", 3600, "seconds")
# repomd.xml, a gpgkey, a manifest, an index, an image config, a token, an error body.
DOCUMENT_BYTES = Limit("DOCUMENT_BYTES", 4 * MIB, "bytes")  # a registry's own manifest limit
# A download whose size no metadata declares (a package its lock names without one).
DOWNLOAD_BYTES = Limit("DOWNLOAD_BYTES", 64 * 1024 * MIB, "bytes")

# -- decompression: repository metadata, RPM payloads, Content-Encoding, image layers ------
# Output may be EXPANSION_RATIO times the input (but at least EXPANSION_FLOOR, since a
# tiny file of zeros legitimately expands far), and never more than UNPACKED_BYTES.
EXPANSION_RATIO = Limit("EXPANSION_RATIO", 1000, "times the compressed size")
EXPANSION_FLOOR = Limit("EXPANSION_FLOOR", 64 * MIB, "bytes")
UNPACKED_BYTES = Limit("UNPACKED_BYTES", 16 * 1024 * MIB, "bytes")

# -- parsers ---------------------------------------------------------------------------------
JSON_DEPTH = Limit("JSON_DEPTH", 200, "levels of nesting")
RECIPE_BYTES = Limit("RECIPE_BYTES", 4 * MIB, "bytes")
YAML_DEPTH = Limit("YAML_DEPTH", 64, "levels of nesting")
YAML_NODES = Limit("YAML_NODES", 200_000, "nodes with aliases expanded")
# rpm's own bounds (hdrchkTags, hdrchkData in rpm's header.c), and the values of all tags
# together (the largest Fedora headers, 100,000 files, hold about 2 million).
RPM_HEADER_TAGS = Limit("RPM_HEADER_TAGS", 0xFFFF, "tags")
RPM_HEADER_BYTES = Limit("RPM_HEADER_BYTES", 256 * MIB, "bytes")
RPM_HEADER_ITEMS = Limit("RPM_HEADER_ITEMS", 16_000_000, "values")
# The entries of an image's layers, all together: the largest distribution images hold a
# few hundred thousand files; each costs memory (about 1 KiB) and time all the way.
LAYER_ENTRIES = Limit("LAYER_ENTRIES", 500_000, "entries")

ALL = (
    CONNECT_TIMEOUT,
    IDLE_TIMEOUT,
    DEADLINE,
    DOCUMENT_BYTES,
    DOWNLOAD_BYTES,
    EXPANSION_RATIO,
    EXPANSION_FLOOR,
    UNPACKED_BYTES,
    JSON_DEPTH,
    RECIPE_BYTES,
    YAML_DEPTH,
    YAML_NODES,
    RPM_HEADER_TAGS,
    RPM_HEADER_BYTES,
    RPM_HEADER_ITEMS,
    LAYER_ENTRIES,
)


# The --set-limit NAME=VALUE flags of this run (smith/cli/limit_flags.py): name -> value.
FLAGS: dict[str, str] = {}


def set_limit(setting: str) -> None:
    """A --set-limit flag's `NAME=VALUE`, checked as the variable's value is, then in force."""
    name, sep, raw = setting.partition("=")
    limit = next((one for one in ALL if one.name == name.upper()), None)
    if not sep or limit is None:
        names = ", ".join(one.name for one in ALL)
        raise UsageError(f"--set-limit {setting[:60]!r} is not NAME=VALUE with NAME one of {names}")
    FLAGS[limit.name] = raw
    limit.value()  # a bad value is refused now, not when the bound is first used


def expansion_bound(compressed: int) -> tuple[int, Limit]:
    """How many bytes `compressed` bytes may expand to, and the limit that sets it."""
    by_ratio = max(int(compressed * EXPANSION_RATIO.value()), EXPANSION_FLOOR.count())
    absolute = UNPACKED_BYTES.count()
    return (by_ratio, EXPANSION_RATIO) if by_ratio < absolute else (absolute, UNPACKED_BYTES)


def over_limit(what: str, most: int, limit: Limit | None) -> SmithError:
    """`what` went past `most` bytes: `limit`'s error, or with no limit (`most` is what the
    input's own metadata declares) an error saying so."""
    if limit is None:
        return PackageError(f"{what}: more than the {most} bytes its metadata declares")
    return limit.error(what)


def json_document(data: bytes | str, what: str) -> Any:
    """json.loads, with nesting bounded by JSON_DEPTH: Python's parser recurses, and a
    document nested 100,000 deep ends in RecursionError (or, at a smaller depth, in the
    code that walks it). Malformed JSON raises ValueError, for the caller to name."""
    try:
        doc = json.loads(data)
    except RecursionError:
        raise JSON_DEPTH.error(f"{what}: JSON nesting") from None
    most = JSON_DEPTH.count()
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:  # without recursion: the check must not itself run out of stack
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > most:
                raise JSON_DEPTH.error(f"{what}: JSON nesting")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return doc
