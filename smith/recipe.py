"""The recipe (`smith.yaml`): read and validated once, at the boundary.

Oracle smith's keys are accepted unchanged; smith's additions are documented next to each
field. Every problem is one SmithError naming the file and where in it: YAML syntax errors
with line and column, unknown keys with the closest known key, wrong types with the field
and what it expects. Past this module, the rest of smith sees only a frozen `Recipe`.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Hashable, Mapping, Sequence
from enum import StrEnum
from functools import cache, partial
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from smith.arch import check_arch
from smith.errors import RecipeError
from smith.goyaml import GoScalarLoader, go_text
from smith.layering import DEFAULT_BUDGET, MAX_LAYERS, Layering, LayerStrategy
from smith.limits import RECIPE_BYTES, YAML_DEPTH, YAML_NODES
from smith.recipe_file import DEFAULT_RECIPE as DEFAULT_RECIPE
from smith.recipe_file import find_recipe as find_recipe
from smith.resolve.runtime_rules import RuntimeRule
from smith.settings import SETTINGS, Kind

log = logging.getLogger(__name__)


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path")
    return value


def _inside(value: str) -> str:
    """A path in the image: `..` could climb out of the root (and, through a symlink the
    image holds, land anywhere), so it is refused wherever it appears, as the layer
    reader refuses it."""
    if "\x00" in value:
        raise ValueError("a path in the image holds no NUL byte")
    if ".." in value.split("/"):
        raise ValueError("a path in the image cannot climb out of it with '..'")
    return value


def _env(value: str) -> str:
    key, equals, _ = value.partition("=")
    if not equals or not key or "\x00" in value:
        raise ValueError("an environment entry is NAME=VALUE")
    return value


def _port(value: str) -> str:
    number, _, proto = value.partition("/")
    if not (number.isdigit() and 0 < int(number) < 65536 and proto in ("tcp", "udp", "sctp")):
        raise ValueError(f"{value!r} is not a port: 1-65535, optionally /tcp, /udp or /sctp")
    return value


# A string field takes a scalar as the original's ghodss/yaml did (smith/goyaml.py):
# `user: 1000` is "1000", `cmd: [/bin/busybox, true]` ends in "true".
Text = Annotated[str, BeforeValidator(go_text)]
# What a runtime refuses when it runs the image (runc: "cwd must be an absolute path"),
# refused when the recipe is read instead.
AbsolutePath = Annotated[Text, AfterValidator(_absolute), AfterValidator(_inside)]
ImagePath = Annotated[Text, AfterValidator(_inside)]
EnvEntry = Annotated[Text, AfterValidator(_env)]
Port = Annotated[Text, AfterValidator(_port)]


class Strict(BaseModel):
    # defer_build: a model's validator is made when it first validates, so the bases and
    # parts of Recipe (RecipeKeys, Repo, Layers), which never validate alone, are not built
    # on their own at import (~1% of the instructions of importing and validating a recipe).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


class Repo(Strict):
    """A yum repository (smith's addition; the original used mock's yum configuration).

    `id` names it in smith.lock (`name` is accepted for the same, as in a .repo file);
    lower `priority` wins, as in dnf."""

    id: Text = ""
    name: Text = ""
    baseurl: Text
    priority: int = 99
    gpgcheck: bool = False
    gpgkey: tuple[Text, ...] = ()
    enabled: bool = True

    @field_validator("gpgkey", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else _tuple(value)


class Layers(Strict):
    """`layers:` (smith's addition): `single` (the default: one layer), `packages` (a layer
    per package, the application's own files on top), or `{strategy: packages, budget: N}`
    (at most N layers in all, 1 to 127)."""

    strategy: LayerStrategy = LayerStrategy.PACKAGES
    budget: int = Field(default=DEFAULT_BUDGET, ge=1, le=MAX_LAYERS)

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in set(LayerStrategy):
                raise ValueError(f"{value!r} is no strategy: {', '.join(LayerStrategy)}")
            return LayerStrategy(value)
        return value

    def layering(self) -> Layering:
        return Layering(self.strategy, self.budget)


class RuntimeSet(StrEnum):
    """Libraries loaded at run time that no DT_NEEDED names, kept on request."""

    NSS = "nss"
    GCONV = "gconv"


class RecipeKeys(Strict):
    """The keys of a recipe that are not settings, and the checks across keys."""

    # -- Oracle smith's keys ---------------------------------------------------------------
    type: Text | None = None  # "mock" or "oci" in the original: accepted with a warning
    mock: dict[str, Any] | None = None  # mock's settings: accepted with a warning
    package: Text | None = None
    parent: Text | None = None
    root: bool = False
    groups: tuple[Text, ...] = ()
    mounts: tuple[AbsolutePath, ...] = ()
    cmd: tuple[Text, ...] | None = None
    dir: AbsolutePath | None = None
    env: tuple[EnvEntry, ...] = ()
    labels: dict[Text, Text] = Field(default_factory=dict)
    ports: tuple[Port, ...] = ()
    # -- smith's additions -----------------------------------------------------------------
    packages: tuple[Text, ...] = ()
    repos: tuple[Repo, ...] = ()
    # Every architecture of `arch: [...]` (an image index with a manifest each): filled
    # from `arch`, not a key of its own. Empty for one architecture.
    arches: tuple[str, ...] = ()
    weak: bool = False  # install weak dependencies (Recommends) too
    runtime_libraries: tuple[RuntimeSet, ...] = ()  # nss, gconv
    libraries: tuple[ImagePath, ...] = ()  # extra library paths or globs, kept with their closure
    library_path: tuple[ImagePath, ...] = ()  # extra search directories, like LD_LIBRARY_PATH
    sbom: bool = False  # attach an SPDX SBOM (as `smith build --sbom`)
    # -- the keys that are settings (smith/settings.py): added from the table, below -------

    @model_validator(mode="before")
    @classmethod
    def _arch_list(cls, data: Any) -> Any:
        # `arch: [...]` becomes `arches`, checked by _arches (its errors say `arch`), and
        # `arch` its first item: code that builds one architecture reads `arch` alone.
        if not isinstance(data, Mapping):
            return data
        if "arches" in data:
            raise ValueError("`arches` is not a key: list the architectures as `arch: [...]`")
        value = data.get("arch")
        if not isinstance(value, list):
            return data
        first = value[0] if value and isinstance(value[0], str) else "x86_64"
        return {**data, "arch": first, "arches": tuple(value)}

    @field_validator("arches")
    @classmethod
    def _arches(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("the list of architectures is empty")
        for name in value:
            check_arch(name)
        if len(set(value)) != len(value):
            raise ValueError(f"{value!r} names an architecture twice")
        return value if len(value) > 1 else ()

    if TYPE_CHECKING:
        arch: str  # a setting, added from the table (with `arch: [...]`, the first of them)

    @property
    def architectures(self) -> tuple[str, ...]:
        return self.arches or (self.arch,)

    @field_validator("repos", mode="before")
    @classmethod
    def _repos(cls, value: Any) -> Any:
        # A bare URL is a repository with default settings.
        if isinstance(value, list):
            return tuple({"baseurl": v} if isinstance(v, str) else v for v in value)
        return value

    @field_validator("cmd", mode="before")
    @classmethod
    def _command(cls, value: Any) -> Any:
        return _command(value)

    @field_validator(
        "groups",
        "mounts",
        "env",
        "packages",
        "libraries",
        "library_path",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _tuple(value)

    @field_validator("runtime_libraries", mode="before")
    @classmethod
    def _runtime_sets(cls, value: Any) -> Any:
        return _enum_items(value, RuntimeSet)

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> Any:
        # Later versions of the original took a map ({"80/tcp": {}}), earlier ones a list;
        # a bare number means TCP, as in a Dockerfile's EXPOSE.
        if isinstance(value, Mapping):
            value = list(value)
        if isinstance(value, list):
            texts = [go_text(p) for p in value]
            return tuple(f"{t}/tcp" if isinstance(t, str) and t.isdigit() else t for t in texts)
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        # ghodss/yaml turns a map's keys into JSON strings: `{1: a, true: b}` is {"1", "true"}.
        if isinstance(value, Mapping):
            return {go_text(k): v for k, v in value.items()}
        return value

    # -- derived values ----------------------------------------------------------------------

    @property
    def package_requests(self) -> tuple[str, ...]:
        return ((self.package,) if self.package else ()) + self.packages


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _command(value: Any) -> Any:
    # The original took lists; a single string is one argument, never shell-split.
    return (value,) if isinstance(value, str) else _tuple(value)


def _layers(value: Any) -> Any:
    return {"strategy": value} if isinstance(value, str) else value


def _enum_items(value: Any, kind: type[StrEnum]) -> Any:
    """A list of names of `kind`, each checked, as a tuple of its members."""
    if not isinstance(value, list):
        return value
    known = [s.value for s in kind]
    for item in value:
        if item not in known:
            raise ValueError(f"{item!r} is not one of {', '.join(known)}")
    return tuple(kind(item) for item in value)


# The validated type of each kind of setting, and its default when the row gives none.
KINDS: dict[Kind, tuple[Any, Any]] = {
    Kind.TEXT: (Text, None),
    Kind.FILE: (str, None),
    Kind.EPOCH: (Annotated[int, Field(ge=0)], None),
    Kind.SWITCH: (bool, False),
    Kind.TEXTS: (Annotated[tuple[Text, ...], BeforeValidator(_tuple)], ()),
    Kind.IMAGE_PATHS: (Annotated[tuple[ImagePath, ...], BeforeValidator(_tuple)], ()),
    Kind.COMMAND: (Annotated[tuple[Text, ...], BeforeValidator(_command)], None),
    Kind.RUNTIME_RULES: (
        Annotated[tuple[RuntimeRule, ...], BeforeValidator(partial(_enum_items, kind=RuntimeRule))],
        (),
    ),
    Kind.LAYERS: (Annotated[Layers, BeforeValidator(_layers)], None),
}


def setting_fields() -> dict[str, Any]:
    """The recipe's keys that are settings, each made from its row: its type from the
    row's kind, its default the row's (else the kind's: none, off or empty), its help the
    row's. A key whose default is none takes `null` too."""
    fields: dict[str, Any] = {}
    for setting in SETTINGS:
        if not setting.recipe:
            continue
        annotation, empty = KINDS[setting.kind]
        default = empty if setting.default is None else setting.default
        if default is None:
            annotation = annotation | None
        fields[setting.key] = (annotation, Field(default=default, description=setting.help))
    return fields


if TYPE_CHECKING:
    # mypy cannot see fields made at run time: their types, for it alone (test_settings
    # checks that these are the table's recipe keys).
    class Recipe(RecipeKeys):
        output: str | None
        format: str | None
        tag: str | None
        compression: str
        source_date_epoch: int | None
        arch: str  # with `arch: [x86_64, aarch64]`, the first of them
        paths: tuple[str, ...]
        excludes: tuple[str, ...]
        nss: bool
        no_runtime_libraries: tuple[RuntimeRule, ...]  # rule-based sets on unless named
        profile: str | None  # a `smith probe` profile, relative to the recipe
        user: str | None
        entrypoint: tuple[str, ...] | None
        provenance: bool  # attach SLSA provenance (as `smith build --provenance`)
        package_db: bool  # write the kept packages' rpm database into the image
        layers: Layers | None  # how the image is cut into layers (smith.layering)

else:
    Recipe = create_model("Recipe", __base__=RecipeKeys, __module__=__name__, **setting_fields())
    Recipe.__doc__ = "A recipe: the keys that are not settings, and one per setting row."


MERGE_TAG, VALUE_TAG = "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"


class _UniqueKeyLoader(GoScalarLoader):
    """The original's scalar rules (GoScalarLoader), refusing a key given twice in one
    mapping: YAML would keep the last and drop the first without a word (`package:` twice
    builds only the second)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            if key_node.tag in (MERGE_TAG, VALUE_TAG):
                continue  # `<<: *base` merges a mapping whose keys may be overridden
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_recipe(path: str) -> Recipe:
    """Read and validate a recipe file."""
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, not a {type(data).__name__}")
    recipe = parse_recipe(data, path)
    for key, instead in (
        ("type", "the source is chosen by `package:`"),
        ("mock", "packages come from `repos:` and are resolved without mock"),
    ):
        if getattr(recipe, key) is not None:
            warn_ignored(path, key, instead)
    return recipe


@cache
def warn_ignored(path: str, key: str, instead: str) -> None:
    """Once per recipe and key: a build reads its recipe more than once (the architectures,
    then the build; a fleet its outputs first), and the note is the same each time."""
    log.warning("%s: the key %r of the original smith is ignored: %s", path, key, instead)


def read_yaml(path: str) -> Any:
    """A recipe's YAML, within RECIPE_BYTES, YAML_DEPTH and YAML_NODES: PyYAML composes and
    constructs by recursion (100,000 nested `[` end in RecursionError) and expands every
    alias anew (a merge-key bomb of 30 lines is 2^30 nodes)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block, /dev/zero never end
            raise RecipeError(f"the recipe {path!r} is not a regular file")
        with open(path, "rb") as f:
            text = f.read(RECIPE_BYTES.count() + 1)
    except FileNotFoundError:
        raise RecipeError(f"no recipe at {path!r}") from None
    except IsADirectoryError:
        raise RecipeError(f"the recipe {path!r} is a directory") from None
    except OSError as err:
        raise RecipeError(f"cannot read the recipe {path!r}: {err.strerror}") from None
    if len(text) > RECIPE_BYTES.count():
        raise RECIPE_BYTES.error(f"the recipe {path!r}")
    loader: _UniqueKeyLoader | None = None
    try:
        loader = _UniqueKeyLoader(text)  # it reads the encoding at once: errors too
        node = loader.get_single_node()
        if node is None:
            return None
        check_yaml_size(node, path)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise RecipeError(f"{path}{where}: YAML syntax error: {err.problem or err}") from None
    except yaml.YAMLError as err:
        # PyYAML spreads some messages (not UTF-8, a control character) over lines.
        raise RecipeError(f"{path}: YAML error: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise YAML_DEPTH.error(f"{path}: YAML nesting") from None
    except TypeError as err:  # a key PyYAML cannot hash (a mapping of mappings as a key)
        raise RecipeError(f"{path}: YAML error: {' '.join(str(err).split())}") from None
    finally:
        if loader is not None:
            loader.dispose()


def check_yaml_size(root: yaml.Node, path: str) -> None:
    """Refuse a document deeper than YAML_DEPTH or larger than YAML_NODES, aliases counted
    each time they are used (that is what constructing it would cost)."""
    depth_limit, node_limit = YAML_DEPTH.count(), YAML_NODES.count()
    seen = 0
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:  # no recursion: the check must not run out of stack itself
        node, depth = stack.pop()
        seen += 1
        if seen > node_limit:
            raise YAML_NODES.error(f"{path}: YAML document")
        if depth > depth_limit:
            raise YAML_DEPTH.error(f"{path}: YAML nesting")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))


def parse_recipe(data: Mapping[str, Any], path: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(dict(data))
    except ValidationError as err:
        raise RecipeError(f"{path}: {describe_error(err.errors()[0])}") from None


def describe_error(error: Mapping[str, Any]) -> str:
    loc: Sequence[str | int] = error.get("loc", ())
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    kind = error.get("type", "")
    if loc[:1] == ("arches",):
        where = "arch"  # written `arch: [...]`: see Recipe._arch_list
    if kind == "extra_forbidden":
        known = known_keys(loc[:-1])
        import difflib  # for a mistyped key alone: a recipe that validates never needs it

        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = (
            f" (did you mean {close[0]!r}?)"
            if close
            else f" (known keys: {', '.join(sorted(known))})"
        )
        return f"unknown key {where!r}{hint}"
    value = error.get("input")
    if not loc:  # the recipe as a whole (a model validator): the message says it all
        return str(error.get("msg", "invalid recipe")).removeprefix("Value error, ")
    msg = str(error.get("msg", "invalid value"))
    if kind == "value_error":  # a validator's own message already names the value
        return f"{where}: {msg.removeprefix('Value error, ')}"
    if kind == "tuple_type":  # a YAML user writes a list; the tuple is this model's
        msg = "input should be a list"
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return f"{where}: {msg.lower()}, got {shown}"


def known_keys(loc: Sequence[str | int]) -> list[str]:
    model: type[BaseModel] = Recipe
    for part in loc:
        if isinstance(part, str) and part == "repos":
            model = Repo
    return list(model.model_fields)
