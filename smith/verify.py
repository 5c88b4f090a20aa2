"""`smith verify`: build the same recipe twice in deliberately different environments and
check that every digest is the same.

Each build is a separate process (`python -m smith build`), so everything a process
inherits can be varied: umask, TZ, locale, user name, PYTHONHASHSEED, working directory,
cache directory, the interpreter itself, and (with disorderfs) the order in which the
recipe directory lists its files. A difference is explained by `smith diff`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import smith
from smith.buildcache import BuildCache
from smith.diff import DiffReport, Digests, diff_images, image_digests
from smith.errors import SmithError, UsageError
from smith.limits import json_document
from smith.oci.index import index_platforms
from smith.oci.layer_cache import LayerCache
from smith.oci.reference import is_registry_reference

log = logging.getLogger(__name__)

SMITH_ROOT = str(Path(smith.__file__).resolve().parent.parent)


@dataclass(frozen=True)
class Variation:
    """One build environment. Two variations differ in every way a build must not notice."""

    name: str
    umask: int
    env: tuple[tuple[str, str], ...]
    shuffle_dirs: bool = False
    python: str = ""  # "" is the interpreter running verify

    def describe(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env)
        extra = ", own cwd and cache dir" + (
            ", directory order shuffled" if self.shuffle_dirs else ""
        )
        py = f", python {self.python}" if self.python else ""
        return f"umask {self.umask:03o}, {env}{extra}{py}"


# umask 002 vs 077 (a leaked umask changes modes), TZ with an odd offset and DST, two
# locales, two hash seeds (set and dict-of-set order), two user names (what getpass and
# tarfile's gettarinfo would write). Working and cache directories differ per build anyway.
REFERENCE = Variation(
    "reference",
    0o002,
    (
        ("TZ", "UTC"),
        ("LC_ALL", "C.UTF-8"),
        ("LANG", "C.UTF-8"),
        ("PYTHONHASHSEED", "1"),
        ("USER", "smith-verify-a"),
        ("LOGNAME", "smith-verify-a"),
    ),
)
CHANGED = Variation(
    "changed",
    0o077,
    (
        ("TZ", "Pacific/Chatham"),
        ("LC_ALL", "C"),
        ("LANG", "POSIX"),
        ("PYTHONHASHSEED", "2"),
        ("USER", "smith-verify-b"),
        ("LOGNAME", "smith-verify-b"),
    ),
    shuffle_dirs=True,
)


@dataclass(frozen=True)
class VerifyOptions:
    builds: int = 0  # 0: two builds, or one when comparing --against a record
    python: str = ""  # another interpreter: one more build runs under it
    against: str = ""  # a golden file or an image: compare with it instead of a 2nd build
    cache_dir: str = ""
    keep: str = ""  # keep every build's output under this directory
    build_args: tuple[str, ...] = ()  # passed on to `smith build` (or `smith minimize`)
    minimize: bool = False
    shuffle: bool = True


@dataclass(frozen=True)
class BuildRun:
    variation: Variation
    output: str
    digests: Digests


@dataclass(frozen=True)
class VerifyResult:
    target: str
    runs: tuple[BuildRun, ...]
    expected: Digests | None  # from --against
    differing: tuple[str, ...]  # which digests differ ("manifest", "layers", ...)
    report: DiffReport | None
    shuffled: bool
    notes: tuple[str, ...] = field(default=())

    @property
    def reproducible(self) -> bool:
        return not self.differing

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "reproducible": self.reproducible,
            "differing": list(self.differing),
            "builds": [
                {
                    "variation": run.variation.name,
                    "environment": run.variation.describe(),
                    "digests": run.digests.to_json(),
                }
                for run in self.runs
            ],
            "expected": self.expected.to_json() if self.expected else None,
            "diff": self.report.to_json() if self.report else None,
            "notes": list(self.notes),
        }

    def render(self) -> str:
        first = self.runs[0].digests
        if self.reproducible:
            what = (
                "matches the recorded digests"
                if self.expected
                else f"reproducible over {len(self.runs)} builds"
            )
            lines = [f"{self.target}: {what} (manifest {first.manifest})"]
        else:
            lines = [f"{self.target}: NOT reproducible: {', '.join(self.differing)} differ"]
            for run in self.runs:
                lines.append(f"  build {run.variation.name}: {run.variation.describe()}")
            if self.expected is not None:
                got, want = first.to_json(), self.expected.to_json()
                for name in self.differing:
                    lines.append(f"  {name}: expected {want[name]}, built {got[name]}")
            if self.report is not None:
                lines.append(self.report.render())
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def shuffle_available() -> str:
    """Why directory order cannot be shuffled here, or "" when it can."""
    if not shutil.which("disorderfs"):
        return "disorderfs is not installed: directory order was not shuffled"
    if not shutil.which("unshare") or os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        return "shuffling directory order needs root, unshare and /dev/fuse"
    return ""


# Runs the build in a private mount namespace where the recipe directory is a disorderfs
# view of itself: every readdir returns its entries in a new random order. The real
# directory is bind-mounted aside first so disorderfs never reads through its own mount.
SHUFFLE_SCRIPT = r"""
set -e
dir=$1 src=$2 mnt=$3
shift 3
mount --bind "$dir" "$src"
# In the foreground (-f) as this shell's child, so the shell reaps it when it unmounts.
disorderfs -f -q --shuffle-dirents=yes --multi-user=yes "$src" "$mnt" >/dev/null &
fuse=$!
tries=0
until mountpoint -q "$mnt"; do
    tries=$((tries + 1)); [ $tries -lt 500 ] || { kill $fuse; exit 125; }; sleep 0.01
done
mount --bind "$mnt" "$dir"
set +e
"$@"
rc=$?
umount -l "$dir"
fusermount3 -u "$mnt" 2>/dev/null || fusermount -u "$mnt" 2>/dev/null || umount -l "$mnt"
wait $fuse
exit $rc
"""


def build_command(
    target: str, output: str, cache: str, python: str, options: VerifyOptions
) -> list[str]:
    if options.minimize:
        # `smith minimize IMAGE -o OUTPUT` reads only the image: it has no cache.
        return [python, "-m", "smith", "minimize", target, *options.build_args, "-o", output]
    return [
        python, "-m", "smith", "build", target, "-q", "-o", output, "--cache-dir", cache,
        *options.build_args,
    ]  # fmt: skip


KEPT_MARKER = ".smith-verify-build"  # what makes a build directory verify's own


def run_build(
    target: str, work: Path, variation: Variation, options: VerifyOptions, shuffle_dir: str
) -> BuildRun:
    """One build in its own directory and environment; returns its output's digests."""
    work.mkdir(parents=True)
    (work / KEPT_MARKER).touch()
    cache, output = work / "cache", str(work / "image")
    # A fresh, randomly named working directory, as a temp path leaking in would have.
    cwd = Path(tempfile.mkdtemp(prefix="cwd-", dir=work))
    if options.cache_dir and os.path.isdir(options.cache_dir):
        # Same content, another path: a build must not depend on where its cache is. The
        # layer and build caches stay behind: a cached layer or output would be copied
        # instead of written, and verify exists to check the writer.
        left = [
            os.path.relpath(root, options.cache_dir)
            for root in (LayerCache(options.cache_dir).root, BuildCache(options.cache_dir).root)
        ]
        shutil.copytree(
            options.cache_dir,
            cache,
            symlinks=True,
            ignore=lambda d, _names: left if os.path.samefile(d, options.cache_dir) else [],
        )
    python = variation.python or sys.executable
    argv = build_command(target, output, str(cache), python, options)
    if variation.shuffle_dirs and shuffle_dir:
        src, mnt = work / "shuffle-src", work / "shuffle-view"
        src.mkdir()
        mnt.mkdir()
        argv = [
            "unshare", "-m", "--propagation", "private", "sh", "-c", SHUFFLE_SCRIPT, "sh",
            shuffle_dir, str(src), str(mnt), *argv,
        ]  # fmt: skip
    env = dict(os.environ)
    env.update(variation.env)
    # Another interpreter has smith's dependencies but not smith itself: put this checkout
    # last on its path, after anything the caller already put there.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), SMITH_ROOT) if p)
    log.info("verify: build %s: %s", variation.name, " ".join(argv))
    umask = variation.umask
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.umask(umask),  # verify runs no threads
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        hint = ""
        if variation.python and "ModuleNotFoundError" in last:
            # smith itself comes from the checkout; its dependencies must be in that Python.
            requirements = os.path.join(SMITH_ROOT, "requirements.txt")
            hint = (
                f"--python needs smith's dependencies: "
                f"{variation.python} -m pip install -r {requirements}"
            )
        raise SmithError(f"build {variation.name} of {target} failed: {last}", hint=hint)
    return BuildRun(variation, output, image_digests(output))


def variations(options: VerifyOptions) -> list[Variation]:
    count = options.builds or (1 if options.against else 2)
    # Against a record, the first build already runs in the changed environment.
    base = (CHANGED, REFERENCE) if options.against else (REFERENCE, CHANGED)
    chosen = [base[i % 2] for i in range(count)]
    chosen = [
        v if not (v.shuffle_dirs and not options.shuffle) else Variation(v.name, v.umask, v.env)
        for v in chosen
    ]
    if options.python:
        chosen.append(
            Variation(
                os.path.basename(os.path.realpath(options.python)),
                CHANGED.umask,
                CHANGED.env,
                shuffle_dirs=CHANGED.shuffle_dirs and options.shuffle,
                python=options.python,
            )
        )
    seen: dict[str, int] = {}
    named = []
    for v in chosen:  # names stay unique when a variation repeats
        seen[v.name] = seen.get(v.name, 0) + 1
        name = v.name if seen[v.name] == 1 else f"{v.name}-{seen[v.name]}"
        named.append(Variation(name, v.umask, v.env, v.shuffle_dirs, v.python))
    return named


def load_expected(against: str, target: str) -> tuple[Digests, str]:
    """Recorded digests from a golden JSON file (one record, or records by recipe name),
    or the digests of an existing image; plus the image path when there is one to diff."""
    if against.endswith(".json") and os.path.isfile(against):
        try:
            doc = json_document(Path(against).read_text(), f"--against {against}")
        except ValueError as err:
            raise UsageError(f"--against {against}: not valid JSON ({err})") from None
        if isinstance(doc, dict) and "manifest" not in doc:
            name = recipe_name(target)
            if name not in doc:
                raise UsageError(f"--against {against}: no record named {name!r}")
            doc = doc[name]
        if not isinstance(doc, dict):
            raise UsageError(f"--against {against}: not a digest record")
        return Digests.from_json(doc, against), ""
    return image_digests(against), against


def recipe_name(target: str) -> str:
    """A recipe's name: its directory's name (recipes/hello/smith.yaml -> hello)."""
    path = Path(target)
    if path.is_dir():
        return path.resolve().name
    return path.resolve().parent.name if path.name in ("smith.yaml", "smith.yml") else path.stem


def verify(target: str, options: VerifyOptions) -> VerifyResult:
    if not os.path.exists(target):
        raise UsageError(f"no recipe or image at {target!r}")
    if options.python:
        found = shutil.which(options.python)
        if found is None:
            raise UsageError(f"--python {options.python}: no such interpreter")
        # Absolute, but not resolved: a venv's python is a symlink that must stay one.
        options = replace(options, python=os.path.abspath(found))
    target = os.path.abspath(target)
    notes: list[str] = []
    shuffle_dir = ""
    if options.shuffle:
        why = shuffle_available()
        if why:
            notes.append(why)
        else:
            shuffle_dir = target if os.path.isdir(target) else os.path.dirname(target)
    expected, against_image = (
        load_expected(options.against, target) if options.against else (None, "")
    )
    if options.keep:
        root = Path(options.keep).resolve()
        root.mkdir(parents=True, exist_ok=True)
        return verify_in(
            target, options, root, expected, against_image, shuffle_dir, notes, keep=True
        )
    with tempfile.TemporaryDirectory(prefix="smith-verify-") as tmp:
        return verify_in(target, options, Path(tmp), expected, against_image, shuffle_dir, notes)


def verify_in(
    target: str,
    options: VerifyOptions,
    root: Path,
    expected: Digests | None,
    against_image: str,
    shuffle_dir: str,
    notes: Sequence[str],
    keep: bool = False,
) -> VerifyResult:
    runs: list[BuildRun] = []
    for i, variation in enumerate(variations(options)):
        work = root / f"build-{i + 1}"
        if keep and work.exists():
            # Only an earlier verify's build is replaced: --keep may name a directory that
            # holds other things, and a `build-1` of the user's own must survive.
            if not (work / KEPT_MARKER).exists():
                raise UsageError(f"--keep: {str(work)!r} exists and is not a smith verify build")
            shutil.rmtree(work)
        runs.append(run_build(target, work, variation, options, shuffle_dir))
    reference = expected if expected is not None else runs[0].digests
    report: DiffReport | None = None
    differing: list[str] = []
    for run in runs if expected is not None else runs[1:]:
        differing = reference.differences(run.digests)
        if differing:
            if expected is None:
                report = first_difference(runs[0].output, run.output)
            elif against_image:
                report = first_difference(against_image, run.output)
            break
    shuffled = bool(shuffle_dir) and any(r.variation.shuffle_dirs for r in runs)
    return VerifyResult(
        target=target,
        runs=tuple(runs),
        expected=expected,
        differing=tuple(differing),
        report=report,
        shuffled=shuffled,
        notes=tuple(notes),
    )


def first_difference(a: str, b: str) -> DiffReport:
    """The diff that explains why `b` is not `a`: of multi-platform images, that of the
    first platform (in A's order) whose images differ. The host's alone would only say
    that the index lists another digest when another platform's image changed."""
    platforms = () if is_registry_reference(a) else index_platforms(a)
    for platform in platforms:
        report = diff_images(a, b, platform=platform)
        if any(f.role != "index" for f in report.findings):
            return report
    return diff_images(a, b)


def golden_record(runs: Mapping[str, Digests]) -> dict[str, Any]:
    return {name: digests.to_json() for name, digests in sorted(runs.items())}
