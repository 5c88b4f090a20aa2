"""The output settings that `smith build` and `smith minimize` share, in one table.

Each row names the recipe key, the command-line flags, the help, the default and which
commands take it; the click options of both commands are made from it (`setting_options`),
and one precedence rule answers every setting (`merged`): the flag, else the recipe's key,
else the environment, else the default. Before the table, build and minimize declared the
same options apart and drifted (`--compression` was a Choice defaulting to the recipe in
one and free text defaulting to gzip in the other; a --recipe's `compression` and
`source_date_epoch` were ignored by minimize).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from smith.epoch import environment_epoch
from smith.oci.compress import Compression

F = TypeVar("F", bound=Callable[..., Any])
BOTH = frozenset(("build", "minimize"))


@dataclass(frozen=True)
class Setting:
    key: str  # the recipe key; the option's parameter is the same name
    flags: tuple[str, ...]  # empty: a recipe key (and environment) only
    help: str
    commands: frozenset[str] = BOTH
    choices: tuple[str, ...] = ()
    default: Any = None
    environment: Callable[[], Any] | None = None  # read when neither flag nor recipe says
    param_type: Any = None
    param: str = ""  # the function parameter, when the key would shadow a builtin


SETTINGS = (
    Setting(
        "output",
        ("-o", "--output"),
        "Output: a directory (OCI layout), NAME.tar or NAME.tar.gz (oci-archive; "
        "docker-archive with --format).",
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
    ),
)
BY_KEY = {s.key: s for s in SETTINGS}


def setting_options(
    command: str,
    *,
    aliases: Mapping[str, tuple[str, ...]] | None = None,
    required: Collection[str] = (),
    notes: Mapping[str, str] | None = None,
) -> Callable[[F], F]:
    """The click options of `command`'s settings (`aliases`: extra flags, such as the
    original's `-i`; `notes`: what the help adds for this command)."""

    def decorate(function: F) -> F:
        for setting in reversed(SETTINGS):
            if command not in setting.commands or not setting.flags:
                continue
            flags = (*setting.flags, *(aliases or {}).get(setting.key, ()))
            function = click.option(
                *flags,
                setting.param or setting.key,
                type=click.Choice(setting.choices) if setting.choices else setting.param_type,
                required=setting.key in required,
                help=setting.help + (notes or {}).get(setting.key, ""),
            )(function)
        return function

    return decorate


def merged(key: str, flag: Any, recipe: Any = None, default: Any = None) -> Any:
    """The value of setting `key`: the flag, else the recipe's, else the environment's,
    else `default` (the command's) or the table's."""
    setting = BY_KEY[key]
    if flag is not None:
        return flag
    from_recipe = getattr(recipe, key, None) if recipe is not None else None
    if from_recipe is not None:
        return from_recipe
    if setting.environment is not None:
        return setting.environment()
    return default if default is not None else setting.default
