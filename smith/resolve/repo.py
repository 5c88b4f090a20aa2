"""Yum repositories: repomd.xml, then primary and filelists, each checked before use.

A repository is named by a `baseurl` (http://, https://, file:// or a plain directory).
Metadata files may be compressed with gzip, xz, zstd or bzip2; they are decompressed here
because libsolv's own reader handles only some of them (and crashes on the rest). The same
holds for updateinfo.xml (advisories), which only `smith outdated` and `smith lock
--update` ask for: a build never downloads it.
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from smith.errors import PackageError
from smith.inflate import open_inflated
from smith.limits import expansion_bound
from smith.resolve.fetch import Checksum, Fetcher, cache_temp, contained_url, join_url

REPO_NS = "{http://linux.duke.edu/metadata/repo}"


@dataclass(frozen=True)
class RepoConfig:
    """One repository as a recipe names it. Lower `priority` wins, as in dnf (default 99)."""

    id: str
    baseurl: str
    priority: int = 99
    gpgcheck: bool = False
    gpgkey: tuple[str, ...] = ()
    named: bool = True  # False: the recipe gave no id or name (`id` is then repoN)

    @property
    def shown(self) -> str:
        """How messages name it: its id, or the URL the recipe wrote when it has none."""
        return repr(self.id) if self.named else self.baseurl


@dataclass(frozen=True)
class MetadataFile:
    type: str
    href: str
    checksum: Checksum
    size: int = 0  # as repomd.xml declares it (0: not declared)


@dataclass(frozen=True)
class Repo:
    """A loaded repository: its config and the decompressed metadata files on disk."""

    config: RepoConfig
    revision: str
    primary: Path
    filelists: Path | None
    keys: tuple[bytes, ...] = field(default=())  # armored OpenPGP keys when gpgcheck is on
    updateinfo: Path | None = None  # only when asked for, and only if the repository has one
    # The sha256 of the repomd.xml it was loaded from ("" for a repository smith made of
    # local files): what the resolution memo (smith/resolution_memo.py) revalidates.
    repomd_sha256: str = ""

    def package_url(self, href: str) -> str:
        return join_url(self.config.baseurl, href)


def parse_repomd(data: bytes, url: str) -> tuple[str, dict[str, MetadataFile]]:
    try:
        root = ET.fromstring(data)  # noqa: S314 - no entities expanded by ElementTree
    except ET.ParseError as err:
        raise PackageError(f"{url} is not valid repomd.xml: {err}") from None
    revision = (root.findtext(f"{REPO_NS}revision") or "").strip()
    files: dict[str, MetadataFile] = {}
    for data_el in root.findall(f"{REPO_NS}data"):
        kind = data_el.get("type", "")
        loc = data_el.find(f"{REPO_NS}location")
        csum = data_el.find(f"{REPO_NS}checksum")
        if loc is None or csum is None or not loc.get("href") or not csum.text:
            raise PackageError(f"{url}: metadata entry {kind!r} lacks a location or checksum")
        href = loc.get("href", "")
        files[kind] = MetadataFile(
            kind,
            href,
            Checksum.parse(csum.get("type", ""), csum.text, where=url),
            declared_size(data_el.findtext(f"{REPO_NS}size"), kind, url),
        )
    if "primary" not in files:
        raise PackageError(f"{url} lists no primary metadata")
    return revision, files


def declared_size(text: str | None, kind: str, url: str) -> int:
    if text is None or not text.strip():
        return 0
    if not text.strip().isdigit():  # "Infinity", "-1", "1e400": no size of a file
        raise PackageError(f"{url}: metadata entry {kind!r} has the size {text.strip()[:40]!r}")
    return int(text)


def decompress_metadata(packed: Path, name: str, dest: Path) -> None:
    """Decompress `packed` into `dest`, by magic bytes (a file's name may lie about its
    compression), within the expansion limits: a bomb stops at its bound."""
    bound, limit = expansion_bound(packed.stat().st_size)
    with cache_temp(dest) as tmp:
        with open(packed, "rb") as src, open(tmp, "wb") as out:
            inflated = open_inflated(src, bound=bound, limit=limit, what=name)
            while chunk := inflated.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, dest)


def load_repo(config: RepoConfig, fetcher: Fetcher, *, updateinfo: bool = False) -> Repo:
    """Fetch and check a repository's metadata; keep the decompressed XML in the cache."""
    url = join_url(config.baseurl, "repodata/repomd.xml")
    repomd = fetcher.fetch_revalidated(url)
    revision, files = parse_repomd(repomd, url)
    out: dict[str, Path] = {}
    for kind in ("primary", "filelists", *(("updateinfo",) if updateinfo else ())):
        meta = files.get(kind)
        if meta is None:
            continue
        meta_url = contained_url(config.baseurl, meta.href, url)
        packed = fetcher.fetch(meta_url, meta.checksum, meta.size)
        plain = fetcher.cache_dir / "metadata" / f"{meta.checksum.hexdigest}.xml"
        if not plain.exists():
            plain.parent.mkdir(parents=True, exist_ok=True)
            shown = f"{meta_url} of repository {config.shown}" if kind == "updateinfo" else meta_url
            decompress_metadata(packed, shown, plain)
        out[kind] = plain
    keys = tuple(_load_key(k, fetcher, config) for k in config.gpgkey) if config.gpgcheck else ()
    if config.gpgcheck and not keys:
        raise PackageError(f"repository {config.shown} has gpgcheck on but no gpgkey")
    return Repo(
        config,
        revision,
        out["primary"],
        out.get("filelists"),
        keys,
        out.get("updateinfo"),
        hashlib.sha256(repomd).hexdigest(),
    )


def _load_key(url: str, fetcher: Fetcher, config: RepoConfig) -> bytes:
    data = fetcher.fetch_bytes(url)
    armored = b"-----BEGIN PGP PUBLIC KEY BLOCK-----" in data
    if not armored and not (data[:1] and data[0] & 0x80):
        raise PackageError(f"gpgkey {url} of repository {config.shown} is not an OpenPGP key")
    return data


def load_repos(
    configs: Iterable[RepoConfig],
    fetcher: Fetcher,
    *,
    updateinfo: bool = False,
    loaded: dict[RepoConfig, Repo] | None = None,
) -> tuple[Repo, ...]:
    """`loaded` keeps repositories between calls (`smith outdated` over recipes that share
    them): each repomd.xml is then fetched once per run, not once per recipe."""
    memo: dict[RepoConfig, Repo] = {} if loaded is None else loaded
    repos = tuple(
        memo[c] if c in memo else memo.setdefault(c, load_repo(c, fetcher, updateinfo=updateinfo))
        for c in configs
    )
    ids = [r.config.id for r in repos]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise PackageError(f"repository id {dup[0]!r} is used twice")
    return repos


def repo_by_id(repos: Sequence[Repo], repo_id: str) -> Repo:
    for r in repos:
        if r.config.id == repo_id:
            return r
    raise PackageError(f"no repository with id {repo_id!r}")
