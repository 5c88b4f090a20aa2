"""The click options of a command, made from the settings table (smith/settings.py)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

import click

from smith.settings import SETTINGS, Setting

F = TypeVar("F", bound=Callable[..., Any])


def setting_options(
    command: str,
    *,
    aliases: Mapping[str, tuple[str, ...]] | None = None,
    required: Collection[str] = (),
) -> Callable[[F], F]:
    """The click options of `command`'s settings (`aliases`: extra flags, such as the
    original's `-i`), in the table's order."""

    def decorate(function: F) -> F:
        for setting in reversed(SETTINGS):
            if command not in setting.commands or not setting.flags:
                continue
            flags = (*setting.flags, *(aliases or {}).get(setting.key, ()))
            function = click.option(
                *flags, setting.name, **option_arguments(setting, command, setting.key in required)
            )(function)
        return function

    return decorate


def option_arguments(setting: Setting, command: str, required: bool) -> dict[str, Any]:
    help = setting.help + setting.notes.get(command, "")
    if setting.switch:
        return {"is_flag": True, "help": help}
    kind: Any = click.Choice(setting.choices) if setting.choices else setting.parser
    if setting.bounds is not None:
        low, high = setting.bounds
        kind = (
            click.IntRange(_whole(low), _whole(high))
            if isinstance(setting.default, int)
            else click.FloatRange(low, high)
        )
    arguments: dict[str, Any] = {
        "type": kind,
        "required": required,
        "multiple": setting.multiple,
        "metavar": setting.metavar,
        "show_default": setting.show_default,
        "help": help,
    }
    if setting.default is not None and not setting.recipe:
        arguments["default"] = setting.default  # no recipe to fall back on: the flag's own
    return arguments


def _whole(bound: float | None) -> int | None:
    return None if bound is None else int(bound)
