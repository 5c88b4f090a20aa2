"""An Inventory as a CycloneDX 1.5 JSON document.

The image is the metadata component (type container); each package is a component with its
kept files nested inside it (type file, SHA-1 and SHA-256), files no package owns are
top-level file components, and the files a package ships but the image left out are its
`smith:left-out` properties. Deterministic like the SPDX document: the timestamp is
SOURCE_DATE_EPOCH and the serial number is derived from the image manifest's digest.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from smith.oci.image import canonical_json, rfc3339
from smith.sbom.inventory import FileInfo, ImageInfo, Inventory, PackageInfo
from smith.sbom.spdx import spdx_expression

MEDIA_TYPE = "application/vnd.cyclonedx+json"
LEFT_OUT = "smith:left-out"
# A fixed namespace: the serial number is a name-based UUID of the manifest digest.
SERIAL_NAMESPACE = uuid.UUID("6f1c1d8e-5a36-4c1e-9a55-7a1f5d1e0c42")


def cyclonedx_document(inventory: Inventory, image: ImageInfo) -> bytes:
    by_package: dict[str, list[FileInfo]] = {}
    for f in inventory.files:
        by_package.setdefault(f.package, []).append(f)
    left_out = dict(inventory.left_out)
    hexdigest = image.manifest_digest.removeprefix("sha256:")
    components = [
        package_component(p, by_package.get(p.key, []), left_out.get(p.key, ()))
        for p in inventory.packages
    ]
    components += [file_component(f) for f in by_package.get("", [])]
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(SERIAL_NAMESPACE, image.manifest_digest)}",
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(inventory.epoch),
            "tools": {"components": [{"type": "application", "name": "smith"}]},
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": image.name or f"image@{image.manifest_digest}",
                "version": image.manifest_digest,
                "hashes": [{"alg": "SHA-256", "content": hexdigest}],
                "purl": image.purl,
                "properties": [{"name": "smith:platform", "value": str(image.platform)}],
            },
        },
        "components": components,
        "dependencies": [
            {"ref": "image", "dependsOn": [package_ref(p) for p in inventory.packages]}
        ],
    }
    return canonical_json(doc)


def package_ref(p: PackageInfo) -> str:
    return f"package:{p.key}"


def package_component(
    p: PackageInfo, files: Sequence[FileInfo], left_out: Sequence[str]
) -> dict[str, Any]:
    component: dict[str, Any] = {
        "type": "library",
        "bom-ref": package_ref(p),
        "name": p.name,
        "version": p.full_version,
        "purl": p.purl,
    }
    if p.vendor:
        component["supplier"] = {"name": p.vendor}
    if p.license:
        expression = spdx_expression(p.license)
        component["licenses"] = (
            [{"expression": expression}] if expression else [{"license": {"name": p.license}}]
        )
    if p.sha256:
        component["hashes"] = [{"alg": "SHA-256", "content": p.sha256}]
    if p.summary:
        component["description"] = p.summary
    references = [
        {"type": kind, "url": url}
        for kind, url in (
            ("distribution", p.download_url),
            ("website", p.homepage),
            ("other", p.repository_url),
        )
        if url.startswith(("http://", "https://", "ftp://"))
    ]
    if references:
        component["externalReferences"] = references
    properties = [{"name": "smith:arch", "value": p.arch}] if p.arch else []
    if p.source_package:
        properties.append({"name": "smith:source-package", "value": p.source_package})
    properties += [{"name": LEFT_OUT, "value": "/" + path} for path in left_out]
    if properties:
        component["properties"] = properties
    if files:
        component["components"] = [file_component(f) for f in files]
    return component


def file_component(f: FileInfo) -> dict[str, Any]:
    return {
        "type": "file",
        "bom-ref": "file:/" + f.path,
        "name": "/" + f.path,
        "hashes": [{"alg": "SHA-1", "content": f.sha1}, {"alg": "SHA-256", "content": f.sha256}],
    }
