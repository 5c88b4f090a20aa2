"""The options of `smith build`, apart from the build itself: the command line makes them
and the build cache reads them before anything heavier than this is loaded."""

from __future__ import annotations

from dataclasses import dataclass

from smith.oci.registry_options import RegistryOptions
from smith.sbom.formats import SbomFormat


@dataclass(frozen=True)
class BuildOptions:
    output: str | None = None
    fmt: str | None = None
    tag: str | None = None
    compression: str | None = None
    locked: bool = False
    offline: bool = False
    cache_dir: str | None = None
    keep_going: bool = False
    epoch: int | None = None
    registry: RegistryOptions | None = None  # for a parent named by a registry reference
    sbom: tuple[SbomFormat, ...] = ()  # SBOMs to attach as OCI referrers of the image
    provenance: bool = False  # and an in-toto SLSA provenance statement
    package_db: bool = False  # write the kept packages' rpm database into the image
    arches: tuple[str, ...] = ()  # --arch: instead of the recipe's
    layers: str | None = None  # --layers: single or packages, over the recipe's `layers:`
    layer_budget: int | None = None  # --layer-budget
    build_cache: bool = True  # take an unchanged build from the cache, record a new one
    cache_from: str | None = None  # a registry reference: the build cache machines share
    cache_to: str | None = None  # where to record this build's layers and plan
    share_layers: bool = False  # a fleet: one layer per package its images share (sharing.py)
