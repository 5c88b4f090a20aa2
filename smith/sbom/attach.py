"""The SBOM (and provenance) of a build or a minimize, as the artifacts the image writer
attaches.

`smith build` knows every package it installed (the RPM file, its repository, its header);
`smith minimize` knows the input image's layers only, so its files are listed without a
package unless the image carries a package database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from smith.oci.referrers import Artifact
from smith.oci.writer import ImageResult
from smith.provenance import MEDIA_TYPE as PROVENANCE_MEDIA_TYPE
from smith.provenance import provenance_document, recipe_inputs
from smith.resolve.fetch import Fetcher
from smith.resolve.packages import fetch_package
from smith.resolve.repo import RepoConfig
from smith.resolve.rpm import (
    ARCH,
    EPOCH,
    NAME,
    PROVIDENAME,
    RELEASE,
    REQUIRENAME,
    SUMMARY,
    VERSION,
    RpmPackage,
    read_rpm,
)
from smith.resolve.rpmheader import Header
from smith.resolve.solver import ResolvedPackage
from smith.sbom import cyclonedx, spdx
from smith.sbom.dpkg import deb_info, os_vendor, read_status
from smith.sbom.formats import SbomFormat
from smith.sbom.inventory import (
    ImageInfo,
    Inventory,
    PackageInfo,
    paths_by_origin,
    take_inventory,
)
from smith.sbom.rpmdb import read_database
from smith.tree import FileTree

# RPM header tags (rpmtag.h) that only the SBOM reads.
VENDOR, LICENSE, URL, SOURCERPM = 1011, 1014, 1020, 1044

Attacher = Callable[[ImageResult], Sequence[Artifact]]


RENDERERS: dict[SbomFormat, tuple[str, Callable[[Inventory, ImageInfo], bytes]]] = {
    SbomFormat.SPDX: (spdx.MEDIA_TYPE, spdx.spdx_document),
    SbomFormat.CYCLONEDX: (cyclonedx.MEDIA_TYPE, cyclonedx.cyclonedx_document),
}


def image_info(result: ImageResult, tag: str) -> ImageInfo:
    manifest = result.manifest
    assert manifest.platform is not None  # the writer always records it
    return ImageInfo(manifest.digest, manifest.size, manifest.media_type, manifest.platform, tag)


def render_sboms(
    inventory: Inventory, image: ImageInfo, formats: Sequence[SbomFormat]
) -> list[Artifact]:
    artifacts = []
    for fmt in sorted(set(formats)):  # a fixed order: the index lists them so
        media_type, render = RENDERERS[fmt]
        artifacts.append(Artifact(media_type, media_type, render(inventory, image)))
    return artifacts


def sbom_artifacts(inventory: Inventory, tag: str, formats: Sequence[SbomFormat]) -> Attacher:
    """The attacher that renders `inventory` in each of `formats` for the image the writer
    has just written."""

    def attach(result: ImageResult) -> Sequence[Artifact]:
        return render_sboms(inventory, image_info(result, tag), formats)

    return attach


def build_referrers(
    image: FileTree,
    full: FileTree,
    resolved: Sequence[ResolvedPackage],
    fetcher: Fetcher,
    repos: Sequence[RepoConfig],
    *,
    recipe_path: str,
    locked: bool,
    epoch: int,
    tag: str,
    sbom: Sequence[SbomFormat],
    provenance: bool,
) -> Attacher | None:
    """What `smith build --sbom/--provenance` attaches to the image it writes: the SBOMs of
    `image`, made from the packages `resolved` unpacked into `full`, and the provenance."""
    if not sbom and not provenance:
        return None
    packages = package_infos(resolved, fetcher, repos)
    owners = {e.path: e.origin for e in image}
    inventory = take_inventory(image, packages, owners, paths_by_origin(full), epoch)
    inputs = recipe_inputs(recipe_path, epoch, locked, packages) if provenance else None

    def attach(result: ImageResult) -> Sequence[Artifact]:
        info = image_info(result, tag)
        artifacts = render_sboms(inventory, info, sbom)
        if inputs is not None:
            document = provenance_document(inputs, info)
            artifacts.append(Artifact(PROVENANCE_MEDIA_TYPE, PROVENANCE_MEDIA_TYPE, document))
        return artifacts

    return attach


def package_infos(
    resolved: Sequence[ResolvedPackage], fetcher: Fetcher, repos: Sequence[RepoConfig]
) -> list[PackageInfo]:
    """What the RPMs of a build say about themselves. They are in the download cache
    already (the build just read them)."""
    baseurls = {r.id: r.baseurl for r in repos}
    packages = []
    for pkg in resolved:
        path = fetch_package(pkg, fetcher, repos)
        packages.append(rpm_info(read_rpm(path), pkg, path, baseurls.get(pkg.repo_id, "")))
    return packages


def rpm_info(rpm: RpmPackage, pkg: ResolvedPackage, path: Path, baseurl: str) -> PackageInfo:
    sha256 = pkg.checksum.hexdigest if pkg.checksum.algo == "sha256" else file_sha256(path)
    return replace(
        header_info(rpm.header), sha256=sha256, download_url=pkg.url, repository_url=baseurl
    )


def header_info(header: Header) -> PackageInfo:
    """What an RPM header says of its package (a package file's, or an rpmdb's)."""
    return PackageInfo(
        kind="rpm",
        name=header.string(NAME),
        version=header.string(VERSION),
        release=header.string(RELEASE),
        epoch=header.integer(EPOCH, 0) or 0,
        arch=header.string(ARCH),
        vendor=header.string(VENDOR),
        license=header.string(LICENSE),
        source_package=header.string(SOURCERPM),
        summary=header.string(SUMMARY),
        homepage=header.string(URL),
    )


def minimize_sbom(
    source: FileTree, image: FileTree, *, epoch: int, tag: str, formats: Sequence[SbomFormat]
) -> Attacher:
    """The SBOM attacher of `smith minimize --sbom`: `image` kept from `source`."""
    return sbom_artifacts(minimize_inventory(source, image, epoch), tag, formats)


def minimize_inventory(source: FileTree, image: FileTree, epoch: int) -> Inventory:
    """The inventory of a minimized image: the packages of the input image's own database
    (rpmdb.sqlite, else dpkg's status and file lists), else its files without a package."""
    packages: list[PackageInfo] = []
    owners: dict[str, str] = {}
    package_paths: dict[str, tuple[str, ...]] = {}
    for found in image_packages(source):
        packages.append(found.info)
        package_paths[found.info.key] = found.files
        for path in found.files:
            owners.setdefault(path, found.info.key)
    return take_inventory(image, packages, owners, package_paths, epoch)


@dataclass(frozen=True)
class ImagePackage:
    """A package of an image's own database: what it is, its files, what it needs and
    offers (capability names: layering orders by them)."""

    info: PackageInfo
    files: tuple[str, ...]
    requires: tuple[str, ...]
    provides: tuple[str, ...]


def image_packages(source: FileTree) -> tuple[ImagePackage, ...]:
    """The packages of the image's rpmdb.sqlite, else of its dpkg status; else none."""
    rpms = tuple(
        ImagePackage(
            header_info(p.header),
            p.files,
            tuple(p.header.strings(REQUIRENAME)),
            (p.header.string(NAME), *p.header.strings(PROVIDENAME)),
        )
        for p in read_database(source)
    )
    if rpms:
        return rpms
    vendor = os_vendor(source)
    return tuple(
        ImagePackage(
            deb_info(p, vendor),
            p.files,
            deb_names(p.field("Pre-Depends"), p.field("Depends")),
            (p.name, *deb_names(p.field("Provides"))),
        )
        for p in read_status(source)
    )


def deb_names(*fields: str) -> tuple[str, ...]:
    """The package names of Depends-style fields (`a (>= 1), b | c:any`: a, b, c)."""
    names = []
    for value in fields:
        for alternative in value.replace("|", ",").split(","):
            if name := alternative.strip().split(" ", 1)[0].split("(", 1)[0].split(":", 1)[0]:
                names.append(name)
    return tuple(names)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
