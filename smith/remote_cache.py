"""`--cache-from REF` and `--cache-to REF`: a build's plan and layers in a registry.

On a miss of the local build cache, a build with --cache-from looks its build-inputs key
up in the registry's cache map (smith/oci/cache_artifact.py). A plan whose every layer
the map has is an image written without extracting a package: the layers come from the
registry (each checked against its digest), the small blobs from the plan. Otherwise the
build runs, and --cache-to records its layers (by layer key) and its plan for the next
machine. A registry that cannot be reached, or a cache artifact that cannot be trusted,
is warned about and the build goes on without it: a cache only ever costs speed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from smith.errors import SmithError

if TYPE_CHECKING:
    from smith.build import BuildResult
    from smith.build_options import BuildOptions
    from smith.buildcache import LayoutSettings
    from smith.buildkey import PackagePin
    from smith.oci.cache_artifact import CacheMap
    from smith.oci.registry import RegistryClient
    from smith.partial import Prior

log = logging.getLogger(__name__)


def cache_client(ref_text: str, options: BuildOptions, *, push: bool) -> RegistryClient | None:
    from smith.oci.cache_artifact import open_client
    from smith.oci.reference import parse_reference
    from smith.oci.registry_options import RegistryOptions

    flag = "--cache-to" if push else "--cache-from"
    try:
        return open_client(
            parse_reference(ref_text), options.registry or RegistryOptions(), push=push
        )
    except SmithError as err:
        log.warning("%s %s: %s: building without it", flag, ref_text, err)
        return None


def read_remote(
    options: BuildOptions, memo: dict[str, Any]
) -> tuple[RegistryClient | None, CacheMap | None]:
    """--cache-from's client and map, read once per build (`memo`): a refusal is warned
    about once, and the full and partial lookups see one map."""
    from smith.oci.cache_artifact import read_cache

    if "map" not in memo:
        assert options.cache_from is not None
        client = cache_client(options.cache_from, options, push=False)
        memo["client"], memo["map"] = client, read_cache(client) if client is not None else None
    return memo["client"], memo["map"]


def restore_remote(
    options: BuildOptions, key: str, output: str, layout: LayoutSettings, memo: dict[str, Any]
) -> tuple[BuildResult, tuple[str, ...]] | None:
    """The build of `key` written from the registry cache (and its layer keys), or None."""
    from smith.buildcache import cached_result
    from smith.oci.cache_artifact import CacheRefused, pull_layers
    from smith.oci.image import sha256_digest
    from smith.oci.layout import OutputFormat, save_layout, staging_layout
    from smith.oci.writer import OCI_LAYOUT

    client, cache = read_remote(options, memo)
    if client is None or cache is None:
        return None
    plan = cache.plans.get(key)
    if plan is None:
        log.info("%s: no plan for this build (%s)", client.ref, key[:12])
        return None
    missing = [k for k in plan.layers if k not in cache.layers]
    if missing:
        # The packages of a missing layer are not extracted alone (yet): the whole build runs.
        log.info("%s: %d layers of the plan are not in the cache", client.ref, len(missing))
        return None
    layers = [cache.layers[k] for k in plan.layers]
    try:
        result = cached_result(output, {"result": plan.result})
        if result.image.layers != tuple(layers) or sha256_digest(plan.index) != result.image.index:
            raise CacheRefused("the plan's image does not match its layers or index")
        with staging_layout(output) as store:
            for data in plan.blobs.values():
                store.add_bytes(data)
            pulled = pull_layers(client, store, layers)
            with open(os.path.join(store.root, "index.json"), "wb") as f:
                f.write(plan.index)
            with open(os.path.join(store.root, "oci-layout"), "wb") as f:
                f.write(OCI_LAYOUT)
            for digest in (result.image.config.digest, result.image.manifest.digest):
                if not store.has(digest):
                    raise CacheRefused(f"the plan has no blob {digest[:19]}")
            save_layout(
                store,
                result.image,
                output,
                OutputFormat(layout.fmt),
                gz=layout.gz,
                tag=layout.tag,
                epoch=layout.epoch,
            )
    except (CacheRefused, SmithError, KeyError, TypeError, ValueError) as err:
        log.warning("%s: build cache refused (%s): building without it", client.ref, err)
        return None
    log.info("%s: written from the registry cache %s", output, client.ref)
    stats = {
        "build": "miss",
        "registry": "hit",
        "layers_from_registry": len(layers),
        "layer_bytes_pulled": pulled,
        "packages_extracted": 0,
    }
    return replace(result, cache=stats), plan.layers


def save_remote(
    options: BuildOptions,
    key: str,
    result: BuildResult,
    keys: Sequence[str],
    partial: Mapping[str, Any] | None = None,
) -> Mapping[str, int]:
    """Record the build under `key` and its layers by their keys: what it uploaded.
    `partial`: the build's family, listing and layer records, for a partial hit."""
    from smith.buildcache import result_json
    from smith.limits import DOCUMENT_BYTES
    from smith.oci.cache_artifact import CacheMap, Plan, read_cache, write_cache
    from smith.oci.reading import unpacked

    assert options.cache_to is not None
    client = cache_client(options.cache_to, options, push=True)
    if client is None:
        return {}
    image = result.image
    if len(keys) != len(image.layers):
        log.warning(
            "%s: %d layer keys for %d layers: not recorded",
            client.ref,
            len(keys),
            len(image.layers),
        )
        return {}
    cache = read_cache(client) or CacheMap()
    layer_digests = {layer.descriptor.digest for layer in image.layers}
    try:
        with unpacked(result.output) as root:
            blobs_dir = os.path.join(root, "blobs", "sha256")
            small = {}
            for name in sorted(os.listdir(blobs_dir)):
                digest = "sha256:" + name
                if digest not in layer_digests:
                    with open(os.path.join(blobs_dir, name), "rb") as f:
                        small[digest] = f.read()
            with open(os.path.join(root, "index.json"), "rb") as f:
                index = f.read()
            report = json.loads(json.dumps(result_json(result)))
            plan = Plan(tuple(keys), small, index, report)
            families = {}
            if partial is not None and partial.get("listing") is not None:
                records = tuple(partial["records"])
                plan = replace(plan, listing=partial["listing"], records=records)
                families[partial["family"]] = key
            cache.layers.update(zip(keys, image.layers, strict=True))
            cache.plans[key] = plan
            cache.families.update(families)
            if len(cache.to_bytes()) > DOCUMENT_BYTES.count():
                # Full: this build's plan and layers start a new map (the old ones age out).
                layers = dict(zip(keys, image.layers, strict=True))
                cache = CacheMap(layers, {key: plan}, families)
                if len(cache.to_bytes()) > DOCUMENT_BYTES.count():
                    # Its listing alone is too big for a map: recorded for full hits only.
                    log.info("%s: the build's listing is too big to share", client.ref)
                    plan = replace(plan, listing=None, records=())
                    cache = CacheMap(layers, {key: plan})
            paths = {d: os.path.join(blobs_dir, d[7:]) for d in layer_digests}
            uploaded, skipped = write_cache(client, cache, paths)
    except SmithError as err:
        log.warning("--cache-to %s: %s: the build cache is not recorded", options.cache_to, err)
        return {}
    return {"cache_bytes_uploaded": uploaded, "cache_blobs_skipped": skipped}


def remote_prior(
    options: BuildOptions,
    family: str,
    pins: Sequence[PackagePin],
    cache_dir: str | os.PathLike[str],
    layout: LayoutSettings,
    memo: dict[str, Any],
) -> Prior | None:
    """The registry's latest build of `family`, with the layers whose packages did not
    change pulled (each checked against its digest, its diff_id and its key) into the
    layer cache and their files into the content store; None when there is none."""
    import tempfile

    from smith.buildcache import kept_owners
    from smith.oci.blobs import BlobStore
    from smith.oci.cache_artifact import CacheRefused, pull_layers
    from smith.oci.compress import parse_compression
    from smith.oci.layer_cache import LayerCache, layer_key
    from smith.partial import NotReusable, Prior, unpack_layer
    from smith.resolve.store import ContentStore

    client, cache = read_remote(options, memo)
    if client is None or cache is None:
        return None
    plan = cache.plans.get(cache.families.get(family, ""))
    if plan is None or plan.listing is None:
        log.info("%s: no earlier build of this recipe", client.ref)
        return None
    current = set(pins)
    unchanged = {nevra for nevra, pin in plan.listing.packages if pin in current}
    store = ContentStore(os.path.join(cache_dir, "content"))
    layer_cache = LayerCache(os.fspath(cache_dir))
    for data in plan.listing.inline.values():  # checked against their digests when read
        store.put_bytes(data)
    compression = parse_compression(layout.compression)
    pulled = 0
    try:
        with tempfile.TemporaryDirectory(prefix="smith-cache-layers-") as tmp:
            blobs = BlobStore(tmp)
            for record in plan.records:
                layer = cache.layers.get(record["key"])
                packages = set(record["packages"])
                if layer is None or not packages & unchanged:
                    continue  # it holds no file of an unchanged package
                pulled += pull_layers(client, blobs, [layer])
                path = blobs.path(layer.descriptor.digest)
                tree, diff_id = unpack_layer(
                    path, store, f"{client.ref}: layer {layer.descriptor.digest[:19]}"
                )
                if (
                    diff_id != layer.diff_id
                    or layer_key(tree, compression, layout.epoch) != record["key"]
                ):
                    raise CacheRefused(f"the layer {layer.descriptor.digest[:19]} is not its key's")
                layer_cache.add(record["key"], layer, path)
    except (CacheRefused, NotReusable, SmithError) as err:
        log.warning("%s: build cache refused (%s): building without it", client.ref, err)
        return None
    log.info("%s: %d layer bytes pulled for a partial hit", client.ref, pulled)
    return Prior(
        plan.listing,
        kept_owners(plan.result["owners"]),
        frozenset(plan.layers),
        str(client.ref),
        pulled,
    )
