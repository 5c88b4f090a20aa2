"""`smith build R1 R2 ... --push PREFIX`: each image of a fleet to PREFIX/<name>:<tag>.

<name> is the recipe's name as `-o DIR` names its output (DIR/<name>, smith.fleet's
recipe_name); <tag> is the tag of the recipe's `tag:` (or --tag), else `latest`. Every
reference is made and checked before anything is built, so a bad PREFIX costs no build.

The images go one after the other, so that a blob several of them hold (a --share-layers
or --layers packages layer with one digest, the config of two equal images) is uploaded
once: each later repository mounts it from the first one that got it (the registry's
cross-repository mount; smith.oci.push, the one push path). A registry has no
transactions: an image that fails to push is named, the run fails afterwards, and the
images pushed before and after it stay pushed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smith.errors import SmithError, UsageError
from smith.fleet import recipe_name
from smith.oci.reference import Reference, parse_reference

if TYPE_CHECKING:
    from smith.build_options import BuildOptions
    from smith.oci.push import PushResult
    from smith.oci.registry_options import RegistryOptions

log = logging.getLogger(__name__)


def fleet_targets(
    recipe_paths: Sequence[str], options: BuildOptions, prefix: str
) -> dict[str, Reference]:
    """Each recipe's reference, PREFIX/<name>:<tag>; a UsageError names a bad one."""
    from smith.recipe import load_recipe
    from smith.settings import merged

    check_prefix(prefix)
    targets: dict[str, Reference] = {}
    for path in recipe_paths:
        try:
            recipe_tag = merged("tag", options.tag, load_recipe(path)) or ""
        except SmithError:
            recipe_tag = ""  # the recipe's own error is said when it is built
        tag = parse_reference(recipe_tag).tag if recipe_tag else "latest"
        text = f"{prefix.rstrip('/')}/{recipe_name(path)}:{tag}"
        try:
            target = parse_reference(text)
        except UsageError as err:
            raise UsageError(f"--push {prefix}: {path} would push to {text}: {err}") from None
        same = next((p for p, t in targets.items() if t == target), None)
        if same is not None:  # the second push would replace the first under one tag
            raise UsageError(f"--push {prefix}: {same} and {path} would both push to {target}")
        targets[path] = target
    return targets


def check_prefix(prefix: str) -> None:
    """PREFIX is a registry and repository path: the tag is each recipe's own."""
    try:
        ref = parse_reference(f"{prefix.rstrip('/')}/name", default_tag="")
    except UsageError:
        ref = None
    if ref is None or ref.tag or ref.digest or not prefix.strip("/"):
        raise UsageError(
            f"--push {prefix!r}: a fleet pushes to PREFIX/<name>:<tag>; PREFIX must be "
            "HOST[/PATH] with no tag or digest (e.g. 127.0.0.1:5000/team)"
        )


@dataclass(frozen=True)
class FleetPush:
    pushed: Mapping[str, PushResult]  # recipe path -> what its push did
    failed: Mapping[str, str]  # recipe path -> the error's one line

    def check(self, targets: Mapping[str, Reference]) -> None:
        if not self.failed:
            return
        path, error = next(iter(self.failed.items()))
        more = f" (and {len(self.failed) - 1} more images)" if len(self.failed) > 1 else ""
        done = ", ".join(str(targets[p]) for p in self.pushed) or "none"
        raise SmithError(
            f"push of {targets[path]} failed: {error}{more}; pushed (they stay): {done}"
        )


def push_fleet(
    outputs: Sequence[tuple[str, str, bool]],
    targets: Mapping[str, Reference],
    registry: RegistryOptions,
    mount_from: Sequence[str] = (),
) -> FleetPush:
    """Push each (recipe path, output, is an index) to its target, in order; a blob an
    earlier image of the same registry got is mounted from that image's repository."""
    from smith.oci.push import push_image, push_index
    from smith.oci.push_referrers import push_referrers
    from smith.oci.reading import open_image

    holders: dict[str, dict[str, str]] = {}  # registry -> blob digest -> a repository
    pushed: dict[str, PushResult] = {}
    failed: dict[str, str] = {}
    for path, output, is_index in outputs:
        target = targets[path]
        known = holders.setdefault(target.registry, {})
        try:
            push = push_index if is_index else push_image
            result = push(output, target, options=registry, mount_from=mount_from, known=known)
            if not is_index:
                push_referrers(output, target, result.digest, registry)
        except SmithError as err:
            log.warning("%s: push to %s failed: %s", path, target, err)
            failed[path] = str(err)
            continue
        pushed[path] = result
        if not is_index:
            with open_image(output) as image:
                digests = [image.config_descriptor.digest, *(x.digest for x in image.layers)]
            for digest in digests:
                known.setdefault(digest, target.repository)
    return FleetPush(pushed, failed)
