"""The settings of `smith build` and `smith minimize`, in one table.

Each row names the recipe key, the command-line flags, the help, the default, how a value
is read and which commands take it; the click options of both commands are made from it
(smith/cli/settings_options.py), and one precedence rule answers every setting (`merged`):
the flag, else the recipe's key, else the environment, else the default. Before the table,
build and minimize declared the same options apart and drifted (`--compression` was a
Choice defaulting to the recipe in one and free text defaulting to gzip in the other; a
--recipe's `compression` and `source_date_epoch` were ignored by minimize). The library
reads the table; only the command line turns it into options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from smith.epoch import environment_epoch
from smith.layer_strategy import DEFAULT_BUDGET, MAX_LAYERS, LayerStrategy
from smith.oci.compression import Compression
from smith.resolve.runtime_rules import RuntimeRule

BOTH = frozenset(("build", "minimize"))
BUILD = frozenset(("build",))
MINIMIZE = frozenset(("minimize",))
# The commands that talk to a registry (smith/cli/registry_flags.py reads their flags).
REGISTRY = frozenset(
    (
        "build",
        "minimize",
        "upload",
        "download",
        "verify-signature",
        "sign",
        "probe",
        "diff",
        "sbom",
        "outdated",
    )
)


class Kind(StrEnum):
    """What a recipe's key holds: smith/recipe.py turns each kind into the validated type of
    the key (this module imports no pydantic: minimize and closure do not pay for it)."""

    TEXT = "text"  # a scalar as the original's go-yaml read it (`tag: 1` is "1")
    FILE = "file"  # a file relative to the recipe: a YAML string only
    EPOCH = "epoch"  # seconds since 1970, not negative
    SWITCH = "switch"  # true or false
    TEXTS = "texts"  # a list of scalars
    IMAGE_PATHS = "image paths"  # a list of paths or globs inside the image (no `..`)
    COMMAND = "command"  # a list of arguments, or one string as one argument
    RUNTIME_RULES = "runtime rules"  # names of rule-based run-time sets
    LAYERS = "layers"  # a layer strategy, or a mapping of a strategy and a budget


class Combine(StrEnum):
    """How a repeatable flag meets the recipe's list (mkosi's notion): the flag's items in
    place of the recipe's, or the flag's and then the recipe's."""

    REPLACE = "replace"
    EXTEND = "extend"


@dataclass(frozen=True)
class Setting:
    key: str  # the recipe key (or the option's name, with recipe=False)
    flags: tuple[str, ...]  # empty: a recipe key (and environment) only
    help: str
    commands: frozenset[str] = BOTH
    choices: tuple[str, ...] = ()
    default: Any = None  # also the recipe's, when the recipe has the key
    environment: Callable[[], Any] | None = None  # read when neither flag nor recipe says
    parser: Callable[[str], Any] | None = None  # reads the flag's text (default: as is)
    param: str = ""  # the function parameter, when the key would shadow a builtin
    switch: bool = False  # an on/off flag: off means "not given"
    multiple: bool = False  # the flag may be repeated (a tuple of values)
    combine: Combine = Combine.REPLACE  # with multiple: how the flag meets the recipe's
    recipe: bool = True  # whether a recipe has the key
    kind: Kind = Kind.TEXT  # what the recipe's key holds (with recipe=True)
    metavar: str | None = None
    bounds: tuple[float | None, float | None] | None = None  # a number's least and most
    show_default: bool = False
    notes: Mapping[str, str] = field(default_factory=dict)  # command -> what its help adds

    @property
    def name(self) -> str:
        """The parameter the option fills."""
        return self.param or self.key


def _option(key: str, flags: tuple[str, ...], help: str, **kw: Any) -> Setting:
    """A command-line setting no recipe has."""
    return Setting(key, flags, help, recipe=False, **kw)


SETTINGS = (
    Setting(
        "output",
        ("-o", "--output"),
        "Output: a directory (OCI layout), NAME.tar or NAME.tar.gz (oci-archive; "
        "docker-archive with --format).",
        notes={"build": " Default: the recipe's `output`, else image.tar.gz."},
    ),
    Setting(
        "format",
        ("--format",),
        "oci, oci-archive or docker-archive (default: from the output's name).",
        param="fmt",
    ),
    Setting(
        "tag",
        ("--tag",),
        "Image name recorded in the output (e.g. app:1.0; the index names it latest without).",
    ),
    Setting(
        "compression",
        ("--compression",),
        "Layer compression (default: the recipe's, else gzip).",
        choices=tuple(c.value for c in Compression),
        default=Compression.GZIP.value,
    ),
    Setting(
        "source_date_epoch",
        (),
        "The time of every file and of `created` (default: $SOURCE_DATE_EPOCH, else 0).",
        environment=environment_epoch,
        kind=Kind.EPOCH,
    ),
    Setting(
        "arch",
        ("--arch",),
        "Build for this architecture (x86_64, aarch64, ...) instead of the recipe's `arch`; "
        "repeated: one image index with a manifest per platform.",
        commands=BUILD,
        param="arches",
        multiple=True,
        default="x86_64",
    ),
    _option(
        "platform",
        ("--platform",),
        "OS/ARCH[/VARIANT] to pick from a multi-platform index; repeated, or `all` (every "
        "platform of a local layout or archive): an index of each minimized.",
        commands=MINIMIZE,
        param="platforms",
        multiple=True,
    ),
    _option(
        "locked",
        ("--locked",),
        "Use smith.lock only; never resolve beyond it.",
        commands=BUILD,
        switch=True,
    ),
    _option(
        "offline",
        ("--offline",),
        "Fail at once on any network access.",
        commands=BUILD,
        switch=True,
    ),
    _option(
        "cache_dir",
        ("--cache-dir",),
        "Download cache (default: $XDG_CACHE_HOME/smith).",
        commands=BUILD,
    ),
    _option(
        "keep_going",
        ("--keep-going",),
        "Warn about missing libraries instead of failing.",
        commands=BUILD,
        switch=True,
    ),
    Setting(
        "paths",
        ("--path",),
        "Also keep this glob or directory.",
        commands=MINIMIZE,
        multiple=True,
        combine=Combine.EXTEND,
        kind=Kind.IMAGE_PATHS,
    ),
    Setting(
        "excludes",
        ("--exclude",),
        "Leave this glob or directory out.",
        commands=MINIMIZE,
        multiple=True,
        combine=Combine.EXTEND,
        kind=Kind.TEXTS,
    ),
    Setting(
        "nss",
        ("--nss",),
        "Keep NSS modules, write passwd/group/nsswitch.conf.",
        commands=MINIMIZE,
        switch=True,
        kind=Kind.SWITCH,
    ),
    _option("gconv", ("--gconv",), "Keep every gconv module.", commands=MINIMIZE, switch=True),
    Setting(
        "no_runtime_libraries",
        ("--no-runtime",),
        "Switch off a rule-based run-time set (interpreter, openssl, libgcc_s).",
        commands=frozenset(("minimize", "closure")),
        choices=tuple(rule.value for rule in RuntimeRule),
        param="no_runtime",
        multiple=True,
        combine=Combine.EXTEND,
        kind=Kind.RUNTIME_RULES,
    ),
    Setting(
        "profile",
        ("--profile",),
        "Keep what `smith probe` recorded.",
        commands=MINIMIZE,
        kind=Kind.FILE,
    ),
    Setting(
        "user",
        ("--user",),
        "Run as USER[:GROUP] (default: the image's User).",
        commands=MINIMIZE,
    ),
    _option(
        "keep_ownership",
        ("--keep-ownership",),
        "Keep files' original uid/gid.",
        commands=MINIMIZE,
        switch=True,
    ),
    _option(
        "keep_modes",
        ("--keep-modes",),
        "Keep files' original permission bits.",
        commands=MINIMIZE,
        switch=True,
    ),
    Setting(
        "entrypoint",
        ("--entrypoint",),
        "Replace the Entrypoint (a JSON list or one program).",
        commands=MINIMIZE,
        kind=Kind.COMMAND,
    ),
    _option(
        "explain",
        ("--explain",),
        "Print every kept file and why it is there.",
        switch=True,
    ),
    _option(
        "json",
        ("--json",),
        "Print a machine-readable summary.",
        param="as_json",
        switch=True,
    ),
    _option("quiet", ("-q", "--quiet"), "Print nothing but errors.", switch=True),
    Setting(
        "provenance",
        ("--provenance",),
        "Attach an in-toto statement with SLSA v1 provenance (recipe digest, packages, "
        "epoch, smith's version) as an OCI referrer.",
        commands=BUILD,
        switch=True,
        kind=Kind.SWITCH,
    ),
    Setting(
        "package_db",
        ("--package-db",),
        "Write the kept packages' database into the image, for scanners:",
        switch=True,
        kind=Kind.SWITCH,
        notes={
            "build": " rpmdb.sqlite and os-release, and for `rpm -qa` (as the recipe's "
            "`package_db: true`).",
            "minimize": " the input's rpmdb.sqlite, or /var/lib/dpkg/status.d/<package> "
            "(as distroless) for a Debian image.",
        },
    ),
    # The recipe's `layers:` is a structured key (a strategy, or a mapping with a budget):
    # smith.layering.merged_layering lays these two flags over it, not `merged`.
    Setting(
        "layers",
        ("--layers",),
        "single: one layer (the default); packages: a layer per package, bottom of the "
        "dependency graph first, the application's own files (rootfs/, the program's "
        "package) on top. Over the recipe's `layers:`.",
        choices=tuple(s.value for s in LayerStrategy),
        kind=Kind.LAYERS,
    ),
    _option(
        "layer_budget",
        ("--layer-budget",),
        f"At most N layers in all with --layers packages (default {DEFAULT_BUDGET}, 1 to "
        f"{MAX_LAYERS}: containerd's limit); past it the highest packages share one.",
        parser=int,
        metavar="N",
    ),
    _option(
        "cache_from",
        ("--cache-from",),
        "A registry tag holding smith's build cache (as --cache-to writes it): a build it "
        "has is written from its layers, without extracting a package.",
        commands=BUILD,
        metavar="REF",
    ),
    _option(
        "cache_to",
        ("--cache-to",),
        "Record this build's layers and plan in the build cache at this registry tag, for "
        "other machines' --cache-from.",
        commands=BUILD,
        metavar="REF",
    ),
    # -- how to talk to a registry -------------------------------------------------------
    _option(
        "jobs",
        ("--jobs",),
        "Blobs transferred at once.",
        commands=frozenset(("upload", "download")),  # the commands that move many blobs
        default=4,
        bounds=(1, 16),
        show_default=True,
    ),
    _option(
        "creds",
        ("--creds",),
        "Registry credentials (else the reference's user:pass@, else ~/.docker/config.json).",
        commands=REGISTRY,
        metavar="USER:PASSWORD",
    ),
    _option(
        "authfile",
        ("--authfile",),
        "A Docker config.json to read credentials from.",
        commands=REGISTRY,
        metavar="FILE",
    ),
    _option(
        "insecure",
        ("--insecure",),
        "Allow plain HTTP, and do not check TLS certificates.",
        commands=REGISTRY,
        switch=True,
    ),
    _option(
        "cert_dir",
        ("--cert-dir",),
        "CA certificates (*.crt) and a client certificate (*.cert + *.key) for TLS.",
        commands=REGISTRY,
        metavar="DIR",
    ),
    _option(
        "timeout",
        ("--timeout",),
        "Seconds without progress before a connection counts as stalled.",
        commands=REGISTRY,
        default=60.0,
        bounds=(0.1, None),
        show_default=True,
    ),
    _option(
        "retries",
        ("--retries",),
        "Further attempts after HTTP 429/5xx or a dropped connection (registries and "
        "package repositories).",
        commands=REGISTRY | {"lock"},  # and `smith lock`'s repository downloads
        default=5,
        bounds=(0, 20),
        show_default=True,
    ),
)
BY_KEY = {s.key: s for s in SETTINGS}


def merged(key: str, flag: Any, recipe: Any = None, default: Any = None) -> Any:
    """The value of setting `key`: the flag, else the recipe's, else the environment's,
    else `default` (the command's) or the table's. An on/off flag that is off, or a
    repeatable one given no time, counts as not given; a repeatable flag whose row
    extends the recipe's list is the flag's items, then the recipe's."""
    setting = BY_KEY[key]
    from_recipe = getattr(recipe, key, None) if recipe is not None and setting.recipe else None
    if setting.combine is Combine.EXTEND:
        return (*flag, *(from_recipe or ()))
    given = bool(flag) if setting.switch or setting.multiple else flag is not None
    if given:
        return flag
    if from_recipe is not None:
        return from_recipe
    if setting.environment is not None:
        return setting.environment()
    if default is not None:
        return default
    if setting.default is not None:
        return setting.default
    return flag  # off, or given no time: as the flag says
