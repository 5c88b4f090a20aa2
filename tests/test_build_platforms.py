"""One recipe, two architectures: `arch: [x86_64, aarch64]` builds one image index whose
manifests are each byte for byte the single-architecture build's. The x86_64 packages are
the frozen universe's, the aarch64 ones Debian's arm64 builds repackaged as RPMs
(rpm_universe_aarch64.py); each architecture finds its own through `$basearch`. skopeo
picks each platform's manifest, and the aarch64 program runs under qemu-aarch64-static."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from smith.cli.main import cli
from smith.diff import diff_images
from smith.oci.image import Descriptor, Platform, canonical_json, index_document
from smith.verify import first_difference
from tests.registry_servers import Registry, start_registry
from tests.rpm_universe import Universe
from tests.rpm_universe_aarch64 import (  # noqa: F401 - aarch64_universe: the fixture
    PINNED_DEBS,
    DebianDrift,
    aarch64_universe,
    drift,
    pinned_package,
)
from tests.test_build_errors import assert_clean_failure, run_smith
from tests.tools import require_root, require_tool

GREETING = "hello from smith"
# The universes' two hellos: the x86_64 one prints GREETING and ignores its arguments, the
# aarch64 one is GNU hello, which prints the text of -g.
HELLO = {
    "package": "hello",
    "arch": ["x86_64", "aarch64"],
    "repos": [{"name": "universe", "baseurl": "repos/$basearch"}],
    "cmd": ["/usr/bin/hello", "-g", GREETING],
}
PLATFORMS = [
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
]


@pytest.fixture
def recipe_dir(
    tmp_path: Path,
    frozen_universe: Universe,
    aarch64_universe: Universe,  # noqa: F811
) -> Path:
    repos = tmp_path / "recipe" / "repos"
    repos.mkdir(parents=True)
    (repos / "x86_64").symlink_to(frozen_universe.repo_dir("main"))
    (repos / "aarch64").symlink_to(aarch64_universe.repo_dir("main"))
    write_recipe(tmp_path / "recipe", HELLO)
    return tmp_path / "recipe"


def write_recipe(directory: Path, recipe: dict[str, Any]) -> Path:
    path = directory / "smith.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def smith(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def layout_json(archive: Path, digest: str = "") -> Any:
    name = "index.json" if not digest else "blobs/sha256/" + digest.removeprefix("sha256:")
    with tarfile.open(archive) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return json.loads(member.read())


def build(recipe_dir: Path, out: str, *args: str) -> Path:
    output = recipe_dir.parent / out
    smith("build", str(recipe_dir / "smith.yaml"), "-o", str(output), "-q", *args)
    return output


def test_one_index_with_each_platforms_own_manifest(recipe_dir: Path) -> None:
    both = build(recipe_dir, "both.tar")
    top = layout_json(both)["manifests"]
    assert [m["mediaType"] for m in top] == ["application/vnd.oci.image.index.v1+json"]
    index = layout_json(both, top[0]["digest"])
    assert [m["platform"] for m in index["manifests"]] == PLATFORMS
    # Each platform exactly as built alone, and the whole reproducible.
    for arch, manifest in zip(("x86_64", "aarch64"), index["manifests"], strict=True):
        alone = build(recipe_dir, f"{arch}.tar", "--arch", arch)
        assert layout_json(alone)["manifests"][0]["digest"] == manifest["digest"]
    assert build(recipe_dir, "again.tar").read_bytes() == both.read_bytes()
    # The aarch64 image holds aarch64 files only (and its lock-free resolution chose them).
    arm = layout_json(both, index["manifests"][1]["digest"])
    config = layout_json(both, arm["config"]["digest"])
    assert config["architecture"] == "arm64" and config["variant"] == "v8"


GOLDEN_HELLO = Path(__file__).parent / "golden" / "platforms-hello.json"


def test_the_hello_index_is_golden(recipe_dir: Path, aarch64_universe: Universe) -> None:  # noqa: F811
    """The two-platform hello index of the frozen x86_64 universe and the aarch64 one, whose
    Debian packages are pinned by sha256 (rpm_universe_aarch64.PINNED_DEBS). After a
    deliberate change, write the digests this prints into tests/golden/platforms-hello.json
    and let the diff be reviewed with the change."""
    drifted = drift(aarch64_universe)
    if drifted:
        # Not a missing tool: Debian replaced a pinned package, so no machine can rebuild
        # the golden's inputs (a frozen arm64 universe would end this). Failing every CI
        # run until someone re-pins would block all work; the skip names what to do.
        pytest.skip(f"the aarch64 universe is not the pinned one ({drifted}): re-pin PINNED_DEBS")
    both = build(recipe_dir, "both.tar")
    top = layout_json(both)["manifests"][0]
    index = layout_json(both, top["digest"])
    found = {"index": top["digest"]}
    found |= {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    assert found == json.loads(GOLDEN_HELLO.read_text()), json.dumps(found, indent=1)


def test_the_aarch64_universe_refuses_other_debian_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """What keeps the golden honest: a .deb whose bytes or version are not the pinned ones
    is never taken for the pinned one (the universe is then built from the served versions
    and says so, and the golden test does not compare)."""
    version, _ = PINNED_DEBS["hello"]
    monkeypatch.setitem(PINNED_DEBS, "hello", (version, "0" * 64))
    with pytest.raises(DebianDrift, match=f"not the pinned {'0' * 64}"):
        pinned_package("hello")
    monkeypatch.setitem(PINNED_DEBS, "hello", ("0.0-0", "0" * 64))
    with pytest.raises(DebianDrift, match=r"no longer serves the pinned hello 0\.0-0"):
        pinned_package("hello")


def test_arch_on_the_command_line_builds_an_index(recipe_dir: Path) -> None:
    write_recipe(recipe_dir, {**HELLO, "arch": "x86_64"})
    out = build(recipe_dir, "cli.tar", "--arch", "x86_64", "--arch", "aarch64")
    write_recipe(recipe_dir, HELLO)
    assert out.read_bytes() == build(recipe_dir, "recipe.tar").read_bytes()


def test_one_lock_pins_each_architecture(recipe_dir: Path) -> None:
    recipe, lock_path = str(recipe_dir / "smith.yaml"), recipe_dir / "smith.lock"
    for arch in ("x86_64", "aarch64"):  # as an older smith wrote them
        (recipe_dir / f"smith.{arch}.lock").write_text("{}")
    proc = run_smith("build", recipe, "-o", str(recipe_dir / "x.tar"), "--locked")
    assert proc.stderr.strip().endswith(
        f"no lock at {lock_path} (smith.x86_64.lock is an older smith's: it is not read)"
    )
    output = smith("lock", recipe)
    assert output.splitlines() == [
        f"{lock_path}: 3 x86_64 packages",
        f"note: {recipe_dir / 'smith.x86_64.lock'} is not read any more",
        f"{lock_path}: 3 aarch64 packages",
        f"note: {recipe_dir / 'smith.aarch64.lock'} is not read any more",
    ]
    both = json.loads(lock_path.read_text())
    assert both["arch"] == "x86_64" and list(both["arches"]) == ["aarch64"]
    assert {p["arch"] for p in both["packages"]} == {"x86_64", "noarch"}
    assert {p["arch"] for p in both["arches"]["aarch64"]["packages"]} == {"aarch64", "noarch"}
    unlocked = build(recipe_dir, "unlocked.tar")
    locked = build(recipe_dir, "locked.tar", "--locked")
    assert locked.read_bytes() == unlocked.read_bytes()
    # A lock of x86_64 alone is the one-section case: the same top-level keys, and what a
    # recipe of one architecture locks, byte for byte.
    write_recipe(recipe_dir, {**HELLO, "arch": "x86_64"})
    smith("lock", recipe)
    one = json.loads(lock_path.read_text())
    assert one == {k: v for k, v in both.items() if k != "arches"}
    # Once aarch64 is added, the x86_64 pins still hold; aarch64 is named as missing.
    write_recipe(recipe_dir, HELLO)
    x86 = build(recipe_dir, "x86.tar", "--arch", "x86_64", "--locked")
    index = layout_json(locked, layout_json(locked)["manifests"][0]["digest"])
    assert layout_json(x86)["manifests"][0]["digest"] == index["manifests"][0]["digest"]
    failed = recipe_dir.parent / "failed"
    failed.mkdir()
    proc = run_smith("build", recipe, "-o", str(failed / "x.tar"), "--locked")
    assert_clean_failure(
        proc,
        f"{lock_path} pins no aarch64 packages (smith.aarch64.lock is an older smith's: it is "
        "not read): run `smith lock --arch aarch64`",
        failed,
    )
    proc = run_smith("lock", recipe, "--update")
    assert_clean_failure(proc, "pins no aarch64 packages", failed)
    proc = run_smith("lock", recipe, "--arch", "s390x")
    assert_clean_failure(proc, "--arch s390x: ", failed)
    # `smith lock --arch aarch64` adds its section; x86_64's stays byte for byte.
    smith("lock", recipe, "--arch", "aarch64")
    assert lock_path.read_text() == json.dumps(both, indent=2, sort_keys=True) + "\n"


def test_lock_update_moves_a_pin_in_each_section(recipe_dir: Path) -> None:
    """`smith lock --update PKG` of two architectures: each section from its own
    repository. An aarch64 pin older than what its repository offers (written into the
    lock here: the fixture universe has one version of each package) moves; x86_64's,
    already the newest, stays byte for byte."""
    recipe, lock_path = str(recipe_dir / "smith.yaml"), recipe_dir / "smith.lock"
    smith("lock", recipe)
    fresh = json.loads(lock_path.read_text())
    old = json.loads(lock_path.read_text())
    (arm_hello,) = (p for p in old["arches"]["aarch64"]["packages"] if p["name"] == "hello")
    offered = arm_hello["nevra"]
    arm_hello.update(version="0.1", release="1", nevra="hello-0.1-1.aarch64")
    lock_path.write_text(json.dumps(old, sort_keys=True, indent=2) + "\n")
    # `smith outdated`: a report for each architecture, from its own section.
    proc = run_smith("outdated", recipe, "--json")
    assert proc.returncode == 100, proc.stderr
    sources = {s["source"]: s for s in json.loads(proc.stdout)["sources"]}
    assert sorted(sources) == [f"{recipe} (aarch64)", f"{recipe} (x86_64)"]
    assert sources[f"{recipe} (x86_64)"]["status"] == "current"
    moved = [p for p in sources[f"{recipe} (aarch64)"]["packages"] if p["outdated"]]
    # (Not "in the image": the build names its files by the RPM's own NEVRA, not the forged one.)
    assert [(p["name"], p["locked"], p["newest_repo"]) for p in moved] == [
        ("hello", "0.1-1", "universe")
    ]
    output = smith("lock", recipe, "--update", "hello", "--preview").splitlines()
    assert output[:2] == [
        f"aarch64: hello-0.1-1.aarch64 -> {offered}",
        f"{lock_path}: 1 packages moved",
    ]
    assert output[2].startswith("x86_64: next build: ")
    assert any(line.startswith("aarch64: next build: ") for line in output[3:])
    assert json.loads(lock_path.read_text()) == fresh
    assert run_smith("outdated", recipe).returncode == 0
    proc = run_smith("lock", recipe, "--update", "nosuch")
    assert proc.returncode == 2 and "'nosuch' is not a package of" in proc.stderr


@pytest.mark.parametrize(("override", "position"), [("arm64", 1), ("amd64", 0)])
def test_skopeo_picks_the_platform(recipe_dir: Path, override: str, position: int) -> None:
    both = build(recipe_dir, "both.tar")
    index = layout_json(both, layout_json(both)["manifests"][0]["digest"])
    manifest = skopeo_copy(both, override, recipe_dir.parent / f"dir-{override}")
    chosen = index["manifests"][position]
    assert layout_json(both, chosen["digest"])["config"] == manifest["config"]


def skopeo_copy(archive: Path, override: str, dest: Path) -> Any:
    """The manifest skopeo picks for `--override-arch override`, copied to dir:`dest`."""
    skopeo = require_tool("skopeo")
    subprocess.run(
        [skopeo, "--override-arch", override, "copy", f"oci-archive:{archive}", f"dir:{dest}"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return json.loads((dest / "manifest.json").read_text())


def unpack_platform(archive: Path, override: str, root: Path) -> None:
    """The platform's image as skopeo picks it, its layers unpacked into `root`."""
    dest = root.parent / f"{root.name}-dir"
    manifest = skopeo_copy(archive, override, dest)
    root.mkdir()
    for layer in manifest["layers"]:
        with tarfile.open(dest / layer["digest"].removeprefix("sha256:")) as tar:
            tar.extractall(root, filter="tar")


def test_both_programs_print_the_same(recipe_dir: Path) -> None:
    require_root()
    qemu = require_tool("qemu-aarch64-static")
    both = build(recipe_dir, "both.tar")
    x86, arm = recipe_dir.parent / "x86-root", recipe_dir.parent / "arm-root"
    unpack_platform(both, "amd64", x86)
    unpack_platform(both, "arm64", arm)
    argv = HELLO["cmd"]
    native = subprocess.run(
        [require_tool("chroot"), str(x86), *argv], capture_output=True, text=True, timeout=60
    )
    emulated = subprocess.run(
        [qemu, "-L", str(arm), str(arm / argv[0].lstrip("/")), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert native.stdout == emulated.stdout == GREETING + "\n", (native, emulated)
    # Neither root carries the other's loader.
    assert not (arm / "usr/lib64").exists()
    assert not (x86 / "usr/lib/ld-linux-aarch64.so.1").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--arch", "arm64"), "unknown architecture 'arm64'"),
        (("--arch", "aarch64", "--arch", "aarch64"), "names an architecture twice"),
        (("--format", "docker-archive"), "a docker-archive holds one platform"),
    ],
)
def test_bad_arguments_are_one_line(recipe_dir: Path, args: tuple[str, ...], message: str) -> None:
    proc = run_smith(
        "build", str(recipe_dir / "smith.yaml"), "-o", str(recipe_dir.parent / "x.tar"), *args
    )
    assert_clean_failure(proc, message, recipe_dir.parent)


def test_minimize_every_platform_keeps_the_index(recipe_dir: Path) -> None:
    both = build(recipe_dir, "both.tar")
    out = recipe_dir.parent / "min.tar"
    smith("minimize", str(both), "-o", str(out))  # every platform: the default
    index = layout_json(out, layout_json(out)["manifests"][0]["digest"])
    assert [m["platform"] for m in index["manifests"]] == PLATFORMS
    # Each platform as minimized alone; `all` is the index's platforms in its order.
    for platform, manifest in zip(("linux/amd64", "linux/arm64"), index["manifests"], strict=True):
        alone = recipe_dir.parent / f"min-{platform.replace('/', '-')}.tar"
        smith("minimize", str(both), "-o", str(alone), "--platform", platform)
        assert layout_json(alone)["manifests"][0]["digest"] == manifest["digest"]
    every = recipe_dir.parent / "min-all.tar"
    smith("minimize", str(both), "-o", str(every), "--platform", "all")
    assert every.read_bytes() == out.read_bytes()
    named = recipe_dir.parent / "min-named.tar"
    smith("minimize", str(both), "-o", str(named), "--platform", "linux/amd64",
          "--platform", "linux/arm64/v8")  # fmt: skip
    assert named.read_bytes() == out.read_bytes()
    proc = run_smith("minimize", str(named), "-o", str(recipe_dir.parent / "x.tar"),
                     "--platform", "linux/s390x", "--platform", "linux/amd64")  # fmt: skip
    assert proc.returncode != 0 and "no image for platform linux/s390x" in proc.stderr


@pytest.fixture
def tmp_runroot() -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        made.append(tempfile.mkdtemp(prefix="smith-pod-", dir="/tmp"))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"), require_tool("docker-registry"))
    yield reg
    reg.stop()


def test_pushed_index_and_podman_arch(
    recipe_dir: Path, registry: Registry, tmp_runroot: Callable[[], str]
) -> None:
    """`smith build --push` pushes the whole index; `podman pull --arch` takes each
    platform's image from it: the image ID is that platform's config digest. (podman 4.3
    ignores --arch for an oci-archive: it took the amd64 image there, so the registry.)"""
    podman = require_tool("podman")
    ref = f"{registry.host}/hello:multi"
    out = recipe_dir.parent / "pushed.tar"
    output = smith("build", str(recipe_dir / "smith.yaml"), "-o", str(out), "--push",
                   f"docker://{ref}", "--insecure", "--json")  # fmt: skip
    summary = json.loads(output[output.index("{") :])
    index = layout_json(out, layout_json(out)["manifests"][0]["digest"])
    assert summary["pushed"] == f"{registry.host}/hello@{summary['index']}"
    work = recipe_dir.parent / "podman"
    work.mkdir()
    conf = work / "containers.conf"
    conf.write_text(
        '[containers]\nnetns = "none"\n'
        'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
        '[engine]\nruntime = "runc"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    for arch, manifest in zip(("amd64", "arm64"), index["manifests"], strict=True):
        # podman refuses a runroot path over 50 characters: pytest's are longer.
        base = [podman, "--root", str(work / f"root-{arch}"), "--runroot", tmp_runroot()]
        base += ["--storage-driver", "vfs"]
        pulled = subprocess.run(
            [*base, "pull", "-q", "--tls-verify=false", "--arch", arch, f"docker://{ref}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )
        assert pulled.returncode == 0, pulled.stderr
        config = layout_json(out, manifest["digest"])["config"]["digest"]
        assert "sha256:" + pulled.stdout.strip() == config, arch
    # A registry's index is minimized platform by platform too, by default.
    small = recipe_dir.parent / "small.tar"
    smith("minimize", f"docker://{ref}", "-o", str(small), "--insecure", "-q")
    local = recipe_dir.parent / "small-local.tar"
    smith("minimize", str(out), "-o", str(local), "-q")
    assert small.read_bytes() == local.read_bytes()


SPDX, PROVENANCE = "application/spdx+json", "application/vnd.in-toto+json"


def test_sbom_and_provenance_of_each_platform(recipe_dir: Path, registry: Registry) -> None:
    """Each platform's manifest gets its own SBOM and provenance, attached to it as a
    referrer (as one image's are): the index and its manifests are the plain build's."""
    plain = build(recipe_dir, "plain")
    ref = f"{registry.host}/attested:multi"
    out = recipe_dir.parent / "attested"
    smith("build", str(recipe_dir / "smith.yaml"), "-o", str(out), "-q", "--sbom",
          "--provenance", "--push", f"docker://{ref}", "--insecure")  # fmt: skip
    top = json.loads((out / "index.json").read_text())["manifests"]
    assert top[0] == json.loads((plain / "index.json").read_text())["manifests"][0]
    index = json.loads((out / "blobs/sha256" / top[0]["digest"][7:]).read_text())
    attached = [
        (json.loads((out / "blobs/sha256" / e["digest"][7:]).read_text())["subject"]["digest"],
         e["artifactType"])
        for e in top[1:]
    ]  # fmt: skip
    amd64, arm64 = (m["digest"] for m in index["manifests"])
    assert attached == [(amd64, SPDX), (amd64, PROVENANCE), (arm64, SPDX), (arm64, PROVENANCE)]
    # Each names its own platform's packages and image.
    arm_sbom = smith("sbom", str(out), "--platform", "linux/arm64")
    purls = {
        r["referenceLocator"]
        for p in json.loads(arm_sbom)["packages"]
        for r in p.get("externalRefs", [])
        if r["referenceType"] == "purl"
    }
    assert purls == {
        f"pkg:oci/image@{arm64}?arch=arm64",
        "pkg:rpm/filesystem@1.0-1?arch=noarch",
        "pkg:rpm/glibc@1.0-1?arch=aarch64",
        "pkg:rpm/hello@1.0-1?arch=aarch64",
    }
    statement = json.loads(smith("sbom", str(out), "--platform", "linux/arm64", "--format",
                                 "provenance"))  # fmt: skip
    assert statement["subject"][0]["digest"]["sha256"] == arm64[7:]
    build_definition = statement["predicate"]["buildDefinition"]
    assert build_definition["externalParameters"]["platform"] == "linux/arm64/v8"
    # Pushed with each platform's manifest.
    pushed = smith("sbom", f"docker://{registry.host}/attested@{arm64}", "--insecure")
    assert pushed == arm_sbom
    # `smith upload --all` pushes them too.
    proc = run_smith("upload", "-i", str(out), "-r", f"docker://{registry.host}/uploaded:multi",
                     "--all", "--insecure")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[1] for line in proc.stderr.splitlines()] == [
        f"({kind}," for kind in (SPDX, PROVENANCE, SPDX, PROVENANCE)
    ]
    uploaded = smith("sbom", f"docker://{registry.host}/uploaded@{arm64}", "--insecure")
    assert uploaded == arm_sbom
    # `smith minimize --sbom` of the index: an SBOM for each platform's minimized image.
    small = recipe_dir.parent / "small"
    smith("minimize", str(plain), "-o", str(small), "--sbom", "-q")
    top = json.loads((small / "index.json").read_text())["manifests"]
    index = json.loads((small / "blobs/sha256" / top[0]["digest"][7:]).read_text())
    assert [e["artifactType"] for e in top[1:]] == [SPDX, SPDX]
    subjects = [
        json.loads((small / "blobs/sha256" / e["digest"][7:]).read_text())["subject"]["digest"]
        for e in top[1:]
    ]
    assert subjects == [m["digest"] for m in index["manifests"]]


def test_an_image_package_of_two_platforms(recipe_dir: Path) -> None:
    """`package:` naming a multi-platform image, for two architectures: each platform of
    the source shrunk as `smith minimize --platform` shrinks it; a source without one of
    them is refused in one line, naming it."""
    both = build(recipe_dir, "both.tar")
    shrink = recipe_dir.parent / "shrink"
    shrink.mkdir()
    (shrink / "both.tar").symlink_to(both)
    write_recipe(shrink, {"package": "./both.tar", "arch": ["x86_64", "aarch64"]})
    out = recipe_dir.parent / "shrunk.tar"
    smith("build", str(shrink), "-o", str(out), "-q")
    index = layout_json(out, layout_json(out)["manifests"][0]["digest"])
    assert [m["platform"] for m in index["manifests"]] == PLATFORMS
    minimized = recipe_dir.parent / "minimized.tar"
    smith("minimize", str(both), "-o", str(minimized), "-q")
    again = layout_json(minimized, layout_json(minimized)["manifests"][0]["digest"])
    assert index == again
    alone = build(recipe_dir, "x86.tar", "--arch", "x86_64")
    (shrink / "both.tar").unlink()
    (shrink / "both.tar").symlink_to(alone)
    failed = recipe_dir.parent / "failed"
    failed.mkdir()
    proc = run_smith("build", str(shrink), "-o", str(failed / "x.tar"))
    assert_clean_failure(proc, "no image for platform linux/arm64", failed)


def test_diff_compares_each_platform(recipe_dir: Path) -> None:
    both, again = build(recipe_dir, "both.tar"), build(recipe_dir, "again.tar")
    proc = run_smith("diff", str(both), str(again), "--platform", "all")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"linux/amd64: identical: {both} and {again}",
        f"linux/arm64/v8: identical: {both} and {again}",
    ]
    small = recipe_dir.parent / "min.tar"
    smith("minimize", str(both), "-o", str(small), "--platform", "all")
    proc = run_smith("diff", str(both), str(small), "--platform", "all", "--json")
    assert proc.returncode == 1, proc.stderr
    reports = json.loads(proc.stdout)
    assert sorted(reports) == ["linux/amd64", "linux/arm64/v8"]
    assert all(not r["identical"] for r in reports.values())
    # One platform only, as named.
    proc = run_smith("diff", str(both), str(small), "--platform", "linux/arm64")
    assert proc.returncode == 1 and proc.stdout.startswith("first cause: manifest")
    alone = build(recipe_dir, "x86.tar", "--arch", "x86_64")
    proc = run_smith("diff", str(both), str(alone), "--platform", "all")
    assert proc.returncode == 2
    assert "no image for platform linux/arm64/v8 (it has: linux/amd64)" in proc.stderr


def test_verify_explains_a_difference_by_platform(recipe_dir: Path) -> None:
    both = build(recipe_dir, "both.tar")
    small = recipe_dir.parent / "small.tar"
    smith("minimize", str(both), "-o", str(small), "--platform", "all")
    # A layout whose amd64 image is both's and whose arm64 one is minimized: only the arm64
    # comparison can say why the two differ.
    mixed = recipe_dir.parent / "mixed"
    for archive in (both, small):
        with tarfile.open(archive) as tar:
            tar.extractall(mixed, filter="tar")
    manifests = [
        layout_json(archive, layout_json(archive)["manifests"][0]["digest"])["manifests"][i]
        for i, archive in ((0, both), (1, small))
    ]
    data = canonical_json(index_document([Descriptor.from_json(m) for m in manifests]))
    digest = hashlib.sha256(data).hexdigest()
    (mixed / "blobs/sha256" / digest).write_bytes(data)
    nested = Descriptor("application/vnd.oci.image.index.v1+json", f"sha256:{digest}", len(data))
    (mixed / "index.json").write_bytes(canonical_json(index_document([nested])))
    host = diff_images(str(both), str(mixed))
    # The host's images are the same: it sees only that the index lists another digest.
    assert {f.role for f in host.findings} == {"index"}
    report = first_difference(str(both), str(mixed))
    assert not report.identical
    arm64 = Platform("arm64", "linux", "v8")
    assert report == diff_images(str(both), str(mixed), platform=arm64)
    assert first_difference(str(both), str(both)).identical
