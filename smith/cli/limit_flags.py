"""`--set-limit NAME=VALUE`: the bounds of smith/limits.py as a flag, on every command that reads
untrusted input (through registry_flags, and on lock). The same names as the
SMITH_LIMIT_<NAME> variables; a flag wins over the variable. Not `--limit`: `smith diff`
has that already (how many causes it lists)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _apply(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> None:
    from smith.limits import FLAGS, set_limit

    FLAGS.clear()  # called on every parse, with or without flags: none outlives its command
    for value in values:
        set_limit(value)


limit_option = click.option(
    "--set-limit",
    multiple=True,
    metavar="NAME=VALUE",
    expose_value=False,  # applied as parsed: the commands never see it
    callback=_apply,
    help="Raise (or lower) a bound on what is read, e.g. DOCUMENT_BYTES=8388608 (the "
    "README's Limits; as SMITH_LIMIT_NAME). Repeatable.",
)
