"""The `--no-runtime RULE` option of the commands that compute a closure (minimize,
closure): one definition, so that they name and check the rules alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from smith.resolve.runtime_sets import RuntimeRule

F = TypeVar("F", bound=Callable[..., object])


def no_runtime_option(command: F) -> F:
    option = click.option(
        "--no-runtime",
        "no_runtime",
        multiple=True,
        type=click.Choice([rule.value for rule in RuntimeRule]),
        help="Switch off a rule-based run-time set (interpreter, openssl, libgcc_s).",
    )
    return option(command)
