"""An Inventory as an SPDX 2.3 JSON document.

The image is a package (purpose CONTAINER) that CONTAINS each contributing package; each
package CONTAINS its kept files; a file no package owns is CONTAINED by the image itself.
The files a package ships but the image left out are named in an annotation of that
package, so a scanner or a VEX author can tell a removed file from a shipped one.

Deterministic: `created` is SOURCE_DATE_EPOCH, the namespace is derived from the image
manifest's digest, identifiers are positions in sorted lists, and the creator names no
version (a tool version must not change a hashed byte).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from smith.oci.image import canonical_json, rfc3339
from smith.sbom.inventory import FileInfo, ImageInfo, Inventory, PackageInfo

MEDIA_TYPE = "application/spdx+json"
CREATOR = "Tool: smith"
NOASSERTION = "NOASSERTION"
LEFT_OUT_PREFIX = "smith:left-out "  # + a JSON list of "/path" strings
NOT_ID = re.compile(r"[^A-Za-z0-9.-]+")
# SPDX 2.3 §7.7 takes a URL whose host is a DNS name ending in a 2-5 letter label: a
# repository served from an address (127.0.0.1) or a file path has no download location.
DOWNLOAD_URL = re.compile(
    r"^(https?|ftp)://[a-z0-9]+([-.][a-z0-9]+)*\.[a-z]{2,5}(:[0-9]{1,5})?(/.*)?$", re.IGNORECASE
)


def spdx_document(inventory: Inventory, image: ImageInfo) -> bytes:
    created = rfc3339(inventory.epoch)
    hexdigest = image.manifest_digest.removeprefix("sha256:")
    name = image.name or f"image@{image.manifest_digest}"
    package_ids = {
        p.key: f"SPDXRef-Package-{i}-{spdx_id_part(p.name)}"
        for i, p in enumerate(inventory.packages)
    }
    file_ids = [f"SPDXRef-File-{i}" for i in range(len(inventory.files))]
    extracted: dict[str, str] = {}  # license text of the RPM -> LicenseRef id

    by_package: dict[str, list[tuple[str, FileInfo]]] = {}
    for fid, f in zip(file_ids, inventory.files, strict=True):
        by_package.setdefault(f.package, []).append((fid, f))
    left_out = dict(inventory.left_out)

    image_files = by_package.get("", [])
    packages = [image_package(image, hexdigest, image_files)]
    for p in inventory.packages:
        packages.append(
            package_element(
                p,
                package_ids[p.key],
                by_package.get(p.key, []),
                left_out.get(p.key, ()),
                created,
                extracted,
            )
        )
    relationships = [relationship("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image")]
    relationships += [
        relationship("SPDXRef-Image", "CONTAINS", package_ids[p.key]) for p in inventory.packages
    ]
    for owner, members in sorted(by_package.items()):
        parent = package_ids[owner] if owner else "SPDXRef-Image"
        relationships += [relationship(parent, "CONTAINS", fid) for fid, _ in members]
    doc: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"https://spdx.org/spdxdocs/smith-{hexdigest}",
        "creationInfo": {"created": created, "creators": [CREATOR]},
        "packages": packages,
        "files": [file_element(fid, f) for fid, f in zip(file_ids, inventory.files, strict=True)],
        "relationships": relationships,
    }
    if extracted:
        doc["hasExtractedLicensingInfos"] = [
            {"licenseId": lid, "extractedText": text, "name": text}
            for text, lid in sorted(extracted.items(), key=lambda item: item[1])
        ]
    return canonical_json(doc)


def image_package(
    image: ImageInfo, hexdigest: str, files: Sequence[tuple[str, FileInfo]]
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "SPDXID": "SPDXRef-Image",
        "name": image.name or image.short_name,
        "versionInfo": image.manifest_digest,
        "primaryPackagePurpose": "CONTAINER",
        "downloadLocation": NOASSERTION,
        "checksums": [{"algorithm": "SHA256", "checksumValue": hexdigest}],
        "description": f"OCI image manifest ({image.manifest_media_type}, "
        f"{image.manifest_size} bytes) for platform {image.platform}",
        "externalRefs": [purl_ref(image.purl)],
        "filesAnalyzed": bool(files),
    }
    if files:
        element["packageVerificationCode"] = verification_code(files)
    return element


def package_element(
    p: PackageInfo,
    spdx_id: str,
    files: Sequence[tuple[str, FileInfo]],
    left_out: Sequence[str],
    created: str,
    extracted: dict[str, str],
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "SPDXID": spdx_id,
        "name": p.name,
        "versionInfo": p.full_version,
        "supplier": f"Organization: {p.vendor}" if p.vendor else NOASSERTION,
        "downloadLocation": p.download_url if is_download_location(p.download_url) else NOASSERTION,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": license_field(p.license, extracted),
        "copyrightText": NOASSERTION,
        "externalRefs": [purl_ref(p.purl)]
        + (
            [
                {
                    "referenceCategory": "OTHER",
                    "referenceType": "repository",
                    "referenceLocator": p.repository_url,
                }
            ]
            if is_url(p.repository_url)
            else []
        ),
        "primaryPackagePurpose": "LIBRARY" if p.kind else "OTHER",
        "filesAnalyzed": bool(files),
    }
    if p.sha256:
        element["checksums"] = [{"algorithm": "SHA256", "checksumValue": p.sha256}]
    if p.kind == "rpm":
        element["comment"] = f"NEVRA {p.key}"  # what rpm -q prints, epoch included
    if p.summary:
        element["summary"] = p.summary
    if is_url(p.homepage):
        element["homepage"] = p.homepage
    notes = [f"arch {p.arch}"] if p.arch else []
    if p.source_package:
        notes.append(f"built from source package {p.source_package}")
    if notes:
        element["sourceInfo"] = "; ".join(notes)
    if files:
        element["packageVerificationCode"] = verification_code(files)
    if left_out:
        element["annotations"] = [
            {
                "annotationType": "OTHER",
                "annotator": CREATOR,
                "annotationDate": created,
                "comment": LEFT_OUT_PREFIX
                + json.dumps(["/" + path for path in left_out], ensure_ascii=False),
            }
        ]
    return element


def file_element(spdx_id: str, f: FileInfo) -> dict[str, Any]:
    return {
        "SPDXID": spdx_id,
        "fileName": "./" + f.path,
        "checksums": [
            {"algorithm": "SHA1", "checksumValue": f.sha1},
            {"algorithm": "SHA256", "checksumValue": f.sha256},
        ],
    }


def relationship(source: str, kind: str, target: str) -> dict[str, str]:
    return {
        "spdxElementId": source,
        "relationshipType": kind,
        "relatedSpdxElement": target,
    }


def purl_ref(purl: str) -> dict[str, str]:
    return {
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": purl,
    }


def verification_code(files: Sequence[tuple[str, FileInfo]]) -> dict[str, str]:
    """SPDX 2.3 §7.9: sha1 of the sorted, concatenated sha1s of the package's files."""
    joined = "".join(sorted(f.sha1 for _, f in files))
    return {
        "packageVerificationCodeValue": hashlib.sha1(
            joined.encode(), usedforsecurity=False
        ).hexdigest()
    }


def license_field(text: str, extracted: dict[str, str]) -> str:
    """The package's license as an SPDX expression: as it is when it is one (Fedora's
    packages use SPDX identifiers), else a LicenseRef carrying the text verbatim."""
    if not text:
        return NOASSERTION
    normalized = spdx_expression(text)
    if normalized:
        return normalized
    if text not in extracted:
        extracted[text] = f"LicenseRef-{len(extracted)}-{spdx_id_part(text)}"
    return extracted[text]


def spdx_expression(text: str) -> str:
    """`text` normalised if it is a valid SPDX license expression, else ""."""
    info = _licensing().validate(text)
    return "" if info.errors or not info.normalized_expression else str(info.normalized_expression)


@cache
def _licensing() -> Any:
    # Loading the SPDX license list takes a moment: only when a document is written.
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


def spdx_id_part(text: str) -> str:
    return NOT_ID.sub("-", text).strip("-")[:64] or "x"


def is_download_location(value: str) -> bool:
    return bool(DOWNLOAD_URL.match(value)) and not any(c.isspace() for c in value)


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://", "ftp://"))
