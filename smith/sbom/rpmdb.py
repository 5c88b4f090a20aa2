"""An rpm database (sqlite backend, as rpm >= 4.16 writes it) of the packages an image kept,
so that scanners and `rpm -qa` see what the image holds; and the reverse, for `smith
minimize`: the packages and file owners of an image's own rpmdb.sqlite.

Each package is stored with its original main header, byte for byte (rpm keeps the header
without its 8-byte magic in the `Packages` table); the index tables hold what rpm's own
index code derives from the header (each string of the tag, with its position). Written
deterministically: packages in NEVRA order, one transaction, no WAL or journal left,
VACUUMed (pages in a fixed order), and the header fields in which sqlite records its own
version and write count set to fixed values.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import stat
import struct
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from smith.errors import ImageFormatError
from smith.resolve.rpmheader import HEADER_MAGIC, Header, read_header
from smith.sbom.dpkg import in_tree
from smith.tree import FileTree, Kind

# (table, tag, key type): rpm's index tables, in the order rpm creates them.
INDEXES = (
    ("Name", 1000, "TEXT"),
    ("Basenames", 1117, "TEXT"),
    ("Group", 1016, "TEXT"),
    ("Requirename", 1049, "TEXT"),
    ("Providename", 1047, "TEXT"),
    ("Conflictname", 1054, "TEXT"),
    ("Obsoletename", 1090, "TEXT"),
    ("Triggername", 1066, "TEXT"),
    ("Dirnames", 1118, "TEXT"),
    ("Installtid", 1128, "BLOB"),
    ("Sigmd5", 261, "BLOB"),
    ("Sha1header", 269, "TEXT"),
    ("Filetriggername", 5069, "TEXT"),
    ("Transfiletriggername", 5079, "TEXT"),
    ("Recommendname", 5046, "TEXT"),
    ("Suggestname", 5049, "TEXT"),
    ("Supplementname", 5052, "TEXT"),
    ("Enhancename", 5055, "TEXT"),
)
# rpm indexes these by package too (hnum), to find a package's entries when it is erased.
HNUM_INDEXED = {
    "Basenames", "Requirename", "Providename", "Conflictname", "Obsoletename", "Triggername",
    "Dirnames", "Filetriggername", "Transfiletriggername", "Recommendname", "Suggestname",
    "Supplementname", "Enhancename",
}  # fmt: skip
NO_KEY_INDEX = {"Installtid", "Sigmd5"}
DB_PATHS = ("usr/lib/sysimage/rpm", "var/lib/rpm")
DB_NAME = "rpmdb.sqlite"
# sqlite's file header: the change counter (24) and "version-valid-for" (92) count writes;
# 96 is the library version that wrote the file. Fixed, so that no sqlite build or
# transaction count shows in the bytes.
FIXED_HEADER = ((24, 1), (92, 1), (96, 3_000_000))


def database_bytes(headers: Sequence[Header]) -> bytes:
    """An rpmdb.sqlite holding `headers` (in the order given)."""
    with tempfile.TemporaryDirectory(prefix="smith-rpmdb-") as tmp:
        path = os.path.join(tmp, DB_NAME)
        con = sqlite3.connect(path, isolation_level=None)
        try:
            con.execute("PRAGMA page_size = 4096")
            con.execute("PRAGMA journal_mode = DELETE")
            con.execute("BEGIN")
            create_schema(con)
            for hnum, header in enumerate(headers, start=1):
                con.execute(
                    "INSERT INTO Packages (hnum, blob) VALUES (?, ?)", (hnum, header.raw[8:])
                )
                for table, tag, key_type in INDEXES:
                    for idx, key in enumerate(index_keys(header, tag, key_type)):
                        con.execute(
                            f"INSERT INTO '{table}' (key, hnum, idx) VALUES (?, ?, ?)",  # noqa: S608 - names from INDEXES
                            (key, hnum, idx),
                        )
            con.execute("COMMIT")
            con.execute("VACUUM")
        finally:
            con.close()
        with open(path, "rb") as f:
            data = bytearray(f.read())
    for offset, value in FIXED_HEADER:
        struct.pack_into(">I", data, offset, value)
    return bytes(data)


def create_schema(con: sqlite3.Connection) -> None:
    con.execute(
        "CREATE TABLE 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL)"
    )
    for table, _tag, key_type in INDEXES:
        con.execute(
            f"CREATE TABLE '{table}' (key '{key_type}' NOT NULL, hnum INTEGER NOT NULL, "
            "idx INTEGER NOT NULL, FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum))"
        )
        if table not in NO_KEY_INDEX:
            con.execute(f"CREATE INDEX '{table}_key_idx' ON '{table}'(key ASC)")
        if table in HNUM_INDEXED:
            con.execute(f"CREATE INDEX '{table}_hnum_idx' ON '{table}'(hnum ASC)")


def index_keys(header: Header, tag: int, key_type: str) -> list[str | bytes]:
    if key_type == "BLOB":
        value = header.binary(tag)
        return [value] if value else []
    # A name that is not UTF-8 was read with surrogateescape; sqlite's TEXT wants UTF-8.
    return [
        s.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for s in header.strings(tag)
    ]


def database_path(tree: FileTree) -> str:
    """Where the packages' own rpm keeps its database: /usr/lib/sysimage/rpm when they have
    that directory (rpm >= 4.17 distributions), else /var/lib/rpm."""
    for path in DB_PATHS:
        entry = tree.get(path)
        if entry is not None and entry.kind is Kind.DIR:
            return path
    return DB_PATHS[1]


# -- reading an image's database ---------------------------------------------------------


@dataclass(frozen=True)
class InstalledPackage:
    header: Header
    files: tuple[str, ...]  # root-relative paths the header lists


def read_database(tree: FileTree) -> tuple[InstalledPackage, ...]:
    """The packages of the rpmdb.sqlite in `tree`, if it has one (else nothing)."""
    for directory in DB_PATHS:
        entry = tree.lookup(f"{directory}/{DB_NAME}")
        if entry is None or entry.kind is not Kind.FILE or entry.content is None:
            continue
        # sqlite reads files only: the database is copied out of the image's content store.
        with tempfile.TemporaryDirectory(prefix="smith-rpmdb-") as tmp:
            path = os.path.join(tmp, DB_NAME)
            with entry.content.open() as src, open(path, "wb") as out:
                shutil.copyfileobj(src, out)
            return tuple(
                InstalledPackage(p.header, tuple(t for f in p.files if (t := in_tree(tree, f))))
                for p in installed_packages(path, f"/{directory}/{DB_NAME}")
            )
    return ()


def installed_packages(path: str, shown: str) -> Iterable[InstalledPackage]:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            rows = con.execute("SELECT blob FROM Packages ORDER BY hnum").fetchall()
        finally:
            con.close()
    except sqlite3.Error as err:
        raise ImageFormatError(f"{shown} is not a readable rpm database ({err})") from None
    for (blob,) in rows:
        if not isinstance(blob, bytes):
            raise ImageFormatError(f"{shown}: a package header is not a blob")
        header = read_header(io.BytesIO(HEADER_MAGIC + b"\0" * 4 + blob), shown, pad=False)
        yield InstalledPackage(header, header_files(header))


def header_files(header: Header) -> tuple[str, ...]:
    """The paths a header lists, directories left out (they belong to no one package)."""
    dirnames, basenames = header.strings(1118), header.strings(1117)
    indexes, modes = header.ints(1116), header.ints(1030)
    return tuple(
        (dirnames[i] + b).lstrip("/")
        for n, (i, b) in enumerate(zip(indexes, basenames, strict=False))
        if i < len(dirnames) and not (n < len(modes) and stat.S_ISDIR(modes[n]))
    )
