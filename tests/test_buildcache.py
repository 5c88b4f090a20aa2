"""The build cache: a build whose inputs did not change is copied from the cache, byte for
byte what a cold build writes (the golden digests hold), and a damaged entry is rebuilt,
never used."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smith.build import BuildResult, build
from smith.build_options import BuildOptions
from smith.buildcache import BuildCache
from smith.oci.blobs import BlobStore
from smith.oci.cache_artifact import CACHE_MAP_TYPE
from smith.oci.image import MEDIA_OCI_MANIFEST, Descriptor, canonical_json
from smith.oci.pull import fetch_blob, fetch_manifest
from smith.oci.push import push_blob, push_manifest
from smith.oci.reading import open_image
from smith.oci.reference import parse_reference
from smith.oci.registry import RegistryClient
from smith.oci.registry_options import RegistryOptions
from smith.oci.transfer import open_read
from tests.golden_recipes import GOLDEN, recipe_copy
from tests.registry_servers import Registry, start_registry
from tests.rpm_universe import Universe
from tests.tools import require_tool

RPM_MAGIC = b"\xed\xab\xee\xdb"


def smith(*args: str, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "smith", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def digests(doc: dict[str, object]) -> dict[str, object]:
    layers = doc["layers"]
    assert isinstance(layers, list)
    return {
        "config": doc["config"],
        "diff_ids": [layer["diff_id"] for layer in layers],
        "index": doc["index"],
        "layers": [layer["digest"] for layer in layers],
        "manifest": doc["manifest"],
    }


def build_json(recipe: Path, output: Path, cache: Path, *flags: str) -> dict[str, object]:
    proc = smith("build", str(recipe), "-o", str(output), "--cache-dir", str(cache), "--json")
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_warm_locked_build_is_the_golden_build_without_loading_the_builder(
    frozen_universe: Universe, tmp_path: Path
) -> None:
    recipe = recipe_copy("hello", tmp_path, frozen_universe.repo_url("main"))
    cache = tmp_path / "cache"
    locked = smith("lock", str(recipe), "--cache-dir", str(cache))
    assert locked.returncode == 0, locked.stderr
    golden = json.loads(GOLDEN.read_text())["hello"]
    cold = build_json(recipe, tmp_path / "cold", cache)
    assert cold["cache"] == {"build": "miss", "packages_extracted": cold["packages_resolved"]}
    assert digests(cold) == golden
    # The warm build: no recipe schema, no solver, no writer is imported.
    proc = smith(
        "build", str(recipe), "-o", str(tmp_path / "warm"), "--cache-dir", str(cache), "--json",
        python_flags=("-X", "importtime"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warm = json.loads(proc.stdout)
    assert warm["cache"] == {"build": "hit", "packages_extracted": 0}
    assert digests(warm) == golden
    assert {k: v for k, v in warm.items() if k != "output"} == {
        k: v for k, v in cold.items() if k not in ("output", "cache")
    } | {"cache": warm["cache"]}
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    forbidden = {"smith.build", "smith.recipe", "smith.resolve.closure", "pydantic", "yaml", "solv"}
    assert not imported & forbidden
    assert tree_bytes(tmp_path / "warm") == tree_bytes(tmp_path / "cold")


@pytest.fixture
def tinyhttpd(rpm_universe: Universe, tmp_path: Path) -> Path:
    """tinyhttpd (packages and a rootfs/), without a lock: every build resolves."""
    return recipe_copy("tinyhttpd", tmp_path, rpm_universe.repo_url("main")) / "smith.yaml"


def build_in(recipe: Path, output: Path, cache: Path) -> BuildResult:
    return build(str(recipe), BuildOptions(output=str(output), cache_dir=str(cache)))


def test_unlocked_build_resolves_then_copies_from_the_cache(
    tinyhttpd: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cold = build_in(tinyhttpd, tmp_path / "cold.tar.gz", cache)
    warm = build_in(tinyhttpd, tmp_path / "warm.tar.gz", cache)
    assert (cold.cache["build"], warm.cache["build"]) == ("miss", "hit")
    assert (tmp_path / "warm.tar.gz").read_bytes() == (tmp_path / "cold.tar.gz").read_bytes()
    assert warm.summary(explain=True) | {"output": ""} == cold.summary(explain=True) | {
        "output": ""
    }
    assert warm.image == cold.image and warm.kept == cold.kept and warm.reasons == cold.reasons
    assert warm.packages == cold.packages and warm.owners == cold.owners
    # Another output format is another key; so is a changed file of rootfs/.
    assert build_in(tinyhttpd, tmp_path / "layout", cache).cache["build"] == "miss"
    index = next((tinyhttpd.parent / "rootfs").rglob("index.html"))
    index.write_text(index.read_text() + "changed\n")
    changed = build_in(tinyhttpd, tmp_path / "changed.tar.gz", cache)
    # A partial hit: the packages' tree from the listing of the first build, none extracted.
    assert changed.cache == {"build": "partial", "packages_extracted": 0, "layers_from_cache": 0}
    assert changed.image.manifest.digest != cold.image.manifest.digest
    again = build_in(tinyhttpd, tmp_path / "again.tar.gz", tmp_path / "other-cache")
    assert again.cache["build"] == "miss"
    assert (tmp_path / "again.tar.gz").read_bytes() == (tmp_path / "changed.tar.gz").read_bytes()
    assert again.summary(explain=True) | {"output": "", "cache": {}} == changed.summary(
        explain=True
    ) | {"output": "", "cache": {}}


def test_damaged_cache_is_rebuilt_never_used(
    tinyhttpd: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    cold = build_in(tinyhttpd, tmp_path / "cold.tar.gz", cache)
    builds = BuildCache(cache)
    (entry,) = Path(builds.root).glob("*.json")
    ((_path, _kind, _mode, digest),) = json.loads(entry.read_bytes())["files"]
    blob = builds.store.path_for(digest)  # the one output file
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:  # one byte changed, same size
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 1]))
    again = build_in(tinyhttpd, tmp_path / "again.tar.gz", cache)
    assert again.cache["build"] == "miss"
    assert "does not match its digest" in caplog.text
    assert (tmp_path / "again.tar.gz").read_bytes() == (tmp_path / "cold.tar.gz").read_bytes()
    assert again.image == cold.image
    # A damaged entry (cut short) is not read either; the next build records it again.
    entry.write_bytes(entry.read_bytes()[:100])
    assert build_in(tinyhttpd, tmp_path / "third.tar.gz", cache).cache["build"] == "miss"
    assert build_in(tinyhttpd, tmp_path / "fourth.tar.gz", cache).cache["build"] == "hit"


def test_invalid_recipe_is_never_taken_from_the_cache(tinyhttpd: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert build_in(tinyhttpd, tmp_path / "a.tar.gz", cache).cache["build"] == "miss"
    tinyhttpd.write_text(tinyhttpd.read_text() + "no_such_key: 1\n")
    proc = smith(
        "build", str(tinyhttpd), "-o", str(tmp_path / "b.tar.gz"), "--cache-dir", str(cache)
    )
    assert proc.returncode != 0
    assert "no_such_key" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"), require_tool("docker-registry"))
    yield reg
    reg.stop()


def machine_build(recipe: Path, tmp: Path, machine: str, *flags: str) -> dict[str, Any]:
    """A build on a "machine" of its own: its own (at first empty) cache directory."""
    out = tmp / f"{machine}.tar.gz"
    proc = smith("build", str(recipe), "-o", str(out), "--cache-dir", str(tmp / machine),
                 "--json", "--insecure", *flags)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    doc["stderr"] = proc.stderr
    return doc


LAYERED = ("--layers", "packages")


def test_second_machine_takes_every_layer_from_the_registry_cache(
    tinyhttpd: Path, registry: Registry, tmp_path: Path
) -> None:
    cache_ref = f"docker://{registry.host}/cache/tinyhttpd:build-cache"
    built = machine_build(tinyhttpd, tmp_path, "one", *LAYERED)
    assert built["cache"]["packages_extracted"] == built["packages_resolved"] > 0
    # Taken from its own cache, the first machine records it in the registry all the same.
    first = machine_build(tinyhttpd, tmp_path, "one", *LAYERED, "--cache-to", cache_ref,
                          "--push", f"docker://{registry.host}/tinyhttpd:1")  # fmt: skip
    layer_bytes = sum(layer["size"] for layer in first["layers"])
    assert len(first["layers"]) > 1  # a layer per package, the application's on top
    assert first["cache"]["build"] == "hit"
    assert first["cache"]["cache_bytes_uploaded"] > layer_bytes
    second = machine_build(tinyhttpd, tmp_path, "two", *LAYERED, "--cache-from", cache_ref,
                           "--push", f"docker://{registry.host}/tinyhttpd:2")  # fmt: skip
    assert second["cache"] == {
        "build": "miss",
        "registry": "hit",
        "layers_from_registry": len(first["layers"]),
        "layer_bytes_pulled": layer_bytes,
        "packages_extracted": 0,
        "pushed_bytes": 0,  # the registry has every blob: only the manifest is sent
        "pushed_blobs_skipped": len(first["layers"]) + 1,  # and the config
    }
    assert (tmp_path / "two.tar.gz").read_bytes() == (tmp_path / "one.tar.gz").read_bytes()
    assert not list((tmp_path / "two" / "content").rglob("sha256/*/*"))  # nothing extracted
    fetched = [p for p in (tmp_path / "two").rglob("*") if p.is_file()]
    assert not [p for p in fetched if p.read_bytes()[:4] == RPM_MAGIC]  # no package fetched
    # The second machine's own cache has the build now.
    third = machine_build(tinyhttpd, tmp_path, "two", *LAYERED, "--cache-from", cache_ref)
    assert third["cache"]["build"] == "hit"


@pytest.fixture(scope="module")
def genuine(
    rpm_universe: Universe, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, bytes]:
    """tinyhttpd built once with --cache-to: (recipe, cache reference, image bytes)."""
    tmp = tmp_path_factory.mktemp("genuine")
    recipe = recipe_copy("tinyhttpd", tmp, rpm_universe.repo_url("main")) / "smith.yaml"
    ref = f"{registry.host}/cache/refused:genuine"
    machine_build(recipe, tmp, "one", "--cache-to", "docker://" + ref)
    return recipe, ref, (tmp / "one.tar.gz").read_bytes()


def tampered(client: RegistryClient, tag: str, change: Any) -> str:
    """The genuine cache manifest, changed by `change`, pushed under `tag`."""
    doc = json.loads(fetch_manifest(client, client.ref.reference))
    change(doc, client)
    target = replace_tag(client, tag)
    push_manifest(client, target, canonical_json(doc), MEDIA_OCI_MANIFEST)
    return f"docker://{target}"


def replace_tag(client: RegistryClient, tag: str) -> Any:
    return parse_reference(f"{client.ref.registry}/{client.ref.repository}:{tag}")


def set_map(key: str, value: object) -> Any:
    def change(doc: dict[str, Any], _client: RegistryClient) -> None:
        doc["layers"][0][key] = value

    return change


def set_artifact_type(doc: dict[str, Any], _client: RegistryClient) -> None:
    doc["artifactType"] = "application/vnd.example+json"


def in_plan(change_plan: Any) -> Any:
    """A map (pushed as a blob of its own) whose plan `change_plan` changed."""

    def change(doc: dict[str, Any], client: RegistryClient) -> None:
        with tempfile.TemporaryDirectory(prefix="smith-test-map-") as tmp:
            store = BlobStore(tmp)
            fetch_blob(client, store, Descriptor.from_json(doc["layers"][0]), threading.Event())
            cache = json.loads(open_read(store.path(doc["layers"][0]["digest"])))
            (plan,) = cache["plans"].values()
            change_plan(plan)
            digest, size = store.add_bytes(canonical_json(cache))
            desc = Descriptor(CACHE_MAP_TYPE, digest, size)
            push_blob(client, desc, store.path(digest), (), threading.Event())
        doc["layers"][0] = desc.to_json()

    return change


def wrong_blob(plan: dict[str, Any]) -> None:
    plan["blobs"][sorted(plan["blobs"])[0]] = base64.b64encode(b"not these bytes").decode()


def path_out_of_root(plan: dict[str, Any]) -> None:
    plan["listing"]["rows"][0][0] = "../../etc/passwd"


def package_not_in_the_build(plan: dict[str, Any]) -> None:
    plan["records"][0]["packages"].append("evil-1-1.x86_64")


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (set_artifact_type, "artifactType 'application/vnd.example+json'"),
        (set_map("mediaType", "application/json"), "media type is 'application/json'"),
        (set_map("size", 5 << 20), "more than 4194304"),
        (in_plan(wrong_blob), "does not match its digest"),
        (in_plan(path_out_of_root), "the path '../../etc/passwd', not one inside the root"),
        (in_plan(package_not_in_the_build), "holds 'evil-1-1.x86_64', not one of its packages"),
    ],
    ids=["artifact-type", "map-media-type", "huge-map", "wrong-digest", "path", "package"],
)
def test_untrusted_cache_artifact_is_refused_and_the_build_goes_on(
    genuine: tuple[Path, str, bytes], tmp_path: Path, change: Any, refusal: str
) -> None:
    recipe, ref, image = genuine
    client = RegistryClient(parse_reference(ref), RegistryOptions(insecure=True), push=True)
    bad = tampered(client, "bad-" + tmp_path.name[-20:].strip("_-").lower(), change)
    second = machine_build(recipe, tmp_path, "two", "--cache-from", bad)
    assert second["cache"]["build"] == "miss" and "registry" in second["cache"]
    assert second["cache"]["packages_extracted"] == second["packages_resolved"]
    warned = [line for line in second["stderr"].splitlines() if "build cache refused" in line]
    assert len(warned) == 1 and refusal in warned[0], second["stderr"]
    assert (tmp_path / "two.tar.gz").read_bytes() == image


def config_size(image: Path) -> int:
    with open_image(str(image)) as loaded:
        return loaded.config_descriptor.size


def set_lock_release(lock: Path, name: str, release: str, repo: Path) -> None:
    """Point the lock's `name` at another release of it in `repo`."""
    doc = json.loads(lock.read_text())
    (pkg,) = [p for p in doc["packages"] if p["name"] == name]
    rpm = next(repo.glob(f"{name}-{pkg['version']}-{release}.*.rpm"))
    pkg.update(
        release=release,
        nevra=pkg["nevra"].replace(f"-{pkg['release']}.", f"-{release}."),
        url=rpm.as_uri(),
        sha256=hashlib.sha256(rpm.read_bytes()).hexdigest(),
        size=rpm.stat().st_size,
    )
    lock.write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n")


def test_second_machine_extracts_only_the_changed_package(
    rpm_universe: Universe, registry: Registry, tmp_path: Path
) -> None:
    """Machine two builds curl with another zlib and another rootfs/ file: it extracts
    zlib alone, takes every other layer from the registry, uploads the top layer and the
    config, and writes the image a cold build of the same inputs writes."""
    recipe = recipe_copy("curl", tmp_path, rpm_universe.repo_url("main")) / "smith.yaml"
    locked = smith("lock", str(recipe), "--cache-dir", str(tmp_path / "locking"))
    assert locked.returncode == 0, locked.stderr
    app = recipe.parent / "rootfs" / "srv" / "app.conf"
    app.parent.mkdir(parents=True)
    app.write_text("one\n")
    set_lock_release(recipe.parent / "smith.lock", "zlib", "2", rpm_universe.repo_dir("main"))
    cache_ref = f"docker://{registry.host}/cache/curl:build-cache"
    first = machine_build(recipe, tmp_path, "one", *LAYERED, "--cache-to", cache_ref,
                          "--push", f"docker://{registry.host}/curl:1")  # fmt: skip
    set_lock_release(recipe.parent / "smith.lock", "zlib", "1", rpm_universe.repo_dir("main"))
    app.write_text("two\n")
    second = machine_build(recipe, tmp_path, "two", *LAYERED, "--cache-from", cache_ref,
                           "--push", f"docker://{registry.host}/curl:2")  # fmt: skip
    layers = second["layers"]
    top = layers[-1]["size"]
    # Every layer holding a file of an unchanged package (zlib's merged layer, curl's top).
    pulled = sum(layer["size"] for layer in first["layers"])
    assert second["cache"] == {
        "build": "partial",
        "registry": "partial",
        "packages_extracted": 1,  # zlib
        "layers_from_cache": len(layers) - 1,  # zlib's files did not change: nor did its layer
        "layer_bytes_pulled": pulled,
        "pushed_bytes": top + config_size(tmp_path / "two.tar.gz"),
        "pushed_blobs_skipped": len(layers) - 1,
    }
    rpms = [
        p for p in (tmp_path / "two").rglob("*") if p.is_file() and p.read_bytes()[:4] == RPM_MAGIC
    ]
    assert {p.name for p in rpms} <= {"zlib-1.0-1.x86_64.rpm"}  # (a file: URL is read in place)
    cold = machine_build(recipe, tmp_path, "three", *LAYERED)
    assert cold["cache"]["packages_extracted"] == cold["packages_resolved"] > 1
    assert (tmp_path / "two.tar.gz").read_bytes() == (tmp_path / "three.tar.gz").read_bytes()


def test_rootfs_program_needing_another_library_builds_whole(
    tinyhttpd: Path, registry: Registry, tmp_path: Path
) -> None:
    """A rootfs/ change is a partial hit while the closure finds every file it needs in the
    tree rebuilt from the plan: on the machine that extracted the packages, all their
    bytes are at hand; on another, only the kept ones (the cached layers'; a rootfs/-only
    change there is in test_second_machine_extracts_only_the_changed_package). A program
    that now needs libm (glibc's, never kept before) makes that machine's build run whole."""
    tinyhttpd.write_text(tinyhttpd.read_text() + "paths: [/usr/local/bin/tool]\n")
    tool = tinyhttpd.parent / "rootfs" / "usr" / "local" / "bin" / "tool"
    tool.parent.mkdir(parents=True)
    shutil.copy("/usr/bin/true", tool)  # libc alone
    cache_ref = f"docker://{registry.host}/cache/tool:build-cache"
    first = machine_build(tinyhttpd, tmp_path, "one", "--cache-to", cache_ref, "--explain")
    shutil.copy("/usr/bin/mawk", tool)  # libm and libc
    libm = "usr/lib/x86_64-linux-gnu/libm.so.6"
    assert "/" + libm not in first["kept"]
    local = machine_build(tinyhttpd, tmp_path, "one", "--explain")
    assert local["cache"] == {"build": "partial", "packages_extracted": 0, "layers_from_cache": 0}
    assert "/" + libm in local["kept"]
    other = machine_build(tinyhttpd, tmp_path, "three", "--cache-from", cache_ref)
    assert other["cache"] == {"build": "miss", "registry": "miss",
                              "packages_extracted": other["packages_resolved"]}  # fmt: skip
    # Machine three's build is a cold build (an empty cache, the plan not reused).
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "three.tar.gz").read_bytes()
    assert local["manifest"] == other["manifest"]
