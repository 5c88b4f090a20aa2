"""Build provenance: an in-toto Statement v1 whose predicate is SLSA Provenance v1.

The subject is the image manifest; the build definition names the recipe by its sha256, the
epoch, and every resolved package (by purl, with its sha256) as a resolved dependency; the
builder is smith with its version. No start or finish time is recorded: the statement is
the same bytes for the same inputs, like everything else smith writes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from smith import __version__
from smith.errors import SmithError
from smith.oci.image import canonical_json
from smith.sbom.inventory import ImageInfo, PackageInfo

MEDIA_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:smith:build:recipe:v1"
BUILDER_ID = "urn:smith"


@dataclass(frozen=True)
class BuildInputs:
    recipe_name: str  # the recipe file's name (not its path: that is the host's business)
    recipe_sha256: str
    epoch: int
    locked: bool
    packages: tuple[PackageInfo, ...]  # in resolution order


def recipe_inputs(
    recipe_path: str, epoch: int, locked: bool, packages: Sequence[PackageInfo]
) -> BuildInputs:
    try:
        with open(recipe_path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as err:
        raise SmithError(f"cannot read the recipe {recipe_path}: {err.strerror}") from None
    return BuildInputs(os.path.basename(recipe_path), digest, epoch, locked, tuple(packages))


def provenance_document(inputs: BuildInputs, image: ImageInfo) -> bytes:
    dependencies = []
    for p in inputs.packages:
        dependency: dict[str, Any] = {"uri": p.purl, "name": p.key}
        if p.sha256:
            dependency["digest"] = {"sha256": p.sha256}
        if p.download_url.startswith(("http://", "https://")):
            dependency["downloadLocation"] = p.download_url
        dependencies.append(dependency)
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": image.name or image.short_name,
                "digest": {"sha256": image.manifest_digest.removeprefix("sha256:")},
            }
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "recipe": {
                        "name": inputs.recipe_name,
                        "digest": {"sha256": inputs.recipe_sha256},
                    },
                    "locked": inputs.locked,
                    "platform": str(image.platform),
                },
                "internalParameters": {"SOURCE_DATE_EPOCH": inputs.epoch},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"smith": __version__}},
            },
        },
    }
    return canonical_json(statement)
