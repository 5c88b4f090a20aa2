"""What an SBOM says, before any format: the packages that contribute to an image, every kept
file with its digests and owner, and per package the files that were left out.

Built once from the image's FileTree, then rendered as SPDX or CycloneDX. Every sequence is
sorted here, so the renderers never see an order that depends on the build's history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from packageurl import PackageURL

from smith.oci.image import Platform
from smith.tree import Entry, FileTree, Kind, path_sort_key

READ_SIZE = 1 << 20


@dataclass(frozen=True)
class PackageInfo:
    """One package that contributes a kept file, as its package manager describes it."""

    kind: str  # purl type: "rpm" or "deb"
    name: str
    version: str
    release: str = ""
    epoch: int = 0
    arch: str = ""
    vendor: str = ""
    license: str = ""
    source_package: str = ""  # the source RPM (or Debian source package) it was built from
    sha256: str = ""  # of the package file, when it is known (a build; not an image's db)
    download_url: str = ""
    repository_url: str = ""
    summary: str = ""
    homepage: str = ""

    @property
    def key(self) -> str:
        """The owner string the FileTree's entries carry (the NEVRA for an RPM)."""
        if self.kind == "rpm":
            epoch = f"{self.epoch}:" if self.epoch else ""
            return f"{self.name}-{epoch}{self.version}-{self.release}.{self.arch}"
        return f"{self.name}_{self.full_version}_{self.arch}"

    @property
    def full_version(self) -> str:
        """The version as the package manager prints it (epoch:version-release for rpm)."""
        epoch = f"{self.epoch}:" if self.epoch else ""
        return f"{epoch}{self.version}-{self.release}" if self.release else f"{epoch}{self.version}"

    @property
    def purl(self) -> str:
        qualifiers = {"arch": self.arch} if self.arch else {}
        if self.epoch:
            qualifiers["epoch"] = str(self.epoch)
        version = f"{self.version}-{self.release}" if self.release else self.version
        if self.kind == "deb" and self.epoch:
            version = f"{self.epoch}:{version}"
            qualifiers.pop("epoch")
        namespace = purl_namespace(self.vendor)
        return PackageURL(
            type=self.kind,
            namespace=namespace or None,
            name=self.name,
            version=version,
            qualifiers=qualifiers,
        ).to_string()


def purl_namespace(vendor: str) -> str:
    """The purl namespace of a vendor: its first word in lower case ("Fedora Project" ->
    "fedora"), as the purl spec's rpm examples write it; nothing for an unknown vendor."""
    word = vendor.split()[0].lower() if vendor.split() else ""
    return "".join(c for c in word if c.isalnum() or c in "-._")


@dataclass(frozen=True)
class FileInfo:
    path: str  # root-relative, as in the tree
    sha1: str
    sha256: str
    size: int
    package: str = ""  # the owning package's key, "" when no package is known


@dataclass(frozen=True)
class ImageInfo:
    """The image an SBOM describes: its manifest and platform, and the name it was given."""

    manifest_digest: str
    manifest_size: int
    manifest_media_type: str
    platform: Platform
    name: str = ""  # the tag, if any

    @property
    def repository(self) -> str:
        last = self.name.rsplit("/", 1)[-1]
        return self.name.rsplit(":", 1)[0] if ":" in last else self.name

    @property
    def short_name(self) -> str:
        return (self.repository.rsplit("/", 1)[-1] or "image").lower()

    @property
    def purl(self) -> str:
        """purl's oci type: the last name component, the digest, arch and where it lives."""
        qualifiers = {"arch": self.platform.architecture}
        if "/" in self.repository:
            qualifiers["repository_url"] = self.repository
        return PackageURL(
            type="oci", name=self.short_name, version=self.manifest_digest, qualifiers=qualifiers
        ).to_string()


@dataclass(frozen=True)
class Inventory:
    packages: tuple[PackageInfo, ...]  # sorted by key
    files: tuple[FileInfo, ...]  # sorted by path
    left_out: tuple[tuple[str, tuple[str, ...]], ...]  # package key -> paths not kept
    epoch: int


def take_inventory(
    image: FileTree,
    packages: Iterable[PackageInfo],
    owners: Mapping[str, str],
    package_paths: Mapping[str, Iterable[str]],
    epoch: int,
) -> Inventory:
    """The inventory of `image`, whose path -> package key is `owners` (paths it does not name
    have no known package), where `package_paths` lists every path of each package."""
    known = {p.key: p for p in packages}
    kept_paths = set(image.paths())
    contributing: set[str] = set()
    files: list[FileInfo] = []
    digests: dict[str, tuple[str, str, int]] = {}
    for entry in sorted(image, key=lambda e: path_sort_key(e.path)):
        owner = owners.get(entry.path, "")
        owner = owner if owner in known else ""
        if owner and entry.kind is not Kind.DIR:
            contributing.add(owner)
        summed = file_digests(image, entry, digests)
        if summed is not None:
            sha1, sha256, size = summed
            files.append(FileInfo(entry.path, sha1, sha256, size, owner))
    left_out = []
    for key in sorted(contributing):
        missing = sorted(
            {p for p in package_paths.get(key, ()) if p not in kept_paths}, key=path_sort_key
        )
        if missing:
            left_out.append((key, tuple(missing)))
    return Inventory(
        packages=tuple(known[k] for k in sorted(contributing)),
        files=tuple(files),
        left_out=tuple(left_out),
        epoch=epoch,
    )


def file_digests(
    tree: FileTree, entry: Entry, seen: dict[str, tuple[str, str, int]]
) -> tuple[str, str, int] | None:
    """sha1, sha256 and size of a regular file (or of the file a hard link names); None
    for directories and symlinks, which have no content of their own."""
    if entry.kind is Kind.HARDLINK:
        target = tree.get(entry.target)
        return None if target is None else file_digests(tree, target, seen)
    if entry.kind is not Kind.FILE or entry.content is None:
        return None
    if entry.path not in seen:
        sha1, sha256, size = hashlib.sha1(usedforsecurity=False), hashlib.sha256(), 0
        with entry.content.open() as f:
            while chunk := f.read(READ_SIZE):
                sha1.update(chunk)
                sha256.update(chunk)
                size += len(chunk)
        seen[entry.path] = (sha1.hexdigest(), sha256.hexdigest(), size)
    return seen[entry.path]


def paths_by_origin(tree: FileTree) -> dict[str, list[str]]:
    """Every path of `tree` that is not a directory, by the origin its entry names."""
    out: dict[str, list[str]] = {}
    for entry in tree:
        if entry.kind is not Kind.DIR and entry.origin:
            out.setdefault(entry.origin, []).append(entry.path)
    return out
