"""The local build cache: from a build-inputs key (smith/buildkey.py) to the finished output.

A build that validated and wrote its output records, under its key, the output's files
(each stored once, by sha256, in CACHE/builds/blobs) and what the build reported. A later
build with the same key copies those files into place instead of extracting packages,
walking the closure and compressing: same inputs, same bytes, so the copy is the build.

Every file is hashed as it is copied out and the output appears only when all of them
matched (smith/atomic.py): a damaged entry is removed and the build runs as if it were not
there, never used. Entries and blobs are written under temporary names and renamed, the
entry last (it vouches for its blobs).

Only builds whose bytes the key covers are recorded: not a `parent` image (its layers are
read from elsewhere), not an image `package:`, not several platforms at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from smith.atomic import atomic_path, remove_path
from smith.buildkey import BuildInputs, PackagePin, canonical
from smith.cache_prune import cache_lock
from smith.leftovers import sweep

if TYPE_CHECKING:
    from smith.build import BuildResult
    from smith.build_options import BuildOptions
    from smith.partial import Listing, Prior
    from smith.recipe import Recipe
    from smith.resolve.solver import ResolvedPackage
    from smith.resolve.store import ContentStore
    from smith.tree import FileTree

log = logging.getLogger(__name__)

ENTRY_VERSION = 2  # 2: blobs in a ContentStore (sha256/xx/digest)
ENTRY_BYTES = 64 << 20  # an entry lists paths and reasons: far below this
COPY_CHUNK = 1 << 20


class DamagedEntry(Exception):
    """A cached file whose bytes are not the ones the entry recorded."""


def pins_of(packages: Sequence[ResolvedPackage]) -> tuple[PackagePin, ...]:
    return tuple(
        PackagePin(p.name, p.epoch, p.version, p.release, p.arch, p.checksum.hexdigest)
        if p.checksum.algo == "sha256"
        # Not pinned by sha256 (a fresh resolution from a sha1 repository): the repository's
        # own checksum names the file as surely, in another algorithm.
        else PackagePin(
            p.name,
            p.epoch,
            p.version,
            p.release,
            p.arch,
            p.checksum.algo + ":" + p.checksum.hexdigest,
        )
        for p in packages
    )


def lock_pins(lock: bytes) -> tuple[PackagePin, ...] | None:
    """The packages of smith.lock's bytes, in the order a build installs them, or None
    when it is not one (the build then reads it and says why)."""
    try:
        doc = json.loads(lock)
        return tuple(
            PackagePin(p["name"], p["epoch"], p["version"], p["release"], p["arch"], p["sha256"])
            for p in doc["packages"]
        )
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def key_settings(options: BuildOptions, output_format: object) -> dict[str, object]:
    """The options of a build that decide its bytes, as the key holds them. The output's
    name does not (only the format it asks for); --offline and the cache dir do not."""
    from smith.buildkey import build_settings
    from smith.oci.compress import Compression, compressor_info

    compressors = {c.value: info.annotations() for c in Compression if (info := compressor_info(c))}
    values = {
        "format": output_format,
        "fmt": options.fmt,
        "tag": options.tag,
        "compression": options.compression,
        "epoch": options.epoch,
        "locked": options.locked,
        "keep_going": options.keep_going,
        "sbom": [str(s) for s in options.sbom],
        "provenance": options.provenance,
        "package_db": options.package_db,
        "arches": list(options.arches),
        "layers": options.layers,
        "layer_budget": options.layer_budget,
    }
    return build_settings(values, compressors)


@dataclass(frozen=True)
class CachedBuild:
    """What `smith build` reports of a build it took from the cache (as of a BuildResult)."""

    output: str
    manifest: str
    kept: tuple[str, ...]
    owners: Mapping[str, str]
    reasons: Mapping[str, str]
    packages: tuple[str, ...]
    document: Mapping[str, Any]  # the --json summary with --explain, as first written
    cache: Mapping[str, object] = field(
        default_factory=lambda: {"build": "hit", "packages_extracted": 0}
    )

    @property
    def image_bytes(self) -> int:
        from smith.result_json import output_size

        return output_size(self.output)

    def why(self, path: str) -> str:
        return self.reasons[path]

    def summary(self, explain: bool = False) -> dict[str, Any]:
        doc = {**self.document, "output": self.output, "size": self.image_bytes}
        if not explain:
            doc.pop("kept", None)
        return doc


class BuildCache:
    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.cache_dir = os.fspath(cache_dir)
        self.root = os.path.join(self.cache_dir, "builds")
        self._store: ContentStore | None = None

    @property
    def store(self) -> ContentStore:
        """The output files, by sha256: the content store the packages' files live in."""
        if self._store is None:
            from smith.resolve.store import ContentStore

            self._store = ContentStore(os.path.join(self.root, "blobs"))
        return self._store

    def entry_path(self, key: str) -> str:
        return os.path.join(self.root, key + ".json")

    def load(self, key: str) -> dict[str, Any] | None:
        path = self.entry_path(key)
        try:
            with open(path, "rb") as f:
                data = f.read(ENTRY_BYTES + 1)
            doc = json.loads(data) if len(data) <= ENTRY_BYTES else None
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError):
            doc = None
        if (
            not isinstance(doc, dict)
            or doc.get("version") != ENTRY_VERSION
            or doc.get("key") != key
        ):
            log.warning("the build cache entry %s is damaged: building again", path)
            remove_path(path)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # used now: `smith cache prune` evicts the least recently used
        return doc

    def restore(self, key: str, output: str | None) -> tuple[str, dict[str, Any]] | None:
        """Write the output of `key` to `output` (None: where the recipe named it) from
        the cache: (the output, the entry), or None on a miss or a damaged entry."""
        with cache_lock(self.cache_dir):  # not pruned while it is copied out
            return self._restore(key, output)

    def _restore(self, key: str, output: str | None) -> tuple[str, dict[str, Any]] | None:
        doc = self.load(key)
        if doc is None:
            return None
        target = output if output is not None else doc.get("output")
        try:
            files = doc["files"]
            if not isinstance(target, str) or not isinstance(files, list):
                raise DamagedEntry("no output or files")
            self._copy_out(files, target)
        except (DamagedEntry, KeyError, TypeError, ValueError) as err:
            log.warning("the build cache entry %s is damaged (%s): building again", key, err)
            remove_path(self.entry_path(key))
            return None
        log.info("%s: taken from the build cache (%s)", target, key[:12])
        return target, doc

    def _copy_out(self, files: list[Any], output: str) -> None:
        if len(files) == 1 and files[0][0] == "":
            _path, _kind, mode, digest = files[0]
            with atomic_path(output, mode=int(mode)) as tmp:
                self._copy_blob(str(digest), tmp)
            return
        with atomic_path(output, directory=True) as tmp:
            for rel, kind, mode, digest in files:
                path = os.path.join(tmp, checked_relative(rel))
                if kind == "dir":
                    os.makedirs(path, exist_ok=True)
                elif kind == "file":
                    self._copy_blob(str(digest), path)
                else:
                    raise DamagedEntry(f"kind {kind!r}")
                os.chmod(path, int(mode) & 0o7777)

    def _copy_blob(self, digest: str, dest: str) -> None:
        checked_digest(digest)
        hasher = hashlib.sha256()
        blob = self.store.path_for(digest)
        try:
            with open(blob, "rb") as src, open(dest, "wb") as dst:
                while chunk := src.read(COPY_CHUNK):
                    hasher.update(chunk)
                    dst.write(chunk)
        except FileNotFoundError:
            raise DamagedEntry(f"blob {digest[:12]} is missing") from None
        if hasher.hexdigest() != digest:
            remove_path(str(blob))
            raise DamagedEntry(f"blob {digest[:12]} does not match its digest")

    def save(
        self,
        key: str,
        output: str,
        recipe_output: str | None,
        result: BuildResult,
        layer_keys: Sequence[str] = (),
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Record `output` (just written by a build) under `key`; `extra`: what a partial
        hit reads (smith/partial.py). A cache that cannot be written costs only speed: the
        build succeeded, so nothing here fails it."""
        try:
            with cache_lock(self.cache_dir):
                self._save(key, output, recipe_output, result, layer_keys, extra)
        except OSError as err:
            log.warning("cannot write the build cache in %s: %s", self.root, err.strerror)

    def _save(
        self,
        key: str,
        output: str,
        recipe_output: str | None,
        result: BuildResult,
        layer_keys: Sequence[str],
        extra: Mapping[str, object] | None,
    ) -> None:
        os.makedirs(self.root, exist_ok=True)
        sweep(self.root)
        files = self._store_output(output)
        doc = {
            "version": ENTRY_VERSION,
            "key": key,
            "output": recipe_output,
            "files": files,
            "result": result_json(result),
            "report": report_json(result),
            "layer_keys": list(layer_keys),  # for --cache-to, when taken from here
            **(extra or {}),
        }
        self._write(self.entry_path(key), canonical(doc))

    def _store_output(self, output: str) -> list[list[object]]:
        if not os.path.isdir(output):
            return [["", "file", stat.S_IMODE(os.stat(output).st_mode), self._store_blob(output)]]
        rows: list[list[object]] = []
        for top, dirs, names in os.walk(output):
            dirs.sort()
            for name in [*sorted(dirs), *sorted(names)]:
                path = os.path.join(top, name)
                info = os.lstat(path)
                rel = os.path.relpath(path, output)
                mode = stat.S_IMODE(info.st_mode)
                if stat.S_ISDIR(info.st_mode):
                    rows.append([rel, "dir", mode, ""])
                elif stat.S_ISREG(info.st_mode):
                    rows.append(
                        [rel, "file", mode, self._stored_blob(rel) or self._store_blob(path)]
                    )
                else:
                    raise OSError(0, f"{path} is neither a file nor a directory")
        rows.sort(key=lambda row: (str(row[0]).count("/"), str(row[0])))
        return rows

    def _stored_blob(self, rel: str) -> str:
        """The digest of a layout blob the store holds already (its name is its digest: the
        writer just wrote it from a checked blob), so that a rebuild does not hash and copy
        its unchanged layers again; "" for any other file. A restore still checks every
        byte it copies out."""
        head, _, name = rel.rpartition("/")
        if head != "blobs/sha256" or len(name) != 64 or name.strip("0123456789abcdef"):
            return ""
        return name if os.path.exists(self.store.path_for(name)) else ""

    def _store_blob(self, path: str) -> str:
        def copy(sink: Callable[[bytes], object]) -> None:
            with open(path, "rb") as src:
                while chunk := src.read(COPY_CHUNK):
                    sink(chunk)

        stored = self.store.put_stream(copy).sha256
        assert stored is not None  # put_stream always knows the digest of what it stored
        return stored

    def family_path(self, family: str) -> str:
        return os.path.join(self.root, "families", family + ".json")

    def save_family(self, family: str, key: str) -> None:
        """The latest build of a family (partial.family_key), for a partial hit."""
        try:
            os.makedirs(os.path.dirname(self.family_path(family)), exist_ok=True)
            self._write(self.family_path(family), canonical({"key": key}))
        except OSError as err:
            log.warning("cannot write the build cache in %s: %s", self.root, err.strerror)

    def load_prior(self, family: str) -> Prior | None:
        """The latest build of `family` as a partial hit starts from, or None."""
        with cache_lock(self.cache_dir):
            return self._load_prior(family)

    def _load_prior(self, family: str) -> Prior | None:
        from smith.partial import NotReusable, Prior

        try:
            with open(self.family_path(family), "rb") as f:
                key = json.loads(f.read(4096))["key"]
            doc = self.load(str(key)) if isinstance(key, str) and key.isalnum() else None
            listing = self.listing_of(doc) if doc is not None else None
            if doc is None or listing is None:
                return None
            owners, keys = doc["result"]["owners"], doc["layer_keys"]
            return Prior(listing, kept_owners(owners), frozenset(keys), "the build cache")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, DamagedEntry, NotReusable) as err:
            log.info("the build cache's family %s is unusable (%s)", family[:12], err)
            return None

    def listing_of(self, doc: Mapping[str, Any]) -> Listing | None:
        """The listing an entry names (None: an entry of a build that recorded none).
        Raises NotReusable, DamagedEntry or OSError when it cannot be read."""
        from smith.partial import Listing

        if not isinstance(doc.get("listing"), str):
            return None
        with open(self.store.path_for(checked_digest(doc["listing"])), "rb") as f:
            return Listing.from_json(json.loads(f.read(ENTRY_BYTES + 1)))

    def put_listing(self, listing: Listing) -> str:
        stored = self.store.put_bytes(canonical(listing.to_json())).sha256
        assert stored is not None  # put_stream always knows the digest of what it stored
        return stored

    def _write(self, path: str, data: bytes) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(data)


def kept_owners(owners: object) -> dict[str, str]:
    """A cached result's owners (path -> package) of the kept paths, as a partial hit
    reads them (anything else is no owner)."""
    if not isinstance(owners, dict):
        raise DamagedEntry("no owners")
    return {str(p): o for p, o in owners.items() if isinstance(o, str)}


def checked_digest(digest: object) -> str:
    if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise DamagedEntry(f"digest {digest!r}")
    return digest


def checked_relative(rel: object) -> str:
    """A path of an entry: relative, and never out of the output it is written in."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in rel.split("/"):
        raise DamagedEntry(f"path {rel!r}")
    return rel


# -- what a build reported, as JSON and back ----------------------------------------------


def report_json(result: BuildResult) -> dict[str, Any]:
    return {
        "manifest": result.image.manifest.digest,
        "kept": list(result.kept),
        "owners": dict(result.owners),
        "reasons": {path: result.why(path) for path in result.kept},
        "packages": [p.nevra for p in result.packages],
        "document": result.summary(explain=True),
    }


def cached_report(output: str, doc: Mapping[str, Any]) -> CachedBuild:
    report = doc["report"]
    return CachedBuild(
        output=output,
        manifest=str(report["manifest"]),
        kept=tuple(report["kept"]),
        owners=dict(report["owners"]),
        reasons=dict(report["reasons"]),
        packages=tuple(report["packages"]),
        document=dict(report["document"]),
    )


def result_json(result: BuildResult) -> dict[str, Any]:
    image = result.image
    return {
        "image": {
            "manifest": image.manifest.to_json(),
            "config": image.config.to_json(),
            "layers": [[layer.descriptor.to_json(), layer.diff_id] for layer in image.layers],
            "index": image.index,
        },
        "packages": [package_row(p) for p in result.packages],
        "kept": list(result.kept),
        "reasons": dict(result.reasons),
        "owners": dict(result.owners),
        "program": result.program,
        "platform": result.platform.to_json(),
        "before": [result.before.files, result.before.bytes],
        "after": [result.after.files, result.after.bytes],
        "source": {
            "name": result.source_info.name,
            "packages_resolved": result.source_info.packages_resolved,
            "packages_kept": list(result.source_info.packages_kept),
        },
    }


def package_row(p: ResolvedPackage) -> list[object]:
    checksum = [p.checksum.algo, p.checksum.hexdigest]
    return [p.name, p.epoch, p.version, p.release, p.arch, p.repo_id, p.url, *checksum, p.size]


def cached_result(output: str, doc: Mapping[str, Any]) -> BuildResult:
    """The BuildResult a build taken from the cache returns, as the first build did."""
    from smith.build import BuildResult
    from smith.oci.image import Descriptor, Platform
    from smith.oci.writer import ImageResult, Layer
    from smith.resolve.fetch import Checksum
    from smith.resolve.solver import ResolvedPackage
    from smith.result_json import Source, TreeSize

    data = doc["result"]
    image = data["image"]
    plat = data["platform"]
    return BuildResult(
        output=output,
        image=ImageResult(
            Descriptor.from_json(image["manifest"]),
            Descriptor.from_json(image["config"]),
            tuple(Layer(Descriptor.from_json(d), str(diff)) for d, diff in image["layers"]),
            str(image["index"]),
        ),
        packages=tuple(
            ResolvedPackage(n, e, v, r, a, repo, url, Checksum(algo, digest), size)
            for n, e, v, r, a, repo, url, algo, digest, size in data["packages"]
        ),
        kept=tuple(data["kept"]),
        reasons=dict(data["reasons"]),
        owners=dict(data["owners"]),
        program=str(data["program"]),
        platform=Platform(plat["architecture"], plat["os"], plat.get("variant", "")),
        before=TreeSize(*data["before"]),
        after=TreeSize(*data["after"]),
        source_info=Source(
            data["source"]["name"],
            packages_resolved=data["source"]["packages_resolved"],
            packages_kept=tuple(data["source"]["packages_kept"]),
        ),
        cache={"build": "hit", "packages_extracted": 0},
    )


# -- the two ways in: before the recipe is read, and after its packages are known ----------


def restore_locked(recipe_path: str, options: BuildOptions) -> CachedBuild | None:
    """The build of a recipe with a smith.lock, from the cache, before anything else of
    smith is loaded (no YAML, no schema, no solver): None when it is not there."""
    from smith.errors import SmithError
    from smith.oci.formats import choose_format

    if not options.build_cache or options.cache_to:
        return None  # --cache-to records the build in the registry: the build does that
    try:
        inputs = read_build_inputs(recipe_path, options, choose_format)
    except (OSError, SmithError):
        return None  # the build says what is wrong, in the order it always did
    if inputs is None or inputs.lock is None:
        return None
    pins = lock_pins(inputs.lock)
    if pins is None:
        return None
    restored = BuildCache(cache_dir_of(options)).restore(inputs.key(pins), options.output)
    if restored is None:
        return None
    return cached_report(*restored)


def read_build_inputs(
    recipe_path: str, options: BuildOptions, choose_format: Any
) -> BuildInputs | None:
    from smith.buildkey import read_inputs

    if options.arches and len(options.arches) > 1:
        return None
    # The output's format decides bytes; its name does not. Without -o the recipe names
    # the output, and the recipe's bytes are in the key.
    fmt = list(choose_format(options.output, options.fmt)) if options.output else None
    return read_inputs(recipe_path, key_settings(options, fmt))


def cache_dir_of(options: BuildOptions) -> str:
    if options.cache_dir is not None:
        return options.cache_dir
    from smith.resolve.fetch import default_cache_dir

    return str(default_cache_dir())


@dataclass(frozen=True)
class Reuse:
    """The caches as one build uses them, once its recipe validated: the local one, and a
    registry's (--cache-from, --cache-to)."""

    cache: BuildCache
    inputs: BuildInputs
    named_output: bool  # -o named the output (else the recipe did, in its key)
    options: BuildOptions
    layout: LayoutSettings
    # --cache-from's client and map, read once (smith/remote_cache.py read_remote).
    remote: dict[str, Any] = field(default_factory=dict, compare=False)

    def restore(self, packages: Sequence[ResolvedPackage], output: str) -> BuildResult | None:
        key = self.inputs.key(pins_of(packages))
        restored = self.cache.restore(key, output)
        if restored is not None:
            result = cached_result(*restored)
            doc = restored[1]
            keys = doc.get("layer_keys")
            if isinstance(keys, list) and all(isinstance(k, str) for k in keys):
                result = self.share(key, result, keys, self.recorded_partial(doc))
            return result
        if self.options.cache_from is None:
            return None
        from smith.remote_cache import restore_remote

        remote = restore_remote(self.options, key, output, self.layout, self.remote)
        if remote is None:
            return None
        result, keys = remote
        self.cache.save(key, output, None if self.named_output else output, result, keys)
        return (
            self.share(key, result, keys)
            if self.options.cache_to != self.options.cache_from
            else result
        )

    def prior(
        self, packages: Sequence[ResolvedPackage], cache_dir: str | os.PathLike[str]
    ) -> Prior | None:
        """An earlier build of this recipe (the local cache's, else --cache-from's) that a
        partial hit starts from (smith/partial.py), its layers' files in the content store."""
        from smith.partial import family_key

        family = family_key(self.inputs)
        found = self.cache.load_prior(family)
        if found is not None or self.options.cache_from is None:
            return found
        from smith.remote_cache import remote_prior

        return remote_prior(
            self.options, family, pins_of(packages), cache_dir, self.layout, self.remote
        )

    def recorded_partial(self, doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """What a cached entry recorded for partial hits, for --cache-to to share."""
        from smith.partial import NotReusable, family_key

        if not self.options.cache_to:
            return None
        try:
            listing = self.cache.listing_of(doc)
        except (OSError, ValueError, DamagedEntry, NotReusable):
            return None
        if listing is None or not isinstance(doc.get("layers"), list):
            return None
        return {"family": family_key(self.inputs), "listing": listing, "records": doc["layers"]}

    def save(
        self,
        packages: Sequence[ResolvedPackage],
        result: BuildResult,
        trees: Sequence[FileTree],
        listing: Listing | None = None,
        prior: Prior | None = None,
    ) -> BuildResult:
        """Record a build that was not in any cache; `trees` are its layers' trees,
        `listing` what its packages put in its tree, `prior` the build it started from."""
        from smith.oci.compress import parse_compression
        from smith.oci.layer_cache import layer_key
        from smith.partial import family_key, layer_records

        key = self.inputs.key(pins_of(packages))
        compression = parse_compression(self.layout.compression)
        keys = [layer_key(tree, compression, self.layout.epoch) for tree in trees]
        output = result.output
        records = layer_records(trees, keys, {p.nevra for p in packages})
        extra: dict[str, object] = {"layers": records}
        if listing is not None:
            try:
                extra["listing"] = self.cache.put_listing(listing)
            except OSError as err:
                log.warning("cannot write the build cache in %s: %s", self.cache.root, err)
        family = family_key(self.inputs)
        self.cache.save(key, output, None if self.named_output else output, result, keys, extra)
        if listing is not None:
            self.cache.save_family(family, key)
        stats: dict[str, object] = {
            "build": "miss" if prior is None else "partial",
            "packages_extracted": len(packages) if listing is None else listing.extracted,
            **({"registry": "miss"} if self.options.cache_from else {}),
        }
        if prior is not None:
            stats["layers_from_cache"] = sum(k in prior.layer_keys for k in keys)
            if prior.pulled:
                stats["registry"] = "partial"
                stats["layer_bytes_pulled"] = prior.pulled
        partial = {"family": family, "listing": listing, "records": records}
        return self.share(key, replace(result, cache=stats), keys, partial)

    def share(
        self,
        key: str,
        result: BuildResult,
        layer_keys: Sequence[str],
        partial: Mapping[str, Any] | None = None,
    ) -> BuildResult:
        """With --cache-to, the build's plan and layers recorded in the registry too."""
        if not self.options.cache_to:
            return result
        from smith.remote_cache import save_remote

        stats = save_remote(self.options, key, result, layer_keys, partial)
        return replace(result, cache={**result.cache, **stats})


@dataclass(frozen=True)
class LayoutSettings:
    """How the output is written, as merged from flags, recipe and environment."""

    fmt: str
    gz: bool
    tag: str
    epoch: int
    compression: str


def reuse_for(recipe: Recipe, recipe_path: str, options: BuildOptions, output: str) -> Reuse | None:
    """How this build uses the caches: None when its key would not cover its bytes (a
    parent image's layers are read from elsewhere) or the cache is off."""
    if not options.build_cache or recipe.parent:
        return None
    from smith.oci.formats import choose_format
    from smith.settings import merged

    inputs = read_build_inputs(recipe_path, options, choose_format)
    if inputs is None:
        return None
    if recipe.profile:
        from smith.buildkey import file_sha256

        profile = os.path.join(os.path.dirname(os.path.abspath(recipe_path)), recipe.profile)
        try:
            inputs = replace(inputs, named={"profile": file_sha256(profile)})
        except OSError:
            return None  # the build says what is wrong with it
    out_format, gz = choose_format(output, merged("format", options.fmt, recipe))
    layout = LayoutSettings(
        out_format.value,
        gz,
        merged("tag", options.tag, recipe) or "",
        merged("source_date_epoch", options.epoch, recipe),
        merged("compression", options.compression, recipe),
    )
    return Reuse(
        BuildCache(cache_dir_of(options)), inputs, options.output is not None, options, layout
    )
